//! Fault suite (d) on the stable toolchain: the inputs of the cargo-fuzz
//! targets in `fuzz/` (ingest decoding, config loading), driven by a seeded
//! mutation loop instead of libFuzzer, which needs nightly. Seeds are the
//! files in `fuzz/corpus/<target>/` plus generated ones; each iteration
//! flips, deletes, duplicates, inserts or splices bytes of a seed. A panic
//! fails the test and prints the input. `SLUICE_FUZZ_SECS` (default 10)
//! bounds each target's time; `SLUICE_FUZZ_SEED` picks the seed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use sluice::schema::SchemaSet;
use sluice_tests::{repo_path, sample_event};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\n",
    b"null",
    b"-1",
    b"1e999",
    b"\\u0000",
    b"\xff",
    b"\xc3\x01",
    b"\"severity\":\"LOUD\"",
    b"=",
    b"[[",
    b"\"\"\"",
    b"${",
    b"0x7f",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below((len - i).min(64) + 1);
                input.drain(i..i + n);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below((len - i).min(64) + 1);
                let chunk: Vec<u8> = input[i..i + n].to_vec();
                let at = rng.below(input.len() + 1);
                input.splice(at..at, chunk);
            }
            3 => {
                let token = INTERESTING[rng.below(INTERESTING.len())];
                let at = rng.below(len + 1);
                input.splice(at..at, token.iter().copied());
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            5 if len > 0 => input.truncate(rng.below(len)),
            _ => {
                let at = rng.below(len + 1);
                let byte = rng.next() as u8;
                input.insert(at, byte);
            }
        }
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = repo_path(&format!("fuzz/corpus/{target}"));
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds.sort();
    seeds
}

/// Run `check` on every seed and then on mutations until the time budget.
fn fuzz(target: &str, mut seeds: Vec<Vec<u8>>, check: impl Fn(&[u8])) {
    let secs: u64 = std::env::var("SLUICE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("SLUICE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_1CE5);
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut runs = 0u64;
    let mut pool = seeds.clone();
    let mut run = |input: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            panic!(
                "{target}: panic on input (seed {seed}, run {runs}): {:?}",
                String::from_utf8_lossy(input)
            );
        }
        runs += 1;
    };
    for input in &seeds {
        run(input);
    }
    while Instant::now() < deadline {
        let mut input = pool[rng.below(pool.len())].clone();
        mutate(&mut rng, &seeds, &mut input);
        run(&input);
        // Keep some mutants as new starting points, bounded.
        if rng.below(16) == 0 && input.len() < 1 << 16 {
            if pool.len() < 512 {
                pool.push(input);
            } else {
                let i = rng.below(pool.len());
                pool[i] = input;
            }
        }
    }
    seeds.clear();
    println!("fuzz {target}: {runs} inputs in {secs}s (seed {seed}), no panic");
}

#[test]
fn ingest_decoding_never_panics_and_accepted_events_decode() {
    let path = repo_path("schemas/telemetry_event.avsc");
    let mut set = SchemaSet::default();
    let schema = set.load(&path).expect("schema");
    let mut seeds = corpus("ingest_decode");
    // Generated seeds: framed and bare Avro, and a large batch.
    let framed = schema.encode_json(&sample_event(5, 3)).expect("encode");
    seeds.push([&[4u8][..], &framed].concat());
    seeds.push([&[4u8][..], &framed[10..]].concat());
    let batch: Vec<_> = (0..50).map(|i| sample_event(i, 7)).collect();
    seeds.push([&[1u8][..], &serde_json::to_vec(&batch).expect("json")].concat());
    const TYPES: [&str; 4] = [
        "application/json",
        "application/x-ndjson",
        "avro/binary",
        "text/plain",
    ];
    fuzz("ingest_decode", seeds, |data| {
        let Some((selector, body)) = data.split_first() else {
            return;
        };
        let content_type = TYPES[usize::from(selector >> 1) % TYPES.len()];
        if let Ok(records) =
            sluice::ingest::decode_request(selector & 1 == 1, content_type, body, &set, &schema)
        {
            for record in records {
                set.decode_json(&record).expect("an accepted event decodes");
            }
        }
    });
}

#[test]
fn config_loading_never_panics() {
    let seeds = corpus("config_load");
    fuzz("config_load", seeds, |data| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Err(problems) = sluice::config::parse_str(text, Path::new("fuzz.toml")) {
            assert!(!problems.to_string().is_empty());
        }
    });
}
