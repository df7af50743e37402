//! `[email.ses]`, `[email.sendgrid]`, `[email.mailgun]`, `[email.postmark]`: the provider
//! webhooks, their limits and what `check-config` says of them.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, Email, Secret, duration};

/// Amazon SES → SNS → us. The signature is SNS's: RSA over the message's canonical string with
/// the key of a certificate fetched from `SigningCertURL`, which must be an SNS host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesHook {
    /// The observations' account name (and the metrics' label). Default `ses`.
    #[serde(default = "default_ses")]
    pub name: String,
    /// Topics whose messages are accepted, by ARN; anything else is refused (401).
    pub topic_arns: Vec<String>,
    /// Confirm subscription requests for the allowed topics by fetching their `SubscribeURL`.
    #[serde(default = "yes")]
    pub confirm_subscriptions: bool,
    /// Messages whose `Timestamp` is older than this are refused as stale. Default "1h" (SNS
    /// retries an undelivered message with its original timestamp).
    #[serde(default = "default_ses_max_age", deserialize_with = "duration")]
    pub max_age: Duration,
    /// The SES message tag whose value is the campaign. Default `campaign`.
    #[serde(default = "default_campaign_tag")]
    pub campaign_tag: String,
    /// Largest request body accepted (bytes). Default 1 MiB (SNS messages are at most 256 KiB).
    #[serde(default = "default_small_body")]
    pub max_body: usize,
    /// Signing certificates (PEM, usually `file:/path/SimpleNotificationService-….pem`) for a
    /// deployment that cannot reach AWS: when any is set, only these verify messages and no
    /// certificate is ever fetched. An expired one is trusted as configured, with a warning.
    #[serde(default)]
    pub certificates: Vec<Secret>,
}

/// SendGrid's signed Event Webhook: ECDSA P-256 over timestamp + body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendGridHook {
    #[serde(default = "default_sendgrid")]
    pub name: String,
    /// The verification key as SendGrid shows it: base64 of the DER public key.
    pub public_key: Secret,
    /// Requests whose signed timestamp is further than this from now are refused. Default "5m".
    #[serde(default = "default_tolerance", deserialize_with = "duration")]
    pub tolerance: Duration,
    /// Default 8 MiB: SendGrid posts batches of events.
    #[serde(default = "default_batch_body")]
    pub max_body: usize,
}

/// Mailgun's signed webhooks: HMAC-SHA256 of timestamp + token with the webhook signing key,
/// plus basic auth in the webhook's URL (the HMAC does not cover the event).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailgunHook {
    #[serde(default = "default_mailgun")]
    pub name: String,
    /// The HTTP webhook signing key (Mailgun: Sending → Webhooks).
    pub signing_key: Secret,
    /// The user name written into the webhook's URL (`https://USER:PASSWORD@HOST/hooks/mailgun`).
    /// Default `mailgun`.
    #[serde(default = "default_mailgun")]
    pub username: String,
    /// The password written into the webhook's URL: a secret only that URL carries, so that
    /// another holder of the account-wide signing key cannot post events here.
    pub password: Secret,
    /// Signed timestamps further than this from now are stale; tokens are remembered this long
    /// so a replay inside the window is refused too. Default "5m".
    #[serde(default = "default_tolerance", deserialize_with = "duration")]
    pub tolerance: Duration,
    #[serde(default = "default_small_body")]
    pub max_body: usize,
}

/// Postmark signs nothing; its webhooks carry HTTP basic auth set in the webhook's URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostmarkHook {
    #[serde(default = "default_postmark")]
    pub name: String,
    pub username: String,
    pub password: Secret,
    #[serde(default = "default_small_body")]
    pub max_body: usize,
}

pub(super) fn default_ses() -> String {
    "ses".into()
}
pub(super) fn default_sendgrid() -> String {
    "sendgrid".into()
}
pub(super) fn default_mailgun() -> String {
    "mailgun".into()
}
pub(super) fn default_postmark() -> String {
    "postmark".into()
}
pub(super) fn yes() -> bool {
    true
}
pub(super) fn default_ses_max_age() -> Duration {
    Duration::from_secs(3600)
}
pub(super) fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}
pub(super) fn default_campaign_tag() -> String {
    "campaign".into()
}
pub(super) fn default_small_body() -> usize {
    1024 * 1024
}
pub(super) fn default_batch_body() -> usize {
    8 * 1024 * 1024
}

