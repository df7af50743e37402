//! The loops that carry findings into incidents: observations from the watchers through
//! detect (in two lanes, see [`super::lanes`]), the blind-spot rule over the watchers' health,
//! and pages that mutes held back.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Email,
    detect::{
        self,
        blind::{self, Verdict},
    },
    incidents::{Incidents, Recorded},
    metrics::Metrics,
    model::{Actor, Observation, ObservationKind, Resolution},
    watch::Health,
};

use super::lanes::{Lane, MAIL_BURST, MAIL_SHARE, MailBudget, PATIENCE, Priority};

/// What both lanes judge with: detect, then incidents, on the shared store.
#[derive(Clone)]
pub(super) struct Judge {
    pub(super) incidents: Incidents,
    pub(super) email_rules: Arc<Email>,
    pub(super) metrics: Arc<Metrics>,
}

impl Judge {
    /// Sources → detect → incidents for one observation; a checkpoint is persisted, since
    /// everything its source sent before it (in the same lane) has been committed.
    async fn observe(&self, lane: Lane, obs: Observation) {
        let store = self.incidents.store();
        let kind = match &obs.kind {
            ObservationKind::Post(_) => "post",
            ObservationKind::Profile(_) => "profile",
            ObservationKind::PostDeleted { .. } => "post_deleted",
            ObservationKind::Admins(_) => "admins",
            ObservationKind::Mail(_) => "mail",
            ObservationKind::Audit(_) => "audit",
            ObservationKind::Checkpoint { .. } => "checkpoint",
        };
        self.metrics.observation(&obs.account, kind);
        if let ObservationKind::Checkpoint { cursor, value } = &obs.kind {
            // A source's first cursor (Mastodon's origin: "everything up to here is history")
            // is made durable at once. Left to sled's periodic flush, a crash right after the
            // first poll would make the restart's first poll again, and posts published in
            // between would be taken for history and never paged.
            let first = matches!(store.cursor(cursor), Ok(None));
            let persisted = store.set_cursor(cursor, value);
            let persisted = match persisted {
                Ok(()) if first => store.flush().await,
                other => other,
            };
            match persisted {
                Ok(()) if first => tracing::debug!(cursor, "a source's first cursor made durable"),
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(error = %e, cursor, lane = lane.as_str(), "cannot persist a source cursor")
                }
            }
            self.metrics.health().judged(&obs.account);
            return;
        }
        let result = match detect::evaluate(store, &self.email_rules, &obs) {
            Ok(outcome) => {
                if let Some(f) = &outcome.finding {
                    self.metrics.finding(f.rule.as_str());
                }
                self.incidents.record(&outcome).await
            }
            Err(e) => Err(e),
        };
        let span = match result {
            Ok(Recorded::Opened(id) | Recorded::Updated(id)) => tracing::info_span!("incident", id),
            _ => tracing::Span::none(),
        };
        span.in_scope(|| match result {
            Ok(Recorded::Opened(id)) => {
                tracing::info!(account = %obs.account, incident = id, "incident opened")
            }
            Ok(Recorded::Updated(id)) => {
                tracing::info!(account = %obs.account, incident = id, "incident updated")
            }
            Ok(_) => {}
            // Not marking the post seen means the next poll judges it again: retried, not lost.
            Err(e) => {
                tracing::error!(account = %obs.account, lane = lane.as_str(), error = %e, "cannot record an observation")
            }
        });
        // Committed (or failed, judged again on the next poll): a poll is judged once all of
        // the observations it sent are.
        self.metrics.health().judged(&obs.account);
    }
}

/// The social lane: posts, profiles and admin lists, one observation at a time so that an
/// account's observations are judged in the order they were seen. It holds a [`Priority`]
/// claim from the moment it has work until its channel is empty.
pub(super) async fn social(
    mut rx: mpsc::Receiver<Observation>,
    judge: Judge,
    priority: Arc<Priority>,
) {
    while let Some(obs) = rx.recv().await {
        let _claim = priority.claim();
        judge.observe(Lane::Social, obs).await;
        while let Ok(obs) = rx.try_recv() {
            judge.observe(Lane::Social, obs).await;
        }
    }
}

/// The mail lane: the journal, the webhooks and the audit feeds, in order. Before each
/// observation it lets the social lane go first and waits for its [`MailBudget`].
pub(super) async fn mail(
    mut rx: mpsc::Receiver<Observation>,
    judge: Judge,
    priority: Arc<Priority>,
) {
    let mut budget = MailBudget::new(MAIL_SHARE, MAIL_BURST, Instant::now());
    while let Some(obs) = rx.recv().await {
        priority.idle(PATIENCE).await;
        let wait = budget.wait(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            // The social lane may have had work meanwhile.
            priority.idle(PATIENCE).await;
        }
        let started = Instant::now();
        judge.observe(Lane::Mail, obs).await;
        let now = Instant::now();
        budget.spend(now - started, now);
    }
}

/// How often held pages are checked against their mutes. A mute ends by the clock, not by an
/// event, so something has to look; a scan of an index that is empty unless a mute held a page.
const RELEASE_CHECK: Duration = Duration::from_millis(500);

/// Sends the pages that mutes held back once the mutes have expired.
pub(super) async fn release_held(incidents: Incidents, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RELEASE_CHECK) => {}
        }
        match incidents.release_held().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pages = n, "mute ended; held pages queued"),
            Err(e) => tracing::error!(error = %e, "cannot release held pages"),
        }
    }
}

/// How often sources' health is judged: well under any grace period.
const BLIND_CHECK: Duration = Duration::from_millis(250);

/// Applies the blind-spot rule to every source until shutdown: opens `monitor.blind` for a
/// source that cannot see its account, resolves it once the source sees again. A blind spot is
/// social-lane work: the mail lane waits while one is recorded.
pub(super) async fn watch_blind(
    incidents: Incidents,
    health: Health,
    sources: Vec<(String, Duration)>,
    priority: Arc<Priority>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(BLIND_CHECK) => {}
        }
        let snapshot = health.snapshot();
        let now = Utc::now();
        for (account, grace) in &sources {
            let Some(h) = snapshot.get(account) else {
                continue;
            };
            let verdict = blind::evaluate(incidents.store(), account, h, *grace, now);
            let _claim = matches!(verdict, Ok(Verdict::Blind(_) | Verdict::Recovered { .. }))
                .then(|| priority.claim());
            match verdict {
                Err(e) => tracing::error!(error = %e, "cannot read the monitor.blind incident"),
                Ok(Verdict::Blind(outcome)) => match incidents.record(&outcome).await {
                    Ok(recorded) => tracing::warn!(account, ?recorded, "source is blind"),
                    Err(e) => {
                        tracing::error!(account, error = %e, "cannot record a blind source")
                    }
                },
                Ok(Verdict::Recovered { incident }) => match incidents
                    .resolve(incident, &Actor::system(), Resolution::Contained)
                    .await
                {
                    Ok(_) => tracing::info!(account, incident, "source sees again; resolved"),
                    Err(e) => {
                        tracing::error!(account, error = %e, "cannot resolve monitor.blind")
                    }
                },
                Ok(Verdict::Unchanged) => {}
            }
        }
    }
}
