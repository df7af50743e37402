//! The SNS side of the SES webhook: the envelope and the string it signs, the host and path a
//! certificate URL must have before anything is fetched, pinned certificates, the bounded cache
//! of fetched ones and the pace of fetching. Apart from `ses.rs` because it is the transport,
//! whatever SNS carries; `ses.rs` holds the webhook and the SES events inside `Message`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::Url;
use x509_cert::{Certificate, der::DecodePem};

use super::{HookError, Refusal};

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

pub(super) const MESSAGE_TYPES: [&str; 3] = [
    "Notification",
    "SubscriptionConfirmation",
    "UnsubscribeConfirmation",
];

/// The SNS envelope: every field is a string; `Message` stays unparsed until verified.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Envelope {
    #[serde(rename = "Type")]
    pub(super) kind: String,
    pub(super) message_id: String,
    pub(super) topic_arn: String,
    #[serde(default)]
    pub(super) subject: Option<String>,
    pub(super) message: String,
    pub(super) timestamp: String,
    pub(super) signature_version: String,
    pub(super) signature: String,
    #[serde(rename = "SigningCertURL")]
    pub(super) signing_cert_url: String,
    #[serde(default)]
    pub(super) token: Option<String>,
    #[serde(rename = "SubscribeURL", default)]
    pub(super) subscribe_url: Option<String>,
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
pub(super) fn canonical(e: &Envelope) -> Result<String, HookError> {
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
pub(super) fn string_to_sign(body: &[u8]) -> Option<String> {
    let e: Envelope = serde_json::from_slice(body).ok()?;
    canonical(&e).ok()
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
    pub(super) key: Vec<u8>,
    /// Its `notAfter`, when that has passed: trusted as configured, but said at start.
    pub expired: Option<DateTime<Utc>>,
}

/// Reads a certificate as SNS serves it (PEM) into its RSA public key; the error says what is
/// wrong with it.
pub(super) fn rsa_key(pem: &str) -> Result<(Certificate, Vec<u8>), String> {
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
pub(super) struct CertCache(pub(super) Vec<(String, Arc<Vec<u8>>)>);

impl CertCache {
    pub(super) fn get(&mut self, url: &str) -> Option<Arc<Vec<u8>>> {
        let i = self.0.iter().position(|(u, _)| u == url)?;
        let hit = self.0.remove(i);
        let key = hit.1.clone();
        self.0.push(hit);
        Some(key)
    }

    pub(super) fn insert(&mut self, url: &str, key: Arc<Vec<u8>>) {
        self.0.retain(|(u, _)| u != url);
        if self.0.len() >= CERT_CACHE {
            self.0.remove(0);
        }
        self.0.push((url.to_owned(), key));
    }
}

/// The pace of certificate fetches: a bucket of [`FETCH_BURST`] refilled one per
/// [`FETCH_EVERY`].
pub(super) struct FetchBudget {
    pub(super) tokens: f64,
    pub(super) at: Instant,
}

impl FetchBudget {
    pub(super) fn take(&mut self) -> bool {
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
