//! `[email]`: the mail feeds and the mail kill switch.
//!
//! The audit pollers (`[[email.google]]`, `[[email.m365]]`) each watch one tenant's audit log;
//! `internal_domains` is what "out of domain" means for forwarding. The kill switch is one HTTP
//! request the operator's mailer understands as "stop sending": tocsin knows nothing else about
//! the mailer, so any mailer with an admin endpoint can be paused.

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
        Ok(())
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
    }
}
