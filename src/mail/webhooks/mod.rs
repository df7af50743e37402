//! What the provider webhooks share: how a request is refused, what a verified request
//! delivers, how addresses are read out of header values, the basic-auth check of the webhooks
//! whose secret is in their URL, and the [`Inbox`] that makes a 2xx mean "on disk".
//!
//! Each provider file (`ses.rs`, `sendgrid.rs`, `mailgun.rs`, `postmark.rs`) has the same three
//! steps: `precheck` (the headers that say the request is the provider's, before a byte of the
//! body is read), `accept` (verify the signature over the body first, then parse), and the
//! public parser the vectors test. Each parsed event is a [`Delivery`] named by the provider's
//! own id of it; the inbox commits the events whose key it has not seen, and answers.

mod inbox;
pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod ses;
mod sns;

pub use inbox::{Inbox, InboxError, InboxHealth, Recorded};

use axum::http::{HeaderMap, header::AUTHORIZATION};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{config::Secret, model::MailSummary};

/// How long a delivery's key is remembered at least: the providers retry an unanswered event
/// for up to three days (SendGrid 72 h, SES/SNS and Mailgun less), so a retry whose first 200
/// was lost is still known for a duplicate.
pub const RETRY_HORIZON: chrono::Duration = chrono::Duration::hours(72);

/// Why a request was refused before its content was trusted; the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No signature (or credentials) where the provider always sends one.
    Missing,
    /// A signature that does not verify, or wrong credentials.
    BadSignature,
    /// A signed timestamp outside the accepted window.
    Stale,
    /// A Mailgun token already used by another event.
    Replayed,
    /// An SNS message from a topic not in `topic_arns`.
    Topic,
    /// An SNS `SigningCertURL`/`SubscribeURL` that is not an SNS https URL: never fetched.
    CertUrl,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing_signature",
            Refusal::BadSignature => "bad_signature",
            Refusal::Stale => "stale",
            Refusal::Replayed => "replayed",
            Refusal::Topic => "unknown_topic",
            Refusal::CertUrl => "cert_url",
        }
    }
}

/// A webhook request that was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// 401: not from the provider, or not now.
    #[error("refused ({}): {detail}", .reason.as_str())]
    Refused { reason: Refusal, detail: String },
    /// 400: signed, but not the shape the provider documents.
    #[error("malformed {field}: {detail}")]
    Malformed { field: String, detail: String },
    /// 503: we could not judge it now (signing certificate unreachable, store failing); the
    /// provider retries.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl HookError {
    pub fn refused(reason: Refusal, detail: impl Into<String>) -> Self {
        HookError::Refused {
            reason,
            detail: detail.into(),
        }
    }

    pub fn malformed(field: impl Into<String>, detail: impl ToString) -> Self {
        HookError::Malformed {
            field: field.into(),
            detail: detail.to_string(),
        }
    }

    /// The metric's `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            HookError::Refused { reason, .. } => reason.as_str(),
            HookError::Malformed { .. } => "malformed",
            HookError::Unavailable(_) => "unavailable",
        }
    }
}

/// One event as its provider delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The provider's name of this delivery (SES: the SNS `MessageId`; SendGrid `sg_event_id`;
    /// Mailgun `event-data.id`; Postmark, which has none: message, record type, recipient and
    /// the event's time). A second request carrying it is a duplicate.
    pub key: String,
    /// What it says. Events of one message in one request are folded into one summary once
    /// the duplicates are dropped ([`fold`]).
    pub mail: MailSummary,
    /// When the key may be forgotten (unix seconds): no copy of the request can be accepted
    /// after it (it would be stale), and not before the providers' retries are over.
    pub keep_until: i64,
}

/// What a verified request carries.
#[derive(Debug, Default)]
pub struct Accepted {
    pub deliveries: Vec<Delivery>,
    /// A token to remember (Mailgun): key and when it may be forgotten (unix seconds). Refused
    /// as replayed if another event already used it; written in the same commit as the events.
    pub token: Option<(Vec<u8>, i64)>,
}

/// When a delivery's key may be forgotten: [`RETRY_HORIZON`] (or the webhook's own window, if
/// longer) after the later of now and the event's time, so that a copy cannot outlive its key.
pub fn keep_until(now: DateTime<Utc>, at: Option<DateTime<Utc>>, window: chrono::Duration) -> i64 {
    let from = at.map_or(now, |at| at.max(now));
    (from + RETRY_HORIZON.max(window)).timestamp()
}

/// The summaries of a request's new deliveries: events of one message (SendGrid posts a
/// `processed` and a `delivered` per recipient) become one summary whose envelope is every
/// address they name, in the order messages first appear.
pub fn fold(mails: impl IntoIterator<Item = MailSummary>) -> Vec<MailSummary> {
    let mut out: Vec<MailSummary> = Vec::new();
    let mut index: std::collections::HashMap<(String, String), usize> = Default::default();
    for m in mails {
        let key = (m.feed.clone(), m.message_id.clone());
        let Some(&i) = index.get(&key) else {
            index.insert(key, out.len());
            out.push(m);
            continue;
        };
        let s = &mut out[i];
        for a in m.envelope {
            if !s.envelope.contains(&a) {
                s.envelope.push(a);
            }
        }
        for a in m.visible {
            if !s.visible.contains(&a) {
                s.visible.push(a);
            }
        }
        if s.campaign.is_none() {
            s.campaign = m.campaign;
        }
        s.sent_at = match (s.sent_at, m.sent_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        s.origin_proven &= m.origin_proven;
    }
    out
}

/// HTTP basic auth written into a webhook's URL (`https://user:password@host/hooks/…`): what
/// Postmark offers instead of a signature, and what Mailgun's own HMAC (which covers only a
/// timestamp and a token, not the event) needs beside it.
pub struct BasicAuth {
    username: String,
    password: Secret,
}

/// Equal-length digests, so the comparison's time says nothing about either length.
fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl BasicAuth {
    pub fn new(username: &str, password: &Secret) -> BasicAuth {
        BasicAuth {
            username: username.to_owned(),
            password: password.clone(),
        }
    }

    /// Checks the `Authorization` header: both parts compared in constant time, always, so a
    /// wrong user name takes as long as a wrong password.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), HookError> {
        let Some(auth) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Err(HookError::refused(
                Refusal::Missing,
                "no basic auth credentials (the webhook URL carries them)",
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
        Ok(())
    }
}

/// A header's value, trimmed, when present and not empty.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Parses a JSON body into `T`, naming the field at fault.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, HookError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".into() } else { path };
        HookError::malformed(field, e.into_inner())
    })
}

