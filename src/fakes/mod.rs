//! Loopback fakes of the platforms tocsin talks to, speaking their real wire protocols on
//! 127.0.0.1 ephemeral ports. The demo plays its story against them and the integration tests
//! drive them; they never bind or call any other address.

pub mod mastodon;
pub mod pagerduty;
pub mod telegram;
pub mod webhook;

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
