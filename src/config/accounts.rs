//! `[[accounts]]` and `[x]`: the watched accounts, their platform, and the X apps' request
//! budgets.

use std::{fmt, time::Duration};

use serde::Deserialize;
use url::Url;

use super::{Secret, default_poll_interval, duration, opt_duration};

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
    /// Bluesky: the PDS takedowns may send the app password to. Default: the `pds` of the
    /// approved profile baseline. A takedown is refused when the DID document names another.
    #[serde(default)]
    pub pds_url: Option<Url>,
    /// Bluesky: the AppView asked (`app.bsky.feed.getPosts`) whether a post the PDS calls gone
    /// is gone from the network. Default `https://public.api.bsky.app`.
    #[serde(default)]
    pub appview_url: Option<Url>,
    /// Lets endpoints taken from platform data (a DID document's PDS, a did:web host) be
    /// plain http or on a private, loopback or link-local address. For tests against
    /// loopback fakes; never in production.
    #[serde(default)]
    pub allow_private_endpoints: bool,
    /// The company's own publishing tools, by the exact name the platform gives the client
    /// that published a post (Mastodon's `application.name`). Their posts are approved by the
    /// tool instead of paged. The list is kept in the approved log: a change is chained and
    /// paged at the next start or reload.
    #[serde(default)]
    pub trusted_clients: Vec<String>,
}

/// The public PLC directory.
pub const DEFAULT_PLC_URL: &str = "https://plc.directory";

/// Bluesky's public AppView.
pub const DEFAULT_APPVIEW_URL: &str = "https://public.api.bsky.app";

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

    /// The AppView for a Bluesky account.
    pub fn appview_url(&self) -> Url {
        self.appview_url
            .clone()
            .unwrap_or_else(|| Url::parse(DEFAULT_APPVIEW_URL).expect("constant URL"))
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
    FacebookPage,
    Instagram,
    #[serde(rename = "youtube")]
    YouTube,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Mastodon => "mastodon",
            Platform::X => "x",
            Platform::Bluesky => "bluesky",
            Platform::TelegramChannel => "telegram_channel",
            Platform::FacebookPage => "facebook_page",
            Platform::Instagram => "instagram",
            Platform::YouTube => "youtube",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stands for a `base_url` the file did not set; replaced by the platform's default or refused.
pub(super) fn unset_base_url() -> Url {
    Url::parse("unset:base-url").expect("constant URL")
}

/// `[x]`: requests per 15-minute window the X scheduler may spend per endpoint, per app
/// (bearer token). Defaults are X's published app-level limits for the two endpoints read; set
/// your access level's figures. The scheduler never spends more, and stretches the accounts'
/// poll intervals when their `poll_interval`s would need more.
///
/// With `consumer_secret` and `webhook_id` set, X pushes the accounts' posts and deletions to
/// `general.public_url` + `/hooks/x` (the webhook registered under that id), through `push`'s
/// API; polling stays as the backstop and for the profile fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XLimits {
    /// `GET /2/users/:id/tweets` (one request per account poll). Default 1500.
    #[serde(default = "default_x_timeline_budget")]
    pub timeline_requests_per_window: u32,
    /// `GET /2/users?ids=` (one request per 100 accounts). Default 300.
    #[serde(default = "default_x_users_budget")]
    pub users_requests_per_window: u32,
    /// The app's consumer secret (API key secret): the key of the webhook's CRC answers and of
    /// every delivery's `x-twitter-webhooks-signature`. Push is off without it.
    #[serde(default)]
    pub consumer_secret: Option<Secret>,
    /// The id X gave the webhook registered at `general.public_url` + `/hooks/x`
    /// (`POST /2/webhooks`).
    #[serde(default)]
    pub webhook_id: Option<String>,
    /// Which API subscribes the accounts to the webhook. Default `activity`.
    #[serde(default)]
    pub push: XPushApi,
}

/// The X API that subscribes accounts to the webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XPushApi {
    /// The X Activity API (`/2/activity/subscriptions`, `post.create` and `post.delete` per
    /// account), with the app's bearer token.
    #[default]
    Activity,
    /// The Account Activity API (`/2/account_activity/webhooks/:id/subscriptions/all`), which
    /// X documents as being deprecated: each account subscribes with its own user token
    /// (`write_token`).
    AccountActivity,
}

impl XPushApi {
    pub fn as_str(self) -> &'static str {
        match self {
            XPushApi::Activity => "X Activity API",
            XPushApi::AccountActivity => "Account Activity API",
        }
    }
}

impl Default for XLimits {
    fn default() -> Self {
        XLimits {
            timeline_requests_per_window: default_x_timeline_budget(),
            users_requests_per_window: default_x_users_budget(),
            consumer_secret: None,
            webhook_id: None,
            push: XPushApi::default(),
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
