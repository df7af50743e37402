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
    time::{Duration, Instant},
};

use axum::http::HeaderMap;
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use ring::signature::{
    RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
};
use serde::Deserialize;
use url::Url;
use x509_cert::{Certificate, der::DecodePem};

use super::{Accepted, Delivery, HookError, Refusal, address, addresses, header, keep_until};
use crate::{config::email::SesHook, model::MailSummary};

/// The header SNS names the message type in.
pub const TYPE_HEADER: &str = "x-amz-sns-message-type";
/// The header SNS names the topic in.
pub const TOPIC_HEADER: &str = "x-amz-sns-topic-arn";
/// Signing certificates kept, by URL. SNS signs with one certificate per region at a time.
pub const CERT_CACHE: usize = 16;
/// Certificate fetches allowed at once, and the pace after that: a stream of messages naming
/// new certificate URLs must not turn tocsin into a fetcher for whoever sends them.
pub const FETCH_BURST: u32 = 4;
pub const FETCH_EVERY: Duration = Duration::from_secs(15);

const MESSAGE_TYPES: [&str; 3] = [
    "Notification",
    "SubscriptionConfirmation",
    "UnsubscribeConfirmation",
];

/// The SNS envelope: every field is a string; `Message` stays unparsed until verified.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope {
    #[serde(rename = "Type")]
    kind: String,
    message_id: String,
    topic_arn: String,
    #[serde(default)]
    subject: Option<String>,
    message: String,
    timestamp: String,
    signature_version: String,
    signature: String,
    #[serde(rename = "SigningCertURL")]
    signing_cert_url: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "SubscribeURL", default)]
    subscribe_url: Option<String>,
}

/// Directions in AWS region names (`us-east-1`, `ap-southeast-2`, `us-gov-west-1`).
const DIRECTIONS: [&str; 9] = [
    "east",
    "west",
    "north",
    "south",
    "central",
    "northeast",
    "northwest",
    "southeast",
    "southwest",
];

/// Whether `s` is shaped like an AWS region: a two-letter area, an optional partition
/// (`gov`, `iso`, `isob`, `isoe`, `isof`), a direction and a number. `s3`, `s3-accelerate`
/// and `s3-us-west-2` (S3's virtual hosts under amazonaws.com) are not.
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let (area, rest) = match parts.split_first() {
        Some(x) => x,
        None => return false,
    };
    let (number, middle) = match rest.split_last() {
        Some(x) => x,
        None => return false,
    };
    let area_ok = area.len() == 2 && area.bytes().all(|b| b.is_ascii_lowercase());
    let number_ok = (1..=2).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit());
    let middle_ok = match middle {
        [direction] => DIRECTIONS.contains(direction),
        [partition, direction] => {
            ["gov", "iso", "isob", "isoe", "isof"].contains(partition)
                && DIRECTIONS.contains(direction)
        }
        _ => false,
    };
    area_ok && number_ok && middle_ok
}

