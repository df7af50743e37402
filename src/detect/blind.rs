//! `monitor.blind`: a source that cannot see its account is itself an incident.
//!
//! Sources only report their health (last success, first failure since, whether the platform
//! refused the credentials); this watcher judges it, like every other rule, outside the source.
//! A source is blind when the platform refused its token (no retry will fix that) or when it has
//! gone without a successful poll for longer than its grace period. One incident per source; it
//! resolves itself (contained, by tocsin) once the source polls successfully again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::Outcome;
use crate::incidents::Incidents;
use crate::model::{Actor, Resolution, State, dedup_key};
use crate::model::{Evidence, Finding, Rule, Severity};
use crate::sources::{Health, SourceHealth};

/// How often health is judged: well under any grace period.
const CHECK_EVERY: Duration = Duration::from_millis(250);
const OBJECT: &str = "source";

/// Why the source is blind and since when, or None while it sees.
pub fn judge(
    h: &SourceHealth,
    grace: Duration,
    now: DateTime<Utc>,
) -> Option<(String, DateTime<Utc>)> {
    let error = || {
        h.last_error
            .as_ref()
            .map_or_else(|| "no successful poll".to_owned(), |(_, e)| e.clone())
    };
    if h.refused {
        return Some((error(), h.failing_since.unwrap_or(now)));
    }
    // A push stream down past the grace: the poller may still see, but only a poll late.
    if let Some(stream) = &h.stream
        && let Some(since) = stream.down_since
    {
        let down_for = (now - since).to_std().unwrap_or_default();
        if down_for > grace {
            let why = stream.last_error.as_deref().unwrap_or("not connected");
            return Some((
                format!("push stream down: {why} for {}s", down_for.as_secs()),
                since,
            ));
        }
    }
    let since = match (h.failing_since, h.last_success) {
        (Some(f), _) => f,
        (None, None) => h.watching_since?,
        (None, Some(_)) => return None,
    };
    let blind_for = (now - since).to_std().unwrap_or_default();
    (blind_for > grace).then(|| (format!("{} for {}s", error(), blind_for.as_secs()), since))
}

/// Judges every source until shutdown.
pub async fn run(
    incidents: Incidents,
    health: Health,
    sources: Vec<(String, Duration)>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let snapshot = health.snapshot();
        let now = Utc::now();
        for (account, grace) in &sources {
            let Some(h) = snapshot.get(account) else {
                continue;
            };
            let key = dedup_key(account, Rule::MonitorBlind, OBJECT);
            let latest = match incidents.store().incident_by_key(&key) {
                Ok(inc) => inc,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the monitor.blind incident");
                    continue;
                }
            };
            // A responder who resolved this very outage by hand has judged it: do not reopen.
            let judged = |since: &DateTime<Utc>| {
                latest.as_ref().is_some_and(|i| {
                    i.state == State::Resolved
                        && matches!(&i.evidence, Evidence::Channel { since: s, .. } if s == since)
                })
            };
            let live = latest.clone().filter(|i| i.state != State::Resolved);
            match (judge(h, *grace, now), live) {
                (Some((_, since)), None) if judged(&since) => {}
                (Some((problem, since)), None) => {
                    let finding = Finding {
                        rule: Rule::MonitorBlind,
                        severity: Severity::High,
                        account: account.clone(),
                        object: OBJECT.into(),
                        evidence: Evidence::Channel {
                            channel: format!("{} source", h.platform),
                            problem,
                            since,
                        },
                        changed_at: Some(since),
                        seen_at: now,
                    };
                    match incidents
                        .record(&Outcome {
                            finding: Some(finding),
                            writes: vec![],
                        })
                        .await
                    {
                        Ok(recorded) => tracing::warn!(account, ?recorded, "source is blind"),
                        Err(e) => {
                            tracing::error!(account, error = %e, "cannot record a blind source")
                        }
                    }
                }
                (None, Some(inc))
                    if h.last_success.is_some_and(|t| t > inc.opened_at)
                        && h.stream.as_ref().is_none_or(|s| s.connected) =>
                {
                    match incidents
                        .resolve(inc.id, &Actor::system(), Resolution::Contained)
                        .await
                    {
                        Ok(_) => tracing::info!(
                            account,
                            incident = inc.id,
                            "source sees again; resolved"
                        ),
                        Err(e) => {
                            tracing::error!(account, error = %e, "cannot resolve monitor.blind")
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> SourceHealth {
        SourceHealth {
            platform: "mastodon".into(),
            watching_since: Some(Utc::now()),
            ..Default::default()
        }
    }

    #[test]
    fn refused_token_is_blind_at_once_failures_after_the_grace() {
        let grace = Duration::from_secs(30);
        let now = Utc::now();
        let mut h = health();
        assert_eq!(judge(&h, grace, now), None, "just started");
        assert!(
            judge(&h, grace, now + chrono::Duration::seconds(31)).is_some(),
            "never succeeded"
        );

        h.last_success = Some(now);
        assert_eq!(
            judge(&h, grace, now + chrono::Duration::hours(1)),
            None,
            "quiet, not failing"
        );
        h.failing_since = Some(now);
        h.last_error = Some((now, "the platform answered 502".into()));
        assert_eq!(
            judge(&h, grace, now + chrono::Duration::seconds(10)),
            None,
            "within grace"
        );
        let (problem, since) = judge(&h, grace, now + chrono::Duration::seconds(40)).unwrap();
        assert_eq!(problem, "the platform answered 502 for 40s");
        assert_eq!(since, now);

        h.refused = true;
        assert!(
            judge(&h, grace, now).is_some(),
            "a refused token does not wait for the grace"
        );
    }
}
