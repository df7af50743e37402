//! Loopback fakes of the platforms tocsin talks to, speaking their real wire protocols on
//! 127.0.0.1 ephemeral ports. The demo plays its story against them and the integration tests
//! drive them; they never bind or call any other address.

pub mod bluesky;
pub mod flood;
pub mod front;
pub mod google;
pub mod imap;
pub mod m365;
pub mod mail_signers;
pub mod mailer;
pub mod mastodon;
pub mod meta;
pub mod pagerduty;
pub mod smtp;
pub mod sns;
pub mod telegram;
pub mod webhook;
pub mod x;
pub mod youtube;

use std::time::Duration;

use tokio::{net::TcpListener, sync::watch};

/// Serves a fake until `stop` turns true (or forever, for fakes that never stop). A fake that
/// stops must be able to come back on the same port, so the listener is dropped on the way out.
fn spawn_server(
    listener: TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
    name: &'static str,
) {
    tokio::spawn(async move {
        let stopped = async move {
            // A dropped sender means nobody can stop this fake: serve until the runtime ends.
            if stop.wait_for(|stopped| *stopped).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(%error, fake = name, "fake server failed");
        }
    });
}

/// Polls `f` every 10 ms until it holds or `timeout` passes; whether it held.
async fn wait_until<T>(fake: &T, timeout: Duration, f: impl Fn(&T) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f(fake) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The on-call chat of [`loopback_config`].
pub const ONCALL_CHAT: i64 = -1001234567890;
/// The watched account's name in [`loopback_config`].
pub const ACCOUNT: &str = "mastodon-main";

/// The config of the demo and the tests, as the TOML tocsin reads: one Mastodon account on
/// `masto`, paged to [`ONCALL_CHAT`] through `bot` with responder 111, HTTP on a free loopback
/// port, every optional section at its default. Callers parse it (`tocsin::Config::parse`) and
/// change what their story needs. Text rather than tocsin's types, so that the fakes stay a
/// crate of their own.
pub fn loopback_config(
    state: &std::path::Path,
    bot: &telegram::FakeBotApi,
    masto: &mastodon::FakeMastodon,
    account_id: &str,
    api_token: &str,
    poll_interval: Duration,
) -> String {
    format!(
        r#"[general]
state_dir = '{state}'
listen = "127.0.0.1:0"
api_token = '{api_token}'
source_timeout = "20s"

[telegram]
bot_token = '{bot_token}'
api_url = "{bot_url}"
chat_id = {ONCALL_CHAT}
responders = [111]
long_poll = "1s"
failure_grace = "120s"
request_timeout = "17s"

[[accounts]]
name = "{ACCOUNT}"
platform = "mastodon"
base_url = "{masto_url}"
account_id = "{account_id}"
poll_interval = "{poll}ms"
"#,
        state = state.display(),
        bot_token = bot.token(),
        bot_url = bot.url(),
        masto_url = masto.url(),
        poll = poll_interval.as_millis(),
    )
}
