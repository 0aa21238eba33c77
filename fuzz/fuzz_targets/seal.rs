//! Fuzzes the seal decoder (`amberdb::log::segment::Seal::decode`).
//! Each input runs as is, and again with its checksums recomputed so that mutations reach
//! the parsing behind the CRC and SHA-256 checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    amberdb_fuzz::seal(data);
    let mut fixed = data.to_vec();
    amberdb_fuzz::fix_seal(&mut fixed);
    amberdb_fuzz::seal(&fixed);
});
