//! The fuzz targets' committed corpora, replayed on every CI run, plus a short bounded run of
//! random mutations of them: a panic or a hang found once by `fuzz/run` stays fixed, and the
//! targets keep compiling and working without a fuzzer installed.
//!
//! `TOCSIN_FUZZ_MS` sets the mutation budget per target (default 1,500 ms).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use tocsin::fuzzing::TARGETS;

/// xorshift64*: deterministic, so a failure here repeats with the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte-level mutations of the kinds libFuzzer starts with: flip, insert, delete, duplicate a
/// span, splice in an interesting token.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    const TOKENS: &[&[u8]] = &[
        b"\"",
        b"[",
        b"]]",
        b"=",
        b"\n",
        b"\0",
        b"\xff",
        b"/",
        b"@",
        b":",
        b"-1",
        b"18446744073709551616",
        b"\"999999h\"",
        b"[[accounts]]",
        b"env:",
        b"\xe2\x80\xae",
    ];
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(5) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next() as u8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(len - i).min(64);
                input.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(len - i).min(256);
                let span = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, span);
            }
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(input.len() + 1);
                input.splice(at..at, token.iter().copied());
            }
        }
    }
    input.truncate(1 << 16);
}

#[test]
fn every_target_survives_its_corpus_and_mutations_of_it() {
    let budget = Duration::from_millis(
        std::env::var("TOCSIN_FUZZ_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_500),
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus of {name} at {}: {e}", dir.display()))
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(!seeds.is_empty(), "target {name} has no committed seeds");
        seeds.sort();
        for seed in &seeds {
            target(seed);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        let started = Instant::now();
        let mut runs = 0u64;
        while started.elapsed() < budget {
            let mut input = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &mut input);
            let one = Instant::now();
            target(&input);
            assert!(
                one.elapsed() < Duration::from_secs(2),
                "{name}: one input took {:?}: {:?}",
                one.elapsed(),
                String::from_utf8_lossy(&input)
            );
            runs += 1;
        }
        eprintln!("{name}: {} seeds, {runs} mutations", seeds.len());
    }
}
