//! Drains the outbox: pages leave sled only after their channel confirmed them.
//!
//! One worker per channel, each taking only its own queue (a key range of the `outbox` tree),
//! oldest page first, so every channel sees incidents in the order they were found and a slow
//! or broken channel never holds back another. Telegram's worker keeps one lane per incident
//! ([`per_incident`]): a page that keeps failing backs off on its own and ends as a dead letter paged
//! to the fallbacks, never in the way of another incident's page. A fallback's failed delivery
//! stays at the head of its queue. Telegram's `retry_after` and a fallback's `Retry-After` are
//! obeyed, other failures back off exponentially (Telegram up to 8 s, so the queue drains
//! within seconds after an outage; fallbacks up to a minute). On shutdown the sends in flight
//! finish and the rest stays queued for the next start.
//!
//! Telegram is the primary channel, so its worker also watches its own failures: when pages
//! cannot reach the chat (token revoked, bot removed, chat gone, or any failure lasting longer
//! than `telegram.failure_grace`) it opens a `notify.telegram_down` incident, which the store
//! routes to the fallback channels only, and resolves it on the next successful delivery.

pub mod heads;
pub mod heartbeat;
mod pacing;
pub mod pagerduty;
pub mod per_incident;
mod render;
pub mod store_alarm;
pub mod telegram;
pub mod webhook;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    detect::Outcome,
    incidents::Incidents,
    metrics::Metrics,
    model::{Actor, Evidence, Finding, Incident, Resolution, Rule, Severity, State, dedup_key},
    store::{Store, StoreError, TELEGRAM},
};

pub use pagerduty::PagerDuty;

pub use telegram::{Delivered, DeliveryError, How, Pacer, TelegramPager};

pub use webhook::Webhook;

/// Capped low on purpose: after a Bot API outage the queue must drain within seconds, and one
/// probe every few seconds is nothing next to Telegram's limits.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How often an idle worker looks at the queue even without a wake-up: a safety net only.
const IDLE_RECHECK: Duration = Duration::from_secs(5);
/// How often "Telegram is down and nobody else is paged" is logged again.
const UNPAGED_LOG_EVERY: Duration = Duration::from_secs(60);
/// The account of incidents about tocsin's own paging path.
pub const TELEGRAM_ACCOUNT: &str = "telegram";

/// Why the on-call chat is not getting pages right now, if it is not; shared with `/readyz`.
#[derive(Clone, Debug, Default)]
pub struct TelegramStatus(Arc<Mutex<Option<String>>>);

impl TelegramStatus {
    pub fn problem(&self) -> Option<String> {
        self.0.lock().expect("status lock").clone()
    }

    fn set(&self, problem: Option<String>) {
        *self.0.lock().expect("status lock") = problem;
    }
}

/// What the Telegram worker needs to notice that Telegram itself is down.
#[derive(Clone, Debug)]
pub struct TelegramWatch {
    pub chat_id: i64,
    pub failure_grace: Duration,
    /// Whether any fallback channel will hear about it.
    pub has_fallback: bool,
    pub status: TelegramStatus,
}

/// The dedup key of the `notify.telegram_down` incident of a chat.
pub fn telegram_down_key(chat_id: i64) -> String {
    dedup_key(TELEGRAM_ACCOUNT, Rule::TelegramDown, &chat_id.to_string())
}

/// Forwards each wake-up of the incidents module to every channel worker. `Notify::notify_one`
/// keeps a permit when nobody waits, so a worker busy sending still sees the wake-up after.
pub async fn fan_out(from: Arc<Notify>, to: Vec<Arc<Notify>>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = from.notified() => to.iter().for_each(|n| n.notify_one()),
        }
    }
}

/// Tracks one Telegram outage: from the first failed delivery to the next success.
struct Outage {
    watch: TelegramWatch,
    failing_since: Option<(Instant, DateTime<Utc>)>,
    declared: bool,
    last_log: Option<Instant>,
}

impl Outage {
    fn new(watch: TelegramWatch) -> Outage {
        Outage {
            watch,
            failing_since: None,
            declared: false,
            last_log: None,
        }
    }

