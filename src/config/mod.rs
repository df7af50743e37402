//! The TOML contract of DESIGN.md, loaded once into plain structs.
//!
//! Every struct denies unknown keys so a typo (`pol_interval`) stops the daemon at start-up instead
//! of silently watching with a default. Errors carry the dotted key path and the line, because the
//! person reading them is an operator with the file open, not a developer with a debugger.

pub mod email;
mod secret;

use std::{
    collections::{BTreeMap, HashSet},
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use chrono::NaiveTime;
use serde::{Deserialize, Deserializer};
use url::Url;

pub use email::{
    AuditFeed, Email, GoogleFeed, Journal, KillSwitch, M365Feed, NoticeAccount, NoticePattern,
    SecurityNotices,
};

pub use secret::Secret;

use crate::model::{Rule, Severity, parse_duration};

/// The documented example, written by `tocsin init`: one source of truth for every key.
pub const EXAMPLE: &str = include_str!("../../config/tocsin.example.toml");

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub general: General,
    pub telegram: Telegram,
    #[serde(default)]
    pub accounts: Vec<Account>,
    /// Where pages go besides Telegram.
    #[serde(default)]
    pub channels: Channels,
    /// Optional dead-man switch and daily summary.
    #[serde(default)]
    pub heartbeat: Option<Heartbeat>,
    #[serde(default)]
    pub grouping: Grouping,
    /// Re-paging and escalation while an incident is not acknowledged. Absent: no reminders.
    #[serde(default)]
    pub escalation: Option<Escalation>,
    #[serde(default)]
    pub paging: Paging,
    /// X's rate-limit budgets, shared by every watched X account of one app.
    #[serde(default)]
    pub x: XLimits,
    /// Mail feeds and the mail kill switch. Absent: no mail is watched.
    #[serde(default)]
    pub email: Option<Email>,
}

/// `[x]`: requests per 15-minute window the X scheduler may spend per endpoint, per app
/// (bearer token). Defaults are X's published app-level limits for the two endpoints read; set
/// your access level's figures. The scheduler never spends more, and stretches the accounts'
/// poll intervals when their `poll_interval`s would need more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XLimits {
    /// `GET /2/users/:id/tweets` (one request per account poll). Default 1500.
    #[serde(default = "default_x_timeline_budget")]
    pub timeline_requests_per_window: u32,
    /// `GET /2/users?ids=` (one request per 100 accounts). Default 300.
    #[serde(default = "default_x_users_budget")]
    pub users_requests_per_window: u32,
}

impl Default for XLimits {
    fn default() -> Self {
        XLimits {
            timeline_requests_per_window: default_x_timeline_budget(),
            users_requests_per_window: default_x_users_budget(),
        }
    }
}

fn default_x_timeline_budget() -> u32 {
    1500
}
fn default_x_users_budget() -> u32 {
    300
}

/// X's API, the only platform with one well-known server.
pub const X_API_URL: &str = "https://api.x.com";

/// Fallback channels: pages reach them even when Telegram is down, so one broken path cannot
/// silence tocsin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channels {
    #[serde(default)]
    pub pagerduty: Vec<PagerDutyChannel>,
    #[serde(default)]
    pub webhook: Vec<WebhookChannel>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyChannel {
    /// Our name for the channel; its outbox queue and metrics are labelled with it.
    pub name: String,
    /// The Events API v2 integration key of the PagerDuty service.
    pub routing_key: Secret,
    #[serde(default = "default_pagerduty_url")]
    pub api_url: Url,
    /// Severities paged here; all when absent.
    #[serde(default)]
    pub severities: Option<Vec<Severity>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    pub name: String,
    pub url: Url,
    /// Key of the HMAC-SHA256 signature, so the receiver can tell our requests from forgeries.
    pub secret: Secret,
    #[serde(default)]
    pub severities: Option<Vec<Severity>>,
}

/// An external monitor is told tocsin is alive; silence there means tocsin is down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Pinged with GET every `interval`. A secret because ping URLs usually embed a token.
    #[serde(default)]
    pub url: Option<Secret>,
    #[serde(default = "default_heartbeat_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// UTC time of day of the "all quiet / N incidents" message in the on-call chat, so a
    /// silent chat is known to be quiet rather than broken.
    #[serde(default, deserialize_with = "time_of_day")]
    pub daily_summary: Option<NaiveTime>,
}

