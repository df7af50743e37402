//! SendGrid's signed Event Webhook (`POST /hooks/sendgrid`).
//!
//! SendGrid signs `X-Twilio-Email-Event-Webhook-Timestamp` followed by the raw body with ECDSA
//! P-256 / SHA-256 and sends the DER signature, base64, in
//! `X-Twilio-Email-Event-Webhook-Signature`; the verification key is shown in its settings as the
//! base64 of the DER SubjectPublicKeyInfo. A request without both headers is refused before its
//! body is read. The body is a JSON array of events, several per message; each is a
//! [`Delivery`] named by its `sg_event_id`, and the inbox folds the new events of one message
//! (same `smtp-id`) into one summary whose envelope is every address a `processed` or
//! `delivered` event names. SendGrid's events carry no headers, so `visible` stays empty: this
//! feed sees volume and campaigns, not exposure.

use axum::http::HeaderMap;
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, TimeZone, Utc};
use p256::{
    ecdsa::{Signature, VerifyingKey, signature::Verifier},
    pkcs8::DecodePublicKey,
};
use serde::Deserialize;

use super::{Accepted, Delivery, HookError, Refusal, header, keep_until, parse_json};
use crate::{config::email::SendGridHook, model::MailSummary};

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// Reads the verification key as SendGrid shows it (base64 DER SubjectPublicKeyInfo; PEM
/// armour tolerated).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let der = STANDARD
        .decode(body.trim())
        .map_err(|e| format!("not base64 ({e})"))?;
    VerifyingKey::from_public_key_der(&der).map_err(|e| format!("not a DER P-256 public key ({e})"))
}

pub struct SendGrid {
    pub name: String,
    key: VerifyingKey,
    tolerance: chrono::Duration,
}

/// One event of a SendGrid batch, as the Event Webhook reference describes it; what the summary
/// reads and what a responder may want to see.
#[derive(Debug, Deserialize)]
pub struct Event {
    pub event: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(rename = "smtp-id", default)]
    pub smtp_id: Option<String>,
    #[serde(default)]
    pub sg_event_id: Option<String>,
    #[serde(default)]
    pub sg_message_id: Option<String>,
    #[serde(default)]
    pub category: Option<Category>,
    /// Bounces, blocks and drops: why.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// Deliveries and deferrals: the receiving server's answer.
    #[serde(default)]
    pub response: Option<String>,
    /// Deferrals: the attempt number (the reference shows it as a string).
    #[serde(default)]
    pub attempt: Option<StrOrNum>,
    /// Bounces: `bounce` or `blocked`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub useragent: Option<String>,
}

#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum Category {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(untagged)]
pub enum StrOrNum {
    Str(String),
    Num(serde_json::Number),
}

impl StrOrNum {
    pub fn as_string(&self) -> String {
        match self {
            StrOrNum::Str(s) => s.clone(),
            StrOrNum::Num(n) => n.to_string(),
        }
    }
}

/// Parses a batch (a JSON array of events); the error names the event and field at fault.
pub fn parse_events(body: &[u8]) -> Result<Vec<Event>, HookError> {
    parse_json(body)
}

impl Event {
    /// The message the event is about: `smtp-id`, else the part of `sg_message_id` before its
    /// first dot (`<id>.filter…`).
    pub fn message(&self) -> String {
        self.smtp_id
            .clone()
            .or_else(|| {
                self.sg_message_id
                    .as_deref()
                    .map(|s| s.split('.').next().unwrap_or(s).to_owned())
            })
            .unwrap_or_default()
    }

    /// The event's own name: `sg_event_id`, else what identifies it without one (the message,
    /// the event, the address and the time), so that a copy is still known for one.
    pub fn key(&self) -> String {
        match &self.sg_event_id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => format!(
                "{}\0{}\0{}\0{}",
                self.message(),
                self.event,
                self.email.as_deref().unwrap_or_default(),
                self.timestamp.unwrap_or_default()
            ),
        }
    }

    /// This event's part of its message's summary: the address, for a `processed` or
    /// `delivered` event. Signed by SendGrid: its origin is proven.
    pub fn summary(self) -> MailSummary {
        let id = self.message();
        let envelope = match (self.event.as_str(), &self.email) {
            ("processed" | "delivered", Some(email)) => {
                let email = email.trim().to_lowercase();
                if email.is_empty() {
                    vec![]
                } else {
                    vec![email]
                }
            }
            _ => Vec::new(),
        };
        MailSummary {
            feed: "sendgrid".into(),
            message_id: id.trim_matches(['<', '>']).to_owned(),
            envelope,
            campaign: match self.category {
                Some(Category::One(c)) => Some(c),
                Some(Category::Many(c)) => c.into_iter().next(),
                None => None,
            },
            sent_at: self
                .timestamp
                .and_then(|t| Utc.timestamp_opt(t, 0).single()),
            origin_proven: true,
            ..Default::default()
        }
    }
}

