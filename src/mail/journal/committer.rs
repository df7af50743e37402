//! The group committer: every connection's summaries made durable in one batch and one flush,
//! each connection answered once its summary is on disk.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::{model::MailSummary, store::Store};

/// Summaries taken per commit at most.
pub(super) const BATCH: usize = 4096;

/// A summary waiting to be made durable, and who waits for the answer.
pub(super) type Pending = (Vec<u8>, oneshot::Sender<Result<u64, String>>);

/// The group committer's front door.
#[derive(Clone)]
pub struct Committer {
    pub(super) tx: mpsc::Sender<Pending>,
}

impl Committer {
    /// Starts the committer task; `queued` is woken after every commit.
    pub fn spawn(store: Store, queued: Arc<Notify>, tasks: &TaskTracker) -> Committer {
        let (tx, rx) = mpsc::channel(BATCH * 2);
        tasks.spawn(commit_loop(store, rx, queued));
        Committer { tx }
    }

    /// Queues one summary; returns its sequence number once it is durable.
    pub async fn commit(&self, summary: &MailSummary) -> Result<u64, String> {
        let bytes = Store::encode_mail(summary);
        let (done, answer) = oneshot::channel();
        self.tx
            .send((bytes, done))
            .await
            .map_err(|_| "shutting down".to_owned())?;
        answer.await.map_err(|_| "shutting down".to_owned())?
    }

    /// Queues one summary for the next group commit without waiting for the disk: for a
    /// message whose loss in a crash costs no page (the milter's messages no rule finds). A
    /// failed commit is logged by the committer.
    pub async fn enqueue(&self, summary: &MailSummary) -> Result<(), String> {
        let (done, _) = oneshot::channel();
        self.tx
            .send((Store::encode_mail(summary), done))
            .await
            .map_err(|_| "shutting down".to_owned())
    }
}

pub(super) async fn commit_loop(
    store: Store,
    mut rx: mpsc::Receiver<Pending>,
    queued: Arc<Notify>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let (encoded, waiters): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let result = match store.queue_mail(&encoded) {
            Ok(seqs) => store.flush().await.map(|()| seqs),
            Err(e) => Err(e),
        };
        match result {
            Ok(seqs) => {
                queued.notify_one();
                for (w, seq) in waiters.into_iter().zip(seqs) {
                    let _ = w.send(Ok(seq));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot queue journaled mail");
                for w in waiters {
                    let _ = w.send(Err(e.to_string()));
                }
            }
        }
    }
}
