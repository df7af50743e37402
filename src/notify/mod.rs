//! Drains the outbox: pages leave sled only after the channel confirmed them.
//!
//! One worker, oldest page first, so the chat sees incidents in the order they were found. A
//! failed delivery stays at the head of the queue: Telegram's `retry_after` is obeyed exactly,
//! other failures back off exponentially up to a minute. On shutdown the send in flight finishes
//! and the rest stays queued for the next start.

pub mod telegram;

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    incidents::{Action, Incident, Incidents},
    metrics::Metrics,
};
pub use telegram::{DeliveryError, TelegramPager};

const MAX_BACKOFF: Duration = Duration::from_secs(60);
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
        let span = tracing::info_span!("incident", id = incident.id, page_seq = seq);
        let wait = match pager.deliver(&incident).instrument(span).await {
            Ok(page) => {
                failures = 0;
                let age_ms = (chrono::Utc::now() - entry.enqueued_at).num_milliseconds();
                let first = incident.page.is_none();
                match incidents.delivered(seq, incident.id, page).await {
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
            Err(DeliveryError::RetryAfter(d)) => {
                metrics.page_failed("retry_after");
                tracing::warn!(retry_after_s = d.as_secs(), "telegram flood control");
                d
            }
            Err(e) => {
                failures += 1;
                metrics.page_failed(match e {
                    DeliveryError::Refused(_) => "refused",
                    _ => "transient",
                });
                let d = backoff(failures);
                tracing::warn!(error = %e, failures, retry_in_ms = d.as_millis() as u64, "page not delivered; kept queued");
                d
            }
        };
        if !pause(&shutdown, wait).await {
            return;
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