impl Channels {
    pub fn is_empty(&self) -> bool {
        self.pagerduty.is_empty() && self.webhook.is_empty()
    }
}

/// Burst grouping of findings (rogue posts) on one account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grouping {
    /// Findings of the same rule on the same account within this long of the live incident's
    /// last update join it. "0s" turns grouping off. Default "5m".
    #[serde(default = "default_group_window", deserialize_with = "duration")]
    pub window: Duration,
}

impl Default for Grouping {
    fn default() -> Self {
        Grouping {
            window: default_group_window(),
        }
    }
}

fn default_group_window() -> Duration {
    crate::model::GROUP_WINDOW
}

/// Who gets woken, and when, while nobody acknowledges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// A reminder (a new message, which notifies, unlike an edit) every this long until acked.
    #[serde(deserialize_with = "duration")]
    pub renotify_after: Duration,
    /// Move to the next tier every this long. Absent: stay on the first tier.
    #[serde(default, deserialize_with = "opt_duration")]
    pub escalate_after: Option<Duration>,
    /// Tiers in order; reminders mention the current tier's people.
    #[serde(default)]
    pub tiers: Vec<Tier>,
    /// Per-severity timings replacing the two above (`[escalation.severity.critical]`).
    #[serde(default)]
    pub severity: std::collections::BTreeMap<crate::model::Severity, Route>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Telegram usernames (without @) mentioned in reminders, so their phones ring.
    #[serde(default)]
    pub mentions: Vec<String>,
    /// Another chat that also gets this tier's reminders (e.g. the managers' group).
    #[serde(default)]
    pub chat_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default, deserialize_with = "opt_duration")]
    pub renotify_after: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub escalate_after: Option<Duration>,
}

impl Escalation {
    /// The reminder interval and the tier step for a severity.
    pub fn timings(&self, severity: crate::model::Severity) -> (Duration, Option<Duration>) {
        let route = self.severity.get(&severity);
        (
            route
                .and_then(|r| r.renotify_after)
                .unwrap_or(self.renotify_after),
            route.and_then(|r| r.escalate_after).or(self.escalate_after),
        )
    }
}

/// `[paging]`: who is paged when, and how many responders an approval takes. Optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// Rules that page even while their account is muted: changes that are never planned work.
    #[serde(default)]
    pub unmutable: Vec<Rule>,
    /// Severity → distinct responders needed to approve ("it was us"); 1 when not listed.
    #[serde(default)]
    pub approve_quorum: BTreeMap<Severity, u8>,
    /// Distinct responders needed to take a post down: 1 (default) acts on the first press, 2
    /// makes a second responder confirm. A deletion cannot be undone, so a stolen phone alone
    /// should not be able to erase the company's posts where the rotation can afford two.
    #[serde(default = "default_takedown_quorum")]
    pub takedown_quorum: u8,
    /// Page (medium) when a post the company approved is deleted; otherwise the deletion is only
    /// written in the timeline chain. Default false.
    #[serde(default)]
    pub page_approved_deletions: bool,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            unmutable: Vec::new(),
            approve_quorum: BTreeMap::new(),
            takedown_quorum: default_takedown_quorum(),
            page_approved_deletions: false,
        }
    }
}

fn default_takedown_quorum() -> u8 {
    1
}

