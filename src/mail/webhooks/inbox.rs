//! The inbox: what makes a webhook's 2xx mean "on disk". One writer takes every request waiting,
//! drops the deliveries it has already accepted (by their keys), checks replay tokens, writes
//! summaries, keys and tokens in one batch and one flush, and answers. A feeder reads what was
//! committed back from the tree and hands it to the mail lane behind its checkpoint, at the
//! lane's pace: a lane slowed by its budget lengthens the queue on disk, never the webhooks'
//! answers.
//!
//! A store error is answered 503 (the provider retries) and never stops the writer: it marks
//! [`InboxHealth`] failing (`/readyz` shows it), tries an empty write again with backoff, and
//! takes requests again as soon as a write goes through.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{Accepted, fold};
use crate::{
    model::{Observation, ObservationKind},
    store::{
        Store, StoreError,
        mail_inbox::{CURSOR, InboxBatch, InboxRecord, delivery_key},
    },
};

/// Why the inbox could not take a request's events.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("token already used by another event")]
    Replayed,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("shutting down")]
    Closed,
}

/// What the inbox did with a request: events committed, and events it had already accepted
/// (a provider's retry or a replay), which are answered 200 like the first time and not
/// counted again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recorded {
    pub accepted: usize,
    pub duplicates: usize,
}

pub(super) struct Commit {
    pub(super) account: String,
    pub(super) accepted: Accepted,
    pub(super) done: oneshot::Sender<Result<Recorded, InboxError>>,
}

/// Requests waiting at once are committed together: one batch, one flush. The cap keeps one
/// commit's latency bounded under a flood.
pub(super) const MAX_GROUP_RECORDS: usize = 50_000;
/// Records handed to the lane per read of the tree: a backlog is read a slice at a time.
const FEED_SLICE: usize = 1024;
/// How often expired replay tokens and delivery keys are dropped.
pub(super) const FORGET_EVERY: Duration = Duration::from_secs(60);
/// The first wait before an empty write tries the store again after a failure; doubled on
/// each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Whether the inbox can write: failing from the first store error until a write goes
/// through again. What `/readyz` reads (`webhook_inbox`).
#[derive(Clone, Default)]
pub struct InboxHealth(Arc<Mutex<Option<Failing>>>);

/// Since when the inbox cannot write, and the first error.
type Failing = (DateTime<Utc>, String);

impl InboxHealth {
    /// What is wrong, if anything.
    pub fn problem(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(since, e)| format!("cannot write since {}: {e}", since.format("%H:%M:%S UTC")))
    }

    fn failing(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn fail(&self, error: &str) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if s.is_none() {
            tracing::error!(
                error,
                "the webhook inbox cannot write; webhooks are answered 503"
            );
        }
        s.get_or_insert_with(|| (Utc::now(), error.to_owned()));
    }

    fn recovered(&self) {
        if self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
        {
            tracing::info!("the webhook inbox writes again");
        }
    }
}

/// The webhooks' handle on the durable inbox; cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    pub(super) tx: mpsc::Sender<Commit>,
    health: InboxHealth,
}

impl Inbox {
    /// The inbox and its writer task. The writer first hands the pipeline what an earlier run
    /// accepted but did not judge, then commits requests as they come; it stops on `shutdown`
    /// (what it accepted stays on disk for the next start).
    pub fn start(
        store: Store,
        out: mpsc::Sender<Observation>,
        shutdown: CancellationToken,
    ) -> (
        Inbox,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel(256);
        let health = InboxHealth::default();
        (
            Inbox {
                tx,
                health: health.clone(),
            },
            writer(store, out, rx, shutdown, health),
        )
    }

    /// Whether the writer can write.
    pub fn health(&self) -> InboxHealth {
        self.health.clone()
    }

    /// Commits one request's new deliveries under `account` (the webhook's name); Ok once they
    /// are durable.
    pub async fn record(&self, account: &str, accepted: Accepted) -> Result<Recorded, InboxError> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Commit {
                account: account.to_owned(),
                accepted,
                done,
            })
            .await
            .map_err(|_| InboxError::Closed)?;
        answer.await.map_err(|_| InboxError::Closed)?
    }
}

/// Where the writer stands: the next seq to give out and the last one judged (pruned with the
/// next commit).
struct Seqs {
    next: u64,
    judged: u64,
}

