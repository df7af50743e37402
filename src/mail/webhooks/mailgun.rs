//! Mailgun webhooks (`POST /hooks/mailgun`).
//!
//! Mailgun puts its signature in the body: `{"signature": {timestamp, token, signature},
//! "event-data": {…}}`, the signature being hex HMAC-SHA256 of `timestamp` + `token` under the
//! webhook signing key. That HMAC does not cover the event: whoever sees one signed request (any
//! other consumer of the account-wide key) could post an event of their own under it. So the
//! webhook's URL carries a secret of ours as basic auth (`https://user:password@host/…`),
//! checked in constant time before the body is read. Then the body's JSON is read twice: first
//! only the `signature` object (the event data is skipped unread), then, once the HMAC holds
//! (compared in constant time) and the timestamp is within the window, the event. The event is
//! a [`Delivery`] named by its `event-data.id`; the token is remembered in the same commit, and
//! a different event under a token already used is refused.
//!
//! A shared secret says who may post, not that Mailgun sent it: Mailgun's events never set
//! `origin_proven`, so they never press the kill switch on their own.

use axum::http::HeaderMap;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{
    Accepted, BasicAuth, Delivery, HookError, Refusal, address, addresses, keep_until, parse_json,
};
use crate::{
    config::{Secret, email::MailgunHook},
    model::MailSummary,
    store::mail_inbox::token_key,
};

pub struct Mailgun {
    pub name: String,
    key: Secret,
    auth: BasicAuth,
    tolerance: chrono::Duration,
}

#[derive(Deserialize)]
struct Envelope {
    signature: Option<Signed>,
}

#[derive(Deserialize)]
struct Signed {
    timestamp: StrOrNum,
    token: String,
    signature: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrNum {
    Str(String),
    Num(i64),
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "event-data")]
    event_data: Event,
}

/// One Mailgun event (a webhook's `event-data`, an item of the Events API), as its
/// documentation describes it; what the summary reads and what a responder may want to see.
#[derive(Debug, Deserialize)]
pub struct Event {
    pub event: String,
    #[serde(default)]
    pub id: Option<String>,
    /// Seconds since the epoch, with a fraction.
    #[serde(default)]
    pub timestamp: Option<f64>,
    #[serde(default)]
    pub recipient: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Failures: `permanent` or `temporary`.
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(rename = "delivery-status", default)]
    pub delivery_status: Option<DeliveryStatus>,
    #[serde(default)]
    pub envelope: Option<MgEnvelope>,
    #[serde(default)]
    pub message: Option<Message>,
}

#[derive(Debug, Deserialize)]
pub struct DeliveryStatus {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "retry-seconds", default)]
    pub retry_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct MgEnvelope {
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub targets: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub headers: Headers,
}

#[derive(Debug, Deserialize, Default)]
pub struct Headers {
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub cc: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(rename = "message-id", default)]
    pub message_id: Option<String>,
}

