//! sled behind one type. No other module opens a tree.
//!
//! Trees:
//! - `approved_log`: seq → [`LogRecord`], the hash chain; `approved_posts`, `baselines` and
//!   `revoked` (revoked seq → seq of the revocation) are its indexes, written in the same
//!   transaction as the entry they index.
//! - `seen_posts`: account/post id → what the post looked like, to notice edits.
//! - `cursors`: where each source and the bot stopped reading.
//! - `incidents`, `incident_keys` (dedup key → id), `outbox` (pages not yet confirmed:
//!   channel name, NUL, big-endian seq, so each channel's queue is one ordered key range).
//! - `meta`: counters and the chains' heads, plus, by key prefix (one transaction can span at
//!   most nine sled trees, and every tree is in [`Store::transact`]'s):
//!   - `timeline/` + seq → [`TimelineRecord`], the incident timeline's hash chain;
//!   - `mute/` + account → [`Mute`];
//!   - `held/` + incident id: incidents whose page a mute held back.
//! - `mail_inbox`: mail summaries accepted by the provider webhooks and not yet judged
//!   (`e/` + seq), and the replay tokens those webhooks must not accept twice (`t/` + provider
//!   + token); see [`mail_inbox`]. Outside [`Store::transact`]: written by one batch per commit.
//!
//! Writes that must stand or fall together (an incident, the page it causes, the seen-post record
//! and approvals behind it) go through [`Store::transact`], one sled transaction over all trees.

pub mod approved_log;
mod chain;
mod mail;
pub mod mail_inbox;
pub mod timeline_log;

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

pub use approved_log::{ApprovedEntry, GENESIS, LogRecord, VerifyReport, chain_hash};
pub use timeline_log::{TimelineEntry, TimelineRecord, parse_since};

