//! The ground floor: the words every room uses, and nothing else.
//!
//! Watchers report [`Observation`]s, detect reports [`Finding`]s, incidents keep [`Incident`]s,
//! and the store persists them; each of those rooms imports its vocabulary from here, so none
//! needs to reach up into another. This module imports only external crates.

pub mod clock;
mod distinct;
mod finding;
mod incident;
mod observation;
mod rule;

pub use clock::{Clock, SharedClock, SystemClock};
pub use distinct::{AddressKey, Distinct, EXACT_LIMIT};

pub use finding::*;

pub use incident::*;

pub use observation::*;

pub use rule::*;

use std::time::Duration;

use sha2::{Digest, Sha256};

/// SHA-256 of a value, hex: the digest form used for baselines and fingerprints.
pub fn digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Parses `"15s"`, `"2m"`, `"1h 30m"`, `"250ms"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration {s:?} ({e}); write a number and a unit, like \"15s\" or \"2m\"")
    })
}

/// Cuts to at most `max` UTF-16 code units (Telegram's unit for message length), marking the cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.encode_utf16().count() <= max {
        return s.to_owned();
    }
    let mut out = String::new();
    let mut units = 0;
    for c in s.chars() {
        // Keep one unit for the ellipsis.
        if units + c.len_utf16() > max.saturating_sub(1) {
            break;
        }
        units += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}
