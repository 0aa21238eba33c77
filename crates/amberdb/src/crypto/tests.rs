//! Round trips, tamper and swap detection, wrong and missing keys, key parsing, key ids.

use base64::Engine as _;
use proptest::prelude::*;

use super::*;
use crate::Error;

const DB: [u8; 16] = [0xd1; 16];
const TL: [u8; 16] = [0x71; 16];

fn key(n: u8) -> Key {
    let mut b = [0u8; KEY_LEN];
    for (i, x) in b.iter_mut().enumerate() {
        *x = n.wrapping_mul(31).wrapping_add(i as u8).wrapping_mul(167) ^ 0x80;
    }
    Key::from_bytes(b)
}

fn unit(index: u64) -> UnitId {
    UnitId::new(FileKind::LogSegment, DB, TL, 1000, index)
}

fn expect_unauthentic(r: crate::Result<Vec<u8>>, want_key_id: u32) {
    match r {
        Err(Error::Unauthentic { key_id, .. }) => assert_eq!(key_id, want_key_id),
        other => panic!("expected Unauthentic, got {other:?}"),
    }
}

#[test]
fn round_trip_all_sizes() {
    let ring = Keyring::single(key(1));
    for len in [0usize, 1, 15, 16, 17, 4096, 65536, 1 << 20] {
        let pt: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let sealed = ring.seal(&unit(32), &pt).unwrap();
        assert_eq!(sealed.len(), len + ENVELOPE_OVERHEAD);
        assert_eq!(ring.open(&unit(32), &sealed).unwrap(), pt);
        let cipher = ring.file_cipher(&unit(32).file).unwrap();
        assert_eq!(cipher.open(32, &sealed).unwrap(), pt, "FileCipher agrees");
    }
}

#[test]
fn ciphertext_hides_the_plaintext() {
    let ring = Keyring::single(key(1));
    let pt = b"secret-marker-7f3a secret-marker-7f3a secret-marker-7f3a".to_vec();
    let sealed = ring.seal(&unit(0), &pt).unwrap();
    assert!(!sealed.windows(12).any(|w| w == b"secret-marke"));
    // The same plaintext at two indexes gives unrelated ciphertexts (distinct nonces).
    let other = ring.seal(&unit(1), &pt).unwrap();
    assert_ne!(sealed[ENVELOPE_HEADER_LEN..], other[ENVELOPE_HEADER_LEN..]);
}

#[test]
fn flipped_byte_anywhere_is_unauthentic() {
    let ring = Keyring::single(key(1));
    let id = ring.primary().id().get();
    let sealed = ring.seal(&unit(7), b"player 1234 inventory").unwrap();
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        let r = ring.open(&unit(7), &bad);
        match i {
            // The version byte: malformed envelope, no key id read.
            0 => expect_unauthentic(r, 0),
            // The key id: now names a key the keyring lacks.
            1..=4 => assert!(
                matches!(r, Err(Error::KeyMissing { .. })),
                "byte {i}: {r:?}"
            ),
            _ => expect_unauthentic(r, id),
        }
    }
}

#[test]
fn swapped_units_are_unauthentic() {
    let ring = Keyring::single(key(1));
    let id = ring.primary().id().get();
    let at = UnitId::new(FileKind::LogSegment, DB, TL, 1000, 64);
    let sealed = ring.seal(&at, b"frame payload").unwrap();
    let elsewhere = [
        ("other offset", UnitId { index: 65, ..at }),
        (
            "other segment LSN",
            UnitId::new(FileKind::LogSegment, DB, TL, 1001, 64),
        ),
        (
            "other file kind",
            UnitId::new(FileKind::Checkpoint, DB, TL, 1000, 64),
        ),
        (
            "other timeline",
            UnitId::new(FileKind::LogSegment, DB, [0x72; 16], 1000, 64),
        ),
        (
            "other database",
            UnitId::new(FileKind::LogSegment, [0xd2; 16], TL, 1000, 64),
        ),
        (
            "other file salt (a re-created file)",
            UnitId {
                file: FileId {
                    salt: [9; 16],
                    ..at.file
                },
                ..at
            },
        ),
    ];
    for (what, u) in elsewhere {
        let r = ring.open(&u, &sealed);
        assert!(
            matches!(r, Err(Error::Unauthentic { key_id, .. }) if key_id == id),
            "{what}: {r:?}"
        );
        let cipher = ring.file_cipher(&u.file).unwrap();
        expect_unauthentic(cipher.open(u.index, &sealed), id);
    }
    assert_eq!(ring.open(&at, &sealed).unwrap(), b"frame payload");
}

