//! `[[email.google]]`, `[[email.m365]]` and `[email.kill_switch]`: the audit feeds polled and
//! the mailer's pause call.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;
use url::Url;

use crate::config::{Secret, duration, opt_duration};

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

pub(super) fn default_google_url() -> Url {
    Url::parse("https://admin.googleapis.com").expect("constant URL")
}
pub(super) fn default_google_apps() -> Vec<String> {
    ["admin", "login", "user_accounts"]
        .map(String::from)
        .to_vec()
}
pub(super) fn default_m365_login() -> Url {
    Url::parse("https://login.microsoftonline.com").expect("constant URL")
}
pub(super) fn default_m365_api() -> Url {
    Url::parse("https://manage.office.com").expect("constant URL")
}
pub(super) fn default_audit_poll() -> Duration {
    Duration::from_secs(60)
}
pub(super) fn default_method() -> String {
    "POST".into()
}
pub(super) fn default_kill_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Reports applications whose events the rule reads.
pub const GOOGLE_APPLICATIONS: [&str; 4] = ["admin", "login", "user_accounts", "gmail"];