/// The addresses of an address-list header value (`"A, B" <a@x>, b@y, Group: c@z;`),
/// lowercased, in order. Quoted display names and comments are skipped; what cannot hold an
/// address (no `@`) is dropped.
pub fn addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut angle: Option<String> = None;
    let (mut quoted, mut comment, mut escaped) = (false, 0u32, false);
    let mut flush = |current: &mut String, angle: &mut Option<String>| {
        let addr = angle.take().unwrap_or_else(|| {
            // A group name ends at ':'; what follows it is an address.
            current.rsplit(':').next().unwrap_or_default().to_owned()
        });
        let addr = addr.trim().trim_end_matches(';').trim().to_lowercase();
        if addr.contains('@') && !addr.contains(char::is_whitespace) {
            out.push(addr);
        }
        current.clear();
    };
    let mut in_angle = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted || comment > 0 => escaped = true,
            '"' if comment == 0 => quoted = !quoted,
            _ if quoted => {}
            '(' => comment += 1,
            ')' if comment > 0 => comment -= 1,
            _ if comment > 0 => {}
            '<' => {
                in_angle = true;
                angle = Some(String::new());
            }
            '>' => in_angle = false,
            ',' | ';' if !in_angle => flush(&mut current, &mut angle),
            _ if in_angle => angle.get_or_insert_with(String::new).push(c),
            _ => current.push(c),
        }
    }
    flush(&mut current, &mut angle);
    out
}

/// The address of one mailbox value (`Name <a@x>` or `a@x`), lowercased.
pub fn address(value: &str) -> String {
    addresses(value).into_iter().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_address_lists() {
        assert_eq!(
            addresses(
                r#""Doe, Jane" <Jane@Example.com>, bob@x.org (Bob, B.), Team: c@y.net, d@y.net;"#
            ),
            vec!["jane@example.com", "bob@x.org", "c@y.net", "d@y.net"]
        );
        assert_eq!(addresses("undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(address("Sender <s@corp.example>"), "s@corp.example");
        assert_eq!(address("s@corp.example"), "s@corp.example");
    }

    #[test]
    fn fold_joins_the_events_of_one_message() {
        let ev = |id: &str, to: &str, at: i64| MailSummary {
            feed: "sendgrid".into(),
            message_id: id.into(),
            envelope: vec![to.into()],
            sent_at: DateTime::from_timestamp(at, 0),
            origin_proven: true,
            ..Default::default()
        };
        let folded = fold([
            ev("m1", "a@x.org", 12),
            ev("m2", "c@x.org", 9),
            ev("m1", "b@x.org", 10),
            ev("m1", "a@x.org", 11),
        ]);
        assert_eq!(folded.len(), 2);
        assert_eq!(folded[0].envelope, vec!["a@x.org", "b@x.org"]);
        assert_eq!(folded[0].sent_at.unwrap().timestamp(), 10);
        assert!(folded[0].origin_proven);
        assert_eq!(folded[1].message_id, "m2");
    }

    #[test]
    fn keys_outlive_every_copy_that_could_be_accepted() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let h72 = RETRY_HORIZON.num_seconds();
        assert_eq!(
            keep_until(now, None, chrono::Duration::minutes(5)),
            1_000_000 + h72
        );
        let later = now + chrono::Duration::days(10);
        assert_eq!(
            keep_until(now, Some(later), chrono::Duration::zero()),
            later.timestamp() + h72,
            "an event dated in the future is remembered from its own time"
        );
        assert_eq!(
            keep_until(now, None, chrono::Duration::days(5)),
            1_000_000 + 5 * 86_400,
            "a longer max age wins"
        );
    }

    #[test]
    fn basic_auth_takes_only_its_credentials() {
        let auth = BasicAuth::new("hook", &Secret::new("pw"));
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, v.parse().unwrap());
            h
        };
        let basic = |s: &str| format!("Basic {}", STANDARD.encode(s));
        assert!(auth.check(&with(&basic("hook:pw"))).is_ok());
        for (bad, reason) in [
            (basic("hook:pw2"), "bad_signature"),
            (basic("hoo:pw"), "bad_signature"),
            (basic("hookpw"), "bad_signature"),
            ("Bearer pw".to_owned(), "missing_signature"),
        ] {
            assert_eq!(
                auth.check(&with(&bad)).unwrap_err().reason(),
                reason,
                "{bad}"
            );
        }
        assert_eq!(
            auth.check(&HeaderMap::new()).unwrap_err().reason(),
            "missing_signature"
        );
    }
}
