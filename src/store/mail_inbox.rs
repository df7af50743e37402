//! The durable inbox of the provider webhooks.
//!
//! A provider that hears 2xx will not send the event again, so a webhook answers only once its
//! events are on disk. Judging each event (detect, incidents) happens later, in the pipeline, in
//! order; the inbox holds what was accepted until the pipeline's checkpoint (`cursors` key
//! [`CURSOR`]) says it has been judged, and what is past the checkpoint at start-up is judged
//! again (at-least-once, like the social sources).
//!
//! Every accepted delivery leaves its key (the provider's id of that delivery, digested) until
//! it expires, with the events, in the same batch: a provider retrying a request whose 200 was
//! lost, or anyone replaying one, finds the key and the event is not counted twice. Keys are
//! indexed by expiry (`x/` + expiry + digest) so that forgetting the expired ones reads only
//! those.
//!
//! One commit is one sled batch and one flush, whatever the number of events or requests in it:
//! that is what makes a 1,000-event request cost one disk sync rather than a thousand.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, be, decode, encode, from_be};
use crate::model::MailSummary;

/// The pipeline's checkpoint of the inbox: the last seq it has judged.
pub const CURSOR: &str = "mail_inbox";
const EVENT: &[u8] = b"e/";
const TOKEN: &[u8] = b"t/";
const DELIVERY: &[u8] = b"d/";
const EXPIRY: &[u8] = b"x/";

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

/// The key an accepted delivery is remembered under: a digest of the webhook's name and the
/// provider's id of the delivery, so that every key has the same small size whatever the
/// provider's ids look like.
pub fn delivery_key(hook: &str, id: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(hook.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    let mut k = DELIVERY.to_vec();
    k.extend_from_slice(&h.finalize());
    k
}

fn expiry_key(until: i64, key: &[u8]) -> Vec<u8> {
    let mut k = EXPIRY.to_vec();
    // Offset so that the byte order of the key is the order of the time, negative ones too.
    k.extend_from_slice(&((until as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(key);
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
    /// Delivery keys ([`delivery_key`]) and when they may be forgotten (unix seconds).
    pub deliveries: Vec<(Vec<u8>, i64)>,
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
    pub fn inbox_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, InboxRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .mail_inbox
            .range(event_key(after + 1)..event_key(u64::MAX))
            .take(limit)
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

    /// Whether a replay token or a delivery key is remembered and not yet expired.
    pub fn inbox_token_seen(&self, key: &[u8], now: i64) -> Result<bool, StoreError> {
        Ok(match self.mail_inbox.get(key)? {
            Some(v) => expiry(&v) > now,
            None => false,
        })
    }

    /// Writes the batch atomically. Not yet durable: [`Store::flush`] makes it so. Kept apart
    /// because the two fail differently: a batch refused here wrote nothing, while a batch
    /// applied whose flush failed is in the tree (and its delivery keys with it).
    pub fn inbox_apply(&self, batch: &InboxBatch<'_>) -> Result<(), StoreError> {
        if self
            .inbox_faults
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Rejected(
                "injected fault: the inbox write was refused".into(),
            ));
        }
        let mut b = sled::Batch::default();
        for (i, r) in batch.records.iter().enumerate() {
            b.insert(event_key(batch.first_seq + i as u64), encode(r));
        }
        for (key, until) in &batch.tokens {
            b.insert(key.as_slice(), &until.to_be_bytes());
        }
        for (key, until) in &batch.deliveries {
            b.insert(key.as_slice(), &until.to_be_bytes());
            b.insert(expiry_key(*until, key), &[]);
        }
        for seq in batch.prune.clone() {
            b.remove(event_key(seq));
        }
        self.mail_inbox.apply_batch(b)?;
        Ok(())
    }

    /// Writes the batch atomically and makes it durable.
    pub async fn inbox_commit(&self, batch: &InboxBatch<'_>) -> Result<(), StoreError> {
        self.inbox_apply(batch)?;
        self.flush().await
    }

    /// Fault injection: the next `n` inbox writes ([`Store::inbox_apply`]) are refused as a
    /// failing disk would refuse them, writing nothing. For the tests of the webhook inbox's
    /// recovery: sled offers no way to make one tree fail for a while.
    pub fn fail_inbox_writes(&self, n: u32) {
        self.inbox_faults.store(n, Ordering::SeqCst);
    }

    /// Forgets replay tokens and delivery keys whose time has passed; how many.
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
        // The expiry index is in time order: read up to now, nothing past it.
        for item in self
            .mail_inbox
            .range(expiry_key(i64::MIN, b"")..expiry_key(now, b"\xff"))
        {
            let (k, _) = item?;
            let key = &k[EXPIRY.len() + 8..];
            // A key remembered again later (with a later expiry) stays.
            if self.mail_inbox.get(key)?.is_none_or(|v| expiry(&v) <= now) {
                b.remove(key);
                n += 1;
            }
            b.remove(k);
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
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(store.inbox_last_seq().unwrap(), 2);
        let pending = store.inbox_after(0, usize::MAX).unwrap();
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
        assert!(store.inbox_after(0, usize::MAX).unwrap().is_empty());
        assert_eq!(store.inbox_last_seq().unwrap(), 2, "from the checkpoint");
        assert_eq!(store.inbox_forget_tokens(100).unwrap(), 1);
        assert!(!store.inbox_token_seen(&key, 0).unwrap());
    }

    #[tokio::test]
    async fn delivery_keys_expire_through_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (early, late) = (delivery_key("ses", "m-1"), delivery_key("ses", "m-2"));
        assert_ne!(early, late);
        assert_ne!(delivery_key("ses", "m-1"), delivery_key("ses-eu", "m-1"));
        store
            .inbox_commit(&InboxBatch {
                deliveries: vec![(early.clone(), 1_000), (late.clone(), 5_000)],
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(store.inbox_token_seen(&early, 999).unwrap());
        assert_eq!(store.inbox_forget_tokens(999).unwrap(), 0, "none due yet");
        assert_eq!(store.inbox_forget_tokens(1_000).unwrap(), 1);
        assert!(!store.inbox_token_seen(&early, 0).unwrap(), "forgotten");
        assert!(store.inbox_token_seen(&late, 1_000).unwrap(), "kept");
        // Nothing is left of the forgotten key, the index entry included.
        let left: Vec<_> = store.mail_inbox.iter().keys().map(Result::unwrap).collect();
        assert_eq!(left.len(), 2, "the later key and its index entry");
        assert_eq!(store.inbox_forget_tokens(i64::MAX).unwrap(), 1);
        assert_eq!(store.mail_inbox.len(), 0);
    }

    #[tokio::test]
    async fn an_injected_fault_refuses_writes_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = record("a");
        let batch = InboxBatch {
            records: vec![&a],
            first_seq: 1,
            deliveries: vec![(delivery_key("ses", "a"), i64::MAX)],
            ..Default::default()
        };
        store.fail_inbox_writes(1);
        assert!(store.inbox_apply(&batch).is_err());
        assert_eq!(store.mail_inbox.len(), 0, "nothing written");
        store.inbox_commit(&batch).await.unwrap();
        assert_eq!(store.inbox_after(0, usize::MAX).unwrap().len(), 1);
    }
}
