//! sled behind one type. No other module opens a tree.
//!
//! Trees:
//! - `approved_log`: seq → [`LogRecord`], the hash chain; `approved_posts`, `baselines` and
//!   `revoked` (revoked seq → seq of the revocation) are its indexes, written in the same
//!   transaction as the entry they index.
//! - `seen_posts`: account/post id → what the post looked like, to notice edits. Every write is
//!   also a `PostSeen` event of the timeline chain: a seen post silences the next sighting.
//! - `cursors`: where each source and the bot stopped reading.
//! - `incidents`, `incident_keys` (dedup key → id), `outbox` (pages not yet confirmed:
//!   channel name, NUL, big-endian seq, so each channel's queue is one ordered key range).
//! - `meta`: counters, the chains' heads, the signed statement of both heads (`signed_heads`,
//!   see [`signing`]) and the `genesis` record (see [`genesis`]), plus, by key prefix (one
//!   transaction can span at most nine sled trees, and every tree is in [`Store::transact`]'s):
//!   - `timeline/` + seq → [`TimelineRecord`], the incident timeline's hash chain;
//!   - `mute/` + account → [`Mute`];
//!   - `held/` + incident id: incidents whose page a mute held back.
//! - `mail_inbox`: mail summaries accepted by the provider webhooks and not yet judged
//!   (`e/` + seq), the keys of the deliveries already accepted (`d/` + digest, with an expiry
//!   index `x/`), and the Mailgun tokens not to accept twice (`t/` + hook + token); see
//!   [`mail_inbox`]. Outside [`Store::transact`]: written by one batch per commit.
//!
//! The store's jobs, one file each: `approvals` (the approved log and its indexes), the
//! incident records and mutes (`incidents`), the `outbox`, the timeline chain
//! ([`timeline_log`]), the mail queue and volume buckets (`mail`), the webhooks' [`mail_inbox`],
//! signing the heads ([`signing`]), the genesis record and adopting older stores ([`genesis`]),
//! and checking everything against the chains ([`verify`]); this file opens the trees and runs
//! [`Store::transact`].
//!
//! Writes that must stand or fall together (an incident, the page it causes, the seen-post record
//! and approvals behind it) go through [`Store::transact`], one sled transaction over all trees.

mod approvals;
pub mod approved_log;
mod chain;
pub mod genesis;
mod incidents;
mod mail;
pub use mail::Pruned;
pub mod mail_inbox;
mod outbox;
pub mod signing;
pub mod timeline_log;
pub mod verify;

use std::{
    path::Path,
    sync::{Arc, Mutex, RwLock},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError, TransactionalTree},
};

pub use approvals::{BaselineValue, RevokeError, SeenPost, SeenPostKey};

pub use approved_log::{ApprovedEntry, GENESIS, LogRecord, VerifyReport, chain_hash};

pub use outbox::{OutboxEntry, Reminder, Route};

pub use timeline_log::{Subject, TimelineEntry, TimelineRecord, parse_since};

pub use genesis::{AdoptError, Adopted, Genesis};

pub use signing::{Chain, ChainHead, HeadRef, Heads, KeyError, PublicKey, SignedHeads, SigningKey};

pub use verify::{Integrity, SignatureCheck, Verification, VerifyOptions};

use crate::model::Incident;

