//! sled behind one type. No other module opens a tree.
//!
//! Trees:
//! - `approved_log`: seq → [`LogRecord`], the hash chain; `approved_posts` and `baselines` are its
//!   indexes, written in the same transaction as the entry they index.
//! - `seen_posts`: account/post id → what the post looked like, to notice edits.
//! - `cursors`: where each source and the bot stopped reading.
//! - `incidents`, `incident_keys` (dedup key → id), `outbox` (pages not yet confirmed).
//! - `meta`: counters and the chain's head.
//!
//! Writes that must stand or fall together (an incident, the page it causes, the seen-post record
//! and approvals behind it) go through [`Store::transact`], one sled transaction over all trees.

pub mod approved_log;

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError, TransactionalTree},
};

pub use approved_log::{ApprovedEntry, GENESIS, LogRecord, VerifyReport, digest};

use crate::incidents::Incident;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("state database error: {0}")]
    Db(#[from] sled::Error),
    #[error("corrupt record in tree `{tree}`: {detail}")]
    Corrupt { tree: &'static str, detail: String },
    #[error("{0}")]
    Rejected(String),
}

/// What a page in the outbox asks for: bring the incident's message in the chat up to date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub incident_id: u64,
    pub enqueued_at: DateTime<Utc>,
}

/// What a post looked like when last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenPost {
    pub fingerprint: String,
    pub text: String,
    #[serde(default)]
    pub edited_at: Option<DateTime<Utc>>,
}

/// The accepted value of a profile field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineValue {
    pub value: String,
    pub digest: String,
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: [u8; 32],
}

/// The database. Cheap to clone: sled handles are reference-counted.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    approved_log: sled::Tree,
    approved_posts: sled::Tree,
    baselines: sled::Tree,
    seen_posts: sled::Tree,
    cursors: sled::Tree,
    incidents: sled::Tree,
    incident_keys: sled::Tree,
    outbox: sled::Tree,
    meta: sled::Tree,
}

const HEAD: &[u8] = b"approved_log_head";
const INCIDENT_SEQ: &[u8] = b"incident_seq";
const OUTBOX_SEQ: &[u8] = b"outbox_seq";

fn key2(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        detail: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("store records always serialize")
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn from_be(tree: &'static str, bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        tree,
        detail: "key is not 8 bytes".into(),
    })?;
    Ok(u64::from_be_bytes(arr))
}

