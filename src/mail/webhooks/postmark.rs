//! Postmark webhooks (`POST /hooks/postmark`).
//!
//! Postmark signs nothing: its webhooks are secured by HTTP basic auth written into the
//! webhook's URL (`https://user:pass@host/hooks/postmark`), checked in constant time before the
//! body is read. Each request is one event (`RecordType`: Delivery, Bounce, SpamComplaint, Open,
//! Click, SubscriptionChange), one recipient. Postmark gives events no id: a delivery is named
//! by its message, record type, recipient and the event's own time, and an event older than
//! the providers' retry horizon is refused as stale, so that no copy outlives its key.
//!
//! A shared secret says who may post, not that Postmark sent it: Postmark's events never set
//! `origin_proven`, so they never press the kill switch on their own.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    Accepted, BasicAuth, Delivery, HookError, RETRY_HORIZON, Refusal, address, keep_until,
    parse_json,
};
use crate::{config::email::PostmarkHook, model::MailSummary};

pub struct Postmark {
    pub name: String,
    auth: BasicAuth,
}

/// One Postmark webhook event, as its documentation describes each record type; what the
/// summary reads and what a responder may want to see.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Event {
    /// Absent in the older bounce webhook's shape (a bounce).
    #[serde(default)]
    pub record_type: Option<String>,
    #[serde(default)]
    pub message_stream: Option<String>,
    #[serde(rename = "MessageID", default)]
    pub message_id: Option<String>,
    #[serde(rename = "ServerID", default)]
    pub server_id: Option<i64>,
    #[serde(default)]
    pub recipient: Option<String>,
    /// Bounces and spam complaints name the recipient `Email`.
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    /// Free-form: string values in the documentation, numbers in older examples.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Bounces: `HardBounce`, `SoftBounce`…, and its number.
    #[serde(rename = "Type", default)]
    pub bounce_type: Option<String>,
    #[serde(default)]
    pub type_code: Option<i64>,
    #[serde(default)]
    pub inactive: Option<bool>,
    #[serde(default)]
    pub first_open: Option<bool>,
    #[serde(default)]
    pub original_link: Option<String>,
    #[serde(default)]
    pub click_location: Option<String>,
    #[serde(default)]
    pub delivered_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub bounced_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub received_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub changed_at: Option<DateTime<Utc>>,
}

impl Event {
    /// Parses one webhook body; the error names the field at fault.
    pub fn parse(body: &[u8]) -> Result<Event, HookError> {
        parse_json(body)
    }

    /// `Delivery`, `Bounce`, …: the record type, `Bounce` for the older bounce shape.
    pub fn record_type(&self) -> &str {
        match &self.record_type {
            Some(r) => r,
            None if self.bounce_type.is_some() || self.bounced_at.is_some() => "Bounce",
            None => "",
        }
    }

    /// Whom the event is about, lowercased.
    pub fn recipient(&self) -> Option<String> {
        self.recipient
            .as_deref()
            .or(self.email.as_deref())
            .map(|r| r.trim().to_lowercase())
            .filter(|r| !r.is_empty())
    }

    /// When the event happened, by its record type's own field.
    pub fn at(&self) -> Option<DateTime<Utc>> {
        self.delivered_at
            .or(self.bounced_at)
            .or(self.received_at)
            .or(self.changed_at)
    }

    /// The delivery's name: message, record type, recipient and the event's time (two opens
    /// of one message by one recipient differ by their time). `None` without a message id or
    /// a time.
    pub fn key(&self) -> Option<String> {
        Some(format!(
            "{}\0{}\0{}\0{}",
            self.message_id.as_deref()?,
            self.record_type(),
            self.recipient().unwrap_or_default(),
            self.at()?.to_rfc3339(),
        ))
    }

    /// The summary the email rules judge. Not `origin_proven`: see the module's comment.
    pub fn summary(self) -> MailSummary {
        let recipient = self.recipient();
        let from = self.from.as_deref().map(address).unwrap_or_default();
        let sent_at = self.delivered_at.or(self.bounced_at);
        // Only a delivery says the address received it; other records name who it was for.
        let envelope = match self.record_type() {
            "Delivery" | "Bounce" => recipient.into_iter().collect(),
            _ => Vec::new(),
        };
        MailSummary {
            feed: "postmark".into(),
            message_id: self.message_id.unwrap_or_default(),
            sender: from.clone(),
            from,
            subject: self.subject.unwrap_or_default(),
            visible: Vec::new(),
            envelope,
            campaign: self.tag.filter(|t| !t.is_empty()),
            sent_at,
            origin_proven: false,
            ..MailSummary::default()
        }
    }
}

impl Postmark {
    pub fn new(config: &PostmarkHook) -> Postmark {
        Postmark {
            name: config.name.clone(),
            auth: BasicAuth::new(&config.username, &config.password),
        }
    }

    /// What can be checked before the body is read: the URL's credentials.
    pub fn precheck(&self, headers: &HeaderMap) -> Result<(), HookError> {
        self.auth.check(headers)
    }

    /// Checks the credentials, then parses, as of `now`.
    pub fn accept(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Accepted, HookError> {
        self.precheck(headers)?;
        let e = Event::parse(body)?;
        if e.message_id.is_none() {
            return Err(HookError::malformed("MessageID", "missing"));
        }
        let Some(at) = e.at() else {
            return Err(HookError::malformed(
                "DeliveredAt",
                "the event has no time (DeliveredAt, BouncedAt, ReceivedAt or ChangedAt)",
            ));
        };
        if now - at > RETRY_HORIZON {
            return Err(HookError::refused(
                Refusal::Stale,
                format!("an event of {at}: older than any retry, and than its key is kept"),
            ));
        }
        let key = e.key().expect("message id and time checked above");
        Ok(Accepted {
            deliveries: vec![Delivery {
                key,
                mail: e.summary(),
                keep_until: keep_until(now, Some(at), chrono::Duration::zero()),
            }],
            token: None,
        })
    }
}
