//! Fuzzes the sealed-unit envelope (`amberdb::crypto::Envelope::parse` and `Keyring::open`).
//! Each input runs as is, and again re-sealed (same length) so that mutations reach the
//! success path behind the authentication tag.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    amberdb_fuzz::sealed_unit(data);
    let mut fixed = data.to_vec();
    amberdb_fuzz::fix_sealed_unit(&mut fixed);
    amberdb_fuzz::sealed_unit(&fixed);
});
