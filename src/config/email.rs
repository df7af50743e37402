//! `[email]`: the mail feeds and the mail kill switch.
//!
//! The audit pollers (`[[email.google]]`, `[[email.m365]]`) each watch one tenant's audit log;
//! `internal_domains` is what "out of domain" means for forwarding. The kill switch is one HTTP
//! request the operator's mailer understands as "stop sending": tocsin knows nothing else about
//! the mailer, so any mailer with an admin endpoint can be paused.
//!
//! The providers' event webhooks (`[email.ses]`, `[email.sendgrid]`, `[email.mailgun]`,
//! `[email.postmark]`) are each off unless their table is present, and each carries what
//! verifying that provider's signature needs, so an unsigned or forged request never reaches the
//! pipeline.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;
use url::Url;

use super::{ConfigError, MIN_POLL_INTERVAL, Secret, check_http_url, duration, opt_duration};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// Google Workspace Admin SDK Reports API pollers.
    #[serde(default)]
    pub google: Vec<GoogleFeed>,
    /// Microsoft 365 Management Activity API pollers.
    #[serde(default)]
    pub m365: Vec<M365Feed>,
    /// The request that pauses the mailer.
    #[serde(default)]
    pub kill_switch: Option<KillSwitch>,
    /// Amazon SES event publishing through an SNS topic (`POST /hooks/ses`).
    #[serde(default)]
    pub ses: Option<SesHook>,
    /// SendGrid Event Webhook with signature verification on (`POST /hooks/sendgrid`).
    #[serde(default)]
    pub sendgrid: Option<SendGridHook>,
    /// Mailgun webhooks (`POST /hooks/mailgun`).
    #[serde(default)]
    pub mailgun: Option<MailgunHook>,
    /// Postmark webhooks with basic auth in the URL (`POST /hooks/postmark`).
    #[serde(default)]
    pub postmark: Option<PostmarkHook>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleFeed {
    /// Our name for the feed: incidents, cursors and health are labelled with it.
    pub name: String,
    /// The service account's JSON key (as downloaded from the Cloud console), usually `file:`.
    /// Its `token_uri` is where the signed assertion is exchanged for an access token.
    pub service_account: Secret,
    /// The Workspace admin the service account impersonates (domain-wide delegation).
    pub admin: String,
    #[serde(default = "default_google_url")]
    pub api_url: Url,
    /// Reports applications polled.
    #[serde(default = "default_google_apps")]
    pub applications: Vec<String>,
    #[serde(default = "default_audit_poll", deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// Forwarding to any other domain is out of domain.
    pub internal_domains: Vec<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub grace: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct M365Feed {
    pub name: String,
    /// The Entra ID (Azure AD) tenant id.
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Secret,
    #[serde(default = "default_m365_login")]
    pub login_url: Url,
    #[serde(default = "default_m365_api")]
    pub api_url: Url,
    #[serde(default = "default_audit_poll", deserialize_with = "duration")]
    pub poll_interval: Duration,
    pub internal_domains: Vec<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub grace: Option<Duration>,
}

/// What the pollers have in common, for health and blindness.
pub trait AuditFeed {
    fn name(&self) -> &str;
    fn poll_interval(&self) -> Duration;
    fn grace_setting(&self) -> Option<Duration>;
    /// Audit logs lag by minutes; three polls, at least 30 s, as for the social sources.
    fn grace(&self) -> Duration {
        self.grace_setting()
            .unwrap_or_else(|| (self.poll_interval() * 3).max(Duration::from_secs(30)))
    }
}

impl AuditFeed for GoogleFeed {
    fn name(&self) -> &str {
        &self.name
    }
    fn poll_interval(&self) -> Duration {
        self.poll_interval
    }
    fn grace_setting(&self) -> Option<Duration> {
        self.grace
    }
}

impl AuditFeed for M365Feed {
    fn name(&self) -> &str {
        &self.name
    }
    fn poll_interval(&self) -> Duration {
        self.poll_interval
    }
    fn grace_setting(&self) -> Option<Duration> {
        self.grace
    }
}

/// `[email.kill_switch]`: the configured request that pauses the mailer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillSwitch {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: Url,
    /// Extra headers sent as given.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body, sent as given (`Content-Type` from `headers`, JSON by default).
    #[serde(default)]
    pub body: Option<String>,
    /// Sent in `secret_header` (default `Authorization: Bearer <secret>`).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Header that carries the secret; when absent the secret goes as a bearer token.
    #[serde(default)]
    pub secret_header: Option<String>,
    #[serde(default = "default_kill_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Pause the mailer without waiting for a press when `email.exposed_recipients` opens.
    #[serde(default)]
    pub auto_pause: bool,
}

