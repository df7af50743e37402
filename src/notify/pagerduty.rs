//! PagerDuty Events API v2: the incident as an alert that follows it through its states.
//!
//! `dedup_key` is `tocsin-<incident id>`, so PagerDuty folds every event about one incident
//! into one alert, and the event action follows the incident's state (open → trigger,
//! acked → acknowledge, resolved → resolve): whoever acts in the chat also quiets the phone.
//! Like the Telegram page, the event is derived from the incident as it is at send time, and
//! what was last sent is kept per channel in the `cursors` tree, so a queue of changes
//! collapses into the events PagerDuty still needs, in order (an incident acked before its
//! trigger went out is triggered, then acknowledged).
//!
//! Answers: 202 accepted; 400 an invalid event, never retried; 429 and 5xx retried with
//! backoff; other 4xx (a wrong `api_url`) refused.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ChannelError, heads::Publication, incident_document, summary_line};
use crate::{
    config::{PagerDutyChannel, Secret},
    model::{Incident, Severity, State},
    store::Store,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    Trigger,
    Acknowledge,
    Resolve,
}

impl EventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Trigger => "trigger",
            EventAction::Acknowledge => "acknowledge",
            EventAction::Resolve => "resolve",
        }
    }

    fn parse(s: &str) -> Option<EventAction> {
        match s {
            "trigger" => Some(EventAction::Trigger),
            "acknowledge" => Some(EventAction::Acknowledge),
            "resolve" => Some(EventAction::Resolve),
            _ => None,
        }
    }
}

/// The events still owed to PagerDuty, given what was last sent (`"<action> <evidence digest>"`).
pub fn plan(last: Option<&str>, inc: &Incident) -> Vec<EventAction> {
    use EventAction::*;
    let (action, digest) = match last.and_then(|l| l.split_once(' ')) {
        Some((a, d)) => (EventAction::parse(a), d),
        None => (None, ""),
    };
    match (inc.state, action) {
        // New evidence on an open incident updates the alert.
        (State::Open, None) => vec![Trigger],
        (State::Open, Some(Trigger)) if digest != inc.evidence_digest => vec![Trigger],
        (State::Open, _) => vec![],
        (State::Acked, None) => vec![Trigger, Acknowledge],
        (State::Acked, Some(Trigger)) => vec![Acknowledge],
        (State::Acked, _) => vec![],
        // Resolved before PagerDuty heard of it: nothing to wake anyone for.
        (State::Resolved, None | Some(Resolve)) => vec![],
        (State::Resolved, _) => vec![Resolve],
    }
}

/// PagerDuty's four severities; ours map onto them from the top.
pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "info",
    }
}

pub fn dedup_key(inc: &Incident) -> String {
    format!("tocsin-{}", inc.id)
}

pub struct PagerDuty {
    channel: String,
    routing_key: Secret,
    endpoint: url::Url,
    /// The Change Events endpoint (`/v2/change/enqueue`): what the chain heads are published
    /// to, informational and never paging anyone.
    change_endpoint: url::Url,
    http: reqwest::Client,
}

impl PagerDuty {
    pub fn new(config: &PagerDutyChannel, http: reqwest::Client) -> PagerDuty {
        let at = |path: &str| {
            let mut url = config.api_url.clone();
            url.set_path(&format!(
                "{}{path}",
                config.api_url.path().trim_end_matches('/')
            ));
            url
        };
        PagerDuty {
            channel: format!("pagerduty:{}", config.name),
            routing_key: config.routing_key.clone(),
            endpoint: at("/v2/enqueue"),
            change_endpoint: at("/v2/change/enqueue"),
            http,
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub async fn deliver(&self, inc: &Incident, store: &Store) -> Result<(), ChannelError> {
        let cursor = format!("{}/incident/{}", self.channel, inc.id);
        let last = store.cursor(&cursor)?;
        for action in plan(last.as_deref(), inc) {
            self.send(action, inc).await?;
            // After each accepted event, so a failure half-way resumes where it stopped.
            store.set_cursor(
                &cursor,
                &format!("{} {}", action.as_str(), inc.evidence_digest),
            )?;
        }
        Ok(())
    }

    pub fn event(&self, action: EventAction, inc: &Incident) -> Value {
        let mut event = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": action.as_str(),
            "dedup_key": dedup_key(inc),
        });
        if action == EventAction::Trigger {
            event["client"] = json!("tocsin");
            event["payload"] = json!({
                "summary": summary_line(inc),
                "source": format!("tocsin/{}", inc.account),
                "severity": severity(inc.severity),
                "timestamp": inc.opened_at.to_rfc3339(),
                "component": inc.account,
                "class": inc.rule,
                "custom_details": incident_document(inc),
            });
        }
        event
    }

