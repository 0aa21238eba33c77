//! The fuzz targets' seed corpora (`fuzz/corpus/<target>/`), run through the same decoders and
//! the same checks as the fuzzers (`fuzz/src/lib.rs`, included here by path), plus a few
//! thousand deterministic mutations of them per target: bit flips, truncations, splices,
//! insertions, deletions and "interesting" integers written over length fields, each run both
//! as is and with its checksums recomputed so the mutation reaches the parsers behind them.
//! No decoder may panic on any of it, and the valid seeds (`valid-*`) must decode cleanly.
//!
//! CI has no nightly toolchain for `cargo fuzz`, so this test is what keeps the decoders honest
//! there; `fuzz/README.md` says how to run the real fuzzers. To rebuild the corpora from the
//! current format: `cargo test --release -p amberdb --test fuzz_seeds -- --ignored`.

#![allow(clippy::unwrap_used)]

#[path = "../../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Check = fn(&[u8]) -> bool;
type Fix = fn(&mut [u8]);

const TARGETS: [(&str, Check, Fix); 9] = [
    ("commit_frame", checks::commit_frame, checks::fix_frames),
    ("segment_scan", checks::segment_scan, checks::fix_segment),
    ("seal", checks::seal, checks::fix_seal),
    ("checkpoint", checks::checkpoint, checks::fix_checkpoint),
    ("log_head", checks::log_head, checks::fix_log_head),
    ("sealed_unit", checks::sealed_unit, checks::fix_sealed_unit),
    ("identity", checks::identity, checks::fix_identity),
    ("sealed_blob", checks::sealed_blob, checks::fix_sealed_blob),
    ("stream_file", checks::stream_file, checks::fix_stream_file),
];

/// Mutations per target; each is checked raw and with fixed checksums.
const MUTATIONS: usize = 5000;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_seed_runs_through_its_decoder_and_valid_seeds_decode() {
    for (target, check, _) in TARGETS {
        let seeds = seeds(target);
        assert!(
            seeds
                .iter()
                .filter(|(n, _)| n.starts_with("valid-"))
                .count()
                >= 2,
            "{target}: valid seeds"
        );
        assert!(
            seeds
                .iter()
                .filter(|(n, _)| !n.starts_with("valid-"))
                .count()
                >= 3,
            "{target}: edge cases"
        );
        for (name, bytes) in &seeds {
            let decoded = check(bytes);
            if name.starts_with("valid-") {
                assert!(decoded, "{target}/{name} must decode cleanly");
            } else if name.starts_with("invalid-") {
                assert!(!decoded, "{target}/{name} must be rejected");
            }
        }
    }
}

const INTERESTING: [u64; 12] = [
    0,
    1,
    4,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 30,
    (1 << 30) + 1,
    u64::MAX - 1,
    u64::MAX,
];

fn mutate(rng: &mut StdRng, seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut m = seeds[rng.random_range(0..seeds.len())].1.clone();
    let rounds = rng.random_range(1..4);
    for _ in 0..rounds {
        let len = m.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                m[i] ^= 1 << rng.random_range(0..8);
            }
            1 => m.truncate(rng.random_range(0..=len)),
            2 => {
                let other = &seeds[rng.random_range(0..seeds.len())].1;
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..=other.len());
                m.truncate(cut);
                m.extend_from_slice(&other[from..]);
            }
            3 if len > 0 => {
                let width = [1usize, 2, 4, 8][rng.random_range(0..4)];
                let at = rng.random_range(0..len);
                let v = INTERESTING[rng.random_range(0..INTERESTING.len())].to_le_bytes();
                for (k, b) in v.iter().take(width).enumerate() {
                    if let Some(slot) = m.get_mut(at + k) {
                        *slot = *b;
                    }
                }
            }
            4 => {
                let at = rng.random_range(0..=len);
                let n = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                m.splice(at..at, bytes);
            }
            5 if len > 0 => {
                let at = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - at).min(64));
                m.drain(at..at + n);
            }
            6 if len > 0 => {
                let at = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - at).min(256));
                let chunk = m[at..at + n].to_vec();
                m.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    m
}

