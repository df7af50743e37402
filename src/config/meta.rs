//! `[meta]`: what the Facebook Page and Instagram accounts share — the Graph API version every
//! request names, and the Meta app's webhook secrets.

use serde::Deserialize;

use super::Secret;

/// Meta's Graph API, the one server of Facebook Pages and Instagram professional accounts.
pub const GRAPH_API_URL: &str = "https://graph.facebook.com";

/// The Graph API version pinned when `[meta] graph_version` is absent. Meta changes fields
/// between versions; a pinned version keeps the answers the shape this build reads.
pub const DEFAULT_GRAPH_VERSION: &str = "v21.0";

/// `[meta]`: the Meta app tocsin runs as.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// The Graph API version in every request path (`v21.0`).
    #[serde(default = "default_graph_version")]
    pub graph_version: String,
    /// The app secret (App Dashboard → App settings → Basic): the key of every webhook
    /// delivery's `X-Hub-Signature-256`. Absent: Pages are polled only.
    #[serde(default)]
    pub app_secret: Option<Secret>,
    /// The verify token typed into the App Dashboard's webhook setup, echoed back by the
    /// subscription handshake (`hub.verify_token`).
    #[serde(default)]
    pub verify_token: Option<Secret>,
    /// The largest webhook delivery read, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body: usize,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            graph_version: default_graph_version(),
            app_secret: None,
            verify_token: None,
            max_body: default_max_body(),
        }
    }
}

impl Meta {
    /// Webhook deliveries are taken: both secrets are set.
    pub fn push(&self) -> bool {
        self.app_secret.is_some() && self.verify_token.is_some()
    }
}

fn default_graph_version() -> String {
    DEFAULT_GRAPH_VERSION.to_owned()
}

/// Meta batches up to 1,000 changes in one delivery; a Page's are a few KiB each.
fn default_max_body() -> usize {
    1024 * 1024
}
