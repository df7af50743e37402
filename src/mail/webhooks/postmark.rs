//! Postmark webhooks (`POST /hooks/postmark`).
//!
//! Postmark signs nothing: its webhooks are secured by HTTP basic auth written into the
//! webhook's URL (`https://user:pass@host/hooks/postmark`). The credentials are compared in
//! constant time (both parts, always, so a wrong user name takes as long as a wrong password)
//! before the body is read. Each request is one event (`RecordType`: Delivery, Bounce,
//! SpamComplaint, Open, Click, SubscriptionChange), one recipient.

use axum::http::{HeaderMap, header::AUTHORIZATION};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Accepted, HookError, Refusal, address, parse_json};
use crate::{
    config::{Secret, email::PostmarkHook},
    model::MailSummary,
};

pub struct Postmark {
    pub name: String,
    username: String,
    password: Secret,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    record_type: String,
    #[serde(rename = "MessageID", default)]
    message_id: Option<String>,
    #[serde(default)]
    recipient: Option<String>,
    /// Bounces and spam complaints name the recipient `Email`.
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    delivered_at: Option<DateTime<Utc>>,
    #[serde(default)]
    bounced_at: Option<DateTime<Utc>>,
}

/// Equal-length digests, so the comparison's time says nothing about either length.
fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Postmark {
    pub fn new(config: &PostmarkHook) -> Postmark {
        Postmark {
            name: config.name.clone(),
            username: config.username.clone(),
            password: config.password.clone(),
        }
    }

    pub fn accept(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        _now: DateTime<Utc>,
    ) -> Result<Accepted, HookError> {
        let Some(auth) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Err(HookError::refused(
                Refusal::Missing,
                "no basic auth credentials",
            ));
        };
        let bad = || HookError::refused(Refusal::BadSignature, "wrong credentials");
        let encoded = auth
            .strip_prefix("Basic ")
            .or_else(|| auth.strip_prefix("basic "))
            .ok_or_else(|| HookError::refused(Refusal::Missing, "not basic auth"))?;
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, pass) = decoded.split_once(':').ok_or_else(bad)?;
        let user_ok = digest(user).ct_eq(&digest(&self.username));
        let pass_ok = digest(pass).ct_eq(&digest(self.password.expose()));
        if !bool::from(user_ok & pass_ok) {
            return Err(bad());
        }
        let e: Event = parse_json(body)?;
        let recipient = e
            .recipient
            .or(e.email)
            .map(|r| r.trim().to_lowercase())
            .filter(|r| !r.is_empty());
        let from = e.from.as_deref().map(address).unwrap_or_default();
        let mail = MailSummary {
            feed: "postmark".into(),
            message_id: e
                .message_id
                .ok_or_else(|| HookError::malformed("MessageID", "missing"))?,
            sender: from.clone(),
            from,
            subject: e.subject.unwrap_or_default(),
            visible: Vec::new(),
            // Only a delivery says the address received it; other records name who it was for.
            envelope: match e.record_type.as_str() {
                "Delivery" | "Bounce" => recipient.into_iter().collect(),
                _ => Vec::new(),
            },
            campaign: e.tag.filter(|t| !t.is_empty()),
            sent_at: e.delivered_at.or(e.bounced_at),
            ..MailSummary::default()
        };
        Ok(Accepted {
            mails: vec![mail],
            token: None,
        })
    }
}