/// The most responders a quorum may ask for: on-call rotations are small, and a quorum nobody
/// can reach at 3 a.m. would leave a real incident unapprovable.
pub const MAX_QUORUM: u8 = 5;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct General {
    /// Directory of the sled database; created if missing.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Address of the HTTP server (webhooks, approvals API, /healthz). Port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token that guards `/api/v1`.
    pub api_token: Secret,
    /// How long one platform API call may take before it counts as a failed poll. A hanging
    /// API must turn into a failure (and, past the grace, `monitor.blind`), never a stuck source.
    #[serde(default = "default_source_timeout", deserialize_with = "duration")]
    pub source_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telegram {
    pub bot_token: Secret,
    /// Base URL of the Bot API; tests point it at a fake on 127.0.0.1.
    #[serde(default = "default_api_url")]
    pub api_url: Url,
    /// The on-call chat: pages go here and only commands from here are obeyed.
    pub chat_id: i64,
    /// Telegram user ids allowed to act on incidents.
    pub responders: Vec<u64>,
    /// How long one `getUpdates` long poll waits for news. Kept well under the HTTP timeout.
    #[serde(default = "default_long_poll", deserialize_with = "duration")]
    pub long_poll: Duration,
    /// How long page deliveries may keep failing before Telegram counts as down and the
    /// fallback channels are paged about it. Refusals that cannot heal on their own (token
    /// revoked, bot removed, chat gone) count at once.
    #[serde(default = "default_failure_grace", deserialize_with = "duration")]
    pub failure_grace: Duration,
    /// How long one Bot API call other than `getUpdates` may take before it is abandoned and
    /// retried: a send that hangs must not hold every page queued behind it.
    #[serde(default = "default_request_timeout", deserialize_with = "duration")]
    pub request_timeout: Duration,
}

/// One watched account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Our name for the account, used in pages, commands and approvals.
    pub name: String,
    pub platform: Platform,
    /// The platform's server. Required, except for X (default `https://api.x.com`).
    #[serde(default = "unset_base_url")]
    pub base_url: Url,
    /// The platform's id of the account (Mastodon: the numeric account id; X: the numeric user
    /// id, which survives a handle change).
    pub account_id: String,
    /// Read credential: needed for private fields (Mastodon), API access (X bearer token).
    #[serde(default)]
    pub token: Option<Secret>,
    /// Write credential used only by takedown (Mastodon or X user token, Bluesky app password).
    /// Kept apart from `token` so a read-only deployment holds no power to delete.
    #[serde(default)]
    pub write_token: Option<Secret>,
    #[serde(default = "default_poll_interval", deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// How long the source may fail before it counts as blind (`monitor.blind`, `/readyz`).
    /// Default: three poll intervals, at least 30 s. A refused token is blind at once.
    #[serde(default, deserialize_with = "opt_duration")]
    pub grace: Option<Duration>,
    /// Bluesky: the PLC directory that resolves `did:plc:` identities. Default
    /// `https://plc.directory`.
    #[serde(default)]
    pub plc_url: Option<Url>,
    /// Bluesky: the Jetstream `subscribe` endpoint pushing the account's commits. Default
    /// `wss://jetstream2.us-east.bsky.network/subscribe`.
    #[serde(default)]
    pub jetstream_url: Option<Url>,
}

/// The public PLC directory.
pub const DEFAULT_PLC_URL: &str = "https://plc.directory";
/// One of Bluesky's public Jetstream instances.
pub const DEFAULT_JETSTREAM_URL: &str = "wss://jetstream2.us-east.bsky.network/subscribe";

impl Account {
    /// How long this source may go without a successful poll before it counts as blind: a
    /// couple of missed polls (a 5xx, a rate-limit wait) are normal.
    pub fn grace(&self) -> Duration {
        self.grace
            .unwrap_or_else(|| (self.poll_interval * 3).max(Duration::from_secs(30)))
    }

    /// The PLC directory for a Bluesky account.
    pub fn plc_url(&self) -> Url {
        self.plc_url
            .clone()
            .unwrap_or_else(|| Url::parse(DEFAULT_PLC_URL).expect("constant URL"))
    }

    /// The Jetstream endpoint for a Bluesky account.
    pub fn jetstream_url(&self) -> Url {
        self.jetstream_url
            .clone()
            .unwrap_or_else(|| Url::parse(DEFAULT_JETSTREAM_URL).expect("constant URL"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Mastodon,
    X,
    Bluesky,
    TelegramChannel,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Mastodon => "mastodon",
            Platform::X => "x",
            Platform::Bluesky => "bluesky",
            Platform::TelegramChannel => "telegram_channel",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stands for a `base_url` the file did not set; replaced by the platform's default or refused.
fn unset_base_url() -> Url {
    Url::parse("unset:base-url").expect("constant URL")
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("state")
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_api_url() -> Url {
    Url::parse("https://api.telegram.org").expect("constant URL")
}
fn default_long_poll() -> Duration {
    Duration::from_secs(10)
}
fn default_source_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(17)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(15)
}
fn default_failure_grace() -> Duration {
    Duration::from_secs(120)
}
fn default_pagerduty_url() -> Url {
    Url::parse("https://events.pagerduty.com").expect("constant URL")
}
fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(60)
}

/// `"09:00"`: a UTC time of day.
fn time_of_day<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveTime>, D::Error> {
    let s = String::deserialize(d)?;
    NaiveTime::parse_from_str(s.trim(), "%H:%M")
        .map(Some)
        .map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid time {s:?}; write HH:MM (UTC), like \"09:00\""
            ))
        })
}

