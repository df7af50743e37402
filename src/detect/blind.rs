//! `monitor.blind`: a source that cannot see its account is itself an incident.
//!
//! Sources only report their health (last success, first failure since, whether the platform
//! refused the credentials); this rule judges it, like every other rule, outside the source, and
//! reports a verdict: a finding to record, or an incident the source's recovery resolves. The
//! pipeline applies it (`app`'s blind-spot loop), as it applies every other rule's.
//! A source is blind when the platform refused its token (no retry will fix that) or when it has
//! gone without a successful poll for longer than its grace period. One incident per source; it
//! resolves itself (contained, by tocsin) once the source polls successfully again.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Outcome;
use crate::{
    model::{Evidence, Finding, Rule, Severity, State, dedup_key},
    store::{Store, StoreError},
    watch::SourceHealth,
};

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

/// Whether a source blind since its incident opened at `opened_at` sees again: a successful
/// poll since, and its push stream (if any) connected. What resolves the incident by itself,
/// and what lets one responder resolve it by hand.
pub fn sees_again(h: &SourceHealth, opened_at: DateTime<Utc>) -> bool {
    h.last_success.is_some_and(|t| t > opened_at) && h.stream.as_ref().is_none_or(|s| s.connected)
}

/// The blind-spot rule's verdict on one source.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Blind, and no live incident says so yet: record this finding.
    Blind(Box<Outcome>),
    /// Sees again since its live incident opened: that incident is resolved (contained, by
    /// tocsin).
    Recovered { incident: u64 },
    /// Nothing to change.
    Unchanged,
}

/// Judges one source (`account` is its health entry) against its live `monitor.blind`
/// incident, if any.
pub fn evaluate(
    store: &Store,
    account: &str,
    h: &SourceHealth,
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<Verdict, StoreError> {
    let key = dedup_key(account, Rule::MonitorBlind, OBJECT);
    let latest = store.incident_by_key(&key)?;
    // A responder who resolved this very outage by hand has judged it: do not reopen.
    let judged = |since: &DateTime<Utc>| {
        latest.as_ref().is_some_and(|i| {
            i.state == State::Resolved
                && matches!(&i.evidence, Evidence::Channel { since: s, .. } if s == since)
        })
    };
    let live = latest.clone().filter(|i| i.state != State::Resolved);
    Ok(match (judge(h, grace, now), live) {
        (Some((_, since)), None) if judged(&since) => Verdict::Unchanged,
        (Some((problem, since)), None) => Verdict::Blind(Box::new(Outcome {
            finding: Some(Finding {
                rule: Rule::MonitorBlind,
                severity: Severity::High,
                account: account.to_owned(),
                object: OBJECT.into(),
                evidence: Evidence::Channel {
                    channel: format!("{} source", h.platform),
                    problem,
                    since,
                },
                changed_at: Some(since),
                seen_at: now,
            }),
            writes: vec![],
        })),
        (None, Some(inc)) if sees_again(h, inc.opened_at) => {
            Verdict::Recovered { incident: inc.id }
        }
        _ => Verdict::Unchanged,
    })
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
