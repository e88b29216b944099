//! Raw aws-lc-rs signing rate: the physical limit of this machine for bench/sign.py.
//!
//!   raw-sign [--threads 2] [--duration 8] [--algs PS256,RS256,ES256] [--modes digest]
//!
//! For every (alg, mode) it starts `--threads` OS threads that sign in a tight loop for
//! `--duration` seconds (fixed time, no request cap needed: the loop checks a deadline flag),
//! then prints one JSON line: {"alg","mode","threads","duration_s","ops","ops_per_s",
//! "cpu_s","cpu_us_per_op"}. CPU is this process's utime+stime from /proc/self/stat.
//!
//! Modes:
//! - `digest`  : key parsed once; `sign_digest` over a 32-byte SHA-256 digest. This is the
//!               same aws-lc-rs call the server makes (keystead-crypto `rsa_sign_digest` /
//!               `ec_sign_digest`), so it is the raw limit the server is compared with.
//! - `message` : key parsed once; `sign` over a 32-byte message (aws-lc-rs hashes it first;
//!               one SHA-256 block costs well under 1 µs, so this should match `digest`).
//! - `parse`   : `from_pkcs8` on every operation, then `sign_digest`: what a server that
//!               re-parses the private key per request pays (diagnostic, not the limit).
//!
//! Keys are generated fresh (RSA-2048, e = 65537; P-256). Each signature is over a distinct
//! digest (a counter in the first 8 bytes). One signature per alg is verified first.
use aws_lc_rs::digest::{self, Digest, SHA256};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, KeyPair, RsaEncoding, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Digest,
    Message,
    Parse,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Digest => "digest",
            Mode::Message => "message",
            Mode::Parse => "parse",
        }
    }
}

