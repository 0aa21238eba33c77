//! Fuzzes the plaintext stream file decoder (`amberdb::stream::decode_stream_file`, the frame
//! reader open uses). Each input runs as is, and again with its CRCs recomputed so that
//! mutations reach the frame parser behind them.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    amberdb_fuzz::stream_file(data);
    let mut fixed = data.to_vec();
    amberdb_fuzz::fix_stream_file(&mut fixed);
    amberdb_fuzz::stream_file(&fixed);
});