    async fn failed(&mut self, incidents: &Incidents, e: &DeliveryError) {
        let (since, since_utc) = *self
            .failing_since
            .get_or_insert_with(|| (Instant::now(), Utc::now()));
        let problem = match e {
            DeliveryError::Unreachable(p) => p.clone(),
            _ if since.elapsed() >= self.watch.failure_grace => format!(
                "page deliveries failing for {}s (last: {e})",
                since.elapsed().as_secs()
            ),
            _ => return,
        };
        self.watch.status.set(Some(problem.clone()));
        if !self.watch.has_fallback
            && self
                .last_log
                .is_none_or(|t| t.elapsed() >= UNPAGED_LOG_EVERY)
        {
            self.last_log = Some(Instant::now());
            tracing::error!(
                problem,
                "pages are not reaching telegram and no fallback channel is configured: nobody is being paged"
            );
        }
        if self.declared {
            return;
        }
        let finding = Finding {
            rule: Rule::TelegramDown,
            severity: Severity::Critical,
            account: TELEGRAM_ACCOUNT.into(),
            object: self.watch.chat_id.to_string(),
            evidence: Evidence::Channel {
                channel: TELEGRAM.into(),
                problem: problem.clone(),
                since: since_utc,
            },
            changed_at: Some(since_utc),
            seen_at: Utc::now(),
        };
        let outcome = Outcome {
            finding: Some(finding),
            writes: vec![],
        };
        match incidents.record(&outcome).await {
            Ok(recorded) => {
                self.declared = true;
                tracing::error!(
                    ?recorded,
                    problem,
                    "telegram is down; fallback channels paged"
                );
            }
            Err(e) => tracing::error!(error = %e, "cannot record that telegram is down"),
        }
    }

    /// A delivery went through: the outage, if any, is over.
    async fn recovered(&mut self, incidents: &Incidents) {
        self.failing_since = None;
        self.declared = false;
        self.watch.status.set(None);
        let key = telegram_down_key(self.watch.chat_id);
        let open = match incidents.store().incident_by_key(&key) {
            Ok(Some(inc)) if inc.state != State::Resolved => inc.id,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the telegram_down incident");
                return;
            }
        };
        match incidents
            .resolve(open, &Actor::system(), Resolution::Contained)
            .await
        {
            Ok(_) => tracing::info!(incident = open, "telegram delivers again; resolved"),
            Err(e) => tracing::error!(error = %e, "cannot resolve the telegram_down incident"),
        }
    }
}

/// Telegram's worker (see [`per_incident`]): one lane per incident, paced, until shutdown.
pub async fn run(
    pager: TelegramPager,
    incidents: Incidents,
    metrics: Arc<Metrics>,
    watch: TelegramWatch,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let updates_ok = metrics.refusals.bot_last_ok.clone();
    per_incident::run(per_incident::Worker {
        pager,
        incidents,
        metrics,
        watch,
        updates_ok,
        wake,
        shutdown,
    })
    .await;
}

/// Why a fallback channel did not take an event.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Worth trying again: network, 408, 429, 5xx. `after` is the server's `Retry-After`.
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The channel will never take this event as it is (an invalid event, a 4xx): retrying
    /// would only block the pages behind it.
    #[error("{0}")]
    Rejected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A channel other than Telegram. An enum rather than a trait object: two kinds, and their
/// futures stay `Send` without boxing.
pub enum Fallback {
    PagerDuty(PagerDuty),
    Webhook(Webhook),
}

impl Fallback {
    /// The name of its outbox queue and its metrics label.
    pub fn channel(&self) -> &str {
        match self {
            Fallback::PagerDuty(c) => c.channel(),
            Fallback::Webhook(c) => c.channel(),
        }
    }

    async fn deliver(&self, inc: &Incident, store: &Store) -> Result<(), ChannelError> {
        match self {
            Fallback::PagerDuty(c) => c.deliver(inc, store).await,
            Fallback::Webhook(c) => c.deliver(inc).await,
        }
    }

    /// Sends a publication of the chain heads (see [`heads`]).
    pub async fn publish_heads(&self, p: &heads::Publication) -> Result<(), ChannelError> {
        match self {
            Fallback::PagerDuty(c) => c.publish_heads(p).await,
            Fallback::Webhook(c) => c.publish_heads(p).await,
        }
    }
}

