//! `[email]`: the email feeds and the thresholds of the email rules.
//!
//! One struct per feed or concern hangs off [`Email`]; a feed that is absent is off. The rule
//! keys sit at the top of the section because every feed is judged by the same rules.

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use serde::Deserialize;

use super::{ConfigError, duration};

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
    #[serde(default)]
    pub security_notices: SecurityNotices,
}

impl Default for Email {
    fn default() -> Self {
        Email {
            max_visible_recipients: default_max_visible(),
            internal_domains: Vec::new(),
            bulk_threshold: default_bulk_threshold(),
            bulk_window: default_bulk_window(),
            journal: None,
            security_notices: SecurityNotices::default(),
        }
    }
}

/// `[email.journal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    /// Our name of the feed: incidents about journaled mail are filed under it.
    #[serde(default = "default_journal_name")]
    pub name: String,
    /// Port 0 picks a free port (tests). Keep it on a private interface: the listener takes
    /// mail from anyone who can connect.
    #[serde(default = "default_journal_listen")]
    pub listen: SocketAddr,
    /// Bytes; a larger message is refused with 552 (the MTA keeps it and reports it).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// `RCPT TO` per message; more is answered 452 (RFC 5321 asks servers to accept 100).
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            name: default_journal_name(),
            listen: default_journal_listen(),
            max_message_size: default_max_message_size(),
            max_recipients: default_max_recipients(),
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
fn default_journal_name() -> String {
    "journal".into()
}
fn default_journal_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2525))
}
fn default_max_message_size() -> usize {
    25 * 1024 * 1024
}
fn default_max_recipients() -> usize {
    10_000
}

impl Email {
    /// Whether the address's domain is one of the company's own.
    pub fn is_internal(&self, address: &str) -> bool {
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        self.internal_domains
            .iter()
            .any(|d| domain.eq_ignore_ascii_case(d))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
            if j.name.is_empty() || j.name.contains(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    "email.journal.name",
                    "a non-empty name without spaces",
                ));
            }
            if j.max_message_size < 1024 {
                return Err(ConfigError::invalid(
                    "email.journal.max_message_size",
                    "at least 1024 bytes",
                ));
            }
            if j.max_recipients == 0 {
                return Err(ConfigError::invalid(
                    "email.journal.max_recipients",
                    "at least 1",
                ));
            }
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

    /// `check-config`'s lines for the section.
    pub fn summary(&self) -> String {
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
            out.push_str(&format!(
                "email journal {} · SMTP on {} · max {} bytes, {} recipients per message\n",
                j.name, j.listen, j.max_message_size, j.max_recipients
            ));
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
