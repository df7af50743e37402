//! What the provider webhooks share: how a request is refused, how addresses are read out of
//! header values, and the [`Inbox`] that makes a 2xx mean "on disk".
//!
//! Each provider file (`ses.rs`, `sendgrid.rs`, `mailgun.rs`, `postmark.rs`) verifies its own
//! signature first and only then parses the body into [`MailSummary`]s; the HTTP handler hands
//! them to the inbox and answers once the inbox has committed them.

mod inbox;
pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod ses;

pub use inbox::{Inbox, InboxError};

use crate::model::MailSummary;

/// Why a request was refused before its content was trusted; the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No signature (or credentials) where the provider always sends one.
    Missing,
    /// A signature that does not verify, or wrong credentials.
    BadSignature,
    /// A signed timestamp outside the accepted window.
    Stale,
    /// A Mailgun token already accepted once.
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

/// What a verified request carries.
#[derive(Debug, Default)]
pub struct Accepted {
    pub mails: Vec<MailSummary>,
    /// A token to remember (Mailgun): key and when it may be forgotten (unix seconds). Refused
    /// as replayed if already remembered; written in the same commit as the events.
    pub token: Option<(Vec<u8>, i64)>,
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
}
