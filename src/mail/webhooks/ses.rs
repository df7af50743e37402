//! Amazon SES events through an SNS topic (`POST /hooks/ses`).
//!
//! SNS signs each message with RSA (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) over a
//! canonical string of its fields, with the key of the certificate at `SigningCertURL`. The
//! signature lives inside the JSON body, so before the body is read the request must name its
//! message type and an allowed topic in its headers (`x-amz-sns-message-type`,
//! `x-amz-sns-topic-arn`, which SNS always sends); then the envelope's flat string fields are
//! read, and the SES event inside `Message` is parsed only after the signature verified.
//!
//! Before anything is fetched, the certificate URL must be
//! `https://sns.<region>.amazonaws.com[.cn]/SimpleNotificationService-<hex>.pem` with a real
//! region name (a looser host check lets S3 virtual hosts such as `sns.s3.amazonaws.com`
//! through, and whoever owns the bucket `sns` could sign). The certificate is fetched over TLS
//! from that host (that TLS connection is what vouches for it), at most [`FETCH_BURST`] at once
//! and one per [`FETCH_EVERY`] after that, and kept in a cache of [`CERT_CACHE`] entries (least
//! recently used out). A deployment that cannot reach AWS pins the certificates instead
//! (`certificates`): then only those are used and nothing is ever fetched.
//!
//! The client that fetches is injectable ([`Ses::new`]'s `fetch`) so the tests can point the SNS
//! host name at a loopback TLS fake with their own CA; the URL check itself is not configurable.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::http::HeaderMap;
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use ring::signature::{
    RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
};
use serde::Deserialize;
use url::Url;

pub use super::sns::{
    CERT_CACHE, FETCH_BURST, FETCH_EVERY, Pinned, SnsMessage, TOPIC_HEADER, TYPE_HEADER,
    check_cert_url, check_sns_url, default_fetch_client, is_region,
};
use super::sns::{CertCache, Envelope, FetchBudget, MESSAGE_TYPES, canonical, rsa_key};
use super::{Accepted, Delivery, HookError, Refusal, address, addresses, header, keep_until};
use crate::{config::email::SesHook, model::MailSummary};

pub struct Ses {
    pub name: String,
    topics: Vec<String>,
    confirm: bool,
    max_age: chrono::Duration,
    campaign_tag: String,
    fetch: reqwest::Client,
    /// The configured certificates: when any is, only they are used and nothing is fetched.
    pinned: Vec<Pinned>,
    /// The RSA public keys of the certificates fetched.
    certs: Mutex<CertCache>,
    fetches: Mutex<FetchBudget>,
    /// Held while a certificate is fetched: the many requests SNS sends at once on a cold cache
    /// wait for one fetch instead of each spending the budget on the same certificate.
    fetching: tokio::sync::Mutex<()>,
}

// ---- the SES event inside `Message` ------------------------------------------------------

