//! What every watcher shares, social or mail: the [`SourceContext`] it runs in, the [`Health`]
//! it reports, its errors, and the reading of rate-limit and `Retry-After` headers.
//!
//! A watcher (a source) turns a platform's API or a mail feed into [`Observation`]s. It never
//! decides what is suspicious: that is `detect`'s job, so every platform is judged by the same
//! rules. It is a future built from its config and a [`SourceContext`]: it polls, sends
//! observations into the pipeline's channel in order, reports its health, and returns when the
//! shutdown token is cancelled (between polls, never half-way through a batch).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Platform,
    model::{Observation, ObservationKind},
    store::Store,
};

/// How the platform's rate limit stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateBudget {
    pub limit: Option<u64>,
    pub remaining: u64,
    pub reset: Option<DateTime<Utc>>,
}

/// One source's health, for `/status` and `/healthz`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceHealth {
    pub platform: String,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<(DateTime<Utc>, String)>,
    pub rate_limit: Option<RateBudget>,
    pub polls: u64,
    /// Polls whose observations the pipeline has all judged and committed: what "the source
    /// looked, and nothing came of it" can be concluded from (tests, `/metrics`).
    pub judged_polls: u64,
    pub errors: u64,
    /// When the source was started: a source that never succeeds is blind from here.
    pub watching_since: Option<DateTime<Utc>>,
    /// First failure since the last success.
    pub failing_since: Option<DateTime<Utc>>,
    /// The last failure was the platform refusing our credentials.
    pub refused: bool,
    /// The account's push stream, for sources that have one (Bluesky's Jetstream).
    pub stream: Option<StreamHealth>,
    /// How far the pipeline is with the account's observations.
    #[serde(skip)]
    pub judging: Judging,
}

/// Observations of an account sent into the pipeline and judged by it, and the polls waiting
/// for theirs.
#[derive(Debug, Clone, Default)]
pub struct Judging {
    emitted: u64,
    judged: u64,
    /// For each poll not yet judged, how many observations had been sent when it ended.
    pending_polls: std::collections::VecDeque<u64>,
}

impl SourceHealth {
    /// A poll ended: it is judged once every observation sent so far is.
    fn poll_ended(&mut self) {
        self.polls += 1;
        self.judging.pending_polls.push_back(self.judging.emitted);
        self.advance();
    }

    fn advance(&mut self) {
        let j = &mut self.judging;
        while j.pending_polls.front().is_some_and(|m| *m <= j.judged) {
            j.pending_polls.pop_front();
            self.judged_polls += 1;
        }
    }
}

/// A push stream's state. The poller keeps running while it is down, but events then arrive a
/// poll late: down past the account's grace, the source counts as blind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamHealth {
    pub connected: bool,
    /// When it went down (or when it was first tried, if it never came up).
    pub down_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Events received since the daemon started.
    pub events: u64,
    pub last_event: Option<DateTime<Utc>>,
}

/// Health of every source, shared between the sources (writers) and the bot and HTTP server.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<String, SourceHealth>>>);

impl Health {
    pub fn register(&self, account: &str, platform: Platform) {
        self.register_feed(account, platform.as_str());
    }

    /// Registers a source that is not a social account (a mail feed: `google`, `m365`).
    pub fn register_feed(&self, name: &str, platform: &str) {
        let mut map = self.0.lock().expect("health lock");
        let h = map.entry(name.to_owned()).or_default();
        h.platform = platform.to_owned();
        h.watching_since.get_or_insert_with(Utc::now);
    }

    pub fn success(&self, account: &str, rate_limit: Option<RateBudget>) {
        let mut map = self.0.lock().expect("health lock");
        let h = map.entry(account.to_owned()).or_default();
        h.last_success = Some(Utc::now());
        h.failing_since = None;
        h.refused = false;
        h.poll_ended();
        if rate_limit.is_some() {
            h.rate_limit = rate_limit;
        }
    }

    /// A push feed (the journal's queue) handed the pipeline one round of observations: counted
    /// as a poll, judged once they all are, so `judged_polls` says the feed's messages are
    /// committed as it says it of a polled account's posts. Not a success: the feed fetched
    /// nothing from anyone.
    pub fn round_ended(&self, name: &str) {
        let mut map = self.0.lock().expect("health lock");
        map.entry(name.to_owned()).or_default().poll_ended();
    }

    /// Records a failed poll. `refused`: the platform rejected our credentials (401/403), which
    /// no retry will fix.
    pub fn failure(
        &self,
        account: &str,
        error: String,
        refused: bool,
        rate_limit: Option<RateBudget>,
    ) {
        let mut map = self.0.lock().expect("health lock");
        let h = map.entry(account.to_owned()).or_default();
        let now = Utc::now();
        h.failing_since.get_or_insert(now);
        h.refused = refused;
        h.last_error = Some((now, error));
        h.poll_ended();
        h.errors += 1;
        if rate_limit.is_some() {
            h.rate_limit = rate_limit;
        }
    }

