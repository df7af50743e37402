//! Hands the journal's queue to the pipeline in order, then a checkpoint; drops what the pipeline
//! has committed. Each round counts as one of the feed's polls, so its `judged_polls` moves once
//! the round's messages are committed.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;

use crate::{model::ObservationKind, store::Store, watch::SourceContext};

/// Queued summaries handed to the pipeline per round.
pub(super) const FEED_BATCH: usize = 256;

/// Hands queued summaries to the pipeline in order, then a checkpoint; drops what the
/// pipeline has committed.
pub async fn feed(name: String, store: Store, queued: Arc<Notify>, ctx: SourceContext) {
    let cursor = format!("mail_queue:{name}");
    let mut position: Option<u64> = store
        .cursor(&cursor)
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok());
    loop {
        // Drop what the pipeline has committed (its checkpoint is the persisted cursor).
        if let Ok(Some(done)) = store
            .cursor(&cursor)
            .map(|c| c.and_then(|v| v.parse().ok()))
            && let Err(e) = store.drop_mail_through(done)
        {
            tracing::error!(error = %e, "cannot trim the mail queue");
        }
        let batch = match store.queued_mail(position, FEED_BATCH) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the mail queue");
                if !ctx.sleep(Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = queued.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let last = batch.last().map(|(seq, _)| *seq);
        for (_, summary) in batch {
            if !ctx.emit(&name, ObservationKind::Mail(summary)).await {
                return;
            }
        }
        position = last;
        if let Some(seq) = last {
            let checkpoint = ObservationKind::Checkpoint {
                cursor: cursor.clone(),
                value: seq.to_string(),
            };
            if !ctx.emit(&name, checkpoint).await {
                return;
            }
        }
        ctx.health.round_ended(&name);
    }
}
