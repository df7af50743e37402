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

mod feeds;
mod hooks;
mod imap;
mod journal;
mod milter;

pub use feeds::{AuditFeed, GOOGLE_APPLICATIONS, GoogleFeed, KillSwitch, M365Feed};

pub use hooks::{MailgunHook, PostmarkHook, SendGridHook, SesHook};
pub use imap::ImapFeed;

pub use journal::{Cidr, Journal, JournalAuth, canonical};

pub use milter::{Milter, MilterAction};

use std::{collections::HashSet, time::Duration};

use serde::Deserialize;

use super::{ConfigError, MIN_POLL_INTERVAL, check_http_url, check_secret_url, duration};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// More addresses than this in `To:` + `Cc:` of one message is `email.exposed_recipients`.
    #[serde(default = "default_max_visible")]
    pub max_visible_recipients: usize,
    /// The company's own domains: addresses there are colleagues, not customers, so several of
    /// them visible together is normal.
    #[serde(default)]
    pub internal_domains: Vec<String>,
    /// Envelope recipients one sender may reach within `bulk_window` before
    /// `email.unapproved_bulk` asks whether the campaign was approved.
    #[serde(default = "default_bulk_threshold")]
    pub bulk_threshold: u64,
    #[serde(default = "default_bulk_window", deserialize_with = "duration")]
    pub bulk_window: Duration,
    /// The SMTP listener the MTA journals copies to. Absent: no listener.
    #[serde(default)]
    pub journal: Option<Journal>,
    /// The milter the MTA consults in line (real envelope; can hold a leak). Absent: none.
    #[serde(default)]
    pub milter: Option<Milter>,
    #[serde(default)]
    pub security_notices: SecurityNotices,
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
    /// Registered mailboxes read over IMAP IDLE for security notices.
    #[serde(default)]
    pub imap: Vec<ImapFeed>,
}

impl Default for Email {
    fn default() -> Self {
        Email {
            max_visible_recipients: default_max_visible(),
            internal_domains: Vec::new(),
            bulk_threshold: default_bulk_threshold(),
            bulk_window: default_bulk_window(),
            journal: None,
            milter: None,
            security_notices: SecurityNotices::default(),
            google: Vec::new(),
            m365: Vec::new(),
            kill_switch: None,
            ses: None,
            sendgrid: None,
            mailgun: None,
            postmark: None,
            imap: Vec::new(),
        }
    }
}

/// `[email.security_notices]`: which mails are a platform telling the account's owner that
/// the account changed hands, and which social account each registered address belongs to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityNotices {
    /// Replaces the built-in patterns when given.
    #[serde(default = "default_patterns")]
    pub patterns: Vec<NoticePattern>,
    /// The address each social account is registered with at its platform.
    #[serde(default)]
    pub accounts: Vec<NoticeAccount>,
}

