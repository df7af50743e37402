//! End-to-end benchmarks: each section starts the real daemon (the release binary, or the
//! library for in-process sections) against loopback fakes and prints one JSON object per line
//! (`metric`, `value`, `unit`).
//!
//! Run: `cargo bench --bench e2e` (every section), `cargo bench --bench e2e -- --quick` (a short
//! smoke run, as in CI), or name sections: `cargo bench --bench e2e -- startup polled`.

mod common;
mod gate;
mod idle;
mod isolation;
mod jetstream;
mod mta;
mod polled;
mod push;
mod smtp;
mod startup;
mod webhooks;

type Section = fn(bool);

const SECTIONS: &[(&str, Section)] = &[
    ("polled", polled::run),
    ("push", push::run),
    ("jetstream", jetstream::run),
    ("smtp", smtp::run),
    ("mta", mta::run),
    ("webhooks", webhooks::run),
    ("isolation", isolation::run),
    ("startup", startup::run),
    ("idle", idle::run),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `cargo bench` passes `--bench`; anything else without dashes names a section.
    let wanted: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    for name in &wanted {
        if !SECTIONS.iter().any(|(n, _)| n == name) {
            let known: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
            eprintln!("unknown section {name:?}; known: {}", known.join(", "));
            std::process::exit(2);
        }
    }
    for (name, run) in SECTIONS {
        if wanted.is_empty() || wanted.contains(name) {
            run(quick);
        }
    }
    // A figure ten times worse than its threshold for this profile fails the run (and CI).
    if !gate::check(&common::figures()) {
        std::process::exit(1);
    }
}
