//! `aead-bench`: the AEAD candidates for encryption at rest (issue 12), side by side, in one run.
//!
//! ```text
//! cargo run --release -p amberdb-bench --features aws-lc --bin aead-bench -- [--reps N] [--mib-per-rep M]
//! ```
//!
//! Without `--features aws-lc` the `aws-lc-rs` row is left out (it builds AWS-LC from C
//! source, minutes on 2 cores, so the workspace does not build it by default).
//!
//! Seals (encrypts and authenticates) and opens units of 4 KiB, 64 KiB and 1 MiB with a
//! 256-bit key and a fresh 96-bit nonce per unit, through each candidate's in-place API with a
//! detached tag (no allocation in the timed loop), and prints MB/s (10^6 bytes per second of
//! plaintext) as a markdown table with the ratio of each candidate to the fastest one. The
//! candidates run interleaved (A, B, C, ..., A, B, C, ...) over the repetitions, so drift in
//! the machine's load lands on every candidate alike; the table shows the median and the range.
//!
//! The last two rows are the engine's own layer, `amberdb::crypto`: the chosen AEAD plus what
//! the engine adds per unit (the envelope, an allocation and a copy), once through
//! `Keyring::seal`/`open` (the per-file key derived for every unit) and once through a
//! `FileCipher` (derived once per file, as the formats will use it), so their ratios are the
//! real cost a file format will pay. Ratios are to the fastest of the candidates.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::KeyInit;
use amberdb::crypto::{FileKind, Key, Keyring, UnitId};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "aead-bench",
    about = "AEAD candidates for AmberDB's encryption at rest"
)]
struct Args {
    /// Repetitions of every (candidate, size) pair, interleaved.
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Plaintext MiB sealed (and opened) per repetition of one pair.
    #[arg(long, default_value_t = 64)]
    mib_per_rep: usize,
}

const SIZES: [usize; 3] = [4 << 10, 64 << 10, 1 << 20];
const KEY: [u8; 32] = [7; 32];

/// One candidate: seals `buf` in place under nonce number `n` and returns the tag, or opens it.
trait Candidate {
    fn name(&self) -> &'static str;
    /// Encrypts `buf` in place; returns the detached 16-byte tag.
    fn seal(&self, n: u64, buf: &mut [u8]) -> [u8; 16];
    /// Decrypts `buf` in place; false when the tag does not verify.
    fn open(&self, n: u64, buf: &mut [u8], tag: &[u8; 16]) -> bool;
}

fn nonce12(n: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_le_bytes());
    b
}

const AAD: &[u8] = b"amberdb aead bench unit id";

struct RustCryptoAesGcm(aes_gcm::Aes256Gcm);
impl Candidate for RustCryptoAesGcm {
    fn name(&self) -> &'static str {
        "RustCrypto aes-gcm 0.10 (AES-256-GCM)"
    }
    fn seal(&self, n: u64, buf: &mut [u8]) -> [u8; 16] {
        let tag = self
            .0
            .encrypt_in_place_detached(&nonce12(n).into(), AAD, buf)
            .expect("aes-gcm seal");
        tag.into()
    }
    fn open(&self, n: u64, buf: &mut [u8], tag: &[u8; 16]) -> bool {
        self.0
            .decrypt_in_place_detached(&nonce12(n).into(), AAD, buf, tag.into())
            .is_ok()
    }
}

struct RustCryptoChaCha(chacha20poly1305::ChaCha20Poly1305);
impl Candidate for RustCryptoChaCha {
    fn name(&self) -> &'static str {
        "RustCrypto chacha20poly1305 0.10 (ChaCha20-Poly1305)"
    }
    fn seal(&self, n: u64, buf: &mut [u8]) -> [u8; 16] {
        let tag = self
            .0
            .encrypt_in_place_detached(&nonce12(n).into(), AAD, buf)
            .expect("chacha20poly1305 seal");
        tag.into()
    }
    fn open(&self, n: u64, buf: &mut [u8], tag: &[u8; 16]) -> bool {
        self.0
            .decrypt_in_place_detached(&nonce12(n).into(), AAD, buf, tag.into())
            .is_ok()
    }
}

