//! Entry points for the fuzzers in `fuzz/` and for the corpus replay that CI runs
//! (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes from outside and must return, without
//! panicking and without unbounded allocation, whatever they are: these are the parsers an
//! attacker or a typo can reach.

use crate::{bot::Command, config::Config};

/// A fuzz target: its name (the folder of its corpus under `fuzz/corpus/`) and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, for the replay test and `fuzz/run`.
pub const TARGETS: &[Target] = &[("config", config), ("bot_command", bot_command)];

/// The TOML config parser and its validation. Inputs naming `file:` secrets are skipped: they
/// would fuzz the machine's filesystem (`file:/dev/stdin` blocks), not the parser.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("file:") {
        return;
    }
    if let Err(e) = Config::parse(text, "fuzz") {
        // Rendering the error is part of the contract: it must name the key without panicking.
        let _ = e.to_string();
    }
}

/// Chat commands and button callback data, as any chat member can send them.
pub fn bot_command(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = Command::parse(&text);
    let _ = Command::from_callback(&text);
}
