//! The outbox: pages queued per channel in the transaction that changes the incident, read by
//! the notify workers and removed only once a channel confirmed them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{OUTBOX_SEQ, Store, StoreError, TELEGRAM, Tx, TxResult, be, decode, encode, from_be};
use crate::model::{Incident, Rule, Severity};

/// What a page in the outbox asks for: bring the incident's page in one channel up to date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub incident_id: u64,
    pub enqueued_at: DateTime<Utc>,
    /// Entries written before there were several channels were all for Telegram.
    #[serde(default = "telegram")]
    pub channel: String,
    /// A reminder to send as a new message (it notifies; an edit does not), instead of bringing
    /// the page up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder: Option<Reminder>,
    /// A message replying to the page, sent besides the edit so that phones ring: the
    /// severity rose or a finding of another rule joined. Not dropped by an ack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<String>,
    /// Bring the page up to date as a new message that becomes the incident's page, rather
    /// than by editing the one in the chat.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repost: bool,
    /// The `ring` message is an announcement: sent whatever the incident's state by then (a
    /// critical incident's resolution is announced after it is resolved).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub announce: bool,
}

impl OutboxEntry {
    /// Asks for the page to be brought up to date (sent or edited), not for a message of its own.
    pub fn is_page(&self) -> bool {
        self.reminder.is_none() && self.ring.is_none()
    }
}

fn telegram() -> String {
    TELEGRAM.into()
}

/// A fallback channel's share of the pages: which incidents it is paged about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Outbox queue name, e.g. `pagerduty:ops`.
    pub channel: String,
    /// None: every severity.
    pub severities: Option<Vec<Severity>>,
}

impl Route {
    /// Telegram being down is paged to every fallback whatever its severities: that is what
    /// fallbacks are for. So is a tampered store: the chat may be what the intruder watches.
    fn wants(&self, inc: &Incident) -> bool {
        matches!(inc.rule, Rule::TelegramDown | Rule::StoreTampered)
            || self
                .severities
                .as_ref()
                .is_none_or(|s| s.contains(&inc.severity))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reminder {
    pub text: String,
    /// Another chat that gets it too (an escalation tier's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_chat: Option<i64>,
}

/// "Bring incident N's page in `channel` up to date."
fn page_entry(incident_id: u64, channel: &str, at: DateTime<Utc>) -> OutboxEntry {
    OutboxEntry {
        incident_id,
        enqueued_at: at,
        channel: channel.to_owned(),
        reminder: None,
        ring: None,
        repost: false,
        announce: false,
    }
}

fn outbox_key(channel: &str, seq: u64) -> Vec<u8> {
    let mut k = outbox_prefix(channel);
    k.extend_from_slice(&be(seq));
    k
}

fn outbox_prefix(channel: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(channel.len() + 9);
    k.extend_from_slice(channel.as_bytes());
    k.push(0);
    k
}

impl Store {
    /// Moves pages queued by a version with one channel (keys of 8 bytes) into Telegram's
    /// queue. Insert before remove: a crash in between delivers a page twice, never zero times.
    pub(super) fn migrate_outbox(&self) -> Result<(), StoreError> {
        for item in self.outbox.iter() {
            let (k, v) = item?;
            if k.len() == 8 {
                let seq = from_be("outbox", &k)?;
                self.outbox.insert(outbox_key(TELEGRAM, seq), v)?;
                self.outbox.remove(k)?;
            }
        }
        Ok(())
    }

    /// Drops pages queued for channels that are no longer configured: nobody will ever take
    /// them, and they would hold `/readyz` at "outbox stuck" forever.
    pub fn drop_unrouted(&self, channels: &[&str]) -> Result<(), StoreError> {
        for item in self.outbox.iter() {
            let (k, v) = item?;
            let entry: OutboxEntry = decode("outbox", &v)?;
            if !channels.contains(&entry.channel.as_str()) {
                tracing::warn!(
                    channel = entry.channel,
                    incident = entry.incident_id,
                    "page queued for a channel no longer configured; dropped"
                );
                self.outbox.remove(k)?;
            }
        }
        Ok(())
    }

    /// Sets the fallback channels pages are queued for from now on.
    pub fn set_routes(&self, routes: Vec<Route>) {
        *self.routes.write().expect("routes lock") = Arc::new(routes);
    }

    /// The oldest page waiting for delivery on `channel`.
    pub fn outbox_first(&self, channel: &str) -> Result<Option<(u64, OutboxEntry)>, StoreError> {
        let prefix = outbox_prefix(channel);
        match self.outbox.scan_prefix(&prefix).next() {
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((
                    from_be("outbox", &k[prefix.len()..])?,
                    decode("outbox", &v)?,
                )))
            }
            None => Ok(None),
        }
    }

