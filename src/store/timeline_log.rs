//! The incident timeline as a hash chain: who did what to which incident, and when.
//!
//! An incident's own `timeline` is what the pages and the API show, but it lives in a record that
//! anyone with the sled file can rewrite ("the ack was at 03:10, not 03:40"). Every event is
//! therefore also appended here, in the transaction that changes the incident, chained with the
//! same scheme as the approved log ([`chain_hash`]), and `tocsin log verify` checks that each
//! incident's stored timeline is exactly the chain's events for it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{approved_log::chain_hash, *};
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

impl Store {
    /// The timeline chain, oldest first.
    pub fn timeline_records(&self) -> Result<Vec<TimelineRecord>, StoreError> {
        self.meta
            .scan_prefix(TIMELINE)
            .values()
            .map(|v| decode("meta/timeline", &v?))
            .collect()
    }

    /// Walks the timeline chain like [`Store::verify_log`] walks the approved log, then checks
    /// that every incident's stored timeline is exactly the chain's events for it, in order: an
    /// edit of either side shows up as a difference between them.
    pub fn verify_timeline(&self) -> Result<VerifyReport, StoreError> {
        let mut walk = chain::ChainWalk::new("timeline event", "event");
        let mut per_incident: std::collections::BTreeMap<u64, Vec<_>> = Default::default();
        for item in self.meta.scan_prefix(TIMELINE) {
            let (k, v) = item?;
            let seq = from_be("meta/timeline", &k[TIMELINE.len()..])?;
            let Some((record, _)) = walk.step::<TimelineRecord>(seq, &v) else {
                continue;
            };
            if let Some(id) = record.entry.incident {
                per_incident.entry(id).or_default().push(record.as_event());
            }
        }
        let head: Option<Head> = self
            .meta
            .get(TIMELINE_HEAD)?
            .map(|v| decode("meta", &v))
            .transpose()?;
        walk.check_head("timeline head", head.map(|h| (h.seq, hex::encode(h.hash))));
        let mut problems = std::mem::take(&mut walk.problems);
        for item in self.incidents.iter() {
            let (k, v) = item?;
            let id = from_be("incidents", &k)?;
            let chained = per_incident.remove(&id).unwrap_or_default();
            match serde_json::from_slice::<Incident>(&v) {
                Ok(inc) if inc.timeline == chained => {}
                Ok(_) => problems.push(format!(
                    "incident #{id}: its timeline does not match the timeline chain"
                )),
                Err(e) => problems.push(format!("incident #{id}: unreadable ({e})")),
            }
        }
        for id in per_incident.keys() {
            problems.push(format!(
                "incident #{id}: in the timeline chain but missing from the incidents"
            ));
        }
        Ok(VerifyReport {
            entries: walk.walked(),
            head: walk.head().to_owned(),
            problems,
        })
    }

    /// Chains the timelines of incidents recorded by a build without the timeline chain, once:
    /// when there is no chain yet but there are incidents. From then on their events are checked
    /// like any other; edits made before the upgrade cannot be found by anyone. Called at daemon
    /// start, never by `log verify`, which must report an empty chain rather than adopt it.
    pub fn adopt_unchained_timelines(&self) -> Result<u64, StoreError> {
        if self.meta.contains_key(TIMELINE_HEAD)? || self.incidents.is_empty() {
            return Ok(0);
        }
        let incidents = self.incidents()?;
        self.transact(|tx| {
            if tx.meta.get(TIMELINE_HEAD)?.is_some() {
                return Ok(0);
            }
            let mut n = 0;
            for inc in &incidents {
                for e in &inc.timeline {
                    let entry = TimelineEntry {
                        incident: Some(inc.id),
                        account: inc.account.clone(),
                        who: e.who.clone(),
                        action: e.action.clone(),
                    };
                    tx.append_timeline(entry, e.at)?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}

impl Tx<'_> {
    /// Appends an event to the timeline chain. Only `incidents::Timeline::event` and the mute
    /// actions call this, so the chain and the incidents' own timelines are written together.
    pub fn append_timeline(
        &self,
        entry: TimelineEntry,
        at: DateTime<Utc>,
    ) -> TxResult<TimelineRecord> {
        let (seq, prev) = self.chain_next(TIMELINE_HEAD)?;
        let record = TimelineRecord::new(seq, at, prev, entry);
        self.meta
            .insert(prefixed(TIMELINE, &be(seq)), encode(&record))?;
        self.set_chain_head(TIMELINE_HEAD, seq, &record.hash)?;
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
