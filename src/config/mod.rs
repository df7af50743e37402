//! The TOML contract of DESIGN.md, loaded once into plain structs.
//!
//! Every struct denies unknown keys so a typo (`pol_interval`) stops the daemon at start-up instead
//! of silently watching with a default. Errors carry the dotted key path and the line, because the
//! person reading them is an operator with the file open, not a developer with a debugger.

mod accounts;
pub mod email;
mod error;
mod meta;
mod secret;
mod validate;
mod youtube;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use chrono::NaiveTime;
use serde::{Deserialize, Deserializer};
use url::Url;

pub use email::{
    AuditFeed, Cidr, Email, GoogleFeed, ImapFeed, Journal, JournalAuth, KillSwitch, M365Feed,
    Milter, MilterAction, NoticeAccount, NoticePattern, SecurityNotices,
};

pub use accounts::{
    Account, DEFAULT_APPVIEW_URL, DEFAULT_JETSTREAM_URL, DEFAULT_PLC_URL, Platform, X_API_URL,
    XLimits, XPushApi,
};

pub use error::ConfigError;
use error::{line_col, missing_field, with_suggestion};
pub use meta::{DEFAULT_GRAPH_VERSION, GRAPH_API_URL, Meta};
use validate::{check_http_url, check_secret_url};

pub use secret::Secret;
pub use youtube::{DEFAULT_DAILY_QUOTA, YOUTUBE_API_URL, YOUTUBE_HUB_URL, YouTube};

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
    /// The Meta app of the Facebook Page and Instagram accounts.
    #[serde(default)]
    pub meta: Meta,
    /// The YouTube Data API key, quota and WebSub hub, shared by every watched channel.
    #[serde(default)]
    pub youtube: YouTube,
    /// Mail feeds and the mail kill switch. Absent: no mail is watched.
    #[serde(default)]
    pub email: Option<Email>,
}

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
///
/// The principle: what silences tocsin (approve, a long mute, a false-alarm resolution) needs two
/// different responders on critical incidents once the rotation has two, so that one stolen phone
/// cannot hide an attack; what contains (take down, pause) stays one press.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// Rules that page even while their account is muted: changes that are never planned work.
    /// Default: [`DEFAULT_UNMUTABLE`]; `unmutable = []` makes every rule mutable.
    #[serde(default = "default_unmutable")]
    pub unmutable: Vec<Rule>,
    /// Severity → distinct responders needed to approve ("it was us"); 1 when not listed. Left
    /// empty (the default), it reads `{ critical = 2 }` with two or more responders configured.
    #[serde(default)]
    pub approve_quorum: BTreeMap<Severity, u8>,
    /// Severity → distinct responders needed to resolve as `false-alarm`, which makes the same
    /// evidence never page again; 1 when not listed. Left empty (the default), it reads
    /// `{ critical = 2 }` with two or more responders configured.
    #[serde(default)]
    pub resolve_quorum: BTreeMap<Severity, u8>,
    /// Distinct responders needed to take a post down: 1 (default) acts on the first press, 2
    /// makes a second responder confirm. A deletion cannot be undone, so a stolen phone alone
    /// should not be able to erase the company's posts where the rotation can afford two.
    #[serde(default = "default_takedown_quorum")]
    pub takedown_quorum: u8,
    /// The longest mute one responder may set alone (default 1h); a longer one waits for a
    /// second, different responder to ask for it too (with two or more responders configured).
    #[serde(default = "default_mute_without_quorum", deserialize_with = "duration")]
    pub mute_without_quorum: Duration,
    /// Page (medium) when a post the company approved is deleted; otherwise the deletion is only
    /// written in the timeline chain. Default false.
    #[serde(default)]
    pub page_approved_deletions: bool,
}

/// The rules that page through a mute unless `paging.unmutable` says otherwise: none of them is
/// ever planned work, and each is what an intruder who mutes the account would want hidden.
pub const DEFAULT_UNMUTABLE: [Rule; 5] = [
    Rule::UnapprovedPost,
    Rule::ProfileChanged,
    Rule::AdminChanged,
    Rule::MonitorBlind,
    Rule::StoreTampered,
];

fn default_unmutable() -> Vec<Rule> {
    DEFAULT_UNMUTABLE.to_vec()
}