impl SendGrid {
    pub fn new(config: &SendGridHook) -> Result<SendGrid, String> {
        Ok(SendGrid {
            name: config.name.clone(),
            key: parse_public_key(config.public_key.expose())?,
            tolerance: chrono::Duration::from_std(config.tolerance).map_err(|e| e.to_string())?,
        })
    }

    /// What can be checked before the body is read: both signature headers are there.
    pub fn precheck<'h>(&self, headers: &'h HeaderMap) -> Result<(&'h str, &'h str), HookError> {
        let (Some(sig), Some(ts)) = (
            header(headers, SIGNATURE_HEADER),
            header(headers, TIMESTAMP_HEADER),
        ) else {
            return Err(HookError::refused(
                Refusal::Missing,
                "the signature or timestamp header is missing",
            ));
        };
        Ok((sig, ts))
    }

    /// Verifies the signature over `timestamp` + `body` with the configured key; the signed
    /// timestamp.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<DateTime<Utc>, HookError> {
        let (sig, ts) = self.precheck(headers)?;
        let bad = |what: &str| HookError::refused(Refusal::BadSignature, what.to_owned());
        let sig = STANDARD
            .decode(sig)
            .map_err(|_| bad("the signature is not base64"))?;
        let sig = Signature::from_der(&sig).map_err(|_| bad("the signature is not DER ECDSA"))?;
        let mut signed = Vec::with_capacity(ts.len() + body.len());
        signed.extend_from_slice(ts.as_bytes());
        signed.extend_from_slice(body);
        self.key
            .verify(&signed, &sig)
            .map_err(|_| bad("the signature does not verify with the configured key"))?;
        ts.parse::<i64>()
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single())
            .ok_or_else(|| bad("the timestamp is not unix seconds"))
    }

    /// Verifies, then parses, as of `now`. Nothing in the body is read before the signature
    /// holds.
    pub fn accept(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Accepted, HookError> {
        let at = self.verify(headers, body)?;
        // Signed, so the timestamp is SendGrid's: now check it is recent.
        if (now - at).abs() > self.tolerance {
            return Err(HookError::refused(
                Refusal::Stale,
                format!("signed at {at}, outside the tolerance"),
            ));
        }
        let until = keep_until(now, None, self.tolerance * 2);
        let deliveries = parse_events(body)?
            .into_iter()
            .map(|e| Delivery {
                key: e.key(),
                mail: e.summary(),
                keep_until: until,
            })
            .collect();
        Ok(Accepted {
            deliveries,
            token: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::webhooks::fold;

    #[test]
    fn events_are_named_and_folded_by_message() {
        let events = parse_events(
            br#"[
            {"email":"A@x.org","timestamp":10,"smtp-id":"<m1@sg>","event":"processed","category":["spring","x"],"sg_event_id":"e1"},
            {"email":"b@y.org","timestamp":12,"smtp-id":"<m1@sg>","event":"delivered","sg_event_id":"e2"},
            {"email":"a@x.org","timestamp":11,"smtp-id":"<m1@sg>","event":"delivered","sg_event_id":"e3"},
            {"email":"c@z.org","timestamp":9,"smtp-id":"<m2@sg>","event":"open","category":"solo"}
        ]"#,
        )
        .unwrap();
        let keys: Vec<String> = events.iter().map(Event::key).collect();
        assert_eq!(keys[..3], ["e1", "e2", "e3"]);
        assert_eq!(
            keys[3], "<m2@sg>\0open\0c@z.org\09",
            "no sg_event_id: what names it"
        );
        let s = fold(events.into_iter().map(Event::summary));
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].message_id, "m1@sg");
        assert_eq!(s[0].envelope, vec!["a@x.org", "b@y.org"]);
        assert_eq!(s[0].campaign.as_deref(), Some("spring"));
        assert_eq!(s[0].sent_at.unwrap().timestamp(), 10);
        assert!(s[1].envelope.is_empty(), "an open delivers nothing");
        assert_eq!(s[1].campaign.as_deref(), Some("solo"));
    }
}
