//! Fuzzes the identity record decoder (`amberdb::identity::Identity::decode`: `DATA/identity.json`
//! and `wal/<timeline>.history`). Each input runs as is, and again with its CRC recomputed so
//! that mutations reach the checks behind it (format version, timeline chain).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    amberdb_fuzz::identity(data);
    let mut fixed = data.to_vec();
    amberdb_fuzz::fix_identity(&mut fixed);
    amberdb_fuzz::identity(&fixed);
});