fn default_mute_without_quorum() -> Duration {
    Duration::from_secs(3600)
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            unmutable: default_unmutable(),
            approve_quorum: BTreeMap::new(),
            resolve_quorum: BTreeMap::new(),
            takedown_quorum: default_takedown_quorum(),
            mute_without_quorum: default_mute_without_quorum(),
            page_approved_deletions: false,
        }
    }
}

fn default_takedown_quorum() -> u8 {
    1
}

/// `[[general.api_tokens]]`: one operator (a person, a CI job) and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub token: Secret,
    pub role: ApiRole,
}

/// What an API token may do. Ordered: each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiRole {
    /// Read incidents, accounts, the approved log and the timeline.
    Read,
    /// Also pre-approve posts and campaigns, and revoke approvals.
    Approve,
    /// Everything.
    Admin,
}

impl ApiRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRole::Read => "read",
            ApiRole::Approve => "approve",
            ApiRole::Admin => "admin",
        }
    }
}

/// The name under which `general.api_token` acts.
pub const LEGACY_API_TOKEN_NAME: &str = "api";

impl General {
    /// Every API token: `api_token` (an `admin` named `api`) and `api_tokens`.
    pub fn all_api_tokens(&self) -> Vec<ApiToken> {
        let mut all = vec![ApiToken {
            name: LEGACY_API_TOKEN_NAME.to_owned(),
            token: self.api_token.clone(),
            role: ApiRole::Admin,
        }];
        all.extend(self.api_tokens.iter().cloned());
        all
    }
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
    /// Address of the HTTP server: the operator API, `/healthz`, `/readyz`, `/metrics`, and the
    /// provider webhooks unless `hooks_listen` is set. Port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the provider webhooks (`/hooks/*`, with `/healthz`) are served instead, so that the
    /// listener the providers must reach from the internet serves nothing else: `/metrics` and
    /// `/readyz` say which accounts are watched and when nobody is being paged.
    #[serde(default)]
    pub hooks_listen: Option<SocketAddr>,
    /// The `https` URL at which the platforms reach the hooks listener from the internet (a
    /// reverse proxy or load balancer in front of `hooks_listen`): the callback base that push
    /// subscriptions (WebSub, Graph API webhooks, X webhooks) register. Plain `http` only on
    /// loopback, for tests. Absent: platforms that need it are polled only.
    #[serde(default)]
    pub public_url: Option<Url>,
    /// Connections each HTTP listener serves at once; more are answered 503 and closed, so a
    /// flood of idle connections cannot take every file descriptor. Default 512.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Bearer token that guards `/api/v1`: an `admin` token named `api`.
    pub api_token: Secret,
    /// More operator tokens, each with a name (recorded as `by` of what it approves or
    /// revokes, whatever the request body says) and a role.
    #[serde(default)]
    pub api_tokens: Vec<ApiToken>,
    /// How long one platform API call may take before it counts as a failed poll. A hanging
    /// API must turn into a failure (and, past the grace, `monitor.blind`), never a stuck source.
    #[serde(default = "default_source_timeout", deserialize_with = "duration")]
    pub source_timeout: Duration,
    /// Ed25519 key that signs the heads of the approved log and the incident timeline (the
    /// base64 PKCS#8 text `tocsin keygen` prints). Kept outside the state dir, so that someone
    /// who can rewrite the sled file still cannot make an edit verify. Absent: the heads are
    /// unsigned, tocsin warns and `/readyz` says `chain: unsigned`.
    #[serde(default)]
    pub signing_key: Option<Secret>,
    /// How often the (signed) heads are published to the chat, every fallback channel and the
    /// log, besides at start and in the daily summary: a copy out of the intruder's reach
    /// that `tocsin log verify --expect-head` compares with. Default "1h".
    #[serde(default = "default_publish_heads", deserialize_with = "duration")]
    pub publish_heads: Duration,
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

fn default_state_dir() -> PathBuf {
    PathBuf::from("state")
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_connections() -> usize {
    512
}
fn default_api_url() -> Url {
    Url::parse("https://api.telegram.org").expect("constant URL")
}
fn default_long_poll() -> Duration {
    Duration::from_secs(10)
}
fn default_publish_heads() -> Duration {
    Duration::from_secs(3600)
}
fn default_source_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(17)
}
pub(super) fn default_poll_interval() -> Duration {
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

pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

pub(super) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
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

    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
pub(crate) mod tests;