struct RustCryptoXChaCha(chacha20poly1305::XChaCha20Poly1305);
impl Candidate for RustCryptoXChaCha {
    fn name(&self) -> &'static str {
        "RustCrypto chacha20poly1305 0.10 (XChaCha20-Poly1305)"
    }
    fn seal(&self, n: u64, buf: &mut [u8]) -> [u8; 16] {
        let mut nonce = [0u8; 24];
        nonce[16..].copy_from_slice(&n.to_le_bytes());
        let tag = self
            .0
            .encrypt_in_place_detached(&nonce.into(), AAD, buf)
            .expect("xchacha20poly1305 seal");
        tag.into()
    }
    fn open(&self, n: u64, buf: &mut [u8], tag: &[u8; 16]) -> bool {
        let mut nonce = [0u8; 24];
        nonce[16..].copy_from_slice(&n.to_le_bytes());
        self.0
            .decrypt_in_place_detached(&nonce.into(), AAD, buf, tag.into())
            .is_ok()
    }
}

struct Ring(ring::aead::LessSafeKey, &'static str);
impl Candidate for Ring {
    fn name(&self) -> &'static str {
        self.1
    }
    fn seal(&self, n: u64, buf: &mut [u8]) -> [u8; 16] {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce12(n)),
                ring::aead::Aad::from(AAD),
                buf,
            )
            .expect("ring seal");
        let mut out = [0u8; 16];
        out.copy_from_slice(tag.as_ref());
        out
    }
    fn open(&self, n: u64, buf: &mut [u8], tag: &[u8; 16]) -> bool {
        self.0
            .open_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce12(n)),
                ring::aead::Aad::from(AAD),
                ring::aead::Tag::from(*tag),
                buf,
                0..,
            )
            .is_ok()
    }
}

#[cfg(feature = "aws-lc")]
struct AwsLc(aws_lc_rs::aead::LessSafeKey);
#[cfg(feature = "aws-lc")]
impl Candidate for AwsLc {
    fn name(&self) -> &'static str {
        "aws-lc-rs 1 (AES-256-GCM)"
    }
    fn seal(&self, n: u64, buf: &mut [u8]) -> [u8; 16] {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce12(n)),
                aws_lc_rs::aead::Aad::from(AAD),
                buf,
            )
            .expect("aws-lc-rs seal");
        let mut out = [0u8; 16];
        out.copy_from_slice(tag.as_ref());
        out
    }
    fn open(&self, n: u64, buf: &mut [u8], tag: &[u8; 16]) -> bool {
        self.0
            .open_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce12(n)),
                aws_lc_rs::aead::Aad::from(AAD),
                tag,
                buf,
            )
            .is_ok()
    }
}

/// The engine's own layer: an envelope per unit, a per-file key derived per call.
struct Engine(Keyring);
impl Engine {
    fn unit(n: u64) -> UnitId {
        UnitId::new(FileKind::LogSegment, [1; 16], [2; 16], 1, n)
    }
}