/// An SES event as SES publishes it to SNS (event publishing: `eventType`) or as its older
/// feedback notifications say it (`notificationType`). Only what the summary reads and what
/// responders may want to see is kept.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SesEvent {
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub notification_type: Option<String>,
    pub mail: Mail,
    #[serde(default)]
    pub bounce: Option<Bounce>,
    #[serde(default)]
    pub complaint: Option<Complaint>,
    #[serde(default)]
    pub delivery: Option<SesDelivery>,
    #[serde(default)]
    pub reject: Option<Reject>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mail {
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub source: String,
    pub message_id: String,
    #[serde(default)]
    pub destination: Vec<String>,
    #[serde(default)]
    pub headers_truncated: bool,
    #[serde(default)]
    pub headers: Vec<Header>,
    #[serde(default)]
    pub common_headers: CommonHeaders,
    #[serde(default)]
    pub tags: HashMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CommonHeaders {
    #[serde(default)]
    pub from: Vec<String>,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bounce {
    pub bounce_type: String,
    #[serde(default)]
    pub bounce_sub_type: Option<String>,
    #[serde(default)]
    pub bounced_recipients: Vec<BouncedRecipient>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BouncedRecipient {
    pub email_address: String,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Complaint {
    #[serde(default)]
    pub complained_recipients: Vec<Recipient>,
    #[serde(default)]
    pub complaint_feedback_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    pub email_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SesDelivery {
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default)]
    pub smtp_response: Option<String>,
    #[serde(default)]
    pub processing_time_millis: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct Reject {
    #[serde(default)]
    pub reason: Option<String>,
}

impl SesEvent {
    /// Parses the SES event that is an SNS notification's `Message`; the error names the field
    /// (under `Message.`).
    pub fn parse(message: &str) -> Result<SesEvent, HookError> {
        let de = &mut serde_json::Deserializer::from_str(message);
        let ev: SesEvent = serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            let field = if path == "." {
                "Message".to_owned()
            } else {
                format!("Message.{path}")
            };
            HookError::malformed(field, err.into_inner())
        })?;
        if ev.event_type.is_none() && ev.notification_type.is_none() {
            return Err(HookError::malformed(
                "Message.eventType",
                "neither eventType nor notificationType",
            ));
        }
        Ok(ev)
    }

    /// `Send`, `Delivery`, `Bounce`…: the event type, or the notification type of the older
    /// feedback notifications.
    pub fn kind(&self) -> &str {
        self.event_type
            .as_deref()
            .or(self.notification_type.as_deref())
            .unwrap_or_default()
    }

    /// The summary the email rules judge; `campaign_tag` names the SES tag holding the
    /// campaign. SES events are signed by SNS: their origin is proven.
    pub fn summary(self, campaign_tag: &str) -> MailSummary {
        let m = self.mail;
        let header_addrs = |name: &str| -> Vec<String> {
            m.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .flat_map(|h| addresses(&h.value))
                .collect()
        };
        let has_headers = m
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("to") || h.name.eq_ignore_ascii_case("cc"));
        let mut visible = if has_headers {
            let mut v = header_addrs("to");
            v.extend(header_addrs("cc"));
            v
        } else {
            Vec::new()
        };
        // Truncated headers may have lost part of To/Cc; the common headers may hold the rest.
        if !has_headers || m.headers_truncated {
            for a in m.common_headers.to.iter().chain(&m.common_headers.cc) {
                for a in addresses(a) {
                    if !visible.contains(&a) {
                        visible.push(a);
                    }
                }
            }
        }
        let from = m
            .common_headers
            .from
            .first()
            .map(|f| address(f))
            .unwrap_or_default();
        MailSummary {
            feed: "ses".into(),
            message_id: m
                .common_headers
                .message_id
                .map(|id| id.trim_matches(['<', '>', ' ']).to_owned())
                .filter(|id| !id.is_empty())
                .unwrap_or(m.message_id),
            sender: if m.source.is_empty() {
                from.clone()
            } else {
                address(&m.source)
            },
            from,
            subject: m.common_headers.subject.unwrap_or_default(),
            visible,
            envelope: m.destination.iter().map(|d| address(d)).collect(),
            campaign: m.tags.get(campaign_tag).and_then(|v| v.first().cloned()),
            sent_at: m.timestamp,
            origin_proven: true,
            ..MailSummary::default()
        }
    }
}

impl Ses {
    /// The webhook of `config`; `fetch` fetches certificates and confirms subscriptions.
    /// Pinned certificates are parsed here: the error names the entry.
    pub fn new(config: &SesHook, fetch: reqwest::Client) -> Result<Ses, String> {
        let now = Utc::now();
        let mut pinned = Vec::with_capacity(config.certificates.len());
        for (i, pem) in config.certificates.iter().enumerate() {
            let p =
                Pinned::parse(pem.expose(), now).map_err(|e| format!("certificates[{i}]: {e}"))?;
            if let Some(at) = p.expired {
                tracing::warn!(
                    certificate = %p.name,
                    expired = %at,
                    "a pinned SNS signing certificate has expired; it is trusted as configured"
                );
            }
            pinned.push(p);
        }
        Ok(Ses {
            name: config.name.clone(),
            topics: config.topic_arns.clone(),
            confirm: config.confirm_subscriptions,
            max_age: chrono::Duration::from_std(config.max_age).map_err(|e| e.to_string())?,
            campaign_tag: config.campaign_tag.clone(),
            fetch,
            pinned,
            certs: Mutex::default(),
            fetches: Mutex::new(FetchBudget {
                tokens: f64::from(FETCH_BURST),
                at: Instant::now(),
            }),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// What can be checked before the body is read: SNS names the message type and the topic
    /// in its headers, and the topic must be one of ours.
    pub fn precheck(&self, headers: &HeaderMap) -> Result<(), HookError> {
        let Some(kind) = header(headers, TYPE_HEADER) else {
            return Err(HookError::refused(
                Refusal::Missing,
                format!("no {TYPE_HEADER} header: not an SNS request"),
            ));
        };
        if !MESSAGE_TYPES.contains(&kind) {
            return Err(HookError::refused(
                Refusal::Missing,
                format!("{TYPE_HEADER} {kind:?} is not an SNS message type"),
            ));
        }
        let Some(topic) = header(headers, TOPIC_HEADER) else {
            return Err(HookError::refused(
                Refusal::Missing,
                format!("no {TOPIC_HEADER} header: not an SNS request"),
            ));
        };
        if !self.topics.iter().any(|t| t == topic) {
            return Err(HookError::refused(
                Refusal::Topic,
                format!("topic {topic} is not in topic_arns"),
            ));
        }
        Ok(())
    }

    /// Verifies one SNS request as of `now` (published vectors carry old timestamps: the clock
    /// is the caller's): the headers, the certificate URL, the signature (with the pinned
    /// certificates, or the one fetched from the URL), the age. Nothing of `Message` is read.
    pub async fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<SnsMessage, HookError> {
        self.precheck(headers)?;
        let e: Envelope = serde_json::from_slice(body).map_err(|err| {
            HookError::refused(
                Refusal::Missing,
                format!("not a signed SNS message ({err})"),
            )
        })?;
        for (name, signed) in [(TYPE_HEADER, &e.kind), (TOPIC_HEADER, &e.topic_arn)] {
            if header(headers, name) != Some(signed.as_str()) {
                return Err(HookError::refused(
                    Refusal::BadSignature,
                    format!("{name} differs from the signed message"),
                ));
            }
        }
        let cert_url = check_cert_url(&e.signing_cert_url)?;
        let subscribe_url = match (&e.kind[..], &e.subscribe_url) {
            ("SubscriptionConfirmation", Some(u)) => Some(check_sns_url("SubscribeURL", u)?),
            ("SubscriptionConfirmation", None) => {
                return Err(HookError::refused(
                    Refusal::BadSignature,
                    "a subscription confirmation without SubscribeURL",
                ));
            }
            _ => None,
        };
        let signed = canonical(&e)?;
        let sig = STANDARD.decode(e.signature.trim()).map_err(|_| {
            HookError::refused(Refusal::BadSignature, "the signature is not base64")
        })?;
        let alg = match e.signature_version.as_str() {
            "1" => &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            "2" => &RSA_PKCS1_2048_8192_SHA256,
            v => {
                return Err(HookError::refused(
                    Refusal::BadSignature,
                    format!("unknown SignatureVersion {v:?}"),
                ));
            }
        };
        let verifies = |key: &[u8]| {
            UnparsedPublicKey::new(alg, key)
                .verify(signed.as_bytes(), &sig)
                .is_ok()
        };
        let verified = if self.pinned.is_empty() {
            verifies(&self.signing_key(&cert_url).await?)
        } else {
            self.pinned.iter().any(|p| verifies(&p.key))
        };
        if !verified {
            return Err(HookError::refused(
                Refusal::BadSignature,
                if self.pinned.is_empty() {
                    "the signature does not verify with the signing certificate"
                } else {
                    "the signature does not verify with any pinned certificate"
                },
            ));
        }
        let at = DateTime::parse_from_rfc3339(&e.timestamp)
            .map_err(|_| HookError::refused(Refusal::BadSignature, "Timestamp is not RFC 3339"))?
            .with_timezone(&Utc);
        if now - at > self.max_age {
            return Err(HookError::refused(
                Refusal::Stale,
                format!("sent at {at}, older than max_age"),
            ));
        }
        Ok(SnsMessage {
            kind: e.kind,
            message_id: e.message_id,
            topic_arn: e.topic_arn,
            subject: e.subject,
            message: e.message,
            timestamp: at,
            subscribe_url,
        })
    }

    /// Verifies, then acts as of `now`: a notification's SES event is parsed into a delivery
    /// named by the SNS `MessageId` (SNS keeps it when it retries); a subscription request for
    /// an allowed topic is confirmed.
    pub async fn accept(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Accepted, HookError> {
        let m = self.verify(headers, body, now).await?;
        match m.kind.as_str() {
            "Notification" => Ok(Accepted {
                deliveries: vec![Delivery {
                    mail: SesEvent::parse(&m.message)?.summary(&self.campaign_tag),
                    key: m.message_id,
                    keep_until: keep_until(now, Some(m.timestamp), self.max_age),
                }],
                token: None,
            }),
            "SubscriptionConfirmation" => {
                if self.confirm {
                    let url = m.subscribe_url.expect("checked when verified");
                    let answer = self.fetch.get(url).send().await.map_err(|err| {
                        HookError::Unavailable(format!("cannot confirm the subscription: {err}"))
                    })?;
                    if !answer.status().is_success() {
                        return Err(HookError::Unavailable(format!(
                            "SNS answered {} to the subscription confirmation",
                            answer.status()
                        )));
                    }
                    tracing::info!(topic = %m.topic_arn, "SNS subscription confirmed");
                } else {
                    tracing::warn!(topic = %m.topic_arn, "SNS subscription request not confirmed: confirm_subscriptions is off");
                }
                Ok(Accepted::default())
            }
            _ => {
                tracing::warn!(topic = %m.topic_arn, "SNS says this endpoint was unsubscribed");
                Ok(Accepted::default())
            }
        }
    }

    /// The key of the certificate at `url`: from the cache, else fetched (within the budget).
    async fn signing_key(&self, url: &Url) -> Result<Arc<Vec<u8>>, HookError> {
        if let Some(key) = self.certs.lock().expect("cert cache").get(url.as_str()) {
            return Ok(key);
        }
        let _one_at_a_time = self.fetching.lock().await;
        // Another request may have fetched it while this one waited.
        if let Some(key) = self.certs.lock().expect("cert cache").get(url.as_str()) {
            return Ok(key);
        }
        let unavailable =
            |what: String| HookError::Unavailable(format!("signing certificate {url}: {what}"));
        if !self.fetches.lock().expect("fetch budget").take() {
            return Err(unavailable(
                "not fetched: too many certificate fetches; SNS will retry".into(),
            ));
        }
        let answer = self
            .fetch
            .get(url.clone())
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !answer.status().is_success() {
            return Err(unavailable(format!("answered {}", answer.status())));
        }
        let pem = answer
            .text()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let (_, key) = rsa_key(&pem).map_err(unavailable)?;
        let key = Arc::new(key);
        self.certs
            .lock()
            .expect("cert cache")
            .insert(url.as_str(), key.clone());
        Ok(key)
    }

    /// How many certificates are cached (bounded by [`CERT_CACHE`]).
    pub fn cached_certificates(&self) -> usize {
        self.certs.lock().expect("cert cache").0.len()
    }
}
