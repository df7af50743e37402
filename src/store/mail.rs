//! The store's side of the email feeds: the queue of accepted mail summaries, per-sender
//! volume buckets for `email.unapproved_bulk`, the distinct-address counts of email bursts, and
//! the install's address salt.
//!
//! The queue is its own tree, written outside [`Store::transact`]: the journal listener
//! answers 250 once a summary is in it and flushed, and many connections share one flush.
//! Volume buckets and address counts live in `meta` (under `mailvol/` and `mailset/`) because
//! they are written in the transaction of the verdict they feed. A burst's count is one
//! [`Distinct`] value per set (exact, then an estimate), so an incident's share of the state dir
//! is bounded whatever was leaked; [`Store::prune_mail`] drops buckets past their window and
//! the counts of resolved incidents.

use chrono::{DateTime, Utc};
use rand_core::{OsRng, RngCore};
use sled::transaction::ConflictableTransactionError;

use super::{
    ApprovedEntry, Store, StoreError, Tx, TxResult, be, decode, encode, from_be, prefixed,
};
use crate::model::{AddressKey, Distinct, MailSummary, State};

const MAIL_VOLUME: &[u8] = b"mailvol/";
const MAIL_SET: &[u8] = b"mailset/";
/// The random salt address hashes are keyed with: made once per install, never leaves the
/// state dir, so a hash in the store cannot be matched against a list of addresses elsewhere.
const ADDRESS_SALT: &[u8] = b"mail/address_salt";

fn set_key(incident: u64, set: u8) -> Vec<u8> {
    let mut key = prefixed(MAIL_SET, &be(incident));
    key.push(set);
    key
}

/// What [`Store::prune_mail`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub buckets: usize,
    pub sets: usize,
}

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
        Ok(self.mail_window(sender, since)?.0)
    }

    /// (recipients, messages) `sender` sent in buckets starting at or after `since`. A bucket
    /// written before messages were counted adds its recipients and no message.
    pub fn mail_window(
        &self,
        sender: &str,
        since: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let prefix = volume_prefix(sender);
        let from = [prefix.as_slice(), &be(since.timestamp().max(0) as u64)].concat();
        let (mut recipients, mut messages) = (0u64, 0u64);
        for item in self.mail_queue_range_meta(&prefix, &from) {
            let (r, m) = volume_value(&item?)?;
            recipients = recipients.saturating_add(r);
            messages = messages.saturating_add(m);
        }
        Ok((recipients, messages))
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

    /// The install's address key: its salt is made on first use and kept in `meta`.
    pub fn address_key(&self) -> Result<AddressKey, StoreError> {
        if let Some(v) = self.meta.get(ADDRESS_SALT)?
            && let Ok(salt) = <[u8; 64]>::try_from(v.as_ref())
        {
            return Ok(AddressKey::new(&salt));
        }
        let mut salt = [0u8; 64];
        OsRng.fill_bytes(&mut salt);
        // Two first users race: whoever wrote first wins, and both use that salt.
        match self
            .meta
            .compare_and_swap(ADDRESS_SALT, None::<&[u8]>, Some(&salt[..]))?
        {
            Ok(()) => {
                self.meta.flush()?;
                Ok(AddressKey::new(&salt))
            }
            Err(_) => self.address_key(),
        }
    }

    /// Drops volume buckets that started before `volume_since` (no window reaches them) and
    /// the address counts of incidents that are resolved or gone.
    pub fn prune_mail(&self, volume_since: DateTime<Utc>) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        let since = be(volume_since.timestamp().max(0) as u64);
        let mut batch = sled::Batch::default();
        for item in self.meta.scan_prefix(MAIL_VOLUME) {
            let (k, _) = item?;
            // mailvol/<sender>\0<bucket be>
            if k.len() >= MAIL_VOLUME.len() + 9 && k[k.len() - 8..] < since[..] {
                batch.remove(k);
                pruned.buckets += 1;
            }
        }
        let mut judged: Option<(u64, bool)> = None;
        for item in self.meta.scan_prefix(MAIL_SET) {
            let (k, _) = item?;
            let Some(id) = k
                .get(MAIL_SET.len()..MAIL_SET.len() + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            let over = match judged {
                Some((i, over)) if i == id => over,
                _ => {
                    let over = self
                        .incident(id)?
                        .is_none_or(|inc| inc.state == State::Resolved);
                    judged = Some((id, over));
                    over
                }
            };
            if over {
                batch.remove(k);
                pruned.sets += 1;
            }
        }
        self.meta.apply_batch(batch)?;
        Ok(pruned)
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

/// A volume bucket's value: recipients, then messages (8 bytes each, big-endian); a bucket of
/// an older build holds recipients alone.
fn volume_value(v: &[u8]) -> Result<(u64, u64), StoreError> {
    match v.len() {
        16 => Ok((
            from_be("meta/mailvol", &v[..8])?,
            from_be("meta/mailvol", &v[8..])?,
        )),
        _ => Ok((from_be("meta/mailvol", v)?, 0)),
    }
}

impl Tx<'_> {
    /// Adds one message of `n` recipients to `sender`'s bucket starting at `bucket` (seconds
    /// since the epoch).
    pub fn add_mail_volume(&self, sender: &str, bucket: i64, n: u64) -> TxResult<()> {
        let key = [volume_prefix(sender).as_slice(), &be(bucket.max(0) as u64)].concat();
        let (recipients, messages) = match self.meta.get(&key)? {
            Some(v) => volume_value(&v).map_err(ConflictableTransactionError::Abort)?,
            None => (0, 0),
        };
        let value = [
            be(recipients.saturating_add(n)),
            be(messages.saturating_add(1)),
        ]
        .concat();
        self.meta.insert(key, value)?;
        Ok(())
    }

    /// Merges `items` into set `set` of incident `incident` and returns the set as it is now.
    /// One value per set, whatever it counts: the burst's addresses stay out of the incident,
    /// which is rewritten on every change, and out of the state dir beyond a bounded sketch.
    pub fn mail_set_merge(&self, incident: u64, set: u8, items: &Distinct) -> TxResult<Distinct> {
        let key = set_key(incident, set);
        let mut current = match self.meta.get(&key)? {
            Some(v) => Distinct::from_bytes(&v).map_err(|detail| {
                ConflictableTransactionError::Abort(StoreError::Corrupt {
                    tree: "meta/mailset",
                    detail,
                })
            })?,
            None => Distinct::default(),
        };
        current.merge(items);
        self.meta.insert(key, current.to_bytes())?;
        Ok(current)
    }

    /// Forgets the address counts of an incident (it is resolved: nothing joins it any more).
    pub fn forget_mail_sets(&self, incident: u64, sets: &[u8]) -> TxResult<()> {
        for set in sets {
            self.meta.remove(set_key(incident, *set))?;
        }
        Ok(())
    }
}
