//! Signs of life: a dead-man switch for an external monitor and a daily summary in the chat.
//!
//! Everything else in tocsin pages when something happens; nothing pages when tocsin itself
//! stops. An external monitor that expects a GET every `interval` catches a dead process, a
//! dead host or a dead network, and the daily summary shows responders that a quiet chat is
//! quiet, not broken. Failures are logged and counted, never fatal.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, NaiveTime, Utc};
use teloxide::{prelude::*, types::ChatId};
use tokio_util::sync::CancellationToken;

use super::heads::{HeadsPublisher, Publication};
use crate::{
    config::Heartbeat,
    metrics::Metrics,
    model::{Incident, SharedClock},
    platforms::telegram_channel::api::redact_token,
    store::Store,
};

/// Where the time of the last daily summary is kept, so a restart does not send it twice.
pub const SUMMARY_CURSOR: &str = "heartbeat/daily_summary";
/// How often the daily summary's time is checked for.
const SUMMARY_CHECK: Duration = Duration::from_secs(20);

pub struct HeartbeatContext {
    pub config: Heartbeat,
    pub http: reqwest::Client,
    pub bot: Bot,
    pub chat_id: i64,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// What time it is: the daily summary is due at a time of day.
    pub clock: SharedClock,
    /// Publishes the chain heads; the summary carries them (with a signing key).
    pub heads: Option<Arc<HeadsPublisher>>,
}

pub async fn run(ctx: HeartbeatContext, shutdown: CancellationToken) {
    let ping = async {
        let Some(url) = &ctx.config.url else {
            return;
        };
        let mut every = tokio::time::interval(ctx.config.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // A daemon that cannot record anything is not alive in the sense the monitor asks
            // about: falling silent makes the dead-man switch fire.
            if ctx.store.write_fault().is_some() {
                ctx.metrics.heartbeat(false);
                continue;
            }
            // The URL usually embeds the monitor's token: never logged, errors without it.
            match ctx.http.get(url.expose()).send().await {
                Ok(r) if r.status().is_success() => ctx.metrics.heartbeat(true),
                Ok(r) => {
                    ctx.metrics.heartbeat(false);
                    tracing::warn!(status = r.status().as_u16(), "heartbeat refused");
                }
                Err(e) => {
                    ctx.metrics.heartbeat(false);
                    tracing::warn!(error = %e.without_url(), "heartbeat failed");
                }
            }
        }
    };
    let summary = async {
        let Some(at) = ctx.config.daily_summary else {
            return;
        };
        loop {
            if let Err(e) = summary_if_due(&ctx, at, ctx.clock.now()).await {
                tracing::warn!(error = %e, "daily summary not sent; will try again");
            }
            tokio::time::sleep(SUMMARY_CHECK).await;
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = async { tokio::join!(ping, summary) } => {}
    }
}

/// Why a daily summary was not sent this time; it is tried again on the next check.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The Bot API's error, its text with the bot token taken out.
    #[error("telegram: {0}")]
    Telegram(String),
}

/// Sends today's summary if its time has come and it was not sent since.
async fn summary_if_due(
    ctx: &HeartbeatContext,
    at: NaiveTime,
    now: DateTime<Utc>,
) -> Result<(), SummaryError> {
    let due = now.date_naive().and_time(at).and_utc();
    if now < due {
        return Ok(());
    }
    let last = ctx
        .store
        .cursor(SUMMARY_CURSOR)?
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc));
    if last.is_some_and(|t| t >= due) {
        return Ok(());
    }
    let mut text = summary_text(&ctx.store.incidents()?, now);
    let heads = match &ctx.heads {
        Some(_) => Some(Publication::now(&ctx.store, "daily summary", false)?),
        None => None,
    };
    if let Some(p) = heads.as_ref().filter(|p| p.key.is_some()) {
        text += "\n";
        text += &p.text();
    }
    ctx.bot
        .send_message(ChatId(ctx.chat_id), text)
        .await
        .map_err(|e| {
            let text = e.to_string();
            SummaryError::Telegram(redact_token(&text, ctx.bot.token()))
        })?;
    if let (Some(publisher), Some(p)) = (&ctx.heads, &heads) {
        publisher.beyond_chat(p).await;
    }
    ctx.store.set_cursor(SUMMARY_CURSOR, &now.to_rfc3339())?;
    ctx.store.flush().await?;
    tracing::info!("daily summary sent");
    Ok(())
}

/// "All quiet" or the incidents opened in the last 24 hours, newest last.
pub fn summary_text(incidents: &[Incident], now: DateTime<Utc>) -> String {
    let recent: Vec<_> = incidents
        .iter()
        .filter(|i| now - i.opened_at <= chrono::Duration::hours(24))
        .collect();
    if recent.is_empty() {
        return "☀️ tocsin daily summary: all quiet, no incident in the last 24 h.".into();
    }
    let mut t = format!(
        "📋 tocsin daily summary: {} incident(s) in the last 24 h:\n",
        recent.len()
    );
    for i in recent.iter().take(30) {
        t += &format!(
            "#{} {} {} on {}: {}\n",
            i.id,
            i.severity.as_str(),
            i.rule,
            i.account,
            i.state.as_str()
        );
    }
    if recent.len() > 30 {
        t += &format!("… and {} more (tocsin incidents)\n", recent.len() - 30);
    }
    t
}