/// The channel every incident is paged to, except the ones about Telegram itself.
pub const TELEGRAM: &str = "telegram";

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
    revoked: sled::Tree,
    seen_posts: sled::Tree,
    cursors: sled::Tree,
    incidents: sled::Tree,
    incident_keys: sled::Tree,
    outbox: sled::Tree,
    meta: sled::Tree,
    mail_inbox: sled::Tree,
    /// Mail summaries the journal listener accepted (answered 250) and the pipeline has not
    /// judged yet. Outside [`Store::transact`]: written by the listener, not by a verdict.
    mail_queue: sled::Tree,
    /// The fallback channels of the running configuration; read by [`Tx::enqueue_page`] so
    /// that every code path that queues a page reaches every channel.
    routes: Arc<RwLock<Arc<Vec<Route>>>>,
    /// The first write the disk refused (full, read-only, I/O error), and when. sled stops
    /// taking writes after one, so nothing is recorded until a restart: the daemon must say so
    /// loudly rather than log and carry on (see `notify::store_alarm`).
    write_fault: Arc<Mutex<Option<WriteFault>>>,
    /// Inbox writes still to refuse, for fault injection ([`Store::fail_inbox_writes`]).
    inbox_faults: Arc<std::sync::atomic::AtomicU32>,
    /// The signing key and whether the store may sign yet; read by every append.
    signing: Arc<Mutex<signing::Signing>>,
    /// Held for reading by every transaction and for writing by [`Store::verify`] when its
    /// first pass found a problem: the trees are read one after the other, and an incident
    /// written between reading the chain and reading the incidents would look like an edit.
    verify_gate: Arc<RwLock<()>>,
    /// What the last verification found; `/readyz` reports it.
    integrity: Arc<Mutex<Integrity>>,
    /// The heads this process published last, one per chain.
    published: Arc<Mutex<Vec<ChainHead>>>,
}

/// A write the state database could not make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFault {
    pub since: DateTime<Utc>,
    pub error: String,
}

const HEAD: &[u8] = b"approved_log_head";
const INCIDENT_SEQ: &[u8] = b"incident_seq";
const OUTBOX_SEQ: &[u8] = b"outbox_seq";
const TIMELINE_HEAD: &[u8] = b"timeline_head";
const TIMELINE: &[u8] = b"timeline/";
const MUTE: &[u8] = b"mute/";
const HELD: &[u8] = b"held/";
const SIGNED_HEADS: &[u8] = b"signed_heads";
const GENESIS_KEY: &[u8] = b"genesis";

/// Where a chain's head is kept in `meta`.
fn head_key(chain: Chain) -> &'static [u8] {
    match chain {
        Chain::ApprovedLog => HEAD,
        Chain::Timeline => TIMELINE_HEAD,
    }
}

fn prefixed(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    [prefix, rest].concat()
}

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

/// How long [`Store::open`] waits for the lock of a database being closed, and how often it
/// looks again.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

impl Store {
    /// Opens (creating if needed) the database in `dir`. Fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let config = sled::Config::new().path(dir).flush_every_ms(Some(200));
        // The file lock of a database just closed is let go by sled's flusher thread a moment
        // after the last handle is dropped (a restart in the same process, or a container
        // replaced while the old one exits): a lock held that way is waited for, briefly; one
        // held longer is another live tocsin on the same state dir, and refused.
        let mut waited = std::time::Duration::ZERO;
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::Other
                        && e.to_string().contains("could not acquire lock")
                        && waited < LOCK_WAIT =>
                {
                    std::thread::sleep(LOCK_RETRY);
                    waited += LOCK_RETRY;
                }
                other => {
                    break other.map_err(|source| StoreError::Open {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
            }
        };
        let t = |name: &str| db.open_tree(name);
        let store = Store {
            approved_log: t("approved_log")?,
            approved_posts: t("approved_posts")?,
            baselines: t("baselines")?,
            revoked: t("revoked")?,
            seen_posts: t("seen_posts")?,
            cursors: t("cursors")?,
            incidents: t("incidents")?,
            incident_keys: t("incident_keys")?,
            outbox: t("outbox")?,
            meta: t("meta")?,
            mail_inbox: t("mail_inbox")?,
            mail_queue: t("mail_queue")?,
            routes: Arc::default(),
            write_fault: Arc::default(),
            inbox_faults: Arc::default(),
            signing: Arc::default(),
            verify_gate: Arc::default(),
            integrity: Arc::default(),
            published: Arc::default(),
            db,
        };
        store.migrate_outbox()?;
        store.begin_if_new()?;
        Ok(store)
    }

