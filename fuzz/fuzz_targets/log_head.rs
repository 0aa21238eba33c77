//! Fuzzes the `log/HEAD` record decoder (`amberdb::log::segment::LogHead::decode`).
//! Each input runs as is, and again with its CRC recomputed so that mutations reach the
//! parsing behind it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    amberdb_fuzz::log_head(data);
    let mut fixed = data.to_vec();
    amberdb_fuzz::fix_log_head(&mut fixed);
    amberdb_fuzz::log_head(&fixed);
});