    /// The chain heads as a change event: on the service's timeline, paging nobody.
    pub async fn publish_heads(&self, p: &Publication) -> Result<(), ChannelError> {
        let event = json!({
            "routing_key": self.routing_key.expose(),
            "payload": {
                "summary": crate::model::cut(&p.summary(), 1024),
                "source": "tocsin",
                "timestamp": p.at.to_rfc3339(),
                "custom_details": p.document(),
            },
        });
        self.post(&self.change_endpoint, &event, "change").await
    }

    async fn send(&self, action: EventAction, inc: &Incident) -> Result<(), ChannelError> {
        self.post(&self.endpoint, &self.event(action, inc), action.as_str())
            .await
    }

    async fn post(&self, url: &url::Url, event: &Value, what: &str) -> Result<(), ChannelError> {
        let resp = self
            .http
            .post(url.clone())
            .json(event)
            .send()
            .await
            .map_err(|e| ChannelError::Retry {
                reason: format!("pagerduty unreachable: {}", e.without_url()),
                after: None,
            })?;
        let status = resp.status();
        let after = retry_after(&resp);
        if status.is_success() {
            return Ok(());
        }
        // PagerDuty's error bodies name the invalid fields; they hold no secret.
        let body = resp.text().await.unwrap_or_default();
        let body = crate::model::cut(&body, 300);
        match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
                Err(ChannelError::Retry {
                    reason: format!("pagerduty answered {status}"),
                    after,
                })
            }
            s if s.is_server_error() => Err(ChannelError::Retry {
                reason: format!("pagerduty answered {status}"),
                after,
            }),
            _ => Err(ChannelError::Rejected(format!(
                "pagerduty refused the {what} event ({status}): {body}"
            ))),
        }
    }
}

/// A `Retry-After` in seconds, if the server sent one.
pub fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Evidence, Rule};
    use EventAction::*;

    fn incident(state: State) -> Incident {
        let evidence = Evidence::Post {
            post_id: "1".into(),
            url: None,
            text: "send 1 BTC".into(),
            links: vec![],
            media: 0,
            client: None,
            fingerprint: "fp".into(),
        };
        Incident {
            state,
            evidence_digest: "d1".into(),
            ..Incident::opened(
                7,
                Rule::UnapprovedPost,
                Severity::Critical,
                "main",
                "1",
                evidence,
            )
        }
    }

    #[test]
    fn plan_sends_what_pagerduty_has_not_seen_yet() {
        let open = incident(State::Open);
        assert_eq!(plan(None, &open), vec![Trigger]);
        assert_eq!(plan(Some("trigger d1"), &open), vec![]);
        assert_eq!(plan(Some("trigger d0"), &open), vec![Trigger]);
        let acked = incident(State::Acked);
        assert_eq!(plan(None, &acked), vec![Trigger, Acknowledge]);
        assert_eq!(plan(Some("trigger d1"), &acked), vec![Acknowledge]);
        assert_eq!(plan(Some("acknowledge d1"), &acked), vec![]);
        let resolved = incident(State::Resolved);
        assert_eq!(plan(None, &resolved), vec![]);
        assert_eq!(plan(Some("acknowledge d1"), &resolved), vec![Resolve]);
        assert_eq!(plan(Some("resolve d1"), &resolved), vec![]);
    }

    /// The events' shape is judged by the PagerDuty fake's validation in the integration tests
    /// (`pagerduty_follows_the_incident_from_trigger_to_resolve`).
    #[test]
    fn events_go_to_the_enqueue_endpoint_under_the_incident_s_dedup_key() {
        let config = PagerDutyChannel {
            name: "ops".into(),
            routing_key: Secret::new("0123456789abcdef0123456789abcdef"),
            api_url: url::Url::parse("https://events.pagerduty.com").unwrap(),
            severities: None,
        };
        let pd = PagerDuty::new(&config, reqwest::Client::new());
        assert_eq!(
            pd.endpoint.as_str(),
            "https://events.pagerduty.com/v2/enqueue"
        );
        for action in [Trigger, Acknowledge, Resolve] {
            let event = pd.event(action, &incident(State::Open));
            assert_eq!(event["dedup_key"], "tocsin-7");
        }
    }
}