fn default_google_url() -> Url {
    Url::parse("https://admin.googleapis.com").expect("constant URL")
}
fn default_google_apps() -> Vec<String> {
    ["admin", "login", "user_accounts"]
        .map(String::from)
        .to_vec()
}
fn default_m365_login() -> Url {
    Url::parse("https://login.microsoftonline.com").expect("constant URL")
}
fn default_m365_api() -> Url {
    Url::parse("https://manage.office.com").expect("constant URL")
}
fn default_audit_poll() -> Duration {
    Duration::from_secs(60)
}
fn default_method() -> String {
    "POST".into()
}
fn default_kill_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Reports applications whose events the rule reads.
pub const GOOGLE_APPLICATIONS: [&str; 4] = ["admin", "login", "user_accounts", "gmail"];

fn invalid(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, message)
}

fn check_name(key: String, name: &str, names: &mut Vec<String>) -> Result<(), ConfigError> {
    if name.trim().is_empty() || name.chars().any(char::is_whitespace) {
        return Err(invalid(key, "a non-empty name without spaces"));
    }
    if names.iter().any(|n| n == name) {
        return Err(invalid(
            key,
            format!("`{name}` is used by another account or feed"),
        ));
    }
    names.push(name.to_owned());
    Ok(())
}

fn check_domains(key: String, domains: &[String]) -> Result<(), ConfigError> {
    if domains.is_empty() {
        return Err(invalid(
            key,
            "list the company's mail domains (forwarding anywhere else pages)",
        ));
    }
    if let Some(d) = domains
        .iter()
        .find(|d| d.is_empty() || d.contains('@') || d.contains(char::is_whitespace))
    {
        return Err(invalid(key, format!("`{d}` is not a domain name")));
    }
    Ok(())
}

fn check_poll(key: String, d: Duration) -> Result<(), ConfigError> {
    if d < MIN_POLL_INTERVAL {
        return Err(invalid(
            key,
            format!("at least {}", humantime::format_duration(MIN_POLL_INTERVAL)),
        ));
    }
    Ok(())
}

impl Email {
    /// `names`: the account names already taken (feeds share their namespace: both label
    /// incidents and health).
    pub(super) fn validate(&self, names: &mut Vec<String>) -> Result<(), ConfigError> {
        for (i, g) in self.google.iter().enumerate() {
            let key = |f: &str| format!("email.google[{i}].{f}");
            check_name(key("name"), &g.name, names)?;
            check_http_url(&key("api_url"), &g.api_url)?;
            check_poll(key("poll_interval"), g.poll_interval)?;
            check_domains(key("internal_domains"), &g.internal_domains)?;
            if !g.admin.contains('@') {
                return Err(invalid(
                    key("admin"),
                    "the email address of the admin to impersonate",
                ));
            }
            if g.applications.is_empty() {
                return Err(invalid(key("applications"), "list at least one"));
            }
            if let Some(a) = g
                .applications
                .iter()
                .find(|a| !GOOGLE_APPLICATIONS.contains(&a.as_str()))
            {
                return Err(invalid(
                    key("applications"),
                    format!(
                        "`{a}` is not read; choose from {}",
                        GOOGLE_APPLICATIONS.join(", ")
                    ),
                ));
            }
            crate::sources::email::google::ServiceAccount::parse(g.service_account.expose())
                .map_err(|e| invalid(key("service_account"), e.to_string()))?;
        }
        for (i, m) in self.m365.iter().enumerate() {
            let key = |f: &str| format!("email.m365[{i}].{f}");
            check_name(key("name"), &m.name, names)?;
            check_http_url(&key("login_url"), &m.login_url)?;
            check_http_url(&key("api_url"), &m.api_url)?;
            check_poll(key("poll_interval"), m.poll_interval)?;
            check_domains(key("internal_domains"), &m.internal_domains)?;
            for (f, v) in [("tenant", &m.tenant), ("client_id", &m.client_id)] {
                if v.trim().is_empty() || v.contains('/') {
                    return Err(invalid(key(f), "must be the id as Entra ID shows it"));
                }
            }
        }
        if let Some(k) = &self.kill_switch {
            let key = |f: &str| format!("email.kill_switch.{f}");
            check_http_url(&key("url"), &k.url)?;
            if reqwest::Method::from_bytes(k.method.to_ascii_uppercase().as_bytes()).is_err() {
                return Err(invalid(
                    key("method"),
                    format!("`{}` is not an HTTP method", k.method),
                ));
            }
            for name in k.headers.keys().chain(k.secret_header.iter()) {
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(invalid(
                        key("headers"),
                        format!("`{name}` is not a header name"),
                    ));
                }
            }
            if k.timeout < Duration::from_millis(100) || k.timeout > Duration::from_secs(60) {
                return Err(invalid(key("timeout"), "between 100ms and 60s"));
            }
        }
        self.validate_hooks(names)
    }

    /// Lines for `check-config`.
    pub(super) fn summary(&self, out: &mut String) {
        for g in &self.google {
            out.push_str(&format!(
                "audit         {} · google workspace {} · as {} · {} · every {} · internal: {}\n",
                g.name,
                g.api_url,
                g.admin,
                g.applications.join("+"),
                humantime::format_duration(g.poll_interval),
                g.internal_domains.join(", ")
            ));
        }
        for m in &self.m365 {
            out.push_str(&format!(
                "audit         {} · microsoft 365 tenant {} · Audit.Exchange · every {} · internal: {}\n",
                m.name,
                m.tenant,
                humantime::format_duration(m.poll_interval),
                m.internal_domains.join(", ")
            ));
        }
        if let Some(k) = &self.kill_switch {
            out.push_str(&format!(
                "kill switch   {} {} · {} · {}\n",
                k.method.to_ascii_uppercase(),
                // The path may carry a token: the host says enough here.
                k.url.host_str().unwrap_or_default(),
                if k.secret.is_some() {
                    "secret set"
                } else {
                    "no secret"
                },
                if k.auto_pause {
                    "auto-pause on email.exposed_recipients"
                } else {
                    "pause on a responder's press"
                }
            ));
        }
        self.summary_hooks(out);
    }
}

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

