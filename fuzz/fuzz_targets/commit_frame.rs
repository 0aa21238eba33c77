//! Fuzzes the commit frame decoder (`amberdb::log::record::decode_frame`).
//! Each input runs as is, and again with its checksums recomputed so that mutations reach
//! the parsing behind the CRC and SHA-256 checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    amberdb_fuzz::commit_frame(data);
    let mut fixed = data.to_vec();
    amberdb_fuzz::fix_frames(&mut fixed);
    amberdb_fuzz::commit_frame(&fixed);
});