/// What an SNS-host URL must look like before it is fetched: https, no credentials, default
/// port, host `sns.<region>.amazonaws.com` (or `.amazonaws.com.cn` for the China regions).
pub fn check_sns_url(field: &str, raw: &str) -> Result<Url, HookError> {
    let refuse = |why: &str| HookError::refused(Refusal::CertUrl, format!("{field} {why}"));
    let url = Url::parse(raw).map_err(|_| refuse("is not a URL"))?;
    if url.scheme() != "https" {
        return Err(refuse("is not https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("carries credentials"));
    }
    if url.port().is_some_and(|p| p != 443) {
        return Err(refuse("names a port"));
    }
    let host = url.host_str().unwrap_or_default();
    let region =
        host.strip_prefix("sns.")
            .and_then(|h| match h.strip_suffix(".amazonaws.com.cn") {
                Some(r) => r.starts_with("cn-").then_some(r),
                None => h
                    .strip_suffix(".amazonaws.com")
                    .filter(|r| !r.starts_with("cn-")),
            });
    if !region.is_some_and(is_region) {
        return Err(refuse(
            "is not on an SNS host (sns.<region>.amazonaws.com with a real region)",
        ));
    }
    Ok(url)
}

/// [`check_sns_url`] for `SigningCertURL`, whose path must also be SNS's certificate file
/// (`/SimpleNotificationService-<hex>.pem`, no query).
pub fn check_cert_url(raw: &str) -> Result<Url, HookError> {
    let url = check_sns_url("SigningCertURL", raw)?;
    let hex = url
        .path()
        .strip_prefix("/SimpleNotificationService-")
        .and_then(|p| p.strip_suffix(".pem"))
        .unwrap_or_default();
    if hex.is_empty()
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(HookError::refused(
            Refusal::CertUrl,
            "SigningCertURL is not an SNS certificate (/SimpleNotificationService-<hex>.pem)",
        ));
    }
    Ok(url)
}

/// The string SNS signs: the documented fields, in the documented order, each as
/// `name\nvalue\n`; absent optional fields are skipped.
fn canonical(e: &Envelope) -> Result<String, HookError> {
    let fields: &[(&str, Option<&str>)] = match e.kind.as_str() {
        "Notification" => &[
            ("Message", Some(&e.message)),
            ("MessageId", Some(&e.message_id)),
            ("Subject", e.subject.as_deref()),
            ("Timestamp", Some(&e.timestamp)),
            ("TopicArn", Some(&e.topic_arn)),
            ("Type", Some(&e.kind)),
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            ("Message", Some(&e.message)),
            ("MessageId", Some(&e.message_id)),
            ("SubscribeURL", e.subscribe_url.as_deref()),
            ("Timestamp", Some(&e.timestamp)),
            ("Token", e.token.as_deref()),
            ("TopicArn", Some(&e.topic_arn)),
            ("Type", Some(&e.kind)),
        ],
        other => {
            return Err(HookError::refused(
                Refusal::BadSignature,
                format!("unknown SNS message type {other:?}"),
            ));
        }
    };
    let mut s = String::with_capacity(e.message.len() + 512);
    for (name, value) in fields {
        if let Some(v) = value {
            s.push_str(name);
            s.push('\n');
            s.push_str(v);
            s.push('\n');
        }
    }
    Ok(s)
}

/// The string SNS signs for a message.
#[cfg(test)]
fn string_to_sign(body: &[u8]) -> Option<String> {
    let e: Envelope = serde_json::from_slice(body).ok()?;
    canonical(&e).ok()
}

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

/// An SNS message whose signature verified.
#[derive(Debug, Clone)]
pub struct SnsMessage {
    /// `Notification`, `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    pub subject: Option<String>,
    /// For SES, the event's JSON ([`SesEvent::parse`]).
    pub message: String,
    pub timestamp: DateTime<Utc>,
    /// A subscription request's URL, checked to be on an SNS host.
    pub subscribe_url: Option<Url>,
}

/// A signing certificate pinned in the configuration.
pub struct Pinned {
    /// Its subject and, for a `file:` entry, the file: what the logs name it by.
    pub name: String,
    /// The RSA public key (PKCS#1 DER).
    key: Vec<u8>,
    /// Its `notAfter`, when that has passed: trusted as configured, but said at start.
    pub expired: Option<DateTime<Utc>>,
}

/// Reads a certificate as SNS serves it (PEM) into its RSA public key; the error says what is
/// wrong with it.
fn rsa_key(pem: &str) -> Result<(Certificate, Vec<u8>), String> {
    let cert = Certificate::from_pem(pem.trim().as_bytes())
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    // rsaEncryption: the only key type SNS signs with.
    if spki.algorithm.oid.to_string() != "1.2.840.113549.1.1.1" {
        return Err("not an RSA key".into());
    }
    let key = spki.subject_public_key.raw_bytes().to_vec();
    Ok((cert, key))
}

impl Pinned {
    /// Parses a pinned certificate (PEM); `now` decides whether it has expired.
    pub fn parse(pem: &str, now: DateTime<Utc>) -> Result<Pinned, String> {
        let (cert, key) = rsa_key(pem)?;
        let not_after = cert.tbs_certificate.validity.not_after.to_unix_duration();
        let not_after = DateTime::from_timestamp(not_after.as_secs() as i64, 0);
        Ok(Pinned {
            name: cert.tbs_certificate.subject.to_string(),
            key,
            expired: not_after.filter(|t| *t < now),
        })
    }
}

/// The RSA public keys (PKCS#1 DER) of fetched certificates by URL, at most [`CERT_CACHE`],
/// most recently used last: a stream of messages naming new URLs evicts the oldest, it does not
/// grow the cache.
#[derive(Default)]
struct CertCache(Vec<(String, Arc<Vec<u8>>)>);

impl CertCache {
    fn get(&mut self, url: &str) -> Option<Arc<Vec<u8>>> {
        let i = self.0.iter().position(|(u, _)| u == url)?;
        let hit = self.0.remove(i);
        let key = hit.1.clone();
        self.0.push(hit);
        Some(key)
    }

    fn insert(&mut self, url: &str, key: Arc<Vec<u8>>) {
        self.0.retain(|(u, _)| u != url);
        if self.0.len() >= CERT_CACHE {
            self.0.remove(0);
        }
        self.0.push((url.to_owned(), key));
    }
}

/// The pace of certificate fetches: a bucket of [`FETCH_BURST`] refilled one per
/// [`FETCH_EVERY`].
struct FetchBudget {
    tokens: f64,
    at: Instant,
}

impl FetchBudget {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() / FETCH_EVERY.as_secs_f64();
        self.tokens = (self.tokens + refill).min(f64::from(FETCH_BURST));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The client used to fetch signing certificates and confirm subscriptions when none is
/// injected: https only, no redirects (a redirect could leave the SNS host).
pub fn default_fetch_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sns_hosts_over_https() {
        for ok in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
            "https://sns.eu-west-3.amazonaws.com:443/x.pem",
            "https://sns.us-gov-west-1.amazonaws.com/x.pem",
            "https://sns.ap-southeast-4.amazonaws.com/x.pem",
        ] {
            assert!(check_sns_url("SigningCertURL", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.amazonaws.com/x.pem",
            "https://s3.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://user:pw@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us_east.amazonaws.com/x.pem",
            "https://127.0.0.1/x.pem",
            // S3 virtual hosts: the bucket `sns` answers there, and anyone can own it.
            "https://sns.s3.amazonaws.com/x.pem",
            "https://sns.s3-accelerate.amazonaws.com/x.pem",
            "https://sns.s3-us-west-2.amazonaws.com/x.pem",
            "https://sns.s3.dualstack.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.cn/x.pem",
            "https://sns.cn-north-1.amazonaws.com/x.pem",
            "https://sns.xx-nowhere-1.amazonaws.com/x.pem",
        ] {
            let err = check_sns_url("SigningCertURL", bad).unwrap_err();
            assert_eq!(err.reason(), "cert_url", "{bad}");
        }
    }

    #[test]
    fn certificate_urls_name_an_sns_certificate() {
        check_cert_url(
            "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem",
        )
        .unwrap();
        for bad in [
            "https://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-.pem",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-zz.pem",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-ab.pem?x=1",
            "https://sns.us-east-1.amazonaws.com/other/SimpleNotificationService-ab.pem",
        ] {
            assert_eq!(
                check_cert_url(bad).unwrap_err().reason(),
                "cert_url",
                "{bad}"
            );
        }
    }

    #[test]
    fn the_certificate_cache_keeps_the_most_recently_used() {
        let mut cache = CertCache::default();
        let key = |n: u8| Arc::new(vec![n]);
        for n in 0..CERT_CACHE as u8 {
            cache.insert(&format!("u{n}"), key(n));
        }
        assert_eq!(cache.get("u0"), Some(key(0)), "u0 used: now the newest");
        cache.insert("new", key(99));
        assert_eq!(cache.0.len(), CERT_CACHE, "bounded");
        assert_eq!(cache.get("u1"), None, "the least recently used went");
        assert!(cache.get("u0").is_some() && cache.get("new").is_some());
    }

    #[test]
    fn fetches_are_paced() {
        let mut budget = FetchBudget {
            tokens: f64::from(FETCH_BURST),
            at: Instant::now(),
        };
        for _ in 0..FETCH_BURST {
            assert!(budget.take());
        }
        assert!(!budget.take(), "the burst is spent");
        budget.at -= FETCH_EVERY;
        assert!(budget.take(), "one more after FETCH_EVERY");
        assert!(!budget.take());
    }

    #[test]
    fn canonical_string_skips_absent_subject() {
        let body = serde_json::json!({
            "Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": "hello\nworld", "Timestamp": "2026-01-01T00:00:00.000Z",
            "SignatureVersion": "2", "Signature": "x", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/c.pem"
        });
        assert_eq!(
            string_to_sign(body.to_string().as_bytes()).unwrap(),
            "Message\nhello\nworld\nMessageId\nm\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\narn:aws:sns:us-east-1:1:t\nType\nNotification\n"
        );
    }
}