impl Store {
    /// Opens (creating if needed) the database in `dir`. Fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(200))
            .open()
            .map_err(|source| StoreError::Open {
                path: dir.display().to_string(),
                source,
            })?;
        let t = |name: &str| db.open_tree(name);
        Ok(Store {
            approved_log: t("approved_log")?,
            approved_posts: t("approved_posts")?,
            baselines: t("baselines")?,
            seen_posts: t("seen_posts")?,
            cursors: t("cursors")?,
            incidents: t("incidents")?,
            incident_keys: t("incident_keys")?,
            outbox: t("outbox")?,
            meta: t("meta")?,
            db,
        })
    }

    /// Makes every write so far durable. Called after a transaction that created a page, so a
    /// crash right after detection cannot lose it.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Runs `f` as one atomic transaction over every tree. `f` may run more than once on
    /// conflict, so it must not have side effects outside `Tx`.
    pub fn transact<T, E: From<StoreError>>(
        &self,
        f: impl Fn(&Tx<'_>) -> TxResult<T, E>,
    ) -> Result<T, E> {
        let trees = (
            &self.approved_log,
            &self.approved_posts,
            &self.baselines,
            &self.seen_posts,
            &self.incidents,
            &self.incident_keys,
            &self.outbox,
            &self.meta,
        );
        trees
            .transaction(
                |(log, posts, baselines, seen, incidents, keys, outbox, meta)| {
                    let tx = Tx {
                        log,
                        posts,
                        baselines,
                        seen,
                        incidents,
                        keys,
                        outbox,
                        meta,
                    };
                    f(&tx)
                },
            )
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => E::from(StoreError::Db(e)),
            })
    }

    // ---- approved log -------------------------------------------------------------------

    /// Appends one approval on its own.
    pub fn approve(
        &self,
        entry: ApprovedEntry,
        at: DateTime<Utc>,
    ) -> Result<LogRecord, StoreError> {
        self.transact(|tx| tx.append_log(entry.clone(), at))
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

    fn log_record(&self, seq: u64) -> Result<Option<LogRecord>, StoreError> {
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
    /// head, and that the indexes agree with the entries they were derived from.
    pub fn verify_log(&self) -> Result<VerifyReport, StoreError> {
        let mut problems = Vec::new();
        let mut prev = GENESIS.to_owned();
        let mut expected_seq = 0u64;
        let mut latest_baseline = std::collections::HashMap::new();
        for item in self.approved_log.iter() {
            let (k, v) = item?;
            let seq = from_be("approved_log", &k)?;
            let record: LogRecord = match serde_json::from_slice(&v) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("entry {seq}: unreadable ({e})"));
                    prev = String::new();
                    expected_seq = seq + 1;
                    continue;
                }
            };
            if seq != expected_seq {
                problems.push(format!(
                    "entry {expected_seq}: missing (next stored is {seq})"
                ));
            }
            if record.seq != seq {
                problems.push(format!("entry {seq}: says it is entry {}", record.seq));
            }
            if record.prev != prev {
                problems.push(format!(
                    "entry {seq}: does not follow entry {}",
                    seq.wrapping_sub(1)
                ));
            }
            if !record.is_intact() {
                problems.push(format!("entry {seq}: content does not match its hash"));
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
            prev = record.hash;
            expected_seq = seq + 1;
        }
        match self.head()? {
            Some(head) if head.seq + 1 != expected_seq || hex::encode(head.hash) != prev => {
                problems.push(format!(
                    "head: recorded as entry {} but the chain ends at entry {}",
                    head.seq,
                    expected_seq.wrapping_sub(1)
                ));
            }
            None if expected_seq > 0 => problems.push("head: missing".into()),
            _ => {}
        }
        for item in self.baselines.iter() {
            let (k, v) = item?;
            let value: BaselineValue = decode("baselines", &v)?;
            let name = String::from_utf8_lossy(&k).replace('\0', "/");
            match latest_baseline.get(k.as_ref()) {
                Some(d) if *d == value.digest && digest(&value.value) == value.digest => {}
                _ => problems.push(format!("baseline {name}: does not match the approved log")),
            }
        }
        Ok(VerifyReport {
            entries: expected_seq,
            head: prev,
            problems,
        })
    }

    // ---- baselines and seen posts --------------------------------------------------------

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

    pub fn seen_post(&self, account: &str, post_id: &str) -> Result<Option<SeenPost>, StoreError> {
        self.seen_posts
            .get(key2(account, post_id))?
            .map(|v| decode("seen_posts", &v))
            .transpose()
    }

    // ---- cursors -------------------------------------------------------------------------

    pub fn cursor(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .cursors
            .get(name)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_cursor(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.cursors.insert(name, value.as_bytes())?;
        Ok(())
    }

    // ---- incidents and outbox ------------------------------------------------------------

    pub fn incident(&self, id: u64) -> Result<Option<Incident>, StoreError> {
        self.incidents
            .get(be(id))?
            .map(|v| decode("incidents", &v))
            .transpose()
    }

    /// All incidents, oldest first.
    pub fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.incidents
            .iter()
            .values()
            .map(|v| decode("incidents", &v?))
            .collect()
    }

    /// The oldest page waiting for delivery.
    pub fn outbox_first(&self) -> Result<Option<(u64, OutboxEntry)>, StoreError> {
        match self.outbox.first()? {
            Some((k, v)) => Ok(Some((from_be("outbox", &k)?, decode("outbox", &v)?))),
            None => Ok(None),
        }
    }

    /// Pages waiting for delivery and the age of the oldest.
    pub fn outbox_depth(&self) -> Result<(usize, Option<DateTime<Utc>>), StoreError> {
        let oldest = self.outbox_first()?.map(|(_, e)| e.enqueued_at);
        Ok((self.outbox.len(), oldest))
    }
}