#[test]
fn thousands_of_mutated_seeds_never_panic_a_decoder() {
    let mut rng = StdRng::seed_from_u64(0x00a1_71b3_7db0);
    for (target, check, fix) in TARGETS {
        let seeds = seeds(target);
        let (mut raw_ok, mut fixed_ok) = (0, 0);
        for i in 0..MUTATIONS {
            let m = mutate(&mut rng, &seeds);
            let outcome = std::panic::catch_unwind(|| {
                let raw = check(&m);
                let mut fixed = m.clone();
                fix(&mut fixed);
                (raw, check(&fixed))
            });
            match outcome {
                Ok((raw, fixed)) => {
                    raw_ok += usize::from(raw);
                    fixed_ok += usize::from(fixed);
                }
                Err(_) => {
                    let path = std::env::temp_dir().join(format!("amberdb-fuzz-{target}-{i}.bin"));
                    std::fs::write(&path, &m).unwrap();
                    panic!(
                        "{target}: mutation {i} panicked; input saved to {}",
                        path.display()
                    );
                }
            }
        }
        eprintln!("{target}: {MUTATIONS} mutations, {raw_ok} decoded as is, {fixed_ok} after fixing checksums");
        // The checksum fix-ups must let some mutations through to the deeper parsers, or this
        // test would only ever exercise the CRC checks.
        assert!(
            fixed_ok > raw_ok,
            "{target}: fixed checksums let more mutations decode"
        );
    }
}

