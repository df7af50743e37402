//! `[[email.imap]]`: the mailbox a social account is registered with, read over IMAP IDLE for
//! the platform's security notices.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Secret, opt_duration};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapFeed {
    /// Our name for the feed: health, cursor and logs are labelled with it.
    pub name: String,
    /// The social account (`accounts[].name`) the mailbox is registered for: notices without a
    /// registered address of `[email.security_notices]` are about it.
    pub account: String,
    /// The IMAP server; TLS from the first byte (IMAPS), never STARTTLS or plain text.
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub username: String,
    pub password: Secret,
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    /// The authserv-id the mailbox provider writes in its `Authentication-Results` (RFC 8601,
    /// e.g. `mx.google.com`): only that header is believed, and a notice counts only when it
    /// shows `dkim=pass` for the platform's domain.
    pub authserv_id: String,
    /// Extra trust anchors (PEM) for the server's certificate, besides the public roots: a
    /// company CA, or a test server's own certificate.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// How long the mailbox may be unreachable before it counts as blind. Default 2 minutes.
    #[serde(default, deserialize_with = "opt_duration")]
    pub grace: Option<Duration>,
}

impl ImapFeed {
    pub fn grace(&self) -> Duration {
        self.grace.unwrap_or(Duration::from_secs(120))
    }
}

fn default_port() -> u16 {
    993
}

fn default_mailbox() -> String {
    "INBOX".into()
}