/// Mailgun's signed webhooks: HMAC-SHA256 of timestamp + token with the webhook signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailgunHook {
    #[serde(default = "default_mailgun")]
    pub name: String,
    /// The HTTP webhook signing key (Mailgun: Sending → Webhooks).
    pub signing_key: Secret,
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

fn default_ses() -> String {
    "ses".into()
}
fn default_sendgrid() -> String {
    "sendgrid".into()
}
fn default_mailgun() -> String {
    "mailgun".into()
}
fn default_postmark() -> String {
    "postmark".into()
}
fn yes() -> bool {
    true
}
fn default_ses_max_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}
fn default_campaign_tag() -> String {
    "campaign".into()
}
fn default_small_body() -> usize {
    1024 * 1024
}
fn default_batch_body() -> usize {
    8 * 1024 * 1024
}

/// Bodies below this cannot hold one event; above this is not a webhook.
const BODY_RANGE: std::ops::RangeInclusive<usize> = 1024..=64 * 1024 * 1024;

impl Email {
    /// Whether any provider webhook is configured.
    pub fn has_webhooks(&self) -> bool {
        self.ses.is_some()
            || self.sendgrid.is_some()
            || self.mailgun.is_some()
            || self.postmark.is_some()
    }

    fn validate_hooks(&self, names: &mut Vec<String>) -> Result<(), ConfigError> {
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
            crate::sources::email::sendgrid::parse_public_key(s.public_key.expose())
                .map_err(|e| ConfigError::invalid("email.sendgrid.public_key", e))?;
        }
        if let Some(m) = &self.mailgun {
            check("mailgun", &m.name, m.max_body)?;
        }
        if let Some(p) = &self.postmark {
            check("postmark", &p.name, p.max_body)?;
            if p.username.is_empty() || p.username.contains(':') {
                return Err(ConfigError::invalid(
                    "email.postmark.username",
                    "a non-empty user name without `:`",
                ));
            }
        }
        Ok(())
    }

    /// The webhooks' lines for `check-config`.
    fn summary_hooks(&self, out: &mut String) {
        if let Some(s) = &self.ses {
            out.push_str(&format!(
                "webhook       {} · POST /hooks/ses · SNS signature v1/v2, cert from sns.*.amazonaws.com · topics: {} · max age {}{}\n",
                s.name,
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
                "webhook       {} · POST /hooks/mailgun · HMAC-SHA256 signing key set · tolerance {} · tokens never accepted twice\n",
                m.name,
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