async fn writer(
    store: Store,
    out: mpsc::Sender<Observation>,
    mut rx: mpsc::Receiver<Commit>,
    shutdown: CancellationToken,
    health: InboxHealth,
) {
    // The last seq committed, for the feeder.
    let (committed, watched) = watch::channel(0u64);
    let run = async {
        let mut backoff = FIRST_BACKOFF;
        let mut seqs = loop {
            let start = || -> Result<_, StoreError> {
                let judged = store.inbox_checkpoint()?;
                let next = store.inbox_last_seq()? + 1;
                Ok(Seqs { next, judged })
            };
            match start() {
                Ok(s) => break s,
                Err(e) => {
                    health.fail(&e.to_string());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        health.recovered();
        // What an earlier run accepted and the pipeline did not judge is fed first.
        committed.send_replace(seqs.next - 1);
        let mut forgot_at = tokio::time::Instant::now();
        loop {
            let first = if health.failing() {
                tokio::select! {
                    c = rx.recv() => c,
                    _ = tokio::time::sleep(backoff) => {
                        // Nothing to write: an empty write says whether the store is back.
                        let probe = match store.inbox_apply(&InboxBatch::default()) {
                            Ok(()) => store.flush().await,
                            Err(e) => Err(e),
                        };
                        match probe {
                            Ok(()) => {
                                health.recovered();
                                backoff = FIRST_BACKOFF;
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "the webhook inbox still cannot write");
                                backoff = (backoff * 2).min(MAX_BACKOFF);
                            }
                        }
                        continue;
                    }
                }
            } else {
                rx.recv().await
            };
            let Some(first) = first else {
                return;
            };
            let mut group = vec![first];
            let mut n = group[0].accepted.deliveries.len();
            while n < MAX_GROUP_RECORDS {
                match rx.try_recv() {
                    Ok(c) => {
                        n += c.accepted.deliveries.len();
                        group.push(c);
                    }
                    Err(_) => break,
                }
            }
            let (written, result) = commit(&store, group, &mut seqs).await;
            match result {
                Ok(()) => {
                    health.recovered();
                    backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    health.fail(&e.to_string());
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            if written {
                committed.send_replace(seqs.next - 1);
            }
            if forgot_at.elapsed() >= FORGET_EVERY {
                forgot_at = tokio::time::Instant::now();
                match store.inbox_forget_tokens(Utc::now().timestamp()) {
                    Ok(n) if n > 0 => tracing::debug!(keys = n, "expired webhook keys forgotten"),
                    Ok(_) => {}
                    // Forgetting can wait for the next round; the answers did not depend on it.
                    Err(e) => tracing::warn!(error = %e, "cannot forget expired webhook keys"),
                }
            }
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        () = run => {
            if !shutdown.is_cancelled() {
                health.fail("the writer stopped");
            }
        }
        () = feed(&store, &out, watched, &health) => {
            if !shutdown.is_cancelled() {
                health.fail("the writer stopped: the pipeline is gone");
            }
        }
    }
}

/// Hands what the writer committed to the lane, read back from the tree a slice at a time,
/// each slice followed by the checkpoint that lets the lane mark it judged. Returns when the
/// lane is gone.
async fn feed(
    store: &Store,
    out: &mpsc::Sender<Observation>,
    mut committed: watch::Receiver<u64>,
    health: &InboxHealth,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut fed = loop {
        match store.inbox_checkpoint() {
            Ok(judged) => break judged,
            Err(e) => {
                health.fail(&e.to_string());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    loop {
        while *committed.borrow_and_update() <= fed {
            if committed.changed().await.is_err() {
                return;
            }
        }
        let slice = match store.inbox_after(fed, FEED_SLICE) {
            Ok(slice) => slice,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the webhook inbox; trying again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        let Some(&(last, _)) = slice.last() else {
            // Committed past what the tree holds: nothing more to read until the next commit.
            fed = *committed.borrow();
            continue;
        };
        if !forward(out, slice.into_iter().map(|(_, r)| r), last).await {
            return;
        }
        fed = last;
    }
}

/// Commits one group of requests: whether records were written (for the feeder), and whether
/// the store took the write. Every request of the group is answered here.
async fn commit(
    store: &Store,
    group: Vec<Commit>,
    seqs: &mut Seqs,
) -> (bool, Result<(), StoreError>) {
    let fail_all = |group: Vec<(Commit, Recorded)>, e: &StoreError| {
        let msg = e.to_string();
        for (c, _) in group {
            let _ = c.done.send(Err(StoreError::Rejected(msg.clone()).into()));
        }
    };
    let now = Utc::now().timestamp();
    // Keys and tokens are checked here, by the one writer, so two copies of a request racing
    // each other cannot both pass.
    let mut seen_keys: HashSet<Vec<u8>> = HashSet::new();
    let mut tokens: Vec<(Vec<u8>, i64)> = Vec::new();
    let mut keys: Vec<(Vec<u8>, i64)> = Vec::new();
    let mut records: Vec<InboxRecord> = Vec::new();
    let mut answered: Vec<(Commit, Recorded)> = Vec::with_capacity(group.len());
    let mut group = group.into_iter();
    while let Some(mut c) = group.next() {
        let mut fresh = Vec::new();
        let mut recorded = Recorded::default();
        let mut new_keys = Vec::new();
        for d in std::mem::take(&mut c.accepted.deliveries) {
            let key = delivery_key(&c.account, &d.key);
            let seen = seen_keys.contains(&key) || {
                match store.inbox_token_seen(&key, now) {
                    Ok(seen) => seen,
                    Err(e) => {
                        answered.push((c, recorded));
                        answered.extend(group.map(|c| (c, Recorded::default())));
                        fail_all(answered, &e);
                        return (false, Err(e));
                    }
                }
            };
            if seen {
                recorded.duplicates += 1;
                continue;
            }
            seen_keys.insert(key.clone());
            new_keys.push((key, d.keep_until));
            fresh.push(d.mail);
        }
        if !fresh.is_empty()
            && let Some((token, until)) = c.accepted.token.take()
        {
            let used = tokens.iter().any(|(k, _)| *k == token)
                || match store.inbox_token_seen(&token, now) {
                    Ok(used) => used,
                    Err(e) => {
                        answered.push((c, recorded));
                        answered.extend(group.map(|c| (c, Recorded::default())));
                        fail_all(answered, &e);
                        return (false, Err(e));
                    }
                };
            if used {
                // A new event riding a token another event used: not the provider's.
                for (k, _) in &new_keys {
                    seen_keys.remove(k);
                }
                let _ = c.done.send(Err(InboxError::Replayed));
                continue;
            }
            tokens.push((token, until));
        }
        keys.extend(new_keys);
        let folded = fold(fresh);
        recorded.accepted = folded.len();
        records.extend(folded.into_iter().map(|mail| InboxRecord {
            account: c.account.clone(),
            mail,
        }));
        answered.push((c, recorded));
    }
    let done_upto = match store.inbox_checkpoint() {
        Ok(d) => d,
        Err(e) => {
            fail_all(answered, &e);
            return (false, Err(e));
        }
    };
    let batch = InboxBatch {
        records: records.iter().collect(),
        first_seq: seqs.next,
        tokens,
        deliveries: keys,
        prune: (seqs.judged + 1)..(done_upto + 1).max(seqs.judged + 1),
    };
    if let Err(e) = store.inbox_apply(&batch) {
        // Nothing was written: the requests are refused and retried by their providers.
        tracing::error!(error = %e, "cannot commit webhook events");
        fail_all(answered, &e);
        return (false, Err(e));
    }
    // Written: the seqs are taken whatever the flush says, and the records go to the
    // pipeline, since their keys are in the tree with them (a retry will find them).
    let count = records.len() as u64;
    seqs.judged = done_upto.max(seqs.judged);
    seqs.next += count;
    drop(batch);
    if let Err(e) = store.flush().await {
        tracing::error!(error = %e, "webhook events written but not flushed");
        fail_all(answered, &e);
        return (count > 0, Err(e));
    }
    for (c, recorded) in answered {
        let _ = c.done.send(Ok(recorded));
    }
    (count > 0, Ok(()))
}

/// Hands records to the pipeline, then the checkpoint that lets it mark them judged.
async fn forward(
    out: &mpsc::Sender<Observation>,
    records: impl Iterator<Item = InboxRecord>,
    last: u64,
) -> bool {
    let seen_at = Utc::now();
    for r in records {
        let obs = Observation {
            account: r.account,
            seen_at,
            kind: ObservationKind::Mail(r.mail),
        };
        if out.send(obs).await.is_err() {
            return false;
        }
    }
    out.send(Observation {
        account: CURSOR.into(),
        seen_at,
        kind: ObservationKind::Checkpoint {
            cursor: CURSOR.into(),
            value: last.to_string(),
        },
    })
    .await
    .is_ok()
}