/// A transaction over every tree, with typed operations.
pub struct Tx<'a> {
    log: &'a TransactionalTree,
    posts: &'a TransactionalTree,
    baselines: &'a TransactionalTree,
    seen: &'a TransactionalTree,
    incidents: &'a TransactionalTree,
    keys: &'a TransactionalTree,
    outbox: &'a TransactionalTree,
    meta: &'a TransactionalTree,
}

/// The result inside a transaction: sled's conflicts pass through `?` so sled retries them, and
/// [`abort`] ends the transaction with the caller's own error type.
pub type TxResult<T, E = StoreError> = Result<T, ConflictableTransactionError<E>>;

/// Ends the transaction, writing nothing, with `e`.
pub fn abort<T, E>(e: E) -> TxResult<T, E> {
    Err(ConflictableTransactionError::Abort(e))
}

/// Carries a [`Tx`] result into a transaction whose abort error is another type.
pub trait Lift<T> {
    fn lift<E: From<StoreError>>(self) -> TxResult<T, E>;
}

impl<T> Lift<T> for TxResult<T> {
    fn lift<E: From<StoreError>>(self) -> TxResult<T, E> {
        self.map_err(|e| match e {
            ConflictableTransactionError::Abort(e) => {
                ConflictableTransactionError::Abort(E::from(e))
            }
            ConflictableTransactionError::Storage(e) => ConflictableTransactionError::Storage(e),
            // Hidden variant: a conflict, which sled retries.
            _ => ConflictableTransactionError::Conflict,
        })
    }
}