    /// Every page waiting on `channel`, oldest first.
    pub fn outbox_entries(&self, channel: &str) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let prefix = outbox_prefix(channel);
        let mut out = Vec::new();
        for item in self.outbox.scan_prefix(&prefix) {
            let (k, v) = item?;
            out.push((
                from_be("outbox", &k[prefix.len()..])?,
                decode("outbox", &v)?,
            ));
        }
        Ok(out)
    }

    /// Every queued page update of one incident on Telegram. They all ask for the same thing —
    /// bring its page up to date — so one delivery of the current state answers all of them.
    pub fn outbox_seqs_for(&self, incident_id: u64) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .outbox_entries(TELEGRAM)?
            .into_iter()
            .filter(|(_, e)| e.incident_id == incident_id && e.is_page())
            .map(|(seq, _)| seq)
            .collect())
    }

    /// Incidents with a page update queued on Telegram (reminders aside).
    pub fn queued_on_telegram(&self) -> Result<std::collections::HashSet<u64>, StoreError> {
        let mut ids = std::collections::HashSet::new();
        for v in self.outbox.scan_prefix(outbox_prefix(TELEGRAM)).values() {
            let entry: OutboxEntry = decode("outbox", &v?)?;
            if entry.reminder.is_none() {
                ids.insert(entry.incident_id);
            }
        }
        Ok(ids)
    }

    /// Whether a reminder for the incident is still waiting: the next one is not queued behind
    /// it, so a slow chat never builds a backlog of reminders.
    pub fn reminder_pending(&self, incident_id: u64) -> Result<bool, StoreError> {
        for item in self.outbox.iter().values() {
            let entry: OutboxEntry = decode("outbox", &item?)?;
            if entry.incident_id == incident_id && entry.reminder.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Pages waiting for delivery on every channel and the age of the oldest.
    pub fn outbox_depth(&self) -> Result<(usize, Option<DateTime<Utc>>), StoreError> {
        let mut n = 0;
        let mut oldest: Option<DateTime<Utc>> = None;
        for v in self.outbox.iter().values() {
            let e: OutboxEntry = decode("outbox", &v?)?;
            n += 1;
            oldest = Some(oldest.map_or(e.enqueued_at, |o| o.min(e.enqueued_at)));
        }
        Ok((n, oldest))
    }
}

impl Tx<'_> {
    /// Queues the incident's page on every channel that wants it: Telegram always, except for
    /// incidents about Telegram itself (they could only wait there for the outage to end), and
    /// each fallback channel whose severities include the incident's. Returns how many.
    pub fn enqueue_page(&self, inc: &Incident, at: DateTime<Utc>) -> TxResult<usize> {
        let telegram = (inc.rule != Rule::TelegramDown).then_some(TELEGRAM);
        let fallbacks = self
            .routes
            .iter()
            .filter(|r| r.wants(inc))
            .map(|r| r.channel.as_str());
        let mut n = 0;
        for channel in telegram.into_iter().chain(fallbacks) {
            self.enqueue(channel, page_entry(inc.id, channel, at))?;
            n += 1;
        }
        Ok(n)
    }

    /// Queues the incident's page on every fallback channel, whatever its severities: Telegram
    /// gave up on it, and that is what fallbacks are for. Returns how many.
    pub fn enqueue_fallbacks(&self, inc: &Incident, at: DateTime<Utc>) -> TxResult<usize> {
        for route in self.routes {
            self.enqueue(&route.channel, page_entry(inc.id, &route.channel, at))?;
        }
        Ok(self.routes.len())
    }

    /// Asks Telegram's worker to send the incident's current state as a new message, which
    /// becomes its page; the message in the chat now is left as it is.
    pub fn enqueue_repost(&self, incident_id: u64, at: DateTime<Utc>) -> TxResult<u64> {
        self.enqueue(
            TELEGRAM,
            OutboxEntry {
                repost: true,
                ..page_entry(incident_id, TELEGRAM, at)
            },
        )
    }

    /// Queues a message replying to the incident's page in the on-call chat, besides the page
    /// update: Telegram only (the fallbacks get the page itself, with its new severity).
    pub fn enqueue_ring(&self, incident_id: u64, text: String, at: DateTime<Utc>) -> TxResult<u64> {
        self.enqueue(
            TELEGRAM,
            OutboxEntry {
                ring: Some(text),
                ..page_entry(incident_id, TELEGRAM, at)
            },
        )
    }

    /// Queues a message replying to the incident's page that goes out whatever the incident's
    /// state by then: Telegram only, like a ring.
    pub fn enqueue_announcement(
        &self,
        incident_id: u64,
        text: String,
        at: DateTime<Utc>,
    ) -> TxResult<u64> {
        self.enqueue(
            TELEGRAM,
            OutboxEntry {
                ring: Some(text),
                announce: true,
                ..page_entry(incident_id, TELEGRAM, at)
            },
        )
    }

    fn enqueue(&self, channel: &str, entry: OutboxEntry) -> TxResult<u64> {
        let seq = self.next(OUTBOX_SEQ)?;
        self.outbox
            .insert(outbox_key(channel, seq), encode(&entry))?;
        Ok(seq)
    }

    /// Queues a reminder message for the incident: Telegram only, since a reminder is a new
    /// message in the chat (fallback channels keep paging on their own).
    pub fn enqueue_reminder(
        &self,
        incident_id: u64,
        reminder: Reminder,
        at: DateTime<Utc>,
    ) -> TxResult<u64> {
        self.enqueue(
            TELEGRAM,
            OutboxEntry {
                reminder: Some(reminder),
                ..page_entry(incident_id, TELEGRAM, at)
            },
        )
    }

    /// Removes a page the channel confirmed (or refused for good).
    pub fn remove_page(&self, channel: &str, seq: u64) -> TxResult<()> {
        self.outbox.remove(outbox_key(channel, seq))?;
        Ok(())
    }
}
