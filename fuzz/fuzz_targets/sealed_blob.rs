//! Fuzzes the sealed blob file (`amberdb::blob::sealed::read_sealed` and `SealedReader`).
//! Each input runs as is, and again with its header CRC recomputed so that mutations reach the
//! unit and trailer checks behind it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    amberdb_fuzz::sealed_blob(data);
    let mut fixed = data.to_vec();
    amberdb_fuzz::fix_sealed_blob(&mut fixed);
    amberdb_fuzz::sealed_blob(&fixed);
});