use crate::model::{Incident, Mute, Rule, Severity, digest};

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
    #[error(transparent)]
    Store(#[from] StoreError),
}

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
    /// fallbacks are for.
    fn wants(&self, inc: &Incident) -> bool {
        inc.rule == Rule::TelegramDown
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

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
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
            db,
        };
        store.migrate_outbox()?;
        Ok(store)
    }

    /// Moves pages queued by a version with one channel (keys of 8 bytes) into Telegram's
    /// queue. Insert before remove: a crash in between delivers a page twice, never zero times.
    fn migrate_outbox(&self) -> Result<(), StoreError> {
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
        trees
            .transaction(
                |(log, posts, baselines, revoked, seen, incidents, keys, outbox, meta)| {
                    let tx = Tx {
                        routes: &routes,
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

    // ---- approved log -------------------------------------------------------------------

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
            match latest_baseline.get(k.as_ref()) {
                Some(d) if *d == value.digest && digest(&value.value) == value.digest => {}
                _ => problems.push(format!("baseline {name}: does not match the approved log")),
            }
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

    // ---- incident timeline chain -----------------------------------------------------------

    /// The timeline chain, oldest first.
    pub fn timeline_records(&self) -> Result<Vec<TimelineRecord>, StoreError> {
        self.meta
            .scan_prefix(TIMELINE)
            .values()
            .map(|v| decode("meta/timeline", &v?))
            .collect()
    }

    /// Walks the timeline chain like [`Store::verify_log`] walks the approved log, then checks
    /// that every incident's stored timeline is exactly the chain's events for it, in order: an
    /// edit of either side shows up as a difference between them.
    pub fn verify_timeline(&self) -> Result<VerifyReport, StoreError> {
        let mut walk = chain::ChainWalk::new("timeline event", "event");
        let mut per_incident: std::collections::BTreeMap<u64, Vec<_>> = Default::default();
        for item in self.meta.scan_prefix(TIMELINE) {
            let (k, v) = item?;
            let seq = from_be("meta/timeline", &k[TIMELINE.len()..])?;
            let Some((record, _)) = walk.step::<TimelineRecord>(seq, &v) else {
                continue;
            };
            if let Some(id) = record.entry.incident {
                per_incident.entry(id).or_default().push(record.as_event());
            }
        }
        let head: Option<Head> = self
            .meta
            .get(TIMELINE_HEAD)?
            .map(|v| decode("meta", &v))
            .transpose()?;
        walk.check_head("timeline head", head.map(|h| (h.seq, hex::encode(h.hash))));
        let mut problems = std::mem::take(&mut walk.problems);
        for item in self.incidents.iter() {
            let (k, v) = item?;
            let id = from_be("incidents", &k)?;
            let chained = per_incident.remove(&id).unwrap_or_default();
            match serde_json::from_slice::<Incident>(&v) {
                Ok(inc) if inc.timeline == chained => {}
                Ok(_) => problems.push(format!(
                    "incident #{id}: its timeline does not match the timeline chain"
                )),
                Err(e) => problems.push(format!("incident #{id}: unreadable ({e})")),
            }
        }
        for id in per_incident.keys() {
            problems.push(format!(
                "incident #{id}: in the timeline chain but missing from the incidents"
            ));
        }
        Ok(VerifyReport {
            entries: walk.walked(),
            head: walk.head().to_owned(),
            problems,
        })
    }

    /// Chains the timelines of incidents recorded by a build without the timeline chain, once:
    /// when there is no chain yet but there are incidents. From then on their events are checked
    /// like any other; edits made before the upgrade cannot be found by anyone. Called at daemon
    /// start, never by `log verify`, which must report an empty chain rather than adopt it.
    pub fn adopt_unchained_timelines(&self) -> Result<u64, StoreError> {
        if self.meta.contains_key(TIMELINE_HEAD)? || self.incidents.is_empty() {
            return Ok(0);
        }
        let incidents = self.incidents()?;
        self.transact(|tx| {
            if tx.meta.get(TIMELINE_HEAD)?.is_some() {
                return Ok(0);
            }
            let mut n = 0;
            for inc in &incidents {
                for e in &inc.timeline {
                    let entry = TimelineEntry {
                        incident: Some(inc.id),
                        account: inc.account.clone(),
                        who: e.who.clone(),
                        action: e.action.clone(),
                    };
                    tx.append_timeline(entry, e.at)?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    // ---- mutes ---------------------------------------------------------------------------

    /// Every recorded mute, expired or not: expiry is a comparison with now, never a write.
    pub fn mutes(&self) -> Result<Vec<Mute>, StoreError> {
        self.meta
            .scan_prefix(MUTE)
            .values()
            .map(|v| decode("meta/mute", &v?))
            .collect()
    }

    /// Incidents whose first page a mute held back, by id.
    pub fn held(&self) -> Result<Vec<u64>, StoreError> {
        self.meta
            .scan_prefix(HELD)
            .keys()
            .map(|k| from_be("meta/held", &k?[HELD.len()..]))
            .collect()
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

    pub fn incident_by_key(&self, key: &str) -> Result<Option<Incident>, StoreError> {
        match self.incident_keys.get(key.as_bytes())? {
            Some(id) => self.incident(from_be("incident_keys", &id)?),
            None => Ok(None),
        }
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

    /// Every queued page update of one incident on Telegram. They all ask for the same thing —
    /// bring its page up to date — so one delivery of the current state answers all of them.
    pub fn outbox_seqs_for(&self, incident_id: u64) -> Result<Vec<u64>, StoreError> {
        let prefix = outbox_prefix(TELEGRAM);
        let mut seqs = Vec::new();
        for item in self.outbox.scan_prefix(&prefix) {
            let (k, v) = item?;
            let entry: OutboxEntry = decode("outbox", &v)?;
            if entry.incident_id == incident_id && entry.reminder.is_none() {
                seqs.push(from_be("outbox", &k[prefix.len()..])?);
            }
        }
        Ok(seqs)
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

/// A transaction over every tree, with typed operations.
pub struct Tx<'a> {
    routes: &'a [Route],
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
        self.set_chain_head(HEAD, seq, &record.hash)?;
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

    /// Points another key (a burst member, a group) at an incident.
    pub fn index_incident(&self, key: &str, id: u64) -> TxResult<()> {
        self.keys.insert(key.as_bytes(), &be(id))?;
        Ok(())
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
            let seq = self.next(OUTBOX_SEQ)?;
            let entry = OutboxEntry {
                incident_id: inc.id,
                enqueued_at: at,
                channel: channel.to_owned(),
                reminder: None,
            };
            self.outbox
                .insert(outbox_key(channel, seq), encode(&entry))?;
            n += 1;
        }
        Ok(n)
    }

    /// Queues a reminder message for the incident: Telegram only, since a reminder is a new
    /// message in the chat (fallback channels keep paging on their own).
    pub fn enqueue_reminder(
        &self,
        incident_id: u64,
        reminder: Reminder,
        at: DateTime<Utc>,
    ) -> TxResult<u64> {
        let seq = self.next(OUTBOX_SEQ)?;
        let entry = OutboxEntry {
            incident_id,
            enqueued_at: at,
            channel: TELEGRAM.into(),
            reminder: Some(reminder),
        };
        self.outbox
            .insert(outbox_key(TELEGRAM, seq), encode(&entry))?;
        Ok(seq)
    }

    /// Removes a page the channel confirmed (or refused for good).
    pub fn remove_page(&self, channel: &str, seq: u64) -> TxResult<()> {
        self.outbox.remove(outbox_key(channel, seq))?;
        Ok(())
    }

    /// Appends an event to the timeline chain. Only `Incident::event` and the mute actions call
    /// this, so the chain and the incidents' own timelines are written together.
    pub fn append_timeline(
        &self,
        entry: TimelineEntry,
        at: DateTime<Utc>,
    ) -> TxResult<TimelineRecord> {
        let (seq, prev) = self.chain_next(TIMELINE_HEAD)?;
        let record = TimelineRecord::new(seq, at, prev, entry);
        self.meta
            .insert(prefixed(TIMELINE, &be(seq)), encode(&record))?;
        self.set_chain_head(TIMELINE_HEAD, seq, &record.hash)?;
        Ok(record)
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

    /// Moves a chain's head to the record just written.
    fn set_chain_head(&self, head_key: &[u8], seq: u64, hash_hex: &str) -> TxResult<()> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hash_hex, &mut hash).expect("own hash is hex");
        self.meta.insert(head_key, encode(&Head { seq, hash }))?;
        Ok(())
    }

    pub fn mute(&self, account: &str) -> TxResult<Option<Mute>> {
        self.meta
            .get(prefixed(MUTE, account.as_bytes()))?
            .map(|v| decode("meta/mute", &v))
            .transpose()
            .map_err(ConflictableTransactionError::Abort)
    }

    pub fn put_mute(&self, mute: &Mute) -> TxResult<()> {
        self.meta
            .insert(prefixed(MUTE, mute.account.as_bytes()), encode(mute))?;
        Ok(())
    }

    pub fn remove_mute(&self, account: &str) -> TxResult<()> {
        self.meta.remove(prefixed(MUTE, account.as_bytes()))?;
        Ok(())
    }

    /// Marks an incident's page as held back by a mute, to be sent when the mute ends.
    pub fn hold(&self, incident_id: u64) -> TxResult<()> {
        self.meta.insert(prefixed(HELD, &be(incident_id)), &[])?;
        Ok(())
    }

    pub fn is_held(&self, incident_id: u64) -> TxResult<bool> {
        Ok(self.meta.get(prefixed(HELD, &be(incident_id)))?.is_some())
    }

    /// Clears the mark set by [`Tx::hold`]; true if it was set.
    pub fn unhold(&self, incident_id: u64) -> TxResult<bool> {
        Ok(self
            .meta
            .remove(prefixed(HELD, &be(incident_id)))?
            .is_some())
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
    fn incidents_from_before_the_timeline_chain_are_adopted_once() {
        use crate::model::{Action, Evidence, Incident, Rule, Severity, State, TimelineEvent};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let incident = Incident {
            id: 1,
            rule: Rule::ProfileChanged,
            severity: Severity::High,
            account: "a".into(),
            object: "profile".into(),
            state: State::Open,
            resolution: None,
            evidence: Evidence::Profile {
                changes: Default::default(),
            },
            evidence_digest: String::new(),
            findings: 1,
            opened_at: now,
            changed_at: None,
            updated_at: now,
            acked_by: None,
            resolved_by: None,
            timeline: vec![TimelineEvent {
                at: now,
                who: "tocsin".into(),
                action: Action::Opened,
            }],
            page: None,
            votes: Vec::new(),
            reminders: 0,
            last_reminder_at: None,
            tier: 0,
            members: Vec::new(),
            takedown_started: None,
        };
        let entry = TimelineEntry {
            incident: Some(1),
            account: "a".into(),
            who: "tocsin".into(),
            action: Action::Opened,
        };
        // As `incidents` writes it: the record and its chained event in one transaction.
        store
            .transact(|tx| {
                tx.put_incident(&incident)?;
                tx.append_timeline(entry.clone(), now)
            })
            .unwrap();
        assert_eq!(
            store.adopt_unchained_timelines().unwrap(),
            0,
            "already chained"
        );
        // What an older build left behind: incidents with timelines, no chain.
        for k in store.meta.scan_prefix(TIMELINE).keys() {
            store.meta.remove(k.unwrap()).unwrap();
        }
        store.meta.remove(TIMELINE_HEAD).unwrap();
        assert!(!store.verify_timeline().unwrap().is_ok());
        assert_eq!(store.adopt_unchained_timelines().unwrap(), 1);
        let report = store.verify_timeline().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(store.adopt_unchained_timelines().unwrap(), 0);
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
    fn revocation_unapproves_and_keeps_the_chain_verifiable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        store.approve(post("a", "f1"), now).unwrap();
        store
            .transact(|tx| tx.set_baseline("a", "url", "https://ok", "t", now))
            .unwrap();
        assert!(store.is_post_approved("a", "f1", "x", now).unwrap());

        let record = store.revoke(0, "posted by mistake", "alice", now).unwrap();
        assert_eq!(record.seq, 2);
        assert_eq!(
            record.entry,
            ApprovedEntry::Revocation {
                seq: 0,
                reason: "posted by mistake".into(),
                by: "alice".into()
            }
        );
        assert!(!store.is_post_approved("a", "f1", "x", now).unwrap());
        assert_eq!(store.revocations().unwrap(), [(0, 2)].into_iter().collect());
        let report = store.verify_log().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.entries, 3);

        assert!(matches!(
            store.revoke(0, "again", "bob", now),
            Err(RevokeError::AlreadyRevoked { seq: 0, by_seq: 2 })
        ));
        assert!(matches!(
            store.revoke(1, "r", "bob", now),
            Err(RevokeError::Baseline(1))
        ));
        assert!(matches!(
            store.revoke(2, "r", "bob", now),
            Err(RevokeError::Revocation(2))
        ));
        assert!(matches!(
            store.revoke(9, "r", "bob", now),
            Err(RevokeError::NotFound(9))
        ));
        assert_eq!(store.log_len().unwrap(), 3, "refusals append nothing");
        // Approving the content again is how it comes back.
        store.approve(post("a", "f1"), now).unwrap();
        assert!(store.is_post_approved("a", "f1", "x", now).unwrap());
    }

    #[test]
    fn revoking_an_older_approval_leaves_a_newer_one_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        store.approve(post("a", "f1"), now).unwrap();
        store.approve(post("a", "f1"), now).unwrap();
        store.revoke(0, "superseded", "t", now).unwrap();
        assert!(store.is_post_approved("a", "f1", "x", now).unwrap());
        let report = store.verify_log().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
    }

    #[test]
    fn tampered_revocation_indexes_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        store.approve(post("a", "f1"), now).unwrap();
        store.revoke(0, "mistake", "t", now).unwrap();

        // Someone with the file puts the approval back in force.
        let key = key2("a", "fp:f1");
        store.approved_posts.insert(&key, &be(0)).unwrap();
        let report = store.verify_log().unwrap();
        assert_eq!(
            report.problems,
            vec!["approved post a/fp:f1: does not match the approved log".to_string()]
        );
        store.approved_posts.remove(&key).unwrap();

        store.revoked.remove(be(0)).unwrap();
        let report = store.verify_log().unwrap();
        assert_eq!(
            report.problems,
            vec!["revocations: the index does not match the approved log".to_string()]
        );
    }

    #[test]
    fn pages_queued_by_the_one_channel_version_move_to_telegram() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            // As the previous version wrote them: 8-byte key, no channel field.
            let old = serde_json::json!({"incident_id": 3, "enqueued_at": Utc::now()});
            store.outbox.insert(be(5), encode(&old)).unwrap();
            store.db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let (seq, entry) = store.outbox_first(TELEGRAM).unwrap().unwrap();
        assert_eq!((seq, entry.incident_id), (5, 3));
        assert_eq!(entry.channel, TELEGRAM);
        assert_eq!(store.outbox_depth().unwrap().0, 1);
        store.drop_unrouted(&["pagerduty:ops"]).unwrap();
        assert_eq!(store.outbox_depth().unwrap().0, 0);
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
