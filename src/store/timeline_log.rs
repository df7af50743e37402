//! The incident timeline as a hash chain: who did what to which incident, and when.
//!
//! An incident's own `timeline` is what the pages and the API show, but it lives in a record that
//! anyone with the sled file can rewrite ("the ack was at 03:10, not 03:40"). Every event is
//! therefore also appended here, in the transaction that changes the incident, chained with the
//! same scheme as the approved log ([`chain_hash`]), and `tocsin log verify` checks that each
//! incident's stored timeline is exactly the chain's events for it, and that its state, who
//! acted, its votes and what it is about are what those events say (see [`super::verify`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{approved_log::chain_hash, *};
use crate::model::{Action, Severity, TimelineEvent, digest};

/// What happened, to what. Account-level events (a mute) have no incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<u64>,
    pub account: String,
    pub who: String,
    #[serde(flatten)]
    pub action: Action,
    /// What the incident was about when the event was written; absent on account-level events
    /// (and on events chained before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
}

/// What an incident is about at one of its events: its severity (the approve quorum depends on
/// it) and a digest of its rule, object, evidence and burst members. Chained with every event of
/// the incident, so that an incident edited in place shows: a lowered severity that needs one
/// responder fewer, an evidence digest copied from a future finding so that it is taken as
/// "already judged", a burst member added so that the next Approve approves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub severity: Severity,
    pub digest: String,
}

impl Subject {
    pub fn of(inc: &Incident) -> Subject {
        let about = serde_json::json!([inc.rule, inc.object, inc.evidence_digest, inc.members]);
        Subject {
            severity: inc.severity,
            digest: digest(&about.to_string()),
        }
    }
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

impl Store {
    /// The timeline chain, oldest first.
    pub fn timeline_records(&self) -> Result<Vec<TimelineRecord>, StoreError> {
        self.meta
            .scan_prefix(TIMELINE)
            .values()
            .map(|v| decode("meta/timeline", &v?))
            .collect()
    }
}

impl Tx<'_> {
    /// Appends an event to the timeline chain. Only `incidents::Timeline::event`, the
    /// account-level events of `incidents` (mutes, noted deletions) and [`Tx::put_seen_post`]
    /// call this, so the chain and what it covers are written together.
    pub fn append_timeline(
        &self,
        entry: TimelineEntry,
        at: DateTime<Utc>,
    ) -> TxResult<TimelineRecord> {
        let (seq, prev) = self.chain_next(TIMELINE_HEAD)?;
        let record = TimelineRecord::new(seq, at, prev, entry);
        self.meta
            .insert(prefixed(TIMELINE, &be(seq)), encode(&record))?;
        self.set_chain_head(Chain::Timeline, seq, &record.hash)?;
        Ok(record)
    }
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
            subject: None,
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
