//! `[youtube]`: the Data API v3 key and quota shared by every watched channel, and the WebSub
//! hub that pushes the channels' uploads. The OAuth token takedowns use is the channel's own
//! `accounts[].write_token`.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::{Secret, duration};

/// The Data API's server, the default `base_url` of a YouTube account.
pub const YOUTUBE_API_URL: &str = "https://www.googleapis.com";

/// Google's WebSub hub, the one YouTube publishes its channel feeds to.
pub const YOUTUBE_HUB_URL: &str = "https://pubsubhubbub.appspot.com/";

/// A Google Cloud project's default Data API quota: 10,000 units a day, reset at midnight
/// Pacific time.
pub const DEFAULT_DAILY_QUOTA: u32 = 10_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YouTube {
    /// The Data API key (Google Cloud console → APIs & Services → Credentials), sent as `key=`
    /// on every read. Required when a YouTube account is watched.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// The WebSub hub the channels' feeds are subscribed at (callback: `general.public_url`
    /// + `/hooks/youtube/<account>`). Default Google's.
    #[serde(default = "default_hub_url")]
    pub hub_url: Url,
    /// Data API units the project may spend a day; every YouTube account's polls share it.
    /// Default 10,000 (the project default).
    #[serde(default = "default_daily_quota")]
    pub daily_quota: u32,
    /// The lease asked of the hub; the subscription is renewed at four fifths of the lease
    /// the hub granted. Default 5 days.
    #[serde(default = "default_lease", deserialize_with = "duration")]
    pub lease: Duration,
}

impl Default for YouTube {
    fn default() -> Self {
        YouTube {
            api_key: None,
            hub_url: default_hub_url(),
            daily_quota: default_daily_quota(),
            lease: default_lease(),
        }
    }
}

fn default_hub_url() -> Url {
    Url::parse(YOUTUBE_HUB_URL).expect("constant URL")
}

fn default_daily_quota() -> u32 {
    DEFAULT_DAILY_QUOTA
}

fn default_lease() -> Duration {
    Duration::from_secs(5 * 24 * 3600)
}
