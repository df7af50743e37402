//! The approved log's side of the store: appending and revoking approvals, the indexes they
//! keep (approved posts, baselines, revocations), the seen posts, and verifying the chain.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;

use super::{
    ApprovedEntry, Chain, HEAD, Head, Lift, LogRecord, Store, StoreError, TimelineEntry, Tx,
    TxResult, VerifyReport, abort, be, chain, decode, encode, from_be, key2,
};
use crate::model::{Action, digest};

/// Why a revocation was refused; each maps to its own answer at the API.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("there is no approved log entry {0}")]
    NotFound(u64),
    #[error("entry {seq} is already revoked by entry {by_seq}")]
    AlreadyRevoked { seq: u64, by_seq: u64 },
    #[error("entry {0} is a baseline; a baseline is changed by approving a new value")]
    Baseline(u64),
    #[error("entry {0} is a revocation and cannot itself be revoked; approve the post again")]
    Revocation(u64),
    #[error(
        "entry {0} is an approved campaign; campaigns cannot be revoked yet (approve it again with a lower max_recipients)"
    )]
    Campaign(u64),
    #[error(
        "entry {0} is a trusted client; change accounts[].trusted_clients and reload to withdraw it"
    )]
    TrustedClient(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a post looked like when last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenPost {
    pub fingerprint: String,
    pub text: String,
    #[serde(default)]
    pub edited_at: Option<DateTime<Utc>>,
}

/// Which post a seen-post record is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeenPostKey {
    pub account: String,
    pub post_id: String,
}

impl SeenPostKey {
    pub fn new(account: &str, post_id: &str) -> SeenPostKey {
        SeenPostKey {
            account: account.to_owned(),
            post_id: post_id.to_owned(),
        }
    }
}

/// The accepted value of a profile field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineValue {
    pub value: String,
    pub digest: String,
    pub seq: u64,
}

/// The `approved_posts` key an entry is indexed under: by fingerprint when it has one, else by
/// post id.
fn approved_post_key(entry: &ApprovedEntry) -> Option<Vec<u8>> {
    match entry {
        ApprovedEntry::ApprovedPost {
            account,
            fingerprint: Some(fp),
            ..
        } => Some(key2(account, &format!("fp:{fp}"))),
        ApprovedEntry::ApprovedPost {
            account,
            post_id: Some(id),
            ..
        } => Some(key2(account, &format!("id:{id}"))),
        _ => None,
    }
}

impl Store {
    /// Appends one approval on its own.
    pub fn approve(
        &self,
        entry: ApprovedEntry,
        at: DateTime<Utc>,
    ) -> Result<LogRecord, StoreError> {
        self.transact(|tx| tx.append_log(entry.clone(), at))
    }