/// The shortest poll interval accepted: anything faster only burns the platform's rate limit.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// Why a configuration was refused. The message always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{location}key `{key}`: {message}")]
    Invalid {
        /// `file:line:column: ` or empty when unknown.
        location: String,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// An error about `key` with no file position: what a check after parsing reports.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            location: String::new(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// The dotted key the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } => None,
        }
    }
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|err| {
            // A bad map key (`approve_quorum = { dire = 2 }`) ends the path in `?`; the message
            // names the key, the path names the table.
            let path = err.path().to_string();
            let path = path.strip_suffix(".?").unwrap_or(&path).to_owned();
            let inner = err.into_inner();
            let location = inner
                .span()
                .map(|span| {
                    let (line, col) = line_col(text, span.start);
                    format!("{origin}:{line}:{col}: ")
                })
                .unwrap_or_else(|| format!("{origin}: "));
            let message = with_suggestion(inner.message());
            // A missing field is reported at its parent; name the field itself.
            let key = match missing_field(&message) {
                Some(field) if path == "." || path.is_empty() => field.to_owned(),
                Some(field) => format!("{path}.{field}"),
                None => path,
            };
            ConfigError::Invalid {
                location,
                key,
                message,
            }
        })?;
        let mut config = config;
        config.fill_defaults()?;
        config.validate()?;
        Ok(config)
    }

    /// Defaults that depend on another key (an account's `base_url` on its platform).
    fn fill_defaults(&mut self) -> Result<(), ConfigError> {
        let unset = unset_base_url();
        for (i, account) in self.accounts.iter_mut().enumerate() {
            if account.base_url != unset {
                continue;
            }
            match account.platform {
                Platform::X => account.base_url = Url::parse(X_API_URL).expect("constant URL"),
                _ => {
                    return Err(ConfigError::invalid(
                        format!("accounts[{i}].base_url"),
                        format!(
                            "missing: the {} server's URL, like \"https://mastodon.example\"",
                            account.platform
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks what serde cannot: cross-field rules and ranges.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.telegram.chat_id == 0 {
            return Err(ConfigError::invalid(
                "telegram.chat_id",
                "must be the on-call chat's id",
            ));
        }
        if self.telegram.responders.is_empty() {
            return Err(ConfigError::invalid(
                "telegram.responders",
                "list at least one Telegram user id allowed to act on incidents",
            ));
        }
        for (key, d) in [
            ("general.source_timeout", self.general.source_timeout),
            ("telegram.request_timeout", self.telegram.request_timeout),
        ] {
            if d < Duration::from_millis(100) || d > Duration::from_secs(300) {
                return Err(ConfigError::invalid(key, "between 100ms and 5m"));
            }
        }
        if self.telegram.long_poll > Duration::from_secs(50) {
            return Err(ConfigError::invalid("telegram.long_poll", "at most 50s"));
        }
        check_http_url("telegram.api_url", &self.telegram.api_url)?;
        for (severity, n) in &self.paging.approve_quorum {
            if !(1..=MAX_QUORUM).contains(n) {
                return Err(ConfigError::invalid(
                    format!("paging.approve_quorum.{}", severity.as_str()),
                    format!("between 1 and {MAX_QUORUM} responders, not {n}"),
                ));
            }
        }
        if !(1..=MAX_QUORUM).contains(&self.paging.takedown_quorum) {
            return Err(ConfigError::invalid(
                "paging.takedown_quorum",
                format!(
                    "between 1 and {MAX_QUORUM} responders, not {}",
                    self.paging.takedown_quorum
                ),
            ));
        }
        if let Some(e) = &self.escalation {
            let short = Duration::from_millis(100);
            let mut intervals = vec![(
                "escalation.renotify_after".to_owned(),
                Some(e.renotify_after),
            )];
            intervals.push(("escalation.escalate_after".to_owned(), e.escalate_after));
            for (sev, r) in &e.severity {
                intervals.push((
                    format!("escalation.severity.{}.renotify_after", sev.as_str()),
                    r.renotify_after,
                ));
                intervals.push((
                    format!("escalation.severity.{}.escalate_after", sev.as_str()),
                    r.escalate_after,
                ));
            }
            for (key, d) in intervals {
                if d.is_some_and(|d| d < short) {
                    return Err(ConfigError::invalid(key, "at least 100ms"));
                }
            }
            for (i, tier) in e.tiers.iter().enumerate() {
                if tier.mentions.is_empty() && tier.chat_id.is_none() {
                    return Err(ConfigError::invalid(
                        format!("escalation.tiers[{i}]"),
                        "name at least one of `mentions` or `chat_id`",
                    ));
                }
                if let Some(m) = tier
                    .mentions
                    .iter()
                    .find(|m| m.is_empty() || m.contains(char::is_whitespace))
                {
                    return Err(ConfigError::invalid(
                        format!("escalation.tiers[{i}].mentions"),
                        format!("`{m}` is not a Telegram username"),
                    ));
                }
            }
        }
        let mut names = HashSet::new();
        let mut feed_names: Vec<String> = self.accounts.iter().map(|a| a.name.clone()).collect();
        for (i, account) in self.accounts.iter().enumerate() {
            let key = |field: &str| format!("accounts[{i}].{field}");
            if account.name.trim().is_empty() || account.name.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    key("name"),
                    "a non-empty name without spaces",
                ));
            }
            if !names.insert(account.name.as_str()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("`{}` is used by another account", account.name),
                ));
            }
            if !matches!(
                account.platform,
                Platform::Mastodon | Platform::X | Platform::TelegramChannel | Platform::Bluesky
            ) {
                return Err(ConfigError::invalid(
                    key("platform"),
                    format!(
                        "`{}` is not supported by this build yet; supported: mastodon, x, telegram_channel, bluesky",
                        account.platform
                    ),
                ));
            }
            if account.platform == Platform::X {
                if account.token.is_none() {
                    return Err(ConfigError::invalid(
                        key("token"),
                        "X needs the app's bearer token to read anything",
                    ));
                }
                if !account.account_id.chars().all(|c| c.is_ascii_digit()) {
                    return Err(ConfigError::invalid(
                        key("account_id"),
                        format!(
                            "`{}` is not an X user id: the numeric id, not the @handle",
                            account.account_id
                        ),
                    ));
                }
            }
            if account.platform == Platform::TelegramChannel
                && !account
                    .account_id
                    .trim()
                    .parse::<i64>()
                    .is_ok_and(|id| id < 0)
            {
                return Err(ConfigError::invalid(
                    key("account_id"),
                    "the channel's chat id: a negative number, like -1001234567890",
                ));
            }
            check_http_url(&key("base_url"), &account.base_url)?;
            if account.account_id.trim().is_empty() {
                return Err(ConfigError::invalid(key("account_id"), "must not be empty"));
            }
            validate_bluesky_keys(account, &key)?;
            if account.poll_interval < MIN_POLL_INTERVAL {
                return Err(ConfigError::invalid(
                    key("poll_interval"),
                    format!("at least {}", humantime::format_duration(MIN_POLL_INTERVAL)),
                ));
            }
        }
        for (key, n) in [
            (
                "x.timeline_requests_per_window",
                self.x.timeline_requests_per_window,
            ),
            (
                "x.users_requests_per_window",
                self.x.users_requests_per_window,
            ),
        ] {
            if n == 0 {
                return Err(ConfigError::invalid(key, "at least 1 request per window"));
            }
        }
        self.validate_channels()?;
        if let Some(email) = &self.email {
            email.validate(&mut feed_names)?;
        }
        if let Some(h) = &self.heartbeat {
            if let Some(url) = &h.url {
                let parsed = Url::parse(url.expose()).map_err(|e| {
                    ConfigError::invalid("heartbeat.url", format!("not a URL ({e})"))
                })?;
                check_http_url("heartbeat.url", &parsed)
                    .map_err(|_| ConfigError::invalid("heartbeat.url", "not an http(s) URL"))?;
            }
            if h.interval < MIN_POLL_INTERVAL {
                return Err(ConfigError::invalid(
                    "heartbeat.interval",
                    format!("at least {}", humantime::format_duration(MIN_POLL_INTERVAL)),
                ));
            }
            if h.url.is_none() && h.daily_summary.is_none() {
                return Err(ConfigError::invalid(
                    "heartbeat",
                    "set `url`, `daily_summary` or both, or remove the section",
                ));
            }
        }
        if self.telegram.failure_grace < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "telegram.failure_grace",
                "at least 1s",
            ));
        }
        Ok(())
    }

    fn validate_channels(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        let mut check = |key: String,
                         name: &str,
                         url: (&str, &Url),
                         severities: &Option<Vec<Severity>>|
         -> Result<(), ConfigError> {
            if name.trim().is_empty() || name.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    "a non-empty name without spaces",
                ));
            }
            if !names.insert(name.to_owned()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("`{name}` is used by another channel"),
                ));
            }
            check_http_url(&format!("{key}.{}", url.0), url.1)?;
            if severities.as_ref().is_some_and(Vec::is_empty) {
                return Err(ConfigError::invalid(
                    format!("{key}.severities"),
                    "list at least one severity, or remove the key to page every severity",
                ));
            }
            Ok(())
        };
        for (i, c) in self.channels.pagerduty.iter().enumerate() {
            let key = format!("channels.pagerduty[{i}]");
            check(key, &c.name, ("api_url", &c.api_url), &c.severities)?;
        }
        for (i, c) in self.channels.webhook.iter().enumerate() {
            let key = format!("channels.webhook[{i}]");
            check(key, &c.name, ("url", &c.url), &c.severities)?;
        }
        Ok(())
    }

    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