/// The worker of one fallback channel: same queue discipline as Telegram's.
pub async fn run_fallback(
    channel: Fallback,
    incidents: Incidents,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let store = incidents.store().clone();
    let name = channel.channel().to_owned();
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let (seq, incident) = match next_page(&store, &incidents, &name, &wake, &shutdown).await {
            Next::Page(seq, inc) => (seq, inc),
            Next::Again => continue,
            Next::Stop => return,
        };
        let span = tracing::info_span!("incident", id = incident.id, channel = %name);
        let wait = match channel.deliver(&incident, &store).instrument(span).await {
            Ok(()) => {
                failures = 0;
                metrics.channel_delivered(&name);
                tracing::info!(incident = incident.id, channel = %name, "page delivered");
                if let Err(e) = incidents.discard_page(&name, seq) {
                    tracing::error!(error = %e, channel = %name, "page delivered but not removed; it will be sent again");
                }
                continue;
            }
            Err(ChannelError::Rejected(reason)) => {
                metrics.channel_failed(&name, "rejected");
                tracing::error!(incident = incident.id, channel = %name, reason, "page refused for good by the channel; dropped from its queue");
                if let Err(e) = incidents.discard_page(&name, seq) {
                    tracing::error!(error = %e, channel = %name, "cannot drop a refused page");
                }
                continue;
            }
            Err(e) => {
                failures += 1;
                metrics.channel_failed(&name, "retry");
                let d = match &e {
                    ChannelError::Retry { after: Some(d), .. } => (*d).min(MAX_BACKOFF),
                    _ => backoff(failures),
                };
                tracing::warn!(error = %e, channel = %name, failures, retry_in_ms = d.as_millis() as u64, "page not delivered; kept queued");
                d
            }
        };
        if !pause(&shutdown, wait).await {
            return;
        }
    }
}

enum Next {
    Page(u64, Box<Incident>),
    /// Nothing to send yet, or a page was dropped: look again.
    Again,
    Stop,
}

/// The head of `channel`'s queue with its incident, waiting for one when the queue is empty.
async fn next_page(
    store: &Store,
    incidents: &Incidents,
    channel: &str,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Next {
    let head = match store.outbox_first(channel) {
        Ok(head) => head,
        Err(e) => {
            tracing::error!(error = %e, channel, "cannot read the outbox");
            return if pause(shutdown, Duration::from_secs(1)).await {
                Next::Again
            } else {
                Next::Stop
            };
        }
    };
    let Some((seq, entry)) = head else {
        tokio::select! {
            _ = shutdown.cancelled() => return Next::Stop,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(IDLE_RECHECK) => {}
        }
        return Next::Again;
    };
    match store.incident(entry.incident_id) {
        Ok(Some(inc)) => Next::Page(seq, Box::new(inc)),
        Ok(None) => {
            tracing::warn!(
                seq,
                channel,
                incident = entry.incident_id,
                "page for an unknown incident dropped"
            );
            let _ = incidents.discard_page(channel, seq);
            Next::Again
        }
        Err(e) => {
            tracing::error!(error = %e, seq, channel, "cannot read the incident of a queued page");
            if pause(shutdown, Duration::from_secs(1)).await {
                Next::Again
            } else {
                Next::Stop
            }
        }
    }
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

/// The incident as a JSON document for channels outside Telegram: what a receiver needs to
/// act on it without asking tocsin.
pub fn incident_document(inc: &Incident) -> serde_json::Value {
    serde_json::json!({
        "id": inc.id,
        "rule": inc.rule,
        "severity": inc.severity,
        "account": inc.account,
        "object": inc.object,
        "state": inc.state,
        "resolution": inc.resolution,
        "evidence": inc.evidence,
        "opened_at": inc.opened_at,
        "updated_at": inc.updated_at,
        "timeline": inc.timeline,
    })
}

/// One line saying what happened, for channels that show a title.
pub fn summary_line(inc: &Incident) -> String {
    let what = match &inc.evidence {
        Evidence::Post { text, .. } => format!("post “{}”", crate::model::cut(text, 200)),
        Evidence::PostEdited { after, .. } => {
            format!("post edited to “{}”", crate::model::cut(after, 200))
        }
        Evidence::Profile { changes } => format!(
            "profile fields changed: {}",
            changes.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        Evidence::Channel {
            channel, problem, ..
        } => format!("{channel}: {problem}"),
        Evidence::Mail(m) => format!(
            "{} · {} message(s), {} exposed address(es), {} domain(s), {} recipient(s)",
            m.sender, m.messages, m.exposed, m.domains, m.recipients
        ),
        Evidence::SecurityNotice(n) => format!(
            "{} security mail to {}: “{}”",
            n.platform,
            n.recipient,
            crate::model::cut(&n.subject, 200)
        ),
        Evidence::Mailbox {
            risk,
            action,
            target,
            ..
        } => format!("{risk}: {action} on {}", crate::model::cut(target, 200)),
    };
    crate::model::cut(
        &format!(
            "[tocsin #{}] {} {} on {}: {what}",
            inc.id,
            inc.severity.as_str().to_uppercase(),
            inc.rule,
            inc.account
        ),
        1024,
    )
}