impl Tx<'_> {
    fn next(&self, counter: &[u8]) -> TxResult<u64> {
        let n = match self.meta.get(counter)? {
            Some(v) => from_be("meta", &v).map_err(ConflictableTransactionError::Abort)? + 1,
            None => 1,
        };
        self.meta.insert(counter, &be(n))?;
        Ok(n)
    }

    /// Appends an approval to the chain and updates the index it feeds.
    pub fn append_log(&self, entry: ApprovedEntry, at: DateTime<Utc>) -> TxResult<LogRecord> {
        let head: Option<Head> = self
            .meta
            .get(HEAD)?
            .map(|v| decode("meta", &v))
            .transpose()
            .map_err(ConflictableTransactionError::Abort)?;
        let (seq, prev) = match head {
            Some(h) => (h.seq + 1, hex::encode(h.hash)),
            None => (0, GENESIS.to_owned()),
        };
        let record = LogRecord::new(seq, at, prev, entry);
        self.log.insert(&be(seq), encode(&record))?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&record.hash, &mut hash).expect("own hash is hex");
        self.meta.insert(HEAD, encode(&Head { seq, hash }))?;
        match &record.entry {
            ApprovedEntry::ApprovedPost {
                account,
                fingerprint,
                post_id,
                ..
            } => {
                if let Some(fp) = fingerprint {
                    self.posts
                        .insert(key2(account, &format!("fp:{fp}")), &be(seq))?;
                } else if let Some(id) = post_id {
                    self.posts
                        .insert(key2(account, &format!("id:{id}")), &be(seq))?;
                }
            }
            ApprovedEntry::Baseline { .. } => {}
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

    pub fn put_seen_post(&self, account: &str, post_id: &str, seen: &SeenPost) -> TxResult<()> {
        self.seen.insert(key2(account, post_id), encode(seen))?;
        Ok(())
    }

    pub fn incident(&self, id: u64) -> TxResult<Option<Incident>> {
        self.incidents
            .get(be(id))?
            .map(|v| decode("incidents", &v))
            .transpose()
            .map_err(ConflictableTransactionError::Abort)
    }

    pub fn incident_by_key(&self, key: &str) -> TxResult<Option<Incident>> {
        match self.keys.get(key.as_bytes())? {
            Some(id) => self.incident(
                from_be("incident_keys", &id).map_err(ConflictableTransactionError::Abort)?,
            ),
            None => Ok(None),
        }
    }

    /// Allocates the next incident id: small numbers, because responders type them (`/ack 3`).
    pub fn next_incident_id(&self) -> TxResult<u64> {
        self.next(INCIDENT_SEQ)
    }

    /// Stores an incident and points its dedup key at it.
    pub fn put_incident(&self, incident: &Incident) -> TxResult<()> {
        self.incidents.insert(&be(incident.id), encode(incident))?;
        self.keys
            .insert(incident.dedup_key().as_bytes(), &be(incident.id))?;
        Ok(())
    }

    /// Queues a page for the incident.
    pub fn enqueue_page(&self, incident_id: u64, at: DateTime<Utc>) -> TxResult<u64> {
        let seq = self.next(OUTBOX_SEQ)?;
        let entry = OutboxEntry {
            incident_id,
            enqueued_at: at,
        };
        self.outbox.insert(&be(seq), encode(&entry))?;
        Ok(seq)
    }

    /// Removes a delivered page.
    pub fn remove_page(&self, seq: u64) -> TxResult<()> {
        self.outbox.remove(&be(seq))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(account: &str, fp: &str) -> ApprovedEntry {
        ApprovedEntry::ApprovedPost {
            account: account.into(),
            fingerprint: Some(fp.into()),
            post_id: None,
            expires_at: None,
            by: "test".into(),
            note: None,
        }
    }

    #[test]
    fn chain_verifies_and_catches_an_edited_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        store.approve(post("a", "f1"), now).unwrap();
        store
            .transact(|tx| tx.set_baseline("a", "note", "hello", "test", now))
            .unwrap();
        store.approve(post("a", "f2"), now).unwrap();
        let report = store.verify_log().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.entries, 3);
        assert!(store.is_post_approved("a", "f2", "x", now).unwrap());
        assert!(!store.is_post_approved("b", "f2", "x", now).unwrap());

        // Rewrite entry 1 as someone with the file would: valid JSON, changed content.
        let raw = store.approved_log.get(be(0)).unwrap().unwrap();
        let mut record: LogRecord = serde_json::from_slice(&raw).unwrap();
        record.entry = post("a", "rogue");
        store.approved_log.insert(be(0), encode(&record)).unwrap();
        let report = store.verify_log().unwrap();
        assert_eq!(
            report.problems,
            vec!["entry 0: content does not match its hash".to_string()]
        );
    }

    #[test]
    fn baseline_index_must_match_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        store
            .transact(|tx| tx.set_baseline("a", "url", "https://ok", "t", now))
            .unwrap();
        assert_eq!(
            store.baseline("a", "url").unwrap().unwrap().value,
            "https://ok"
        );
        let forged = BaselineValue {
            value: "https://evil".into(),
            digest: digest("https://evil"),
            seq: 0,
        };
        store
            .baselines
            .insert(key2("a", "url"), encode(&forged))
            .unwrap();
        let report = store.verify_log().unwrap();
        assert_eq!(
            report.problems,
            vec!["baseline a/url: does not match the approved log".to_string()]
        );
    }

    #[test]
    fn expired_approval_no_longer_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let entry = ApprovedEntry::ApprovedPost {
            account: "a".into(),
            fingerprint: None,
            post_id: Some("7".into()),
            expires_at: Some(now + chrono::Duration::minutes(1)),
            by: "t".into(),
            note: None,
        };
        store.approve(entry, now).unwrap();
        assert!(store.is_post_approved("a", "whatever", "7", now).unwrap());
        assert!(
            !store
                .is_post_approved("a", "whatever", "7", now + chrono::Duration::minutes(2))
                .unwrap()
        );
    }
}
