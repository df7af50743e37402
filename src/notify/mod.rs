//! Drains the outbox: pages leave sled only after the channel confirmed them.
//!
//! One worker, oldest page first, so the chat sees incidents in the order they were found. A
//! failed delivery stays at the head of the queue: Telegram's `retry_after` is obeyed exactly,
//! other failures back off exponentially up to 8 s. On shutdown the send in flight finishes
//! and the rest stays queued for the next start.

pub mod telegram;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    incidents::{Action, Incident, Incidents, State},
    metrics::Metrics,
};
pub use telegram::{DeliveryError, Pacer, TelegramPager};

/// Capped low on purpose: after a Bot API outage the queue must drain within seconds, and one
/// probe every few seconds is nothing next to Telegram's limits.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How often an idle worker looks at the queue even without a wake-up: a safety net only.
const IDLE_RECHECK: Duration = Duration::from_secs(5);

pub async fn run(
    pager: TelegramPager,
    incidents: Incidents,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let wake = incidents.wake_handle();
    let store = incidents.store().clone();
    let mut failures = 0u32;
    let mut pacer = Pacer::default();
    while !shutdown.is_cancelled() {
        let head = match store.outbox_first() {
            Ok(head) => head,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                if !pause(&shutdown, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        let Some((seq, entry)) = head else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE_RECHECK) => {}
            }
            continue;
        };
        // Every update queued for this incident so far is answered by delivering its state
        // now. Collected before the incident is read: each entry is written in the same
        // transaction as the change it announces, so the state read next includes them all.
        let seqs = match store.outbox_seqs_for(entry.incident_id) {
            Ok(seqs) if entry.reminder.is_none() && !seqs.is_empty() => seqs,
            _ => vec![seq],
        };
        let incident = match store.incident(entry.incident_id) {
            Ok(Some(inc)) => inc,
            Ok(None) => {
                tracing::warn!(
                    seq,
                    incident = entry.incident_id,
                    "page for an unknown incident dropped"
                );
                let _ = incidents.discard_page(seq);
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, seq, "cannot read the incident of a queued page");
                if !pause(&shutdown, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        if let Some(reminder) = &entry.reminder {
            // Acked or resolved since it was queued: the reminder has nothing left to say.
            if incident.state != State::Open {
                let _ = incidents.discard_page(seq);
                continue;
            }
            let wait = pacer.wait(Instant::now());
            if !wait.is_zero() && !pause(&shutdown, wait).await {
                return;
            }
            let result = pager.remind(&incident, reminder).await;
            pacer.sent(Instant::now());
            let wait = match result {
                Ok(()) => {
                    failures = 0;
                    metrics.page_delivered(
                        (chrono::Utc::now() - entry.enqueued_at).num_milliseconds() as f64 / 1000.0,
                        None,
                    );
                    if let Err(e) = incidents.discard_page(seq) {
                        tracing::error!(error = %e, "reminder sent but not removed from the outbox");
                    }
                    continue;
                }
                Err(e) => failure_wait(&e, &mut failures, &metrics),
            };
            if !pause(&shutdown, wait).await {
                return;
            }
            continue;
        }
        let needs_message = !pager.is_current(&incident);
        if needs_message {
            let wait = pacer.wait(Instant::now());
            if !wait.is_zero() && !pause(&shutdown, wait).await {
                return;
            }
        }
        let span = tracing::info_span!("incident", id = incident.id, page_seq = seq);
        let result = pager.deliver(&incident).instrument(span).await;
        if needs_message {
            pacer.sent(Instant::now());
        }
        let wait = match result {
            Ok(page) => {
                failures = 0;
                let age_ms = (chrono::Utc::now() - entry.enqueued_at).num_milliseconds();
                let first = incident.page.is_none();
                match incidents.delivered(&seqs, incident.id, page).await {
                    Ok(updated) => {
                        let paged = updated
                            .filter(|_| first)
                            .and_then(|inc| first_page_latency(&inc));
                        metrics.page_delivered(age_ms as f64 / 1000.0, paged);
                        tracing::info!(
                            incident = incident.id,
                            queued_ms = age_ms,
                            first,
                            "page delivered"
                        );
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "page delivered but not recorded; it will be re-checked")
                    }
                }
                continue;
            }
            Err(e) => failure_wait(&e, &mut failures, &metrics),
        };
        if !pause(&shutdown, wait).await {
            return;
        }
    }
}

/// How long to wait after a failed delivery; counts it.
fn failure_wait(e: &DeliveryError, failures: &mut u32, metrics: &Metrics) -> Duration {
    match e {
        DeliveryError::RetryAfter(d) => {
            metrics.page_failed("retry_after");
            tracing::warn!(retry_after_s = d.as_secs(), "telegram flood control");
            *d
        }
        e => {
            *failures += 1;
            metrics.page_failed(match e {
                DeliveryError::Refused(_) => "refused",
                _ => "transient",
            });
            let d = backoff(*failures);
            tracing::warn!(error = %e, failures = *failures, retry_in_ms = d.as_millis() as u64, "page not delivered; kept queued");
            d
        }
    }
}

/// Seconds from the change (if the platform dated it) and from detection to the first page.
fn first_page_latency(inc: &Incident) -> Option<(Option<f64>, f64)> {
    inc.timeline.iter().rev().find_map(|e| match e.action {
        Action::Paged {
            since_change_ms,
            since_detect_ms,
        } => Some((
            since_change_ms.map(|ms| ms as f64 / 1000.0),
            since_detect_ms as f64 / 1000.0,
        )),
        _ => None,
    })
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(500)
        .saturating_mul(2u32.saturating_pow(failures.min(10)))
        .min(MAX_BACKOFF)
}

/// Sleeps unless shut down first; false on shutdown.
async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
