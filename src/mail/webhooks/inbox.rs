//! The inbox: what makes a webhook's 2xx mean "on disk". One writer takes every request waiting,
//! checks replay tokens, writes summaries and tokens in one batch and one flush, answers, then
//! feeds the pipeline behind its checkpoint.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Accepted;
use crate::{
    model::{Observation, ObservationKind},
    store::{
        Store, StoreError,
        mail_inbox::{CURSOR, InboxBatch, InboxRecord},
    },
};

/// Why the inbox could not take a request's events.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("token already used")]
    Replayed,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("shutting down")]
    Closed,
}

pub(super) struct Commit {
    pub(super) records: Vec<InboxRecord>,
    pub(super) token: Option<(Vec<u8>, i64)>,
    pub(super) done: oneshot::Sender<Result<usize, InboxError>>,
}

/// Requests waiting at once are committed together: one batch, one flush. The cap keeps one
/// commit's latency bounded under a flood.
pub(super) const MAX_GROUP_RECORDS: usize = 50_000;
/// How often expired replay tokens are dropped.
pub(super) const FORGET_EVERY: Duration = Duration::from_secs(60);

/// The webhooks' handle on the durable inbox; cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    pub(super) tx: mpsc::Sender<Commit>,
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
        (Inbox { tx }, writer(store, out, rx, shutdown))
    }

    /// Commits one request's summaries under `account`; Ok once they are durable (how many).
    pub async fn record(&self, account: &str, accepted: Accepted) -> Result<usize, InboxError> {
        let records = accepted
            .mails
            .into_iter()
            .map(|mail| InboxRecord {
                account: account.to_owned(),
                mail,
            })
            .collect();
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Commit {
                records,
                token: accepted.token,
                done,
            })
            .await
            .map_err(|_| InboxError::Closed)?;
        answer.await.map_err(|_| InboxError::Closed)?
    }
}

pub(super) async fn writer(
    store: Store,
    out: mpsc::Sender<Observation>,
    mut rx: mpsc::Receiver<Commit>,
    shutdown: CancellationToken,
) {
    let run = async {
        let mut judged = store.inbox_checkpoint()?;
        let mut next = store.inbox_last_seq()? + 1;
        let pending = store.inbox_after(judged)?;
        if !pending.is_empty() {
            tracing::info!(
                events = pending.len(),
                "mail events accepted before the restart handed to the pipeline"
            );
            let last = pending.last().map_or(judged, |(seq, _)| *seq);
            if !forward(&out, pending.into_iter().map(|(_, r)| r), last).await {
                return Ok(());
            }
        }
        let mut forgot_at = tokio::time::Instant::now();
        loop {
            let Some(first) = rx.recv().await else {
                return Ok(());
            };
            let mut group = vec![first];
            let mut n = group[0].records.len();
            while n < MAX_GROUP_RECORDS {
                match rx.try_recv() {
                    Ok(c) => {
                        n += c.records.len();
                        group.push(c);
                    }
                    Err(_) => break,
                }
            }
            let now = Utc::now().timestamp();
            // Tokens are checked here, by the one writer, so two copies of a request racing
            // each other cannot both pass.
            let mut tokens: Vec<(Vec<u8>, i64)> = Vec::new();
            let mut accepted = Vec::with_capacity(group.len());
            for c in group {
                if let Some((key, until)) = &c.token {
                    let seen = tokens.iter().any(|(k, _)| k == key)
                        || match store.inbox_token_seen(key, now) {
                            Ok(seen) => seen,
                            Err(e) => {
                                let _ = c.done.send(Err(e.into()));
                                continue;
                            }
                        };
                    if seen {
                        let _ = c.done.send(Err(InboxError::Replayed));
                        continue;
                    }
                    tokens.push((key.clone(), *until));
                }
                accepted.push(c);
            }
            let done_upto = store.inbox_checkpoint()?;
            let batch = InboxBatch {
                records: accepted.iter().flat_map(|c| &c.records).collect(),
                first_seq: next,
                tokens,
                prune: (judged + 1)..(done_upto + 1).max(judged + 1),
            };
            let count = batch.records.len() as u64;
            if let Err(e) = store.inbox_commit(&batch).await {
                tracing::error!(error = %e, "cannot commit webhook events");
                let msg = e.to_string();
                for c in accepted {
                    let _ = c.done.send(Err(StoreError::Rejected(msg.clone()).into()));
                }
                continue;
            }
            judged = done_upto.max(judged);
            let last = next + count - 1;
            next += count;
            let mut records = Vec::with_capacity(count as usize);
            for c in accepted {
                let _ = c.done.send(Ok(c.records.len()));
                records.extend(c.records);
            }
            if count > 0 && !forward(&out, records.into_iter(), last).await {
                return Ok(());
            }
            if forgot_at.elapsed() >= FORGET_EVERY {
                forgot_at = tokio::time::Instant::now();
                store.inbox_forget_tokens(now)?;
            }
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        r = run => if let Err(e) = r as Result<(), StoreError> {
            tracing::error!(error = %e, "the webhook inbox stopped");
        }
    }
}

/// Hands records to the pipeline, then the checkpoint that lets it mark them judged.
pub(super) async fn forward(
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
