//! The incident timeline as a hash chain: who did what to which incident, and when.
//!
//! An incident's own `timeline` is what the pages and the API show, but it lives in a record that
//! anyone with the sled file can rewrite ("the ack was at 03:10, not 03:40"). Every event is
//! therefore also appended here, in the transaction that changes the incident, chained with the
//! same scheme as the approved log ([`chain_hash`]), and `tocsin log verify` checks that each
//! incident's stored timeline is exactly the chain's events for it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::approved_log::chain_hash;
use crate::model::{Action, TimelineEvent};

/// What happened, to what. Account-level events (a mute) have no incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<u64>,
    pub account: String,
    pub who: String,
    #[serde(flatten)]
    pub action: Action,
}

/// An event as stored in the chain; flat, so that `incidents export` prints one readable object
/// per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineRecord {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub prev: String,
    pub hash: String,
    #[serde(flatten)]
    pub entry: TimelineEntry,
}

impl TimelineRecord {
    pub fn new(seq: u64, at: DateTime<Utc>, prev: String, entry: TimelineEntry) -> TimelineRecord {
        let hash = chain_hash(seq, &at, &prev, &entry);
        TimelineRecord {
            seq,
            at,
            prev,
            hash,
            entry,
        }
    }

    /// Whether the stored hash still matches the stored content.
    pub fn is_intact(&self) -> bool {
        chain_hash(self.seq, &self.at, &self.prev, &self.entry) == self.hash
    }

    /// The event as the incident's own timeline holds it, for comparing the two.
    pub fn as_event(&self) -> TimelineEvent {
        TimelineEvent {
            at: self.at,
            who: self.entry.who.clone(),
            action: self.entry.action.clone(),
        }
    }
}

/// Reads `--since` and `?since=`: an RFC 3339 time, or a duration back from `now` ("24h").
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = crate::model::parse_duration(s).map_err(|_| {
        format!("`{s}` is neither an RFC 3339 time (2026-11-24T20:00:00Z) nor a duration (24h)")
    })?;
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| format!("`{s}` reaches back too far"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T20:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("24h", now).unwrap(),
            now - chrono::Duration::hours(24)
        );
        assert_eq!(
            parse_since("2026-11-24T19:00:00+01:00", now).unwrap(),
            now - chrono::Duration::hours(2)
        );
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn record_round_trips_flat_and_detects_edits() {
        let entry = TimelineEntry {
            incident: Some(3),
            account: "main".into(),
            who: "alice (1)".into(),
            action: Action::Acked,
        };
        let r = TimelineRecord::new(0, Utc::now(), super::super::GENESIS.into(), entry);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["incident"], 3);
        assert_eq!(json["action"], "acked");
        let mut back: TimelineRecord = serde_json::from_value(json).unwrap();
        assert!(back.is_intact());
        back.entry.who = "bob (2)".into();
        assert!(!back.is_intact());
    }
}
