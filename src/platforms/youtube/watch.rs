//! YouTube: watches one channel.
//!
//! Each poll reads the channel (`channels.list?part=snippet,contentDetails,brandingSettings`:
//! title, handle, description, avatar, banner, and the uploads playlist), the newest 50 uploads
//! (`playlistItems.list`), and those videos (`videos.list?part=snippet,liveStreamingDetails`),
//! which says whether one is live. Three units a poll, at the interval the quota plan allows.
//! Between polls, the videos WebSub pushes are read at once with `videos.list` (one unit).
//!
//! The first poll is history: the channel's fields become the baseline, its videos are
//! recorded, nothing pages. Its time is kept as the channel's origin: a video that went out
//! more than [`HISTORY_MARGIN`] before it and is met later (made public again) is history too.
//! The margin is wide because `publishedAt` is when a video went out, not when the API first
//! lists it: an upload still processing at the first poll is judged like any other.
//!
//! A spent quota waits for the daily reset; a refused key is reported at once (blind); other
//! failures back off exponentially up to five minutes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{
    api::{ApiChannel, ApiPlaylistItem, ApiVideo, Client, post, profile, went_out},
    schedule::{LIST_UNITS, Quota},
    websub::Pushed,
};
use crate::{
    config::Account,
    model::ObservationKind,
    watch::{SourceContext, SourceError},
};

/// Uploads read a poll: `playlistItems.list`'s maximum page.
const PAGE: usize = 50;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long before the first poll a video must have gone out to count as history when met
/// later.
const HISTORY_MARGIN: chrono::Duration = chrono::Duration::days(1);

/// Whether a video met after the first poll is history.
fn before_origin(v: &ApiVideo, origin: DateTime<Utc>) -> bool {
    went_out(v) < origin - HISTORY_MARGIN
}

/// One channel's watcher.
pub(super) struct Watcher {
    pub(super) account: Account,
    pub(super) ctx: SourceContext,
    pub(super) client: Client,
    pub(super) interval: Duration,
    pub(super) quota: Quota,
    /// The channel's verified pushes, when it is subscribed.
    pub(super) pushed: Option<mpsc::Receiver<Pushed>>,
}

impl Watcher {
    fn origin_key(&self) -> String {
        format!("youtube:{}:origin", self.account.name)
    }