/// Rebuilds `fuzz/corpus/sealed_unit/` (the `amberdb::crypto` envelope) alone:
/// `cargo test --release -p amberdb --test fuzz_seeds regenerate_sealed_unit -- --ignored`.
#[test]
#[ignore = "writes the seed corpus into fuzz/corpus/sealed_unit; run by hand after a format change"]
fn regenerate_sealed_unit_seeds() {
    let dir = corpus_dir("sealed_unit");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    let (ring, unit) = checks::sealed_unit_context();
    let small = ring
        .seal(&unit, br#"{"hp":20,"inventory":["sword","shield"]}"#)
        .unwrap();
    write("valid-small.bin", &small);
    write("valid-empty-plaintext.bin", &ring.seal(&unit, b"").unwrap());
    let big: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    write("valid-5000-bytes.bin", &ring.seal(&unit, &big).unwrap());
    write("invalid-empty.bin", &[]);
    write("invalid-truncated-envelope.bin", &small[..20]);
    write("invalid-truncated-tag.bin", &small[..small.len() - 1]);
    let mut flipped = small.clone();
    flipped[10] ^= 0x40;
    write("invalid-flipped-ciphertext.bin", &flipped);
    let mut version = small.clone();
    version[0] = 2;
    write("invalid-future-version.bin", &version);
    let mut other_key = small.clone();
    other_key[1..5].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    write("invalid-other-key-id.bin", &other_key);
    let mut zero_key = small;
    zero_key[1..5].fill(0);
    write("invalid-key-id-zero.bin", &zero_key);
}

/// Rebuilds `fuzz/corpus/sealed_blob/` (the sealed blob file) alone:
/// `cargo test --release -p amberdb --test fuzz_seeds regenerate_sealed_blob -- --ignored`.
#[test]
#[ignore = "writes the seed corpus into fuzz/corpus/sealed_blob; run by hand after a format change"]
fn regenerate_sealed_blob_seeds() {
    use amberdb::blob::sealed::{SealedWriter, UNIT};
    let dir = corpus_dir("sealed_blob");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    let ring = checks::sealed_blob_keyring();
    let seal = |plain: &[u8]| {
        let mut w = SealedWriter::new(Vec::new(), &ring).unwrap();
        w.write(plain).unwrap();
        w.finish().unwrap().0
    };
    let small = seal(b"a replay of level 3");
    write("valid-small.bin", &small);
    write("valid-empty.bin", &seal(b""));
    let two: Vec<u8> = (0..UNIT + 17).map(|i| (i * 13 % 256) as u8).collect();
    let two_units = seal(&two);
    write("valid-two-units.bin", &two_units);
    write("invalid-empty.bin", &[]);
    write("invalid-header-only.bin", &small[..40]);
    write("invalid-truncated.bin", &small[..small.len() - 1]);
    let mut flipped = small.clone();
    flipped[45] ^= 0x40;
    write("invalid-flipped-unit.bin", &flipped);
    let mut trailer = small.clone();
    let n = trailer.len();
    trailer[n - 20] ^= 1;
    write("invalid-flipped-trailer.bin", &trailer);
    let cut: Vec<u8> = [&two_units[..40], &two_units[40 + UNIT + 21..]].concat();
    write("invalid-unit-cut.bin", &cut);
}

/// Rebuilds `fuzz/corpus/identity/` (the identity record) alone:
/// `cargo test --release -p amberdb --test fuzz_seeds regenerate_identity -- --ignored`.
#[test]
#[ignore = "writes the seed corpus into fuzz/corpus/identity; run by hand after a format change"]
fn regenerate_identity_seeds() {
    use amberdb::identity::Identity;
    let dir = corpus_dir("identity");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    let created = Identity::create("create");
    write("valid-created.json", &created.encode());
    let branched = created
        .branch(40, "restore to LSN 40")
        .branch(75, "automatic recovery lost 76..=80");
    write("valid-two-branches.json", &branched.encode());
    let text = String::from_utf8(branched.encode()).unwrap();
    write("invalid-empty.json", b"");
    write("invalid-truncated.json", &text.as_bytes()[..text.len() / 2]);
    // One hex digit of the CRC changed: still parses, fails its CRC.
    let crc_at = text.find("\"crc32c\"").unwrap() + 11;
    let mut bad_crc = text.clone().into_bytes();
    bad_crc[crc_at] = if bad_crc[crc_at] == b'0' { b'1' } else { b'0' };
    write("invalid-bad-crc.json", &bad_crc);
    // CRC-valid records that break a rule behind the CRC.
    let mut future = branched.clone();
    future.format_version = 99;
    write("invalid-future-version.json", &future.encode());
    let mut unchained = branched.clone();
    unchained.history.swap(0, 1);
    write("invalid-not-a-chain.json", &unchained.encode());
    let mut wrong_current = branched;
    wrong_current.timeline = created.timeline;
    write("invalid-current-not-last.json", &wrong_current.encode());
}

/// Rebuilds `fuzz/corpus/` from real files written by the engine plus hand-made edge cases.
/// Run it after a format change: `cargo test --release -p amberdb --test fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes the seed corpora into fuzz/corpus; run by hand after a format change"]
fn regenerate_seed_corpora() {
    use amberdb::checkpoint::list_checkpoints;
    use amberdb::log::record::FRAME_HEADER_LEN;
    use amberdb::log::segment::{
        list_segments, scan, seal_file_name, SegmentHeader, LOG_FORMAT_VERSION,
    };
    use amberdb::{Db, Options, Transaction, CHECKPOINT_DIR, LOG_DIR};
    use serde_json::json;

    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };

    // A log with several kinds of commits, rolled into sealed segments.
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 600,
        checkpoint_on_close: false,
        ..Options::default()
    };
    let db = Db::open_with(tmp.path(), opts).unwrap();
    db.put(
        "players",
        "alice",
        json!({"hp": 20, "inventory": ["sword", "shield"]}),
    )
    .unwrap();
    let mut tx = Transaction::new();
    tx.put("players", "bob", json!({"hp": 7}));
    tx.put("parties", "red", json!({"members": ["alice", "bob"]}));
    tx.delete("players", "alice");
    db.commit(&tx).unwrap();
    db.delete("players", "bob").unwrap();
    db.put(
        "game.states-v2",
        "ключ-🎲",
        json!({"board": [[1, 0], [0, 1]], "turn": null}),
    )
    .unwrap();
    db.put("chat", "log-1", json!({"text": "x".repeat(1200)}))
        .unwrap();
    for i in 0..6 {
        db.put("players", &format!("p{i}"), json!({"i": i}))
            .unwrap();
    }
    // Log format 5: a commit with stream ops (an append; retention adds a trim).
    db.set_stream_retention(
        "chat.log",
        amberdb::Retention {
            max_entries: Some(2),
            max_age_s: None,
        },
    )
    .unwrap();
    db.append(
        "chat.log",
        &[json!("hi"), json!({"n": 1}), json!([2])],
        None,
    )
    .unwrap();
    db.close().unwrap();
    let log_dir = tmp.path().join(LOG_DIR);
    let segments = list_segments(&log_dir).unwrap();
    assert!(segments.len() >= 3, "{segments:?}");

    // commit_frame: each real frame on its own, two in a row, and broken ones.
    let mut frames: Vec<Vec<u8>> = vec![];
    for (_, path) in &segments {
        let bytes = std::fs::read(path).unwrap();
        let mut offsets = vec![];
        scan(&bytes, |rec, off| {
            offsets.push((off as usize, rec.encoded_len()))
        })
        .unwrap();
        for (off, len) in offsets {
            frames.push(bytes[off..off + len].to_vec());
        }
    }
    let names = [
        "valid-put",
        "valid-txn-put-put-delete",
        "valid-delete",
        "valid-unicode-key",
        "valid-large-value",
    ];
    for (name, frame) in names.iter().zip(&frames) {
        write("commit_frame", &format!("{name}.bin"), frame);
    }
    write(
        "commit_frame",
        "valid-stream-append-and-trim.bin",
        frames.last().unwrap(),
    );
    write(
        "commit_frame",
        "valid-two-frames.bin",
        &[frames[5].clone(), frames[6].clone()].concat(),
    );
    write("commit_frame", "invalid-empty.bin", &[]);
    write("commit_frame", "invalid-zero-length.bin", &[0; 24]);
    write(
        "commit_frame",
        "invalid-truncated.bin",
        &frames[1][..frames[1].len() / 2],
    );
    let mut bad_crc = frames[1].clone();
    bad_crc[30] ^= 0x01;
    write("commit_frame", "invalid-bad-crc.bin", &bad_crc);
    let mut huge = frames[0].clone();
    huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    write("commit_frame", "invalid-huge-length.bin", &huge);
    // CRC-valid frames with impossible contents: an op count the payload cannot hold, and a
    // value length running past the payload.
    let mut count = frames[0].clone();
    count[FRAME_HEADER_LEN..FRAME_HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    checks::fix_frames(&mut count);
    write("commit_frame", "invalid-op-count-overflow.bin", &count);
    let mut vlen = frames[0].clone();
    let value_len =
        amberdb::canonical_json(&json!({"hp": 20, "inventory": ["sword", "shield"]})).len();
    // The value length field, just before the value (log format 5: the payload ends with the
    // stream op count, 0 here).
    let at = vlen.len() - 4 - value_len - 4;
    vlen[at..at + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    checks::fix_frames(&mut vlen);
    write(
        "commit_frame",
        "invalid-value-length-past-payload.bin",
        &vlen,
    );

    // segment_scan: real segments, an empty one, and damage of every kind.
    let seg0 = std::fs::read(&segments[0].1).unwrap();
    write("segment_scan", "valid-segment.bin", &seg0);
    write(
        "segment_scan",
        "valid-last-segment.bin",
        &std::fs::read(&segments.last().unwrap().1).unwrap(),
    );
    let header = |first_lsn| {
        SegmentHeader {
            format_version: LOG_FORMAT_VERSION,
            key_id: 0,
            first_lsn,
            ids: Some(amberdb::identity::Identity::create("fuzz seed").ids()),
            salt: [0; 16],
        }
        .encode()
    };
    write("segment_scan", "valid-empty-segment.bin", &header(42));
    write(
        "segment_scan",
        "edge-torn-tail.bin",
        &seg0[..seg0.len() - 5],
    );
    let mut damaged = seg0.clone();
    damaged[32 + 30] ^= 0x04;
    write("segment_scan", "edge-damaged-first-frame.bin", &damaged);
    write("segment_scan", "invalid-first-lsn-zero.bin", &header(0));
    // An LSN at the very end of the range: the scanner's LSN arithmetic must not overflow.
    let mut max = header(u64::MAX);
    let mut last = frames[0].clone();
    last[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    checks::fix_frames(&mut last);
    max.extend_from_slice(&last);
    max.extend_from_slice(&last);
    write("segment_scan", "edge-max-lsn.bin", &max);
    let mut magic = seg0.clone();
    magic[0] = b'X';
    write("segment_scan", "invalid-bad-magic.bin", &magic);
    write("segment_scan", "invalid-short-header.bin", &seg0[..20]);
    let mut version = header(1);
    version[8..12].copy_from_slice(&(LOG_FORMAT_VERSION + 1).to_le_bytes());
    checks::fix_segment(&mut version);
    write("segment_scan", "invalid-future-version.bin", &version);

    // seal: real seals and broken ones.
    let seal0 = std::fs::read(log_dir.join(seal_file_name(segments[0].0))).unwrap();
    write("seal", "valid-seal.bin", &seal0);
    write(
        "seal",
        "valid-seal-2.bin",
        &std::fs::read(log_dir.join(seal_file_name(segments[1].0))).unwrap(),
    );
    write("seal", "invalid-truncated.bin", &seal0[..60]);
    let mut crc = seal0.clone();
    crc[40] ^= 0x80;
    write("seal", "invalid-bad-crc.bin", &crc);
    let mut version = seal0.clone();
    version[8..12].copy_from_slice(&9u32.to_le_bytes());
    checks::fix_seal(&mut version);
    write("seal", "invalid-future-version.bin", &version);
    let mut padding = seal0.clone();
    padding[84..].copy_from_slice(&[0xee; 4]);
    write("seal", "edge-nonzero-padding.bin", &padding);

    // checkpoint: zstd and plain, with tombstones; an empty one; broken ones.
    let ckpt = |level: i32, fill: bool| {
        let tmp = tempfile::tempdir().unwrap();
        let db = Db::open_with(
            tmp.path(),
            Options {
                checkpoint_compression_level: level,
                ..Options::default()
            },
        )
        .unwrap();
        if fill {
            db.put(
                "players",
                "alice",
                json!({"hp": 20, "inventory": ["sword"]}),
            )
            .unwrap();
            db.put("players", "bob", json!({"hp": 7})).unwrap();
            db.delete("players", "bob").unwrap();
            db.put("game.states-v2", "ключ-🎲", json!([1, 2, 3]))
                .unwrap();
        } else {
            db.put("players", "gone", json!(null)).unwrap();
            db.delete("players", "gone").unwrap();
        }
        db.close().unwrap();
        let path = list_checkpoints(&tmp.path().join(CHECKPOINT_DIR)).unwrap()[0]
            .1
            .clone();
        std::fs::read(path).unwrap()
    };
    let zstd = ckpt(1, true);
    let plain = ckpt(0, true);
    write("checkpoint", "valid-zstd.bin", &zstd);
    write("checkpoint", "valid-uncompressed.bin", &plain);
    write("checkpoint", "valid-only-tombstones.bin", &ckpt(0, false));
    write(
        "checkpoint",
        "invalid-truncated.bin",
        &plain[..plain.len() - 20],
    );
    let header_len = amberdb::checkpoint::HEADER_LEN_V4;
    write(
        "checkpoint",
        "invalid-header-only.bin",
        &plain[..header_len],
    );
    let mut body = plain.clone();
    body[100] ^= 0x01;
    write("checkpoint", "invalid-flipped-body.bin", &body);
    let mut block = zstd.clone();
    block[header_len..header_len + 4].copy_from_slice(&(1u32 << 30).to_le_bytes());
    checks::fix_checkpoint(&mut block);
    write("checkpoint", "invalid-huge-raw-length.bin", &block);
    let mut garbage = plain.clone();
    let trailer_at = garbage.len() - 48;
    garbage[header_len + 12..trailer_at].fill(0xab);
    checks::fix_checkpoint(&mut garbage);
    write(
        "checkpoint",
        "invalid-garbage-entries-with-valid-checksums.bin",
        &garbage,
    );
}

/// Rebuilds `fuzz/corpus/stream_file/` (plaintext stream files written by a database):
/// `cargo test --release -p amberdb --test fuzz_seeds regenerate_stream_file -- --ignored`.
#[test]
#[ignore = "writes the seed corpus into fuzz/corpus/stream_file; run by hand after a format change"]
fn regenerate_stream_file_seeds() {
    let dir = corpus_dir("stream_file");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let db = amberdb::Db::open_with(tmp.path().join("d"), amberdb::Options::default()).unwrap();
    db.append("chat", &[serde_json::json!({"line": "gg"})], None)
        .unwrap();
    db.append(
        "chat",
        &[serde_json::json!([1, 2, 3]), serde_json::json!("rematch?")],
        None,
    )
    .unwrap();
    db.close().unwrap();
    let streams = tmp.path().join("d").join("streams");
    let inc = std::fs::read_dir(&streams)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let file = std::fs::read_dir(&inc)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(file).unwrap();
    write("valid-three-entries.bin", &bytes);
    write("valid-header-only.bin", &bytes[..40]);
    write("invalid-empty.bin", &[]);
    write("invalid-truncated-frame.bin", &bytes[..bytes.len() - 3]);
    let mut flipped = bytes.clone();
    flipped[50] ^= 0x40;
    write("invalid-flipped-entry.bin", &flipped);
    let mut huge = bytes.clone();
    huge[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    write("invalid-huge-length.bin", &huge);
}
