//! What the approved log and the incident timeline share: walking a hash chain and saying, in an
//! operator's words, where it breaks.

use serde::de::DeserializeOwned;

use super::{
    approved_log::{GENESIS, LogRecord},
    timeline_log::TimelineRecord,
};

/// A stored record of a chain.
pub trait ChainRecord: DeserializeOwned {
    fn seq(&self) -> u64;
    fn prev(&self) -> &str;
    fn hash(&self) -> &str;
    fn is_intact(&self) -> bool;
}

impl ChainRecord for LogRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn prev(&self) -> &str {
        &self.prev
    }
    fn hash(&self) -> &str {
        &self.hash
    }
    fn is_intact(&self) -> bool {
        LogRecord::is_intact(self)
    }
}

impl ChainRecord for TimelineRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn prev(&self) -> &str {
        &self.prev
    }
    fn hash(&self) -> &str {
        &self.hash
    }
    fn is_intact(&self) -> bool {
        TimelineRecord::is_intact(self)
    }
}

/// Checks records in key order: readable, numbered without gaps, linked to the one before, and
/// matching their own hash. Problems name the record the way `log verify` prints them.
pub struct ChainWalk {
    /// How a record is named at the start of a problem ("entry", "timeline event").
    label: &'static str,
    /// How a record is named inside a problem ("entry", "event").
    noun: &'static str,
    prev: String,
    expected: u64,
    pub problems: Vec<String>,
}

impl ChainWalk {
    pub fn new(label: &'static str, noun: &'static str) -> ChainWalk {
        ChainWalk {
            label,
            noun,
            prev: GENESIS.to_owned(),
            expected: 0,
            problems: Vec::new(),
        }
    }

    /// Checks the record stored under `seq`. Returns it when readable, with whether it is
    /// intact, so the caller can check what the chain indexes.
    pub fn step<R: ChainRecord>(&mut self, seq: u64, bytes: &[u8]) -> Option<(R, bool)> {
        let (label, noun) = (self.label, self.noun);
        let record: R = match serde_json::from_slice(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.problems
                    .push(format!("{label} {seq}: unreadable ({e})"));
                self.prev = String::new();
                self.expected = seq + 1;
                return None;
            }
        };
        if seq != self.expected {
            self.problems.push(format!(
                "{label} {}: missing (next stored is {seq})",
                self.expected
            ));
        }
        if record.seq() != seq {
            self.problems
                .push(format!("{label} {seq}: says it is {noun} {}", record.seq()));
        }
        if record.prev() != self.prev {
            self.problems.push(format!(
                "{label} {seq}: does not follow {noun} {}",
                seq.wrapping_sub(1)
            ));
        }
        let intact = record.is_intact();
        if !intact {
            self.problems
                .push(format!("{label} {seq}: content does not match its hash"));
        }
        self.prev = record.hash().to_owned();
        self.expected = seq + 1;
        Some((record, intact))
    }

    /// Checks the recorded head against where the walk ended: a truncated tail shows here.
    pub fn check_head(&mut self, head_label: &str, head: Option<(u64, String)>) {
        match head {
            Some((seq, hash)) if seq + 1 != self.expected || hash != self.prev => {
                self.problems.push(format!(
                    "{head_label}: recorded as {} {seq} but the chain ends at {} {}",
                    self.noun,
                    self.noun,
                    self.expected.wrapping_sub(1)
                ));
            }
            None if self.expected > 0 => self.problems.push(format!("{head_label}: missing")),
            _ => {}
        }
    }

    /// Records walked so far.
    pub fn walked(&self) -> u64 {
        self.expected
    }

    /// The hash of the last record walked.
    pub fn head(&self) -> &str {
        &self.prev
    }
}