/// The hex HMAC-SHA256 Mailgun sends for `timestamp` + `token`.
pub fn sign(key: &str, timestamp: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` is Mailgun's for `timestamp` + `token` under `key` (constant time).
pub fn verify(key: &str, timestamp: &str, token: &str, signature: &str) -> bool {
    let expected = sign(key, timestamp, token);
    let given = signature.trim().to_ascii_lowercase();
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

impl Event {
    /// Parses an `event-data` object.
    pub fn parse(data: &[u8]) -> Result<Event, HookError> {
        parse_json(data)
    }

    /// The message it is about: its `Message-Id` header, without angle brackets.
    pub fn message_id(&self) -> Option<String> {
        let headers = self.message.as_ref().map(|m| &m.headers)?;
        headers
            .message_id
            .as_deref()
            .map(|id| id.trim_matches(['<', '>', ' ']).to_owned())
    }

    /// The event's own name: `id`, else what identifies it without one (the message, the
    /// event, the recipient and the time; older events carry no id).
    pub fn key(&self) -> String {
        match &self.id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => format!(
                "{}\0{}\0{}\0{}",
                self.message_id().unwrap_or_default(),
                self.event,
                self.recipient.as_deref().unwrap_or_default(),
                self.timestamp.unwrap_or_default()
            ),
        }
    }

    /// The summary the email rules judge. Not `origin_proven`: see the module's comment.
    pub fn summary(self) -> MailSummary {
        let message_id = self.message_id();
        let headers = self.message.map(|m| m.headers).unwrap_or_default();
        let mut visible = headers.to.as_deref().map(addresses).unwrap_or_default();
        visible.extend(headers.cc.as_deref().map(addresses).unwrap_or_default());
        let envelope: Vec<String> = match (&self.envelope, &self.recipient) {
            (
                Some(MgEnvelope {
                    targets: Some(t), ..
                }),
                _,
            ) => addresses(t),
            (_, Some(r)) => vec![r.trim().to_lowercase()],
            _ => Vec::new(),
        };
        let from = headers.from.as_deref().map(address).unwrap_or_default();
        let sender = self
            .envelope
            .as_ref()
            .and_then(|en| en.sender.as_deref())
            .map(address)
            .unwrap_or_else(|| from.clone());
        MailSummary {
            feed: "mailgun".into(),
            message_id: message_id.or(self.id).unwrap_or_default(),
            sender,
            from,
            subject: headers.subject.unwrap_or_default(),
            visible,
            envelope,
            campaign: self.tags.into_iter().next(),
            sent_at: self
                .timestamp
                .and_then(|t| Utc.timestamp_millis_opt((t * 1000.0) as i64).single()),
            origin_proven: false,
            ..MailSummary::default()
        }
    }
}

impl Mailgun {
    pub fn new(config: &MailgunHook) -> Result<Mailgun, String> {
        Ok(Mailgun {
            name: config.name.clone(),
            key: config.signing_key.clone(),
            auth: BasicAuth::new(&config.username, &config.password),
            tolerance: chrono::Duration::from_std(config.tolerance).map_err(|e| e.to_string())?,
        })
    }

    /// What can be checked before the body is read: the URL's credentials.
    pub fn precheck(&self, headers: &HeaderMap) -> Result<(), HookError> {
        self.auth.check(headers)
    }

    /// Checks the URL's credentials, then the signature, then parses, as of `now`.
    pub fn accept(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Accepted, HookError> {
        self.precheck(headers)?;
        // Only the signature object: a body that is not even JSON has no signature to check.
        let envelope: Envelope = serde_json::from_slice(body)
            .map_err(|_| HookError::refused(Refusal::Missing, "no signature object in the body"))?;
        let Some(signed) = envelope.signature else {
            return Err(HookError::refused(Refusal::Missing, "no signature object"));
        };
        let ts = match &signed.timestamp {
            StrOrNum::Str(s) => s.clone(),
            StrOrNum::Num(n) => n.to_string(),
        };
        if !verify(self.key.expose(), &ts, &signed.token, &signed.signature) {
            return Err(HookError::refused(
                Refusal::BadSignature,
                "the signature does not match the signing key",
            ));
        }
        let at = ts
            .parse::<i64>()
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single())
            .ok_or_else(|| {
                HookError::refused(Refusal::BadSignature, "the timestamp is not unix seconds")
            })?;
        if (now - at).abs() > self.tolerance {
            return Err(HookError::refused(
                Refusal::Stale,
                format!("signed at {at}, outside the tolerance"),
            ));
        }
        let event = parse_json::<Body>(body)?.event_data;
        if event.event.is_empty() {
            return Err(HookError::malformed("event-data.event", "empty"));
        }
        let window = self.tolerance * 2;
        Ok(Accepted {
            deliveries: vec![Delivery {
                key: event.key(),
                mail: event.summary(),
                keep_until: keep_until(now, None, window),
            }],
            token: Some((
                token_key(&self.name, &signed.token),
                (now + window).timestamp(),
            )),
        })
    }
}