#[test]
fn wrong_key_is_key_missing_naming_the_key_id() {
    let writer = Keyring::single(key(1));
    let reader = Keyring::single(key(2));
    let sealed = writer.seal(&unit(0), b"x").unwrap();
    match reader.open(&unit(0), &sealed) {
        Err(e @ Error::KeyMissing { .. }) => {
            let Error::KeyMissing {
                key_id, available, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(*key_id, key(1).id().get());
            assert_eq!(*available, key(2).id().to_string());
            let msg = e.to_string();
            assert!(msg.contains(&key(1).id().to_string()), "{msg}");
            assert!(msg.contains("not damage"), "{msg}");
        }
        other => panic!("expected KeyMissing, got {other:?}"),
    }
    // A reader cipher for a key the keyring lacks is refused the same way.
    assert!(matches!(
        reader.file_cipher_for(&unit(0).file, key(1).id()),
        Err(Error::KeyMissing { .. })
    ));
}

#[test]
fn same_id_wrong_key_bytes_is_unauthentic_not_accepted() {
    // A key id collision (or an envelope whose key id was rewritten to the reader's key):
    // the reader's key is tried and authentication fails.
    let writer = Keyring::single(key(1));
    let reader = Keyring::single(key(2));
    let mut sealed = writer.seal(&unit(0), b"x").unwrap();
    sealed[1..5].copy_from_slice(&key(2).id().get().to_le_bytes());
    expect_unauthentic(reader.open(&unit(0), &sealed), key(2).id().get());
}

#[test]
fn keyring_first_key_seals_all_keys_open() {
    let old = Keyring::single(key(1));
    let sealed_old = old.seal(&unit(0), b"old").unwrap();
    let rotated = Keyring::new(vec![key(2), key(1)]).unwrap();
    assert_eq!(rotated.key_ids(), vec![key(2).id(), key(1).id()]);
    let sealed_new = rotated.seal(&unit(1), b"new").unwrap();
    assert_eq!(
        Envelope::parse(&sealed_new, &unit(1)).unwrap().key_id,
        key(2).id()
    );
    assert_eq!(rotated.open(&unit(0), &sealed_old).unwrap(), b"old");
    assert_eq!(rotated.open(&unit(1), &sealed_new).unwrap(), b"new");
    // After the old key is dropped, what it sealed names it.
    let new_only = Keyring::single(key(2));
    assert!(matches!(
        new_only.open(&unit(0), &sealed_old),
        Err(Error::KeyMissing { key_id, .. }) if key_id == key(1).id().get()
    ));
    // A file cipher for old files opens them; one for the new key refuses old units.
    let c = rotated.file_cipher_for(&unit(0).file, key(1).id()).unwrap();
    assert_eq!(c.open(0, &sealed_old).unwrap(), b"old");
    let c = rotated.file_cipher(&unit(0).file).unwrap();
    expect_unauthentic(c.open(0, &sealed_old), key(1).id().get());
}

#[test]
fn keyring_refuses_empty_and_duplicate_keys() {
    assert!(matches!(
        Keyring::new(vec![]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Keyring::new(vec![key(1), key(2), key(1)]),
        Err(Error::InvalidArgument(m)) if m.contains(&key(1).id().to_string())
    ));
}

#[test]
fn malformed_envelopes_are_unauthentic_with_no_key_id() {
    let ring = Keyring::single(key(1));
    let sealed = ring.seal(&unit(0), b"abc").unwrap();
    for cut in 0..ENVELOPE_OVERHEAD {
        expect_unauthentic(ring.open(&unit(0), &sealed[..cut]), 0);
    }
    // Truncating the tail of a longer unit shifts the tag: authentication fails.
    expect_unauthentic(
        ring.open(&unit(0), &sealed[..sealed.len() - 1]),
        ring.primary().id().get(),
    );
    let mut zero_id = sealed.clone();
    zero_id[1..5].fill(0);
    expect_unauthentic(ring.open(&unit(0), &zero_id), 0);
    let mut v2 = sealed;
    v2[0] = 2;
    expect_unauthentic(ring.open(&unit(0), &v2), 0);
}

#[test]
fn key_id_is_stable_nonzero_and_differs_per_key() {
    // Pinned: the derivation is part of the format (HMAC-SHA256(key, "amberdb key id v1")).
    let k = Key::from_bytes([0u8; KEY_LEN]);
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[0u8; KEY_LEN]),
        b"amberdb key id v1",
    );
    let want = u32::from_le_bytes(mac.as_ref()[..4].try_into().unwrap());
    assert_ne!(want, 0);
    assert_eq!(k.id().get(), want);
    assert_eq!(Key::from_bytes([0u8; KEY_LEN]).id(), k.id(), "stable");
    let ids: std::collections::HashSet<u32> = (0..=255u8).map(|n| key(n).id().get()).collect();
    assert_eq!(ids.len(), 256, "256 keys, 256 ids");
    assert!(!ids.contains(&0));
    // The id is not the key: no 4-byte window of the key equals it.
    let kb = *key(9).bytes();
    let id = key(9).id().get().to_le_bytes();
    assert!(!kb.windows(4).any(|w| w == id));
    assert_eq!(KeyId::from_u32(0), None);
    assert_eq!(format!("{}", KeyId::from_u32(0xab).unwrap()), "000000ab");
}