/// The Bluesky keys: only on Bluesky accounts, with the schemes their services speak.
fn validate_bluesky_keys(
    account: &Account,
    key: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    if account.platform != Platform::Bluesky {
        for (name, set) in [
            ("plc_url", account.plc_url.is_some()),
            ("jetstream_url", account.jetstream_url.is_some()),
        ] {
            if set {
                return Err(ConfigError::invalid(
                    key(name),
                    format!(
                        "only for platform = \"bluesky\", not `{}`",
                        account.platform
                    ),
                ));
            }
        }
        return Ok(());
    }
    let id = account.account_id.trim();
    let is_did = id.starts_with("did:plc:") || id.starts_with("did:web:");
    let is_handle = !id.starts_with("did:")
        && id.contains('.')
        && !id.starts_with('@')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !is_did && !is_handle {
        return Err(ConfigError::invalid(
            key("account_id"),
            format!(
                "`{id}` is neither a did:plc:/did:web: DID nor a handle like example.bsky.social"
            ),
        ));
    }
    if let Some(url) = &account.plc_url {
        check_http_url(&key("plc_url"), url)?;
    }
    if let Some(url) = &account.jetstream_url
        && !(matches!(url.scheme(), "ws" | "wss") && url.has_host())
    {
        return Err(ConfigError::invalid(
            key("jetstream_url"),
            format!("`{url}` is not a ws(s) URL"),
        ));
    }
    Ok(())
}

fn check_http_url(key: &str, url: &Url) -> Result<(), ConfigError> {
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(()),
        _ => Err(ConfigError::invalid(
            key,
            format!("`{url}` is not an http(s) URL"),
        )),
    }
}

/// Appends "did you mean" to serde's unknown-field message: the list it prints is long and the
/// operator's typo is usually one or two letters from the key they meant.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_owned();
    };
    let Some((given, expected)) = rest.split_once('`') else {
        return message.to_owned();
    };
    // Valid keys are the backticked names after the given one.
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|key| (levenshtein(given, key), key))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, key)) => format!("{message} — did you mean `{key}`?"),
        None => message.to_owned(),
    }
}

/// Edit distance in characters (insertions, deletions, substitutions).
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
pub(crate) mod tests;
