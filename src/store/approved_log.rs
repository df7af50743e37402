//! The approved log: what the company said is theirs.
//!
//! Append-only and hash-chained (entry N stores the SHA-256 of entry N-1) so that editing the sled
//! file by hand — the shortcut an intruder with disk access would take to make a rogue post look
//! approved — is found by `tocsin log verify`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash that precedes the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApprovedEntry {
    /// A post that may appear. Matched by fingerprint (the content), or by post id alone.
    ApprovedPost {
        account: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        post_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The accepted value of a profile field. The value itself lives in the baselines index;
    /// the log keeps its digest so the index can be checked against it.
    Baseline {
        account: String,
        field: String,
        value_digest: String,
        by: String,
    },
    /// Withdraws an earlier [`ApprovedEntry::ApprovedPost`]. The log is append-only, so taking an
    /// approval back is itself an entry: the chain keeps who approved, who revoked and why.
    Revocation {
        seq: u64,
        reason: String,
        by: String,
    },
    /// A bulk send the company planned: `sender` may reach up to `max_recipients` envelope
    /// recipients per `window` under `campaign` without `email.unapproved_bulk` paging.
    /// `campaign` `*` covers every campaign of the sender; no `max_recipients` means no cap.
    ApprovedCampaign {
        sender: String,
        campaign: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_recipients: Option<u64>,
        /// A duration such as `24h`; absent with no cap.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<String>,
        by: String,
        /// When the approval stops covering the sender (an approval from the chat lasts its
        /// window). Absent: for ever. Last and skipped when absent, so the entries written
        /// before it existed keep their hashes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// A publishing tool of the company's (`accounts[].trusted_clients`): posts the platform
    /// says it published are approved by it. `withdrawn` takes it off the list again; the
    /// latest entry of an (account, client) pair is in force.
    TrustedClient {
        account: String,
        client: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        withdrawn: bool,
        by: String,
    },
}

impl ApprovedEntry {
    /// The account the entry is about; a revocation is about its target's account, which the
    /// entry itself does not repeat.
    pub fn account(&self) -> Option<&str> {
        match self {
            ApprovedEntry::ApprovedPost { account, .. }
            | ApprovedEntry::Baseline { account, .. }
            | ApprovedEntry::TrustedClient { account, .. } => Some(account),
            ApprovedEntry::Revocation { .. } | ApprovedEntry::ApprovedCampaign { .. } => None,
        }
    }
}

/// An entry as stored: its place in the chain and the hashes that bind it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub prev: String,
    pub hash: String,
    pub entry: ApprovedEntry,
}

impl LogRecord {
    pub fn new(seq: u64, at: DateTime<Utc>, prev: String, entry: ApprovedEntry) -> LogRecord {
        let hash = chain_hash(seq, &at, &prev, &entry);
        LogRecord {
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
}

/// SHA-256 over everything in a chained record but the hash itself. serde_json writes struct
/// fields in declaration order, which makes the encoding stable across runs and builds. Shared by
/// every hash chain in the store (the approved log, the incident timeline) so that one scheme is
/// reviewed and `log verify` checks them all the same way.
pub fn chain_hash<T: Serialize>(seq: u64, at: &DateTime<Utc>, prev: &str, entry: &T) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(
        at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            .as_bytes(),
    );
    h.update(b"\n");
    h.update(serde_json::to_vec(entry).expect("entries always serialize"));
    hex::encode(h.finalize())
}

/// What `tocsin log verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    pub head: String,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}