    /// Withdraws approval `seq` (an approved post). Checked and appended in one transaction, so
    /// two operators revoking the same entry at once get one revocation and one 409.
    ///
    /// The index holds the newest approval of each content; revoking that one un-approves the
    /// content even if an older entry approved it too. Approving it again brings it back.
    pub fn revoke(
        &self,
        seq: u64,
        reason: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<LogRecord, RevokeError> {
        self.transact(|tx| {
            let Some(target) = tx.log_record(seq).lift()? else {
                return abort(RevokeError::NotFound(seq));
            };
            match target.entry {
                ApprovedEntry::ApprovedPost { .. } => {}
                ApprovedEntry::Baseline { .. } => return abort(RevokeError::Baseline(seq)),
                ApprovedEntry::Revocation { .. } => return abort(RevokeError::Revocation(seq)),
                ApprovedEntry::ApprovedCampaign { .. } => {
                    return abort(RevokeError::Campaign(seq));
                }
                ApprovedEntry::TrustedClient { .. } => {
                    return abort(RevokeError::TrustedClient(seq));
                }
            }
            if let Some(by_seq) = tx.revoked_by(seq).lift()? {
                return abort(RevokeError::AlreadyRevoked { seq, by_seq });
            }
            let entry = ApprovedEntry::Revocation {
                seq,
                reason: reason.to_owned(),
                by: by.to_owned(),
            };
            tx.append_log(entry, at).lift()
        })
    }

    /// Every entry of the approved log, oldest first.
    pub fn log_records(&self) -> Result<Vec<LogRecord>, StoreError> {
        self.approved_log
            .iter()
            .values()
            .map(|v| decode("approved_log", &v?))
            .collect()
    }

    /// Revoked entries: revoked seq → seq of the revocation.
    pub fn revocations(&self) -> Result<std::collections::BTreeMap<u64, u64>, StoreError> {
        self.revoked
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((from_be("revoked", &k)?, from_be("revoked", &v)?))
            })
            .collect()
    }

    /// Whether a post with this content (or id) is approved for the account right now.
    pub fn is_post_approved(
        &self,
        account: &str,
        fingerprint: &str,
        post_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        for key in [
            key2(account, &format!("fp:{fingerprint}")),
            key2(account, &format!("id:{post_id}")),
        ] {
            if let Some(seq) = self.approved_posts.get(&key)? {
                // The index key goes in the revoking transaction; this is belt and braces.
                if self.revoked.contains_key(&seq)? {
                    continue;
                }
                let record = self.log_record(from_be("approved_posts", &seq)?)?;
                if let Some(ApprovedEntry::ApprovedPost { expires_at, .. }) =
                    record.map(|r| r.entry)
                    && expires_at.is_none_or(|t| now < t)
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The clients trusted to publish for the account now: read from the chain itself (the
    /// latest entry of each client is in force), so no index can disagree with it.
    pub fn trusted_clients(
        &self,
        account: &str,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let mut trusted = std::collections::BTreeSet::new();
        for record in self.log_records()? {
            if let ApprovedEntry::TrustedClient {
                account: a,
                client,
                withdrawn,
                ..
            } = record.entry
                && a == account
            {
                if withdrawn {
                    trusted.remove(&client);
                } else {
                    trusted.insert(client);
                }
            }
        }
        Ok(trusted)
    }

    pub(super) fn log_record(&self, seq: u64) -> Result<Option<LogRecord>, StoreError> {
        self.approved_log
            .get(be(seq))?
            .map(|v| decode("approved_log", &v))
            .transpose()
    }

    /// Number of entries in the approved log.
    pub fn log_len(&self) -> Result<u64, StoreError> {
        Ok(self.head()?.map_or(0, |h| h.seq + 1))
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        self.meta.get(HEAD)?.map(|v| decode("meta", &v)).transpose()
    }

    /// Walks the chain from the first entry and checks every hash, the links between them, the
    /// head, and that the indexes agree with the entries they were derived from (both ways).
    /// Called by `verify`, which keeps transactions out meanwhile.
    pub(super) fn log_report(&self) -> Result<VerifyReport, StoreError> {
        let mut walk = chain::ChainWalk::new("entry", "entry");
        let mut latest_baseline = std::collections::HashMap::new();
        // seq → index key of each approved post, and revoked seq → revoking seq.
        let mut post_keys = std::collections::HashMap::new();
        let mut revocations = std::collections::BTreeMap::new();
        // Entries already reported as damaged; their index entries would only repeat that.
        let mut damaged = std::collections::HashSet::new();
        for item in self.approved_log.iter() {
            let (k, v) = item?;
            let seq = from_be("approved_log", &k)?;
            let Some((record, intact)) = walk.step::<LogRecord>(seq, &v) else {
                damaged.insert(seq);
                continue;
            };
            if !intact {
                damaged.insert(seq);
            }
            if let ApprovedEntry::Baseline {
                account,
                field,
                value_digest,
                ..
            } = &record.entry
            {
                latest_baseline.insert(key2(account, field), value_digest.clone());
            }
            if let Some(key) = approved_post_key(&record.entry) {
                post_keys.insert(seq, key);
            }
            if let ApprovedEntry::Revocation { seq: target, .. } = &record.entry {
                if !post_keys.contains_key(target) {
                    walk.problems.push(format!(
                        "entry {seq}: revokes entry {target}, which is not an earlier approved post"
                    ));
                }
                if revocations.insert(*target, seq).is_some() {
                    walk.problems
                        .push(format!("entry {seq}: revokes entry {target} a second time"));
                }
            }
        }
        walk.check_head("head", self.head()?.map(|h| (h.seq, hex::encode(h.hash))));
        let mut problems = std::mem::take(&mut walk.problems);
        for item in self.baselines.iter() {
            let (k, v) = item?;
            let value: BaselineValue = decode("baselines", &v)?;
            let name = String::from_utf8_lossy(&k).replace('\0', "/");
            match latest_baseline.remove(k.as_ref()) {
                Some(d) if d == value.digest && digest(&value.value) == value.digest => {}
                _ => problems.push(format!("baseline {name}: does not match the approved log")),
            }
        }
        // A baseline gone from the index makes the next snapshot of the account its "first"
        // one, accepted as it is: whatever the profile says by then would never page.
        for k in latest_baseline.keys() {
            let name = String::from_utf8_lossy(k).replace('\0', "/");
            problems.push(format!(
                "baseline {name}: in the approved log but missing from the baselines"
            ));
        }
        let mut indexed_revocations = std::collections::BTreeMap::new();
        for item in self.revoked.iter() {
            let (k, v) = item?;
            indexed_revocations.insert(from_be("revoked", &k)?, from_be("revoked", &v)?);
        }
        if indexed_revocations != revocations {
            problems.push("revocations: the index does not match the approved log".into());
        }
        for item in self.approved_posts.iter() {
            let (k, v) = item?;
            let seq = from_be("approved_posts", &v)?;
            let name = String::from_utf8_lossy(&k).replace('\0', "/");
            let matches = post_keys.get(&seq).is_some_and(|key| *key == k.as_ref());
            if !damaged.contains(&seq) && (!matches || revocations.contains_key(&seq)) {
                problems.push(format!(
                    "approved post {name}: does not match the approved log"
                ));
            }
        }
        Ok(VerifyReport {
            entries: walk.walked(),
            head: walk.head().to_owned(),
            problems,
        })
    }

    pub fn baseline(
        &self,
        account: &str,
        field: &str,
    ) -> Result<Option<BaselineValue>, StoreError> {
        self.baselines
            .get(key2(account, field))?
            .map(|v| decode("baselines", &v))
            .transpose()
    }

    /// Every baselined field of an account, by field name.
    pub fn baselines(
        &self,
        account: &str,
    ) -> Result<std::collections::BTreeMap<String, BaselineValue>, StoreError> {
        let prefix = key2(account, "");
        let mut out = std::collections::BTreeMap::new();
        for item in self.baselines.scan_prefix(&prefix) {
            let (k, v) = item?;
            let field = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.insert(field, decode("baselines", &v)?);
        }
        Ok(out)
    }

    /// Every seen post with the fingerprint it was last seen with.
    pub fn seen_posts(&self) -> Result<Vec<(SeenPostKey, String)>, StoreError> {
        let mut out = Vec::new();
        for item in self.seen_posts.iter() {
            let (k, v) = item?;
            let seen: SeenPost = decode("seen_posts", &v)?;
            let k = String::from_utf8_lossy(&k);
            let (account, post_id) = k.split_once('\0').unwrap_or((&k, ""));
            out.push((SeenPostKey::new(account, post_id), seen.fingerprint));
        }
        Ok(out)
    }

    pub fn seen_post(&self, account: &str, post_id: &str) -> Result<Option<SeenPost>, StoreError> {
        self.seen_posts
            .get(key2(account, post_id))?
            .map(|v| decode("seen_posts", &v))
            .transpose()
    }
}

impl Tx<'_> {
    pub fn log_record(&self, seq: u64) -> TxResult<Option<LogRecord>> {
        self.log
            .get(be(seq))?
            .map(|v| decode("approved_log", &v))
            .transpose()
            .map_err(ConflictableTransactionError::Abort)
    }

    /// The seq of the revocation that withdrew `seq`, if any.
    pub fn revoked_by(&self, seq: u64) -> TxResult<Option<u64>> {
        self.revoked
            .get(be(seq))?
            .map(|v| from_be("revoked", &v))
            .transpose()
            .map_err(ConflictableTransactionError::Abort)
    }

    /// Appends an entry to the chain and updates the index it feeds. A revocation of anything
    /// but a live approved post is refused here too, so no caller can chain a meaningless one.
    pub fn append_log(&self, entry: ApprovedEntry, at: DateTime<Utc>) -> TxResult<LogRecord> {
        let revoked_key = match &entry {
            ApprovedEntry::Revocation { seq: target, .. } => {
                let key = self
                    .log_record(*target)?
                    .and_then(|r| approved_post_key(&r.entry));
                match key {
                    Some(key) if self.revoked_by(*target)?.is_none() => Some((*target, key)),
                    _ => {
                        return abort(StoreError::Rejected(format!(
                            "entry {target} is not an approved post that can be revoked"
                        )));
                    }
                }
            }
            _ => None,
        };
        let (seq, prev) = self.chain_next(HEAD)?;
        let record = LogRecord::new(seq, at, prev, entry);
        self.log.insert(&be(seq), encode(&record))?;
        self.set_chain_head(Chain::ApprovedLog, seq, &record.hash)?;
        if let Some(key) = approved_post_key(&record.entry) {
            self.posts.insert(key, &be(seq))?;
        }
        if let Some((target, key)) = revoked_key {
            // A later approval of the same content owns the key now and stays in force.
            if self.posts.get(&key)?.as_deref() == Some(&be(target)[..]) {
                self.posts.remove(key)?;
            }
            self.revoked.insert(&be(target), &be(seq))?;
        }
        Ok(record)
    }

    /// Accepts a profile field's value: a log entry plus the index that holds the value.
    pub fn set_baseline(
        &self,
        account: &str,
        field: &str,
        value: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> TxResult<()> {
        let value_digest = digest(value);
        let record = self.append_log(
            ApprovedEntry::Baseline {
                account: account.into(),
                field: field.into(),
                value_digest: value_digest.clone(),
                by: by.into(),
            },
            at,
        )?;
        let v = BaselineValue {
            value: value.into(),
            digest: value_digest,
            seq: record.seq,
        };
        self.baselines.insert(key2(account, field), encode(&v))?;
        Ok(())
    }

    /// Records what a post looked like, and chains it: a seen post silences the next sighting of
    /// the same content, so one written by hand would hide a rogue post (see `verify`).
    pub fn put_seen_post(
        &self,
        account: &str,
        post_id: &str,
        seen: &SeenPost,
        at: DateTime<Utc>,
    ) -> TxResult<()> {
        self.seen.insert(key2(account, post_id), encode(seen))?;
        let entry = TimelineEntry {
            incident: None,
            account: account.to_owned(),
            who: "tocsin".into(),
            action: Action::PostSeen {
                post_id: post_id.to_owned(),
                fingerprint: seen.fingerprint.clone(),
            },
            subject: None,
        };
        self.append_timeline(entry, at)?;
        Ok(())
    }
}
