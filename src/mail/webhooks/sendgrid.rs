//! SendGrid's signed Event Webhook (`POST /hooks/sendgrid`).
//!
//! SendGrid signs `X-Twilio-Email-Event-Webhook-Timestamp` followed by the raw body with ECDSA
//! P-256 / SHA-256 and sends the DER signature, base64, in
//! `X-Twilio-Email-Event-Webhook-Signature`; the verification key is shown in its settings as the
//! base64 of the DER SubjectPublicKeyInfo. The body is a JSON array of events, several per
//! message; events of one message (same `smtp-id`) become one [`MailSummary`] whose envelope is
//! every address a `processed` or `delivered` event names. SendGrid's events carry no headers, so
//! `visible` stays empty: this feed sees volume and campaigns, not exposure.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, TimeZone, Utc};
use p256::{
    ecdsa::{Signature, VerifyingKey, signature::Verifier},
    pkcs8::DecodePublicKey,
};
use serde::Deserialize;

use super::{Accepted, HookError, Refusal, parse_json};
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

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(rename = "smtp-id", default)]
    smtp_id: Option<String>,
    #[serde(default)]
    sg_message_id: Option<String>,
    event: String,
    #[serde(default)]
    category: Option<Category>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Category {
    One(String),
    Many(Vec<String>),
}

impl SendGrid {
    pub fn new(config: &SendGridHook) -> Result<SendGrid, String> {
        Ok(SendGrid {
            name: config.name.clone(),
            key: parse_public_key(config.public_key.expose())?,
            tolerance: chrono::Duration::from_std(config.tolerance).map_err(|e| e.to_string())?,
        })
    }

    /// Verifies, then parses. Nothing in the body is read before the signature holds.
    pub fn accept(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Accepted, HookError> {
        let header = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let (Some(sig), Some(ts)) = (header(SIGNATURE_HEADER), header(TIMESTAMP_HEADER)) else {
            return Err(HookError::refused(
                Refusal::Missing,
                "the signature or timestamp header is missing",
            ));
        };
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
        // Signed, so the timestamp is SendGrid's: now check it is recent.
        let at = ts
            .parse::<i64>()
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single())
            .ok_or_else(|| bad("the timestamp is not unix seconds"))?;
        if (now - at).abs() > self.tolerance {
            return Err(HookError::refused(
                Refusal::Stale,
                format!("signed at {at}, outside the tolerance"),
            ));
        }
        let events: Vec<Event> = parse_json(body)?;
        Ok(Accepted {
            mails: summarize(events),
            token: None,
        })
    }
}

/// One summary per message, in the order messages first appear.
fn summarize(events: Vec<Event>) -> Vec<MailSummary> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, MailSummary> = BTreeMap::new();
    for e in events {
        let id = e
            .smtp_id
            .clone()
            .or_else(|| {
                // sg_message_id is "<id>.filter…"; the part before the first dot names the message.
                e.sg_message_id
                    .as_deref()
                    .map(|s| s.split('.').next().unwrap_or(s).to_owned())
            })
            .unwrap_or_default();
        let summary = by_id.entry(id.clone()).or_insert_with(|| {
            order.push(id.clone());
            MailSummary {
                feed: "sendgrid".into(),
                message_id: id.trim_matches(['<', '>']).to_owned(),
                ..Default::default()
            }
        });
        if matches!(e.event.as_str(), "processed" | "delivered")
            && let Some(email) = e.email
        {
            let email = email.trim().to_lowercase();
            if !email.is_empty() && !summary.envelope.contains(&email) {
                summary.envelope.push(email);
            }
        }
        if summary.campaign.is_none() {
            summary.campaign = match e.category {
                Some(Category::One(c)) => Some(c),
                Some(Category::Many(c)) => c.into_iter().next(),
                None => None,
            };
        }
        if let Some(at) = e.timestamp.and_then(|t| Utc.timestamp_opt(t, 0).single()) {
            summary.sent_at = Some(summary.sent_at.map_or(at, |s| s.min(at)));
        }
    }
    order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_events_by_message() {
        let events: Vec<Event> = serde_json::from_str(
            r#"[
            {"email":"A@x.org","timestamp":10,"smtp-id":"<m1@sg>","event":"processed","category":["spring","x"]},
            {"email":"b@y.org","timestamp":12,"smtp-id":"<m1@sg>","event":"delivered"},
            {"email":"a@x.org","timestamp":11,"smtp-id":"<m1@sg>","event":"delivered"},
            {"email":"c@z.org","timestamp":9,"smtp-id":"<m2@sg>","event":"open","category":"solo"}
        ]"#,
        )
        .unwrap();
        let s = summarize(events);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].message_id, "m1@sg");
        assert_eq!(s[0].envelope, vec!["a@x.org", "b@y.org"]);
        assert_eq!(s[0].campaign.as_deref(), Some("spring"));
        assert_eq!(s[0].sent_at.unwrap().timestamp(), 10);
        assert!(s[1].envelope.is_empty(), "an open delivers nothing");
        assert_eq!(s[1].campaign.as_deref(), Some("solo"));
    }
}