#[derive(Clone)]
enum Key {
    Rsa(Arc<RsaKeyPair>, Arc<Vec<u8>>, &'static dyn RsaEncoding),
    Ec(Arc<EcdsaKeyPair>, Arc<Vec<u8>>),
}

fn proc_cpu_s() -> f64 {
    // utime + stime (fields 14, 15) of this process, in seconds; 100 Hz ticks on Linux.
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn digest_for(n: u64) -> Digest {
    let mut d = [0x5au8; 32];
    d[..8].copy_from_slice(&n.to_le_bytes());
    Digest::import_less_safe(&d, &SHA256).expect("32-byte SHA-256 digest")
}

/// One signature; returns its length so the optimiser can't drop the work.
fn sign_once(key: &Key, mode: Mode, n: u64, sig: &mut [u8], rng: &SystemRandom) -> usize {
    match key {
        Key::Rsa(pair, pkcs8, enc) => {
            match mode {
                Mode::Digest => pair.sign_digest(*enc, &digest_for(n), sig).expect("sign"),
                Mode::Message => {
                    let mut m = [0x5au8; 32];
                    m[..8].copy_from_slice(&n.to_le_bytes());
                    pair.sign(*enc, rng, &m, sig).expect("sign")
                }
                Mode::Parse => {
                    let p = RsaKeyPair::from_pkcs8(pkcs8).expect("pkcs8");
                    p.sign_digest(*enc, &digest_for(n), sig).expect("sign")
                }
            }
            sig.len()
        }
        Key::Ec(pair, pkcs8) => match mode {
            Mode::Digest => pair.sign_digest(&digest_for(n)).expect("sign").as_ref().len(),
            Mode::Message => {
                let mut m = [0x5au8; 32];
                m[..8].copy_from_slice(&n.to_le_bytes());
                pair.sign(rng, &m).expect("sign").as_ref().len()
            }
            Mode::Parse => {
                let p = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .expect("pkcs8");
                p.sign_digest(&digest_for(n)).expect("sign").as_ref().len()
            }
        },
    }
}

fn run(key: &Key, mode: Mode, threads: usize, dur: Duration) -> (u64, f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = proc_cpu_s();
    let t0 = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (key, stop) = (key.clone(), stop.clone());
            std::thread::spawn(move || {
                let rng = SystemRandom::new();
                let mut sig = vec![0u8; 512];
                let mut n: u64 = (t as u64) << 40;
                let mut ops = 0u64;
                let mut sink = 0usize;
                if let Key::Rsa(p, _, _) = &key {
                    sig.truncate(p.public_modulus_len());
                }
                while !stop.load(Ordering::Relaxed) {
                    sink = sink.wrapping_add(sign_once(&key, mode, n, &mut sig, &rng));
                    n += 1;
                    ops += 1;
                }
                std::hint::black_box(sink);
                ops
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = hs.into_iter().map(|h| h.join().expect("thread")).sum();
    let el = t0.elapsed().as_secs_f64();
    (ops, el, proc_cpu_s() - cpu0)
}

fn make_key(alg: &str) -> Key {
    match alg {
        "PS256" | "RS256" => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa keygen");
            let pkcs8 = pair.as_der().expect("pkcs8").as_ref().to_vec();
            let enc: &'static dyn RsaEncoding = if alg == "PS256" {
                &signature::RSA_PSS_SHA256
            } else {
                &signature::RSA_PKCS1_SHA256
            };
            // sanity: one signature verifies
            let mut sig = vec![0u8; pair.public_modulus_len()];
            pair.sign_digest(enc, &digest::digest(&SHA256, b"check"), &mut sig)
                .expect("sign");
            let params: &'static signature::RsaParameters = if alg == "PS256" {
                &signature::RSA_PSS_2048_8192_SHA256
            } else {
                &signature::RSA_PKCS1_2048_8192_SHA256
            };
            UnparsedPublicKey::new(params, pair.public_key().as_ref())
                .verify(b"check", &sig)
                .expect("RSA signature verifies");
            Key::Rsa(Arc::new(pair), Arc::new(pkcs8), enc)
        }
        "ES256" => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("ec keygen");
            let pkcs8 = doc.as_ref().to_vec();
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                .expect("pkcs8");
            let sig = pair.sign_digest(&digest::digest(&SHA256, b"check")).expect("sign");
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref())
                .verify(b"check", sig.as_ref())
                .expect("ECDSA signature verifies");
            Key::Ec(Arc::new(pair), Arc::new(pkcs8))
        }
        other => panic!("unknown alg {other} (PS256, RS256, ES256)"),
    }
}

fn main() {
    let mut threads = 2usize;
    let mut duration = 8.0f64;
    let mut algs = "PS256,RS256,ES256".to_string();
    let mut modes = "digest".to_string();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--threads" => threads = v.parse().expect("--threads N"),
            "--duration" => duration = v.parse().expect("--duration SECONDS"),
            "--algs" => algs = v,
            "--modes" => modes = v,
            "-h" | "--help" => {
                eprintln!("raw-sign [--threads 2] [--duration 8] [--algs PS256,RS256,ES256] [--modes digest,message,parse]");
                return;
            }
            a => panic!("unknown argument {a}"),
        }
        i += 2;
    }
    assert!((1..=64).contains(&threads) && duration > 0.0 && duration <= 600.0);
    let dur = Duration::from_secs_f64(duration);
    for alg in algs.split(',').filter(|s| !s.is_empty()) {
        let key = make_key(alg);
        for m in modes.split(',').filter(|s| !s.is_empty()) {
            let mode = match m {
                "digest" => Mode::Digest,
                "message" => Mode::Message,
                "parse" => Mode::Parse,
                other => panic!("unknown mode {other}"),
            };
            let (ops, el, cpu) = run(&key, mode, threads, dur);
            println!(
                "{{\"alg\":\"{alg}\",\"mode\":\"{}\",\"threads\":{threads},\"duration_s\":{:.3},\"ops\":{ops},\"ops_per_s\":{:.1},\"cpu_s\":{:.2},\"cpu_us_per_op\":{:.1}}}",
                mode.name(),
                el,
                ops as f64 / el,
                cpu,
                if ops > 0 { 1e6 * cpu / ops as f64 } else { 0.0 }
            );
        }
    }
}
