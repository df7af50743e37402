//! The durable inbox of the provider webhooks.
//!
//! A provider that hears 2xx will not send the event again, so a webhook answers only once its
//! events are on disk. Judging each event (detect, incidents) happens later, in the pipeline, in
//! order; the inbox holds what was accepted until the pipeline's checkpoint (`cursors` key
//! [`CURSOR`]) says it has been judged, and what is past the checkpoint at start-up is judged
//! again (at-least-once, like the social sources).
//!
//! One commit is one sled batch and one flush, whatever the number of events or requests in it:
//! that is what makes a 1,000-event request cost one disk sync rather than a thousand.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, be, decode, encode, from_be};
use crate::model::MailSummary;

/// The pipeline's checkpoint of the inbox: the last seq it has judged.
pub const CURSOR: &str = "mail_inbox";
const EVENT: &[u8] = b"e/";
const TOKEN: &[u8] = b"t/";

/// One accepted message summary and the webhook (account) that accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRecord {
    pub account: String,
    pub mail: MailSummary,
}

fn event_key(seq: u64) -> Vec<u8> {
    let mut k = EVENT.to_vec();
    k.extend_from_slice(&be(seq));
    k
}

/// The key a replay token is remembered under.
pub fn token_key(provider: &str, token: &str) -> Vec<u8> {
    let mut k = TOKEN.to_vec();
    k.extend_from_slice(provider.as_bytes());
    k.push(0);
    k.extend_from_slice(token.as_bytes());
    k
}

/// What one commit writes.
#[derive(Debug, Default)]
pub struct InboxBatch<'a> {
    /// Records numbered from `first_seq`.
    pub records: Vec<&'a InboxRecord>,
    pub first_seq: u64,
    /// Replay tokens and when they may be forgotten (unix seconds).
    pub tokens: Vec<(Vec<u8>, i64)>,
    /// Records already judged, to drop in the same batch.
    pub prune: std::ops::Range<u64>,
}

impl Store {
    /// The highest seq ever given out: the inbox's last record, or the checkpoint when the inbox
    /// has been pruned empty (a seq must never be reused below the checkpoint).
    pub fn inbox_last_seq(&self) -> Result<u64, StoreError> {
        let in_tree = match self.mail_inbox.scan_prefix(EVENT).next_back() {
            Some(item) => from_be("mail_inbox", &item?.0[EVENT.len()..])?,
            None => 0,
        };
        Ok(in_tree.max(self.inbox_checkpoint()?))
    }

    /// The last seq the pipeline has judged.
    pub fn inbox_checkpoint(&self) -> Result<u64, StoreError> {
        Ok(self
            .cursor(CURSOR)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Records after `after`, in order: what the pipeline has not judged yet.
    pub fn inbox_after(&self, after: u64) -> Result<Vec<(u64, InboxRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .mail_inbox
            .range(event_key(after + 1)..event_key(u64::MAX))
        {
            let (k, v) = item?;
            if !k.starts_with(EVENT) {
                break;
            }
            out.push((
                from_be("mail_inbox", &k[EVENT.len()..])?,
                decode("mail_inbox", &v)?,
            ));
        }
        Ok(out)
    }

    /// Whether a replay token is remembered and not yet expired.
    pub fn inbox_token_seen(&self, key: &[u8], now: i64) -> Result<bool, StoreError> {
        Ok(match self.mail_inbox.get(key)? {
            Some(v) => expiry(&v) > now,
            None => false,
        })
    }

    /// Writes the batch atomically and makes it durable.
    pub async fn inbox_commit(&self, batch: &InboxBatch<'_>) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (i, r) in batch.records.iter().enumerate() {
            b.insert(event_key(batch.first_seq + i as u64), encode(r));
        }
        for (key, until) in &batch.tokens {
            b.insert(key.as_slice(), &until.to_be_bytes());
        }
        for seq in batch.prune.clone() {
            b.remove(event_key(seq));
        }
        self.mail_inbox.apply_batch(b)?;
        self.flush().await
    }

    /// Forgets replay tokens whose window has passed; how many.
    pub fn inbox_forget_tokens(&self, now: i64) -> Result<usize, StoreError> {
        let mut b = sled::Batch::default();
        let mut n = 0;
        for item in self.mail_inbox.scan_prefix(TOKEN) {
            let (k, v) = item?;
            if expiry(&v) <= now {
                b.remove(k);
                n += 1;
            }
        }
        self.mail_inbox.apply_batch(b)?;
        Ok(n)
    }
}

fn expiry(v: &[u8]) -> i64 {
    v.try_into().map(i64::from_be_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> InboxRecord {
        InboxRecord {
            account: "ses".into(),
            mail: MailSummary {
                feed: "ses".into(),
                message_id: id.into(),
                ..Default::default()
            },
        }
    }

    #[tokio::test]
    async fn commits_prunes_and_remembers_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.inbox_last_seq().unwrap(), 0);
        let (a, b) = (record("a"), record("b"));
        let key = token_key("mailgun", "tok");
        store
            .inbox_commit(&InboxBatch {
                records: vec![&a, &b],
                first_seq: 1,
                tokens: vec![(key.clone(), 100)],
                prune: 0..0,
            })
            .await
            .unwrap();
        assert_eq!(store.inbox_last_seq().unwrap(), 2);
        let pending = store.inbox_after(0).unwrap();
        assert_eq!(pending, vec![(1, a.clone()), (2, b.clone())]);
        assert!(store.inbox_token_seen(&key, 99).unwrap());
        assert!(!store.inbox_token_seen(&key, 100).unwrap(), "expired");
        assert!(
            !store
                .inbox_token_seen(&token_key("mailgun", "other"), 0)
                .unwrap()
        );

        // Judged up to 2: pruned with the next commit; seqs continue past the checkpoint.
        store.set_cursor(CURSOR, "2").unwrap();
        store
            .inbox_commit(&InboxBatch {
                prune: 1..3,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(store.inbox_after(0).unwrap().is_empty());
        assert_eq!(store.inbox_last_seq().unwrap(), 2, "from the checkpoint");
        assert_eq!(store.inbox_forget_tokens(100).unwrap(), 1);
        assert!(!store.inbox_token_seen(&key, 0).unwrap());
    }
}