    /// An observation of `account` is about to enter the pipeline. Counted before it is sent,
    /// so a poll that ends after it waits for it to be judged.
    pub fn emitted(&self, account: &str) {
        let mut map = self.0.lock().expect("health lock");
        map.entry(account.to_owned()).or_default().judging.emitted += 1;
    }

    /// The pipeline committed its verdict on one observation of `account` (observations of an
    /// account are judged in the order they were sent).
    pub fn judged(&self, account: &str) {
        let mut map = self.0.lock().expect("health lock");
        let h = map.entry(account.to_owned()).or_default();
        h.judging.judged += 1;
        h.advance();
    }

    /// An app-wide budget (X: one per app and endpoint) shown on every account that spends it.
    pub fn set_rate_limit(&self, accounts: &[String], budget: RateBudget) {
        let mut map = self.0.lock().expect("health lock");
        for a in accounts {
            map.entry(a.clone()).or_default().rate_limit = Some(budget.clone());
        }
    }

    /// The push stream is connected.
    pub fn stream_up(&self, account: &str) {
        self.with_stream(account, |s| {
            s.connected = true;
            s.down_since = None;
        });
    }

    /// The push stream is not connected; `error` says why.
    pub fn stream_down(&self, account: &str, error: String) {
        self.with_stream(account, |s| {
            s.connected = false;
            s.down_since.get_or_insert_with(Utc::now);
            s.last_error = Some(error);
        });
    }

    /// One event arrived on the push stream.
    pub fn stream_event(&self, account: &str) {
        self.with_stream(account, |s| {
            s.events += 1;
            s.last_event = Some(Utc::now());
        });
    }

    /// Changes an account's push-stream health, creating it on first report.
    fn with_stream(&self, account: &str, change: impl FnOnce(&mut StreamHealth)) {
        let mut map = self.0.lock().expect("health lock");
        change(
            map.entry(account.to_owned())
                .or_default()
                .stream
                .get_or_insert_with(Default::default),
        );
    }

    pub fn snapshot(&self) -> BTreeMap<String, SourceHealth> {
        self.0.lock().expect("health lock").clone()
    }
}

/// What a running source is given.
#[derive(Clone)]
pub struct SourceContext {
    pub store: Store,
    pub out: mpsc::Sender<Observation>,
    pub health: Health,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
}

impl SourceContext {
    /// Sends one observation; false when the pipeline is gone (shutting down).
    pub async fn emit(&self, account: &str, kind: ObservationKind) -> bool {
        let obs = Observation {
            account: account.to_owned(),
            seen_at: Utc::now(),
            kind,
        };
        self.health.emitted(account);
        self.out.send(obs).await.is_ok()
    }

    /// Sleeps, waking early for shutdown. Returns false when shutting down.
    pub async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

/// A header's value as text, if present and ASCII.
pub(crate) fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// A platform's rate-limit headers, `PREFIX` + `limit`, `remaining`, `reset`; each platform
/// writes the reset its own way (`reset`).
pub(crate) fn rate_budget(
    h: &reqwest::header::HeaderMap,
    prefix: &str,
    reset: impl Fn(&str) -> Option<DateTime<Utc>>,
) -> Option<RateBudget> {
    let value = |name: &str| header(h, &format!("{prefix}{name}")).map(str::trim);
    Some(RateBudget {
        limit: value("limit").and_then(|v| v.parse().ok()),
        remaining: value("remaining")?.parse().ok()?,
        reset: value("reset").and_then(reset),
    })
}

/// How long a 429 asks us to wait: `Retry-After` seconds, else until the budget resets; at
/// least a second, so a reset already past does not turn into a tight loop.
pub(crate) fn retry_after(
    h: &reqwest::header::HeaderMap,
    budget: Option<&RateBudget>,
) -> Option<Duration> {
    if let Some(secs) = header(h, "retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    let reset = budget?.reset?;
    Some(
        (reset - Utc::now())
            .to_std()
            .unwrap_or_default()
            .max(Duration::from_secs(1)),
    )
}

/// Errors a source reports about one poll.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("rate limited; retry after {0:?}")]
    RateLimited(Duration),
    #[error("the platform answered {status} for {what}")]
    Status { status: u16, what: String },
    #[error("the token was refused ({status}): revoked or lacking scope")]
    Unauthorized { status: u16 },
    #[error("unexpected response for {what}: {detail}")]
    Malformed { what: String, detail: String },
    /// An endpoint named by the platform's data that tocsin will not call.
    #[error("not called: {what}: {detail}")]
    Refused { what: String, detail: String },
}

/// A source's future.
pub type SourceFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
