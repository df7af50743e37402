//! What detect reports: one rule firing on one object, with the evidence a responder reads.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Rule, Severity, digest};

/// A profile field's move away from its baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// None when the field had no baseline (it appeared after the first snapshot).
    pub before: Option<String>,
    pub after: String,
}

/// What a responder needs to judge the finding without opening the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    Post {
        post_id: String,
        url: Option<String>,
        text: String,
        links: Vec<String>,
        media: usize,
        client: Option<String>,
        fingerprint: String,
    },
    PostEdited {
        post_id: String,
        url: Option<String>,
        before: String,
        after: String,
        fingerprint: String,
    },
    Profile {
        changes: BTreeMap<String, FieldChange>,
    },
    /// A paging channel or a source that stopped working. `since` makes each outage its own
    /// evidence, so a second outage after a resolved one is a new incident, not "already judged".
    Channel {
        channel: String,
        problem: String,
        since: DateTime<Utc>,
    },
    /// A leaky or bulk send: counters over the burst, a few masked samples.
    Mail(MailEvidence),
    /// A platform's security mail about one of the company's social accounts.
    SecurityNotice(NoticeEvidence),
    /// A mailbox or admin audit event (`mailbox.risky_setting`).
    Mailbox {
        feed: String,
        event_id: String,
        /// What makes it risky, in words (`forwarding out of domain`).
        risk: String,
        actor: String,
        action: String,
        target: String,
        /// `name = value` of the parameter that shows it; empty when the event itself does.
        parameter: String,
        at: DateTime<Utc>,
    },
}

impl Evidence {
    /// A stable digest: two findings with the same digest say the same thing.
    pub fn digest(&self) -> String {
        digest(&serde_json::to_string(self).expect("evidence serializes"))
    }
}

/// One rule firing on one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: Rule,
    pub severity: Severity,
    pub account: String,
    /// What the finding is about: a post id, or `profile`.
    pub object: String,
    pub evidence: Evidence,
    /// When the platform says the change happened (post or edit time); None when it does not
    /// say (profile fields), so that no latency is claimed from a time nobody knows.
    pub changed_at: Option<DateTime<Utc>>,
    pub seen_at: DateTime<Utc>,
}

/// What a responder sees of a leaky or bulk send: running counters, never the address list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailEvidence {
    pub sender: String,
    /// Of the latest message.
    pub subject: String,
    pub message_id: String,
    pub campaign: Option<String>,
    /// Messages folded into the incident.
    pub messages: u64,
    /// Distinct addresses visible to other recipients, over every message.
    pub exposed: u64,
    /// Distinct external domains among them.
    pub domains: u64,
    /// Envelope recipients: of the messages (exposure), or within the bulk window (bulk).
    pub recipients: u64,
    /// The most addresses visible in one message.
    pub largest: u64,
    /// A few visible addresses, masked (`j***@example.com`).
    pub samples: Vec<String>,
    /// `exposed` (and `domains`) are estimates: past the exact limit the burst's distinct
    /// addresses are counted in bounded space.
    #[serde(default)]
    pub estimated: bool,
    /// The message that opened the incident proved its origin (see
    /// [`MailSummary::origin_proven`](super::MailSummary::origin_proven)).
    #[serde(default)]
    pub origin_proven: bool,
    /// Queue ids of the incident's messages the milter held at the MTA (at most
    /// [`HELD_LIMIT`]), waiting for Release or Discard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
}

/// Held queue ids an incident keeps at most; a send held past it is released or deleted at
/// the MTA by hand (`postsuper`).
pub const HELD_LIMIT: usize = 10_000;

/// A platform's security mail about one of the company's social accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeEvidence {
    pub platform: String,
    pub sender: String,
    pub subject: String,
    /// The registered address it was sent to.
    pub recipient: String,
    pub message_id: String,
}
