//! Mastodon push: the user stream (server-sent events), a faster path beside the poller.

use std::time::Duration;

use chrono::Utc;
use tracing::Instrument;

use super::api::{ApiStatus, check, post};
use crate::{
    config::Account,
    model::ObservationKind,
    watch::{SourceContext, SourceError},
};

/// The health entry of an account's push stream, judged by `monitor.blind` like a source.
pub fn stream_health_key(account: &str) -> String {
    format!("{account}:stream")
}

/// How long a stream may stay silent (Mastodon sends a `:thump` comment every few seconds)
/// before it counts as dropped.
pub(super) const STREAM_SILENCE: Duration = Duration::from_secs(45);

/// Push: `GET /api/v1/streaming/user` (server-sent events). `update` and `status.update`
/// events of the account become the same `Post` observations the poller makes (detect drops
/// whichever of the two arrives second), `delete` becomes `PostDeleted`. The poller keeps
/// running as a backstop; a dropped stream reconnects with backoff and reports its failure to
/// health under [`stream_health_key`], so `monitor.blind` pages once it stays down past the
/// account's grace.
pub(super) async fn stream(account: Account, ctx: SourceContext) {
    let key = stream_health_key(&account.name);
    ctx.health.register(&key, account.platform);
    let http = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(STREAM_SILENCE)
        .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            ctx.health.failure(&key, e.to_string(), false, None);
            return;
        }
    };
    let mut failures = 0u32;
    loop {
        let span = tracing::info_span!("stream", account = %account.name, platform = "mastodon");
        let result = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = stream_once(&http, &account, &ctx, &key).instrument(span) => r,
        };
        match result {
            Ok(false) => return,
            Ok(true) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(account = %account.name, error = %e, failures, "mastodon stream failed");
                ctx.health
                    .failure(&key, format!("stream: {e}"), false, None);
            }
        }
        let wait = Duration::from_millis(250 * 2u64.pow(failures.min(7)));
        if !ctx.sleep(wait).await {
            return;
        }
    }
}

/// One connection. Ok(true): it ended (reconnect); Ok(false): the pipeline is gone.
pub(super) async fn stream_once(
    http: &reqwest::Client,
    account: &Account,
    ctx: &SourceContext,
    key: &str,
) -> Result<bool, SourceError> {
    let mut url = account.base_url.clone();
    url.set_path("/api/v1/streaming/user");
    let mut req = http.get(url).header("accept", "text/event-stream");
    if let Some(token) = &account.token {
        req = req.bearer_auth(token.expose());
    }
    let mut resp = check(req.send().await?, "api/v1/streaming/user").await?;
    ctx.health.success(key, None);
    tracing::info!(account = %account.name, "mastodon stream connected");
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        // Any bytes, heartbeats included, prove the stream alive.
        ctx.health.success(key, None);
        buf.extend_from_slice(&chunk);
        while let Some(end) = find_event_end(&buf) {
            let raw: Vec<u8> = buf.drain(..end.1).collect();
            let text = String::from_utf8_lossy(&raw[..end.0]);
            if !on_stream_event(account, ctx, &text).await {
                return Ok(false);
            }
        }
    }
    Err(SourceError::Status {
        status: 0,
        what: "the stream was closed by the server".into(),
    })
}

/// The end of the first complete event in `buf`: (end of its text, end including the blank
/// line). Accepts `\n\n` and `\r\n\r\n`.
pub(super) fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Handles one server-sent event; false when the pipeline is gone.
pub(super) async fn on_stream_event(account: &Account, ctx: &SourceContext, text: &str) -> bool {
    let mut event = "";
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    let kind = match event {
        "update" | "status.update" => {
            let status: ApiStatus = match serde_json::from_str(&data) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(account = %account.name, error = %e, "unreadable stream event");
                    return true;
                }
            };
            if status.account.as_ref().map(|a| a.id.as_str()) != Some(account.account_id.as_str()) {
                return true;
            }
            ObservationKind::Post(post(&status, false))
        }
        // The event carries only the id: the deletion is dated when it is heard of.
        "delete" => ObservationKind::PostDeleted {
            post_id: data.trim().to_owned(),
            deleted_at: Utc::now(),
        },
        _ => return true,
    };
    ctx.emit(&account.name, kind).await
}
