//! The store's side of the email feeds: the queue of accepted mail summaries, per-sender
//! volume buckets for `email.unapproved_bulk`, and the distinct-address sets of email bursts.
//!
//! The queue is its own tree, written outside [`Store::transact`]: the journal listener
//! answers 250 once a summary is in it and flushed, and many connections share one flush.
//! Volume buckets and address sets live in `meta` (under `mailvol/` and `mailset/`) because they
//! are written in the transaction of the verdict they feed.

use chrono::{DateTime, Utc};
use sled::transaction::ConflictableTransactionError;

use super::{
    ApprovedEntry, Store, StoreError, Tx, TxResult, be, decode, encode, from_be, prefixed,
};
use crate::model::MailSummary;

const MAIL_VOLUME: &[u8] = b"mailvol/";
const MAIL_SET: &[u8] = b"mailset/";

fn volume_prefix(sender: &str) -> Vec<u8> {
    let mut k = prefixed(MAIL_VOLUME, sender.as_bytes());
    k.push(0);
    k
}

impl Store {
    /// Queues encoded summaries in one batch; not flushed (the caller flushes once for many
    /// batches). Returns their sequence numbers, increasing.
    pub fn queue_mail(&self, encoded: &[Vec<u8>]) -> Result<Vec<u64>, StoreError> {
        let mut batch = sled::Batch::default();
        let mut seqs = Vec::with_capacity(encoded.len());
        for bytes in encoded {
            let seq = self.db.generate_id()?;
            batch.insert(&be(seq), bytes.as_slice());
            seqs.push(seq);
        }
        self.mail_queue.apply_batch(batch)?;
        Ok(seqs)
    }

    /// Encodes a summary for [`Store::queue_mail`] (done by the connection, off the committer).
    pub fn encode_mail(summary: &MailSummary) -> Vec<u8> {
        encode(summary)
    }

    /// Up to `limit` queued summaries after `after`, oldest first.
    pub fn queued_mail(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, MailSummary)>, StoreError> {
        let iter = match after {
            Some(a) => self.mail_queue.range(be(a + 1)..),
            None => self.mail_queue.iter(),
        };
        iter.take(limit)
            .map(|item| {
                let (k, v) = item?;
                Ok((from_be("mail_queue", &k)?, decode("mail_queue", &v)?))
            })
            .collect()
    }

    /// Removes every queued summary up to and including `seq` (judged and committed).
    pub fn drop_mail_through(&self, seq: u64) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for key in self.mail_queue.range(..=be(seq)).keys() {
            batch.remove(key?);
            n += 1;
        }
        self.mail_queue.apply_batch(batch)?;
        Ok(n)
    }

    pub fn mail_queue_len(&self) -> usize {
        self.mail_queue.len()
    }

    /// Envelope recipients `sender` reached in buckets starting at or after `since`.
    pub fn mail_volume(&self, sender: &str, since: DateTime<Utc>) -> Result<u64, StoreError> {
        let prefix = volume_prefix(sender);
        let from = [prefix.as_slice(), &be(since.timestamp().max(0) as u64)].concat();
        let mut total = 0u64;
        for item in self.mail_queue_range_meta(&prefix, &from) {
            let v = item?;
            total = total.saturating_add(from_be("meta/mailvol", &v)?);
        }
        Ok(total)
    }

    fn mail_queue_range_meta(
        &self,
        prefix: &[u8],
        from: &[u8],
    ) -> impl Iterator<Item = Result<sled::IVec, sled::Error>> {
        let prefix = prefix.to_vec();
        self.meta
            .range(from.to_vec()..)
            .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .map(|item| item.map(|(_, v)| v))
    }

    /// The approved campaigns of the log, newest first.
    pub fn approved_campaigns(&self) -> Result<Vec<(u64, ApprovedEntry)>, StoreError> {
        let mut out = Vec::new();
        for v in self.approved_log.iter().values().rev() {
            let record: super::LogRecord = decode("approved_log", &v?)?;
            if matches!(record.entry, ApprovedEntry::ApprovedCampaign { .. }) {
                out.push((record.seq, record.entry));
            }
        }
        Ok(out)
    }
}

impl Tx<'_> {
    /// Adds `n` recipients to `sender`'s bucket starting at `bucket` (seconds since the epoch).
    pub fn add_mail_volume(&self, sender: &str, bucket: i64, n: u64) -> TxResult<()> {
        let key = [volume_prefix(sender).as_slice(), &be(bucket.max(0) as u64)].concat();
        let old = match self.meta.get(&key)? {
            Some(v) => from_be("meta/mailvol", &v).map_err(ConflictableTransactionError::Abort)?,
            None => 0,
        };
        self.meta.insert(key, &be(old.saturating_add(n)))?;
        Ok(())
    }

    /// Adds `item` to set `set` of incident `incident`; true if it was not there yet. Keeps the
    /// distinct addresses of a burst out of the incident, which is rewritten on every change.
    pub fn mail_set_insert(&self, incident: u64, set: u8, item: &[u8]) -> TxResult<bool> {
        let mut key = prefixed(MAIL_SET, &be(incident));
        key.push(set);
        key.extend_from_slice(item);
        Ok(self.meta.insert(key, &[])?.is_none())
    }
}