#[test]
fn key_debug_never_prints_the_bytes() {
    let k = Key::from_bytes([0x41; KEY_LEN]);
    let dbg = format!("{k:?} {:?}", Keyring::single(k.clone()));
    assert!(!dbg.contains("65, 65"), "{dbg}");
    assert!(!dbg.contains("AAAA"), "{dbg}");
    assert!(dbg.contains(&k.id().to_string()), "{dbg}");
}

fn random_key_bytes() -> [u8; KEY_LEN] {
    let mut b = [0u8; KEY_LEN];
    // Deterministic but non-printable-only bytes.
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(73).wrapping_add(0x90);
    }
    b
}

#[test]
fn key_file_raw_base64_and_whitespace() {
    let raw = random_key_bytes();
    let want = Key::from_bytes(raw).id();
    assert_eq!(Key::parse(&raw, "t").unwrap().id(), want, "raw 32 bytes");
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    assert_eq!(b64.len(), 44);
    for text in [
        b64.clone(),
        format!("{b64}\n"),
        format!("  {b64}\r\n"),
        format!("\t{b64}\n\n"),
    ] {
        assert_eq!(
            Key::parse(text.as_bytes(), "t").unwrap().id(),
            want,
            "{text:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, format!("{b64}\n")).unwrap();
    assert_eq!(Key::from_file(&path).unwrap().id(), want);
    std::fs::write(&path, raw).unwrap();
    assert_eq!(Key::from_file(&path).unwrap().id(), want);
}

fn expect_bad_key(r: crate::Result<Key>, needle: &str) {
    match r {
        Err(e @ Error::InvalidEncryptionKey { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
        }
        other => panic!("expected InvalidEncryptionKey, got {other:?}"),
    }
}

#[test]
fn key_file_wrong_lengths_and_formats_are_refused() {
    let raw = random_key_bytes();
    let b64 = base64::engine::general_purpose::STANDARD;
    expect_bad_key(Key::parse(&raw[..31], "f"), "neither a raw 32-byte key");
    let mut long = raw.to_vec();
    long.push(0xff);
    expect_bad_key(Key::parse(&long, "f"), "neither a raw 32-byte key");
    // A raw key with a newline after it is 33 bytes: refused, not silently trimmed.
    let mut nl = raw.to_vec();
    nl.push(b'\n');
    expect_bad_key(Key::parse(&nl, "f"), "f");
    expect_bad_key(Key::parse(b"", "f"), "empty");
    expect_bad_key(Key::parse(b" \n", "f"), "empty");
    expect_bad_key(
        Key::parse(b64.encode([7u8; 16]).as_bytes(), "f"),
        "base64 of 16 bytes",
    );
    expect_bad_key(
        Key::parse(b64.encode([7u8; 33]).as_bytes(), "f"),
        "base64 of 33 bytes",
    );
    expect_bad_key(Key::parse(hex::encode(raw).as_bytes(), "f"), "hex");
    expect_bad_key(Key::parse(b"not*base64*at*all", "f"), "not base64");
    expect_bad_key(
        Key::parse(b"correct horse battery staple!!!!", "f"),
        "passphrase",
    );
    expect_bad_key(
        Key::from_file(std::path::Path::new("/nonexistent/k")),
        "/nonexistent/k",
    );
}

#[test]
fn key_from_environment() {
    // Variable names unique to this test: the environment is shared by parallel tests.
    let name = "AMBERDB_TEST_CRYPTO_KEY_FROM_ENV";
    std::env::remove_var(name);
    assert!(Key::from_env_var(name).unwrap().is_none());
    let raw = random_key_bytes();
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    std::env::set_var(name, format!("{b64}\n"));
    assert_eq!(
        Key::from_env_var(name).unwrap().unwrap().id(),
        Key::from_bytes(raw).id()
    );
    std::env::set_var(name, "not a key");
    expect_bad_key(Key::from_env_var(name).map(|k| k.unwrap()), name);
    std::env::remove_var(name);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_seal_open_round_trip_and_tamper(
        pt in proptest::collection::vec(any::<u8>(), 0..2048),
        index in any::<u64>(),
        lsn in any::<u64>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let ring = Keyring::single(key(3));
        let u = UnitId::new(FileKind::Checkpoint, DB, TL, lsn, index);
        let sealed = ring.seal(&u, &pt).unwrap();
        prop_assert_eq!(sealed.len(), pt.len() + ENVELOPE_OVERHEAD);
        prop_assert_eq!(&ring.open(&u, &sealed).unwrap(), &pt);
        let mut bad = sealed.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 1 << bit;
        prop_assert!(ring.open(&u, &bad).is_err(), "flip at {} accepted", i);
        let moved = UnitId { index: index.wrapping_add(1), ..u };
        prop_assert!(
            matches!(ring.open(&moved, &sealed), Err(Error::Unauthentic { .. })),
            "moved unit accepted"
        );
    }
}
