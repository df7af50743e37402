//! Amazon SES events through an SNS topic (`POST /hooks/ses`).
//!
//! SNS signs each message with RSA (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) over a
//! canonical string of its fields, with the key of the certificate at `SigningCertURL`. The
//! signature lives inside the JSON body, so the envelope's flat string fields are read first;
//! the SES event inside `Message` is parsed only after the signature verified. Before anything
//! is fetched, the topic must be in `topic_arns` and the certificate URL (and a subscription's
//! `SubscribeURL`) must be https on `sns.<region>.amazonaws.com[.cn]`; the certificate is fetched
//! over TLS from that host (that TLS connection is what vouches for it) and cached by URL.
//!
//! The client that fetches is injectable ([`Ses::new`]'s `fetch`) so the tests can point the SNS
//! host name at a loopback TLS fake with their own CA; the host check itself is not configurable.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
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

use super::{Accepted, HookError, Refusal, address, addresses};
use crate::{config::email::SesHook, model::MailSummary};

/// The header SNS names the message type in.
pub const TYPE_HEADER: &str = "x-amz-sns-message-type";

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

/// What an SNS-host URL must look like before it is fetched: https, no credentials, default
/// port, host `sns.<region>.amazonaws.com` or `sns.<region>.amazonaws.com.cn`.
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
    let region = host
        .strip_prefix("sns.")
        .and_then(|h| {
            h.strip_suffix(".amazonaws.com")
                .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
        })
        .unwrap_or_default();
    let region_ok = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !region_ok {
        return Err(refuse("is not on an SNS host (sns.<region>.amazonaws.com)"));
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
    /// The RSA public keys (PKCS#1 DER) of the certificates fetched, by URL.
    certs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesEvent {
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    notification_type: Option<String>,
    mail: Mail,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mail {
    #[serde(default)]
    timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    source: String,
    message_id: String,
    #[serde(default)]
    destination: Vec<String>,
    #[serde(default)]
    headers_truncated: bool,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    common_headers: CommonHeaders,
    #[serde(default)]
    tags: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CommonHeaders {
    #[serde(default)]
    from: Vec<String>,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    cc: Vec<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
}

impl Ses {
    pub fn new(config: &SesHook, fetch: reqwest::Client) -> Result<Ses, String> {
        Ok(Ses {
            name: config.name.clone(),
            topics: config.topic_arns.clone(),
            confirm: config.confirm_subscriptions,
            max_age: chrono::Duration::from_std(config.max_age).map_err(|e| e.to_string())?,
            campaign_tag: config.campaign_tag.clone(),
            fetch,
            certs: Mutex::default(),
        })
    }

    pub async fn accept(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Accepted, HookError> {
        let e: Envelope = serde_json::from_slice(body).map_err(|err| {
            HookError::refused(
                Refusal::Missing,
                format!("not a signed SNS message ({err})"),
            )
        })?;
        if let Some(t) = headers.get(TYPE_HEADER).and_then(|v| v.to_str().ok())
            && t != e.kind
        {
            return Err(HookError::refused(
                Refusal::BadSignature,
                format!("{TYPE_HEADER} {t:?} differs from the signed Type"),
            ));
        }
        if !self.topics.contains(&e.topic_arn) {
            return Err(HookError::refused(
                Refusal::Topic,
                format!("topic {} is not in topic_arns", e.topic_arn),
            ));
        }
        let cert_url = check_sns_url("SigningCertURL", &e.signing_cert_url)?;
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
        let key = self.signing_key(&cert_url).await?;
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
        let verified = UnparsedPublicKey::new(alg, key.as_slice()).verify(signed.as_bytes(), &sig);
        verified.map_err(|_| {
            HookError::refused(
                Refusal::BadSignature,
                "the signature does not verify with the signing certificate",
            )
        })?;
        let at = DateTime::parse_from_rfc3339(&e.timestamp)
            .map_err(|_| HookError::refused(Refusal::BadSignature, "Timestamp is not RFC 3339"))?
            .with_timezone(&Utc);
        if now - at > self.max_age {
            return Err(HookError::refused(
                Refusal::Stale,
                format!("sent at {at}, older than max_age"),
            ));
        }
        match e.kind.as_str() {
            "Notification" => Ok(Accepted {
                mails: vec![self.summarize(&e.message)?],
                token: None,
            }),
            "SubscriptionConfirmation" => {
                if self.confirm {
                    let url = subscribe_url.expect("checked above");
                    let answer = self.fetch.get(url).send().await.map_err(|err| {
                        HookError::Unavailable(format!("cannot confirm the subscription: {err}"))
                    })?;
                    if !answer.status().is_success() {
                        return Err(HookError::Unavailable(format!(
                            "SNS answered {} to the subscription confirmation",
                            answer.status()
                        )));
                    }
                    tracing::info!(topic = %e.topic_arn, "SNS subscription confirmed");
                } else {
                    tracing::warn!(topic = %e.topic_arn, "SNS subscription request not confirmed: confirm_subscriptions is off");
                }
                Ok(Accepted::default())
            }
            _ => {
                tracing::warn!(topic = %e.topic_arn, "SNS says this endpoint was unsubscribed");
                Ok(Accepted::default())
            }
        }
    }

    async fn signing_key(&self, url: &Url) -> Result<Arc<Vec<u8>>, HookError> {
        if let Some(k) = self.certs.lock().expect("cert cache").get(url.as_str()) {
            return Ok(k.clone());
        }
        let unavailable =
            |what: String| HookError::Unavailable(format!("signing certificate {url}: {what}"));
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
        let cert = Certificate::from_pem(pem.as_bytes())
            .map_err(|e| unavailable(format!("not a PEM certificate ({e})")))?;
        let spki = &cert.tbs_certificate.subject_public_key_info;
        // rsaEncryption: the only key type SNS signs with.
        if spki.algorithm.oid.to_string() != "1.2.840.113549.1.1.1" {
            return Err(unavailable("not an RSA key".into()));
        }
        let key = spki.subject_public_key.raw_bytes().to_vec();
        let key = Arc::new(key);
        self.certs
            .lock()
            .expect("cert cache")
            .insert(url.as_str().to_owned(), key.clone());
        Ok(key)
    }

    fn summarize(&self, message: &str) -> Result<MailSummary, HookError> {
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
        let m = ev.mail;
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
        Ok(MailSummary {
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
            campaign: m
                .tags
                .get(&self.campaign_tag)
                .and_then(|v| v.first().cloned()),
            sent_at: m.timestamp,
            ..MailSummary::default()
        })
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
        ] {
            let err = check_sns_url("SigningCertURL", bad).unwrap_err();
            assert_eq!(err.reason(), "cert_url", "{bad}");
        }
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