/// Bodies below this cannot hold one event; above this is not a webhook.
pub(super) const BODY_RANGE: std::ops::RangeInclusive<usize> = 1024..=64 * 1024 * 1024;

/// A user name that fits in a URL's basic auth.
fn check_user(key: &str, username: &str) -> Result<(), ConfigError> {
    if username.is_empty() || username.contains(':') {
        return Err(ConfigError::invalid(
            format!("email.{key}.username"),
            "a non-empty user name without `:`",
        ));
    }
    Ok(())
}

impl Email {
    /// Whether any provider webhook is configured.
    pub fn has_webhooks(&self) -> bool {
        self.ses.is_some()
            || self.sendgrid.is_some()
            || self.mailgun.is_some()
            || self.postmark.is_some()
    }

    pub(super) fn validate_hooks(&self, names: &mut Vec<String>) -> Result<(), ConfigError> {
        let mut check = |key: &str, name: &str, max_body: usize| {
            if name.trim().is_empty() || name.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    format!("email.{key}.name"),
                    "a non-empty name without spaces",
                ));
            }
            if names.contains(&name.to_owned()) {
                return Err(ConfigError::invalid(
                    format!("email.{key}.name"),
                    format!("`{name}` is used by another account, feed or webhook"),
                ));
            }
            names.push(name.to_owned());
            if !BODY_RANGE.contains(&max_body) {
                return Err(ConfigError::invalid(
                    format!("email.{key}.max_body"),
                    format!(
                        "between {} and {} bytes",
                        BODY_RANGE.start(),
                        BODY_RANGE.end()
                    ),
                ));
            }
            Ok(())
        };
        if let Some(s) = &self.ses {
            check("ses", &s.name, s.max_body)?;
            if s.topic_arns.is_empty() {
                return Err(ConfigError::invalid(
                    "email.ses.topic_arns",
                    "list the SNS topic ARNs whose messages are accepted",
                ));
            }
            for (i, arn) in s.topic_arns.iter().enumerate() {
                if !arn.starts_with("arn:aws:sns:") && !arn.starts_with("arn:aws-cn:sns:") {
                    return Err(ConfigError::invalid(
                        format!("email.ses.topic_arns[{i}]"),
                        format!(
                            "`{arn}` is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
                        ),
                    ));
                }
            }
        }
        if let Some(s) = &self.sendgrid {
            check("sendgrid", &s.name, s.max_body)?;
        }
        if let Some(m) = &self.mailgun {
            check("mailgun", &m.name, m.max_body)?;
            check_user("mailgun", &m.username)?;
        }
        if let Some(p) = &self.postmark {
            check("postmark", &p.name, p.max_body)?;
            check_user("postmark", &p.username)?;
        }
        Ok(())
    }

    /// The webhooks' lines for `check-config`.
    pub(super) fn summary_hooks(&self, out: &mut String) {
        if let Some(s) = &self.ses {
            out.push_str(&format!(
                "webhook       {} · POST /hooks/ses · SNS signature v1/v2, {} · topics: {} · max age {}{}\n",
                s.name,
                if s.certificates.is_empty() {
                    "cert fetched from sns.<region>.amazonaws.com".to_owned()
                } else {
                    format!("{} pinned cert(s), nothing fetched", s.certificates.len())
                },
                s.topic_arns.join(", "),
                humantime::format_duration(s.max_age),
                if s.confirm_subscriptions { " · confirms subscriptions" } else { "" }
            ));
        }
        if let Some(s) = &self.sendgrid {
            out.push_str(&format!(
                "webhook       {} · POST /hooks/sendgrid · ECDSA P-256 key set · tolerance {}\n",
                s.name,
                humantime::format_duration(s.tolerance)
            ));
        }
        if let Some(m) = &self.mailgun {
            out.push_str(&format!(
                "webhook       {} · POST /hooks/mailgun · basic auth as {} · HMAC-SHA256 signing key set · tolerance {} · tokens never reused\n",
                m.name,
                m.username,
                humantime::format_duration(m.tolerance)
            ));
        }
        if let Some(p) = &self.postmark {
            out.push_str(&format!(
                "webhook       {} · POST /hooks/postmark · basic auth as {}\n",
                p.name, p.username
            ));
        }
    }
}
