//! Fuzzes the segment scanner (`amberdb::log::segment::scan`: header, frames, torn tail versus damage).
//! Each input runs as is, and again with its checksums recomputed so that mutations reach
//! the parsing behind the CRC and SHA-256 checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    amberdb_fuzz::segment_scan(data);
    let mut fixed = data.to_vec();
    amberdb_fuzz::fix_segment(&mut fixed);
    amberdb_fuzz::segment_scan(&fixed);
});
