//! Mailgun webhooks (`POST /hooks/mailgun`).
//!
//! Mailgun puts its signature in the body: `{"signature": {timestamp, token, signature},
//! "event-data": {…}}`, the signature being hex HMAC-SHA256 of `timestamp` + `token` under the
//! webhook signing key. So the body's JSON is read twice: first only the `signature` object (the
//! event data is skipped unread), then, once the HMAC holds (compared in constant time), the
//! timestamp is within the window, and the token was never seen, the event. The token is
//! remembered in sled in the same commit as the event, for twice the window, so a replay of a
//! captured request is refused even inside the window.

use axum::http::HeaderMap;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Accepted, HookError, Refusal, address, addresses, parse_json};
use crate::{
    config::{Secret, email::MailgunHook},
    model::MailSummary,
    store::mail_inbox::token_key,
};

pub struct Mailgun {
    pub name: String,
    key: Secret,
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
    event_data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    event: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    timestamp: Option<f64>,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    envelope: Option<MgEnvelope>,
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Deserialize)]
struct MgEnvelope {
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    targets: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    headers: Headers,
}

#[derive(Deserialize, Default)]
struct Headers {
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    cc: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(rename = "message-id", default)]
    message_id: Option<String>,
}

/// The hex HMAC-SHA256 Mailgun sends for `timestamp` + `token`.
pub fn sign(key: &str, timestamp: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl Mailgun {
    pub fn new(config: &MailgunHook) -> Result<Mailgun, String> {
        Ok(Mailgun {
            name: config.name.clone(),
            key: config.signing_key.clone(),
            tolerance: chrono::Duration::from_std(config.tolerance).map_err(|e| e.to_string())?,
        })
    }

    pub fn accept(
        &self,
        _headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Accepted, HookError> {
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
        let expected = sign(self.key.expose(), &ts, &signed.token);
        let given = signed.signature.trim().to_ascii_lowercase();
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
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
        let body: Body = parse_json(body)?;
        let e = body.event_data;
        let headers = e.message.map(|m| m.headers).unwrap_or_default();
        let mut visible = headers.to.as_deref().map(addresses).unwrap_or_default();
        visible.extend(headers.cc.as_deref().map(addresses).unwrap_or_default());
        let envelope: Vec<String> = match (&e.envelope, &e.recipient) {
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
        let sender = e
            .envelope
            .as_ref()
            .and_then(|en| en.sender.as_deref())
            .map(address)
            .unwrap_or_else(|| from.clone());
        let message_id = headers
            .message_id
            .or(e.id)
            .unwrap_or_default()
            .trim_matches(['<', '>', ' '])
            .to_owned();
        if e.event.is_empty() {
            return Err(HookError::malformed("event-data.event", "empty"));
        }
        let mail = MailSummary {
            feed: "mailgun".into(),
            message_id,
            sender,
            from,
            subject: headers.subject.unwrap_or_default(),
            visible,
            envelope,
            campaign: e.tags.into_iter().next(),
            sent_at: e
                .timestamp
                .and_then(|t| Utc.timestamp_millis_opt((t * 1000.0) as i64).single()),
            ..MailSummary::default()
        };
        let keep = now + self.tolerance * 2;
        Ok(Accepted {
            mails: vec![mail],
            token: Some((token_key(&self.name, &signed.token), keep.timestamp())),
        })
    }
}