    /// Polls and takes pushes until shutdown.
    pub(super) async fn run(mut self) {
        let mut origin: Option<DateTime<Utc>> = self
            .ctx
            .store
            .cursor(&self.origin_key())
            .ok()
            .flatten()
            .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
            .map(|t| t.with_timezone(&Utc));
        let mut failures = 0u32;
        let mut next = tokio::time::Instant::now();
        loop {
            let mut pushed = self.pushed.take();
            let event = tokio::select! {
                _ = self.ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => None,
                p = async { match pushed.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                } } => match p {
                    Some(p) => Some(p),
                    // The callbacks are gone (shutting down): poll only.
                    None => { pushed = None; None }
                },
            };
            self.pushed = pushed;
            if let Some(p) = event {
                // Before the first poll there is no origin to judge a video against: the poll
                // reads it anyway.
                if let Some(o) = origin
                    && !self.take_push(p, o).await
                {
                    return;
                }
                continue;
            }
            let span =
                tracing::info_span!("poll", account = %self.account.name, platform = "youtube");
            let result = self.poll(&mut origin).instrument(span).await;
            let budget = Some(self.quota.budget());
            let wait = match result {
                Ok(true) => {
                    failures = 0;
                    self.ctx.health.success(&self.account.name, budget);
                    self.interval
                }
                Ok(false) => return,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(account = %self.account.name, error = %e, failures, "youtube poll failed");
                    let refused = matches!(e, SourceError::Unauthorized { .. });
                    self.ctx
                        .health
                        .failure(&self.account.name, e.to_string(), refused, budget);
                    match e {
                        SourceError::RateLimited(d) => d.max(self.interval),
                        _ => backoff(self.interval, failures),
                    }
                }
            };
            next = tokio::time::Instant::now() + wait;
        }
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        resource: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, SourceError> {
        self.quota.spend(LIST_UNITS);
        self.client.list(resource, query).await
    }

    /// One poll. Ok(false) when the pipeline is closed.
    async fn poll(&self, origin: &mut Option<DateTime<Utc>>) -> Result<bool, SourceError> {
        let name = &self.account.name;
        let channel_id = self.account.account_id.as_str();
        let started = Utc::now();
        let channels: Vec<ApiChannel> = self
            .list(
                "channels",
                &[
                    ("part", "snippet,contentDetails,brandingSettings"),
                    ("id", channel_id),
                ],
            )
            .await?;
        let Some(channel) = channels.into_iter().find(|c| c.id == channel_id) else {
            return Err(SourceError::Malformed {
                what: "channels.list".into(),
                detail: format!("channel {channel_id} not found (terminated or wrong id)"),
            });
        };
        if !self
            .ctx
            .emit(name, ObservationKind::Profile(profile(&channel)))
            .await
        {
            return Ok(false);
        }
        let uploads = channel.content_details.related_playlists.uploads.clone();
        let items: Vec<ApiPlaylistItem> = if uploads.is_empty() {
            Vec::new()
        } else {
            match self
                .list(
                    "playlistItems",
                    &[
                        ("part", "contentDetails"),
                        ("playlistId", &uploads),
                        ("maxResults", &PAGE.to_string()),
                    ],
                )
                .await
            {
                // A channel that never uploaded has no uploads playlist to list.
                Err(SourceError::Status { status: 404, .. }) => Vec::new(),
                other => other?,
            }
        };
        let ids: Vec<String> = items
            .into_iter()
            .map(|i| i.content_details.video_id)
            .collect();
        let videos = self.videos(&ids).await?;
        let first = origin.is_none();
        let o = origin.unwrap_or(started);
        for v in videos.iter().rev() {
            let history = first || before_origin(v, o);
            if !self
                .ctx
                .emit(name, ObservationKind::Post(post(v, history)))
                .await
            {
                return Ok(false);
            }
        }
        if first {
            let checkpoint = ObservationKind::Checkpoint {
                cursor: self.origin_key(),
                value: started.to_rfc3339(),
            };
            if !self.ctx.emit(name, checkpoint).await {
                return Ok(false);
            }
            *origin = Some(started);
        }
        Ok(true)
    }

    /// The channel's videos among `ids`, newest first as asked.
    async fn videos(&self, ids: &[String]) -> Result<Vec<ApiVideo>, SourceError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let joined = ids.join(",");
        let mut videos: Vec<ApiVideo> = self
            .list(
                "videos",
                &[("part", "snippet,liveStreamingDetails"), ("id", &joined)],
            )
            .await?;
        // Another channel's video in our uploads or pushes is not ours to judge.
        videos.retain(|v| v.snippet.channel_id == self.account.account_id);
        Ok(videos)
    }

    /// Reads what a push names. A failure is left to the next poll. False when the pipeline is
    /// closed.
    async fn take_push(&self, p: Pushed, origin: DateTime<Utc>) -> bool {
        let name = &self.account.name;
        match p {
            Pushed::Videos(ids) => match self.videos(&ids).await {
                Ok(videos) => {
                    for v in &videos {
                        let history = before_origin(v, origin);
                        if !self
                            .ctx
                            .emit(name, ObservationKind::Post(post(v, history)))
                            .await
                        {
                            return false;
                        }
                    }
                    true
                }
                Err(e) => {
                    tracing::warn!(account = %name, error = %e, "pushed videos not read; the next poll reads them");
                    true
                }
            },
            Pushed::Deleted { video_id, when } => {
                self.ctx
                    .emit(
                        name,
                        ObservationKind::PostDeleted {
                            post_id: video_id,
                            deleted_at: when,
                        },
                    )
                    .await
            }
        }
    }
}

/// The wait after `failures` consecutive failures: the interval doubled per failure, capped.
fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}