fn rate(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let args = Args::parse();
    let reps = args.reps.max(1);
    let budget = args.mib_per_rep.max(1) << 20;
    let ring_gcm = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &KEY).expect("ring key");
    let ring_chacha =
        ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &KEY).expect("ring key");
    #[allow(unused_mut)]
    let mut candidates: Vec<Box<dyn Candidate>> = vec![
        Box::new(Ring(
            ring::aead::LessSafeKey::new(ring_gcm),
            "ring 0.17 (AES-256-GCM)",
        )),
        Box::new(RustCryptoAesGcm(aes_gcm::Aes256Gcm::new(&KEY.into()))),
        Box::new(Ring(
            ring::aead::LessSafeKey::new(ring_chacha),
            "ring 0.17 (ChaCha20-Poly1305)",
        )),
        Box::new(RustCryptoChaCha(chacha20poly1305::ChaCha20Poly1305::new(
            &KEY.into(),
        ))),
        Box::new(RustCryptoXChaCha(chacha20poly1305::XChaCha20Poly1305::new(
            &KEY.into(),
        ))),
    ];
    #[cfg(feature = "aws-lc")]
    candidates.insert(
        1,
        Box::new(AwsLc(aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &KEY)
                .expect("aws-lc-rs key"),
        ))),
    );
    let engine = Engine(Keyring::new(vec![Key::from_bytes(KEY)]).expect("keyring"));
    let rows = candidates.len() + 2;
    // samples[size][row] = (seal MB/s per rep, open MB/s per rep)
    let mut samples = vec![vec![(Vec::new(), Vec::new()); rows]; SIZES.len()];
    let started = Instant::now();
    for rep in 0..reps {
        eprintln!("aead-bench: repetition {}/{reps}", rep + 1);
        for (si, &size) in SIZES.iter().enumerate() {
            let units = (budget / size).max(1);
            let plain: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            for (ci, c) in candidates.iter().enumerate() {
                let mut buf = plain.clone();
                let mut tags = Vec::with_capacity(units);
                let t = Instant::now();
                for n in 0..units {
                    buf.copy_from_slice(&plain);
                    tags.push(c.seal(n as u64, black_box(&mut buf)));
                }
                let seal = t.elapsed().as_secs_f64();
                // Open the last unit's ciphertext repeatedly under its own nonce.
                let sealed = buf.clone();
                let last = (units - 1) as u64;
                let tag = *tags.last().expect("at least one unit");
                let t = Instant::now();
                for _ in 0..units {
                    buf.copy_from_slice(&sealed);
                    assert!(c.open(last, black_box(&mut buf), &tag), "{} open", c.name());
                }
                let open = t.elapsed().as_secs_f64();
                assert_eq!(buf, plain, "{} round trip", c.name());
                samples[si][ci].0.push(rate(units * size, seal));
                samples[si][ci].1.push(rate(units * size, open));
            }
            // The engine's layer: allocating seal/open, the envelope and the key derivation.
            let t = Instant::now();
            let mut last = Vec::new();
            for n in 0..units {
                last = engine
                    .0
                    .seal(&Engine::unit(n as u64), black_box(&plain))
                    .expect("engine seal");
            }
            let seal = t.elapsed().as_secs_f64();
            let unit = Engine::unit((units - 1) as u64);
            let t = Instant::now();
            for _ in 0..units {
                let out = engine.0.open(&unit, black_box(&last)).expect("engine open");
                black_box(out);
            }
            let open = t.elapsed().as_secs_f64();
            samples[si][rows - 2].0.push(rate(units * size, seal));
            samples[si][rows - 2].1.push(rate(units * size, open));
            // The same through one FileCipher per file: the file key derived once.
            let file = Engine::unit(0).file;
            let sealer = engine.0.file_cipher(&file).expect("file cipher");
            let t = Instant::now();
            for n in 0..units {
                last = sealer
                    .seal(n as u64, black_box(&plain))
                    .expect("cipher seal");
            }
            let seal = t.elapsed().as_secs_f64();
            let t = Instant::now();
            for _ in 0..units {
                let out = sealer
                    .open((units - 1) as u64, black_box(&last))
                    .expect("cipher open");
                black_box(out);
            }
            let open = t.elapsed().as_secs_f64();
            samples[si][rows - 1].0.push(rate(units * size, seal));
            samples[si][rows - 1].1.push(rate(units * size, open));
        }
    }
    let mut names: Vec<&str> = candidates.iter().map(|c| c.name()).collect();
    names.push("amberdb::crypto `Keyring::seal`/`open` (file key derived per unit)");
    names.push("amberdb::crypto `FileCipher::seal`/`open` (file key derived once per file)");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "AEAD throughput, MB/s of plaintext (median of {reps}, range in brackets), {} MiB per \
         repetition per cell; CPU: {cpu}; {} logical cores; {:.0} s in all.\n",
        args.mib_per_rep,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );
    for (label, pick) in [("seal", 0usize), ("open", 1usize)] {
        println!("| {label} | 4 KiB | ratio | 64 KiB | ratio | 1 MiB | ratio |");
        println!("|---|---|---|---|---|---|---|");
        let med: Vec<Vec<(f64, f64, f64)>> = samples
            .iter_mut()
            .map(|per_size| {
                per_size
                    .iter_mut()
                    .map(|(s, o)| {
                        let v = if pick == 0 { s } else { o };
                        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = v.iter().copied().fold(0.0, f64::max);
                        (median(v), lo, hi)
                    })
                    .collect()
            })
            .collect();
        let best: Vec<f64> = med
            .iter()
            .map(|per| per.iter().take(rows - 2).map(|m| m.0).fold(0.0, f64::max))
            .collect();
        for (ci, name) in names.iter().enumerate() {
            let mut line = format!("| {name} |");
            for (si, per) in med.iter().enumerate() {
                let (m, lo, hi) = per[ci];
                line.push_str(&format!(
                    " {m:.0} [{lo:.0}-{hi:.0}] | {:.2}× |",
                    m / best[si]
                ));
            }
            println!("{line}");
        }
        println!();
    }
    ExitCode::SUCCESS
}