impl Default for SecurityNotices {
    fn default() -> Self {
        SecurityNotices {
            patterns: default_patterns(),
            accounts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticePattern {
    /// The platform the notice concerns (`x`, `mastodon`, `bluesky`, `telegram`, `google`).
    pub platform: String,
    /// Sender domains (the `From:` address's domain or a parent of it) or full addresses.
    pub senders: Vec<String>,
    /// Case-insensitive phrases of the subject; any one matches.
    pub subjects: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeAccount {
    /// Our name of the social account (`accounts[].name` when tocsin also watches it).
    pub account: String,
    pub platform: String,
    /// The address registered with the platform; notices to it concern this account.
    pub address: String,
}

/// Subjects every platform uses for "someone else may have the account now".
const TAKEOVER_SUBJECTS: &[&str] = &[
    "email address was changed",
    "email address has been changed",
    "email changed",
    "email address changed",
    "password was changed",
    "password has been changed",
    "password changed",
    "password reset",
    "reset your password",
    "new login",
    "new sign-in",
    "new sign in",
    "login from a new",
    "two-factor authentication was turned off",
    "two-factor authentication disabled",
    "two-factor authentication has been disabled",
    "2fa disabled",
    "2fa was turned off",
    "2-step verification turned off",
    "2-step verification is off",
];

fn default_patterns() -> Vec<NoticePattern> {
    let pattern = |platform: &str, senders: &[&str], extra: &[&str]| NoticePattern {
        platform: platform.into(),
        senders: senders.iter().map(|s| s.to_string()).collect(),
        subjects: TAKEOVER_SUBJECTS
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect(),
    };
    vec![
        pattern("x", &["x.com", "twitter.com"], &[]),
        pattern("mastodon", &["mastodon.social", "mastodon.online"], &[]),
        pattern(
            "bluesky",
            &["bsky.app", "bsky.social", "blueskyweb.xyz"],
            &[],
        ),
        pattern("telegram", &["telegram.org"], &["login code", "new login"]),
        pattern(
            "google",
            &["accounts.google.com"],
            &["security alert", "recovery email"],
        ),
    ]
}

fn default_max_visible() -> usize {
    25
}
fn default_bulk_threshold() -> u64 {
    5000
}
fn default_bulk_window() -> Duration {
    Duration::from_secs(3600)
}

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
        self.validate_rules()?;
        for (i, g) in self.google.iter().enumerate() {
            let key = |f: &str| format!("email.google[{i}].{f}");
            check_name(key("name"), &g.name, names)?;
            check_secret_url(&key("api_url"), &g.api_url)?;
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
        }
        for (i, m) in self.m365.iter().enumerate() {
            let key = |f: &str| format!("email.m365[{i}].{f}");
            check_name(key("name"), &m.name, names)?;
            check_secret_url(&key("login_url"), &m.login_url)?;
            check_secret_url(&key("api_url"), &m.api_url)?;
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
            if k.secret.is_some() || !k.headers.is_empty() {
                check_secret_url(&key("url"), &k.url)?;
            } else {
                check_http_url(&key("url"), &k.url)?;
            }
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
        for (i, f) in self.imap.iter().enumerate() {
            let key = |k: &str| format!("email.imap[{i}].{k}");
            check_name(key("name"), &f.name, names)?;
            for (k, v) in [
                ("account", &f.account),
                ("host", &f.host),
                ("username", &f.username),
                ("mailbox", &f.mailbox),
                ("authserv_id", &f.authserv_id),
            ] {
                if v.trim().is_empty() {
                    return Err(invalid(key(k), "must not be empty"));
                }
            }
            if f.port == 0 {
                return Err(invalid(key("port"), "the IMAPS port, usually 993"));
            }
        }
        self.validate_hooks(names)
    }

    /// Lines for `check-config`.
    pub fn summary(&self, out: &mut String) {
        out.push_str(&self.summary_rules());
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
        for f in &self.imap {
            out.push_str(&format!(
                "imap          {} · {}@{}:{} {} · for {} · pushed (IDLE) · notices need dkim=pass from {} · blind after {}\n",
                f.name,
                f.username,
                f.host,
                f.port,
                f.mailbox,
                f.account,
                f.authserv_id,
                humantime::format_duration(f.grace())
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

impl Email {
    /// Whether the address's domain is one of the company's own.
    pub fn is_internal(&self, address: &str) -> bool {
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        self.internal_domains
            .iter()
            .any(|d| domain.eq_ignore_ascii_case(d))
    }

    pub(super) fn validate_rules(&self) -> Result<(), ConfigError> {
        if self.max_visible_recipients == 0 {
            return Err(ConfigError::invalid(
                "email.max_visible_recipients",
                "at least 1",
            ));
        }
        for (i, d) in self.internal_domains.iter().enumerate() {
            if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    format!("email.internal_domains[{i}]"),
                    format!("`{d}` is not a domain (write `example.com`, no @)"),
                ));
            }
        }
        if self.bulk_threshold == 0 {
            return Err(ConfigError::invalid("email.bulk_threshold", "at least 1"));
        }
        if self.bulk_window < Duration::from_secs(1) {
            return Err(ConfigError::invalid("email.bulk_window", "at least 1s"));
        }
        if let Some(j) = &self.journal {
            j.validate()?;
        }
        if let Some(m) = &self.milter {
            m.validate()?;
        }
        let n = &self.security_notices;
        let mut platforms = HashSet::new();
        for (i, p) in n.patterns.iter().enumerate() {
            let key = |f: &str| format!("email.security_notices.patterns[{i}].{f}");
            if p.platform.trim().is_empty() {
                return Err(ConfigError::invalid(key("platform"), "must not be empty"));
            }
            if p.senders.is_empty() || p.senders.iter().any(|s| s.trim().is_empty()) {
                return Err(ConfigError::invalid(
                    key("senders"),
                    "list at least one non-empty sender domain or address",
                ));
            }
            if p.subjects.is_empty() || p.subjects.iter().any(|s| s.trim().is_empty()) {
                return Err(ConfigError::invalid(
                    key("subjects"),
                    "list at least one non-empty subject phrase",
                ));
            }
            platforms.insert(p.platform.as_str());
        }
        for (i, a) in n.accounts.iter().enumerate() {
            let key = |f: &str| format!("email.security_notices.accounts[{i}].{f}");
            if a.account.trim().is_empty() {
                return Err(ConfigError::invalid(key("account"), "must not be empty"));
            }
            if !platforms.contains(a.platform.as_str()) {
                return Err(ConfigError::invalid(
                    key("platform"),
                    format!(
                        "`{}` has no pattern in email.security_notices.patterns",
                        a.platform
                    ),
                ));
            }
            if !a.address.contains('@') {
                return Err(ConfigError::invalid(
                    key("address"),
                    format!("`{}` is not an email address", a.address),
                ));
            }
        }
        Ok(())
    }

    /// `check-config`'s lines for the rules and the journal.
    pub fn summary_rules(&self) -> String {
        let mut out = format!(
            "email rules   exposed > {} visible · bulk > {} recipients per {} · internal: {}\n",
            self.max_visible_recipients,
            self.bulk_threshold,
            humantime::format_duration(self.bulk_window),
            if self.internal_domains.is_empty() {
                "none".to_owned()
            } else {
                self.internal_domains.join(", ")
            }
        );
        if let Some(j) = &self.journal {
            out.push_str(&j.summary());
        }
        if let Some(m) = &self.milter {
            out.push_str(&m.summary());
        }
        let n = &self.security_notices;
        out.push_str(&format!(
            "notices       {} pattern(s) ({}) · {} registered address(es)\n",
            n.patterns.len(),
            n.patterns
                .iter()
                .map(|p| p.platform.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            n.accounts.len()
        ));
        out
    }
}