    /// Makes every write so far durable. Called after a transaction that created a page, so a
    /// crash right after detection cannot lose it.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush_async()
            .await
            .map_err(|e| self.note_fault(e))?;
        Ok(())
    }

    /// Remembers an I/O failure of the database (the first one counts: later ones follow from
    /// it) and hands the error on.
    fn note_fault(&self, e: sled::Error) -> StoreError {
        if matches!(e, sled::Error::Io(_)) {
            let mut fault = self.write_fault.lock().unwrap_or_else(|p| p.into_inner());
            fault.get_or_insert_with(|| WriteFault {
                since: Utc::now(),
                error: e.to_string(),
            });
        }
        StoreError::Db(e)
    }

    /// The disk's refusal to take writes, if it has refused one since start.
    pub fn write_fault(&self) -> Option<WriteFault> {
        self.write_fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
            &self.revoked,
            &self.seen_posts,
            &self.incidents,
            &self.incident_keys,
            &self.outbox,
            &self.meta,
        );
        let routes = self.routes.read().expect("routes lock").clone();
        let _gate = self.verify_gate.read().unwrap_or_else(|p| p.into_inner());
        trees
            .transaction(
                |(log, posts, baselines, revoked, seen, incidents, keys, outbox, meta)| {
                    let tx = Tx {
                        routes: &routes,
                        signing: &self.signing,
                        log,
                        posts,
                        baselines,
                        revoked,
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
                TransactionError::Storage(e) => E::from(self.note_fault(e)),
            })
    }

    /// Where a source (or the bot) stopped reading.
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
}

/// A transaction over every tree, with typed operations.
pub struct Tx<'a> {
    routes: &'a [Route],
    signing: &'a Mutex<signing::Signing>,
    log: &'a TransactionalTree,
    posts: &'a TransactionalTree,
    baselines: &'a TransactionalTree,
    revoked: &'a TransactionalTree,
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

    /// Where the next record of the chain whose head is kept under `head_key` goes: its seq and
    /// the hash it follows.
    fn chain_next(&self, head_key: &[u8]) -> TxResult<(u64, String)> {
        let head: Option<Head> = self
            .meta
            .get(head_key)?
            .map(|v| decode("meta", &v))
            .transpose()
            .map_err(ConflictableTransactionError::Abort)?;
        Ok(match head {
            Some(h) => (h.seq + 1, hex::encode(h.hash)),
            None => (0, GENESIS.to_owned()),
        })
    }

    /// Moves a chain's head to the record just written, and signs the new heads when the
    /// statement it extends verifies (see [`signing`]).
    fn set_chain_head(&self, chain: Chain, seq: u64, hash_hex: &str) -> TxResult<()> {
        let before = self.heads()?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hash_hex, &mut hash).expect("own hash is hex");
        self.meta
            .insert(head_key(chain), encode(&Head { seq, hash }))?;
        let mut after = before.clone();
        after.set(
            chain,
            HeadRef {
                seq,
                hash: hash_hex.to_owned(),
            },
        );
        let mut signing = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        if signing.key.is_none() || !signing.enabled {
            return Ok(());
        }
        let stored: Option<SignedHeads> = self
            .meta
            .get(SIGNED_HEADS)?
            .map(|v| decode("meta", &v))
            .transpose()
            .map_err(ConflictableTransactionError::Abort)?;
        // Only on top of a statement that verifies and names exactly the heads being extended:
        // anything else means the chain moved without the key, and signing now would vouch for
        // it. Such a head stays unsigned, and verification keeps saying so.
        let extends = stored.is_some_and(|s| s.heads == before && signing.verifies(&s));
        if extends && let Some(signed) = signing.sign(after) {
            self.meta.insert(SIGNED_HEADS, encode(&signed))?;
        }
        Ok(())
    }

    /// Both chains' heads as they stand in this transaction.
    fn heads(&self) -> TxResult<Heads> {
        let read = |chain: Chain| -> TxResult<Option<HeadRef>> {
            let head: Option<Head> = self
                .meta
                .get(head_key(chain))?
                .map(|v| decode("meta", &v))
                .transpose()
                .map_err(ConflictableTransactionError::Abort)?;
            Ok(head.map(|h| HeadRef {
                seq: h.seq,
                hash: hex::encode(h.hash),
            }))
        };
        Ok(Heads {
            approved_log: read(Chain::ApprovedLog)?,
            timeline: read(Chain::Timeline)?,
        })
    }
}

#[cfg(test)]
mod tests;
