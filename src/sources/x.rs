//! X: the API v2, every watched X account of one app (bearer token) in one scheduler task.
//!
//! X limits requests per endpoint per app over 15-minute windows, so polling 1,000 accounts
//! each on its own loop would spend the budget in minutes and then see nothing until the window
//! resets. Instead one task owns the app's budget: [`Plan`] derives each account's effective
//! interval (its `poll_interval`, stretched evenly when the sum would exceed `[x]`'s budget) and
//! [`Scheduler`] spaces the requests of each endpoint at least `15 min / budget` apart, so no
//! 15-minute window can hold more than the budget whatever the accounts' intervals. The answers'
//! `x-rate-limit-*` headers narrow that further: a low `remaining` spreads what is left until
//! the reset, zero or a 429 waits for the reset.
//!
//! Posts: `GET /2/users/:id/tweets` with `since_id`, newest first, paged with
//! `pagination_token`. Links are compared by their `expanded_url`: the text is rewritten with
//! the targets in place of the t.co wrappers, so the fingerprint sees the real link. An edit on
//! X is a new post whose `edit_history_tweet_ids` starts with the original; the post is reported
//! under that first id (its identity across edits), so detect sees the original changed and
//! raises `social.post_edited`.
//!
//! Profiles: `GET /2/users?ids=` with up to 100 ids a request, for all accounts of the app.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::Duration,
};

use chrono::{DateTime, TimeZone, Utc};
use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;
use tokio::time::Instant;
use tracing::Instrument;
use url::Url;

use super::{RateBudget, SourceContext, SourceError};
use crate::config::{Account, Config, Platform, Secret, XLimits};
use crate::model::digest;
use crate::model::{ObservationKind, Post, PostContent, Profile};

/// The length of X's rate-limit windows.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Ids per `GET /2/users` request: X's maximum.
pub const IDS_PER_LOOKUP: usize = 100;
/// Posts per timeline page: X's maximum.
const PAGE: u32 = 100;
/// Pages read for one account before handing over what was read (3,200 posts: as far back as
/// X's timeline goes).
const MAX_PAGES: usize = 32;
const MAX_BACKOFF: Duration = Duration::from_secs(300);

const TWEET_FIELDS: &str = "created_at,edit_history_tweet_ids,entities,attachments,source";
const MEDIA_FIELDS: &str = "media_key,type,url,preview_image_url,alt_text";
const USER_FIELDS: &str = "name,username,description,url,entities,profile_image_url,pinned_tweet_id,protected,verified_type";

/// The two endpoints the source reads; each has its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /2/users/:id/tweets`
    Timeline,
    /// `GET /2/users?ids=`
    Users,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Timeline => "GET /2/users/:id/tweets",
            Endpoint::Users => "GET /2/users",
        }
    }
}

/// The polling schedule of one app's accounts, derived from their intervals and the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Each account: name, configured `poll_interval`, effective timeline interval.
    pub accounts: Vec<(String, Duration, Duration)>,
    pub limits: XLimits,
    /// The least time between two requests to the same endpoint.
    pub timeline_gap: Duration,
    pub users_gap: Duration,
    /// How often each account's profile is read (one lookup round of `batches` requests).
    pub profile_interval: Duration,
    pub batches: usize,
}

/// `WINDOW / n`, rounded up to the nanosecond so that `n` gaps never fit in less than a window.
fn window_over(n: u32) -> Duration {
    let n = u128::from(n.max(1));
    let nanos = WINDOW.as_nanos().div_ceil(n);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The smallest interval floor `f` such that polling every account at `max(own, f)` spends at
/// most `budget` requests per window: fast accounts are slowed first, slow ones keep theirs.
fn floor_for(intervals: &[Duration], budget: u32) -> Duration {
    let w = WINDOW.as_secs_f64();
    let budget = f64::from(budget.max(1));
    let demand = |f: f64| -> f64 {
        intervals
            .iter()
            .map(|p| w / p.as_secs_f64().max(f).max(1e-9))
            .sum()
    };
    if demand(0.0) <= budget {
        return Duration::ZERO;
    }
    let (mut lo, mut hi) = (0.0_f64, w * intervals.len() as f64 / budget);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if demand(mid) <= budget {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    // Whole milliseconds, rounded up: longer intervals only spend less.
    Duration::from_millis((hi * 1000.0).ceil() as u64)
}

impl Plan {
    pub fn new(accounts: &[(String, Duration)], limits: XLimits) -> Plan {
        let intervals: Vec<Duration> = accounts.iter().map(|(_, p)| *p).collect();
        let floor = floor_for(&intervals, limits.timeline_requests_per_window);
        let batches = accounts.len().div_ceil(IDS_PER_LOOKUP);
        let fastest = intervals.iter().min().copied().unwrap_or(WINDOW);
        // One round of `batches` requests per profile interval within the users budget.
        let round = window_over(limits.users_requests_per_window)
            .saturating_mul(u32::try_from(batches).unwrap_or(u32::MAX));
        Plan {
            accounts: accounts
                .iter()
                .map(|(n, p)| (n.clone(), *p, (*p).max(floor)))
                .collect(),
            limits,
            timeline_gap: window_over(limits.timeline_requests_per_window),
            users_gap: window_over(limits.users_requests_per_window),
            profile_interval: fastest.max(round),
            batches,
        }
    }

    /// The plan of every X account in `config`, one per app.
    pub fn for_config(config: &Config) -> Vec<Plan> {
        groups(config)
            .iter()
            .map(|g| {
                let accounts: Vec<_> = g
                    .iter()
                    .map(|a| (a.name.clone(), a.poll_interval))
                    .collect();
                Plan::new(&accounts, config.x)
            })
            .collect()
    }

    pub fn interval(&self, account: &str) -> Option<Duration> {
        self.accounts
            .iter()
            .find(|(n, ..)| n == account)
            .map(|(.., e)| *e)
    }

    /// Timeline requests the plan spends per window (at most the budget).
    pub fn timeline_per_window(&self) -> f64 {
        self.accounts
            .iter()
            .map(|(.., e)| WINDOW.as_secs_f64() / e.as_secs_f64().max(1e-9))
            .sum()
    }

    pub fn users_per_window(&self) -> f64 {
        self.batches as f64 * WINDOW.as_secs_f64() / self.profile_interval.as_secs_f64()
    }

    /// Accounts polled less often than their `poll_interval` asks.
    pub fn stretched(&self) -> usize {
        self.accounts.iter().filter(|(_, p, e)| e > p).count()
    }

    /// What `check-config` and the start-up log say about the schedule.
    pub fn describe(&self) -> String {
        let fmt = |d: Duration| humantime::format_duration(round_ms(d)).to_string();
        let mut out = format!(
            "x schedule    {} account(s) in one scheduler · {} budget {}/15min, plan spends {:.0} · {} budget {}/15min ({} id batch(es) of ≤{IDS_PER_LOOKUP}), plan spends {:.0}, profiles every {}\n",
            self.accounts.len(),
            Endpoint::Timeline.as_str(),
            self.limits.timeline_requests_per_window,
            self.timeline_per_window(),
            Endpoint::Users.as_str(),
            self.limits.users_requests_per_window,
            self.batches,
            self.users_per_window(),
            fmt(self.profile_interval),
        );
        // Accounts grouped by (configured, effective) so 1,000 accounts read as a few lines.
        let mut by: BTreeMap<(Duration, Duration), Vec<&str>> = BTreeMap::new();
        for (n, p, e) in &self.accounts {
            by.entry((*p, *e)).or_default().push(n);
        }
        for ((p, e), names) in by {
            let who = if names.len() <= 3 {
                names.join(", ")
            } else {
                format!(
                    "{} … {} ({} accounts)",
                    names[0],
                    names[names.len() - 1],
                    names.len()
                )
            };
            if e > p {
                out.push_str(&format!(
                    "x interval    {who}: every {} (poll_interval {} stretched: the budget allows no more)\n",
                    fmt(e),
                    fmt(p)
                ));
            } else {
                out.push_str(&format!("x interval    {who}: every {}\n", fmt(e)));
            }
        }
        out
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// X accounts grouped by app (server and bearer token): each group shares one budget.
pub fn groups(config: &Config) -> Vec<Vec<Account>> {
    let mut groups: Vec<Vec<Account>> = Vec::new();
    for a in config.accounts.iter().filter(|a| a.platform == Platform::X) {
        let same_app = |g: &&mut Vec<Account>| {
            g[0].base_url == a.base_url
                && g[0].token.as_ref().map(Secret::expose) == a.token.as_ref().map(Secret::expose)
        };
        match groups.iter_mut().find(same_app) {
            Some(g) => g.push(a.clone()),
            None => groups.push(vec![a.clone()]),
        }
    }
    groups
}

/// One endpoint's spacing: the planned gap, and a later start when X asked for one.
#[derive(Debug, Clone)]
struct Gate {
    gap: Duration,
    last: Option<Duration>,
    not_before: Duration,
}

impl Gate {
    fn earliest(&self) -> Duration {
        self.last
            .map_or(Duration::ZERO, |l| l + self.gap)
            .max(self.not_before)
    }
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read account `i`'s timeline.
    Timeline(usize),
    /// Read the profiles of batch `b` (accounts `b*100 .. b*100+100`).
    Users(usize),
}

impl Action {
    pub fn endpoint(self) -> Endpoint {
        match self {
            Action::Timeline(_) => Endpoint::Timeline,
            Action::Users(_) => Endpoint::Users,
        }
    }
}

/// The scheduler's decisions, on a clock measured from its start, so that a test can run it
/// for hours of virtual time and count every request.
#[derive(Debug, Clone)]
pub struct Scheduler {
    configured: Vec<Duration>,
    effective: Vec<Duration>,
    due: Vec<Duration>,
    failures: Vec<u32>,
    profile_interval: Duration,
    profile_due: Duration,
    /// Batches still to read in the current profile round.
    round: VecDeque<usize>,
    batches: usize,
    users_failures: u32,
    timeline: Gate,
    users: Gate,
}

impl Scheduler {
    pub fn new(plan: &Plan) -> Scheduler {
        let n = plan.accounts.len();
        Scheduler {
            configured: plan.accounts.iter().map(|(_, p, _)| *p).collect(),
            effective: plan.accounts.iter().map(|(.., e)| *e).collect(),
            // Spread the first polls over the first interval rather than all at once.
            due: plan
                .accounts
                .iter()
                .enumerate()
                .map(|(i, (.., e))| e.mul_f64(i as f64 / n.max(1) as f64) / 2)
                .collect(),
            failures: vec![0; n],
            profile_interval: plan.profile_interval,
            profile_due: Duration::ZERO,
            round: VecDeque::new(),
            batches: plan.batches,
            users_failures: 0,
            timeline: Gate {
                gap: plan.timeline_gap,
                last: None,
                not_before: Duration::ZERO,
            },
            users: Gate {
                gap: plan.users_gap,
                last: None,
                not_before: Duration::ZERO,
            },
        }
    }

    fn gate(&mut self, e: Endpoint) -> &mut Gate {
        match e {
            Endpoint::Timeline => &mut self.timeline,
            Endpoint::Users => &mut self.users,
        }
    }

    /// The next request and when it may start. Profiles go first on a tie: a handle change is
    /// critical and a round is a handful of requests.
    pub fn next(&self) -> Option<(Duration, Action)> {
        let users = if self.batches == 0 {
            None
        } else {
            let batch = self.round.front().copied().unwrap_or(0);
            let due = if self.round.is_empty() {
                self.profile_due
            } else {
                Duration::ZERO
            };
            Some((due.max(self.users.earliest()), Action::Users(batch)))
        };
        let timeline = self
            .due
            .iter()
            .enumerate()
            .min_by_key(|(_, d)| **d)
            .map(|(i, d)| ((*d).max(self.timeline.earliest()), Action::Timeline(i)));
        match (users, timeline) {
            (Some(u), Some(t)) => Some(if u.0 <= t.0 { u } else { t }),
            (u, t) => u.or(t),
        }
    }

    /// The request is being sent at `at`.
    pub fn start(&mut self, action: Action, at: Duration) {
        self.gate(action.endpoint()).last = Some(at);
        match action {
            Action::Timeline(i) => self.due[i] = at + self.effective[i],
            Action::Users(b) => {
                if self.round.is_empty() {
                    self.round = (0..self.batches).collect();
                    self.profile_due = at + self.profile_interval;
                }
                if self.round.front() == Some(&b) {
                    self.round.pop_front();
                }
            }
        }
    }

    /// X's rate-limit headers on an answer: `remaining` requests until `reset_in` from `at`.
    /// Zero waits for the reset; a few left are spread until it, so the budget outlasts the
    /// window even when something else (another process on the same app) spends it too.
    pub fn budget(&mut self, e: Endpoint, at: Duration, remaining: u64, reset_in: Duration) {
        let gate = self.gate(e);
        let wait = if remaining == 0 {
            reset_in
        } else {
            reset_in.div_f64(remaining as f64)
        };
        if wait > gate.gap {
            gate.not_before = gate.not_before.max(at + wait);
        }
    }

    /// A 429: nothing more on this endpoint until the reset; the refused request is retried
    /// first.
    pub fn rate_limited(&mut self, action: Action, at: Duration, reset_in: Duration) {
        let gate = self.gate(action.endpoint());
        gate.not_before = gate.not_before.max(at + reset_in);
        self.retry_soon(action);
    }

    fn retry_soon(&mut self, action: Action) {
        match action {
            // Due since the start of time: ahead of every other account.
            Action::Timeline(i) => self.due[i] = Duration::ZERO,
            Action::Users(b) => {
                if self.round.front() != Some(&b) {
                    self.round.push_front(b);
                }
            }
        }
    }

    /// Any other failure: retry after a backoff from the account's own `poll_interval`
    /// (not the stretched one: a source failing is paged after its grace, and one retry more
    /// than planned only delays the next account by one gap).
    pub fn failed(&mut self, action: Action, at: Duration) {
        match action {
            Action::Timeline(i) => {
                self.failures[i] += 1;
                self.due[i] = at + backoff(self.configured[i], self.failures[i]);
            }
            Action::Users(_) => {
                self.users_failures += 1;
                let base = self.configured.iter().min().copied().unwrap_or(WINDOW);
                let wait = backoff(base, self.users_failures);
                self.retry_soon(action);
                self.users.not_before = self.users.not_before.max(at + wait);
            }
        }
    }

    pub fn succeeded(&mut self, action: Action) {
        match action {
            Action::Timeline(i) => self.failures[i] = 0,
            Action::Users(_) => self.users_failures = 0,
        }
    }

    /// More pages of account `i` wait: read them at the next slot.
    pub fn continue_now(&mut self, i: usize) {
        self.due[i] = Duration::ZERO;
    }
}

/// The wait after `failures` consecutive failures: the interval doubled per failure, capped.
fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}

// ---------------------------------------------------------------------------------------------
// The wire.

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    resource_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TimelinePage {
    #[serde(default)]
    data: Vec<ApiTweet>,
    #[serde(default)]
    includes: Includes,
    #[serde(default)]
    meta: Meta,
    #[serde(default)]
    errors: Vec<ApiError>,
}

#[derive(Debug, Default, Deserialize)]
struct Includes {
    #[serde(default)]
    media: Vec<ApiMedia>,
}

#[derive(Debug, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ApiTweet {
    id: String,
    #[serde(default)]
    text: String,
    created_at: DateTime<Utc>,
    #[serde(default)]
    edit_history_tweet_ids: Vec<String>,
    #[serde(default)]
    entities: Option<TweetEntities>,
    #[serde(default)]
    attachments: Option<Attachments>,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TweetEntities {
    #[serde(default)]
    urls: Vec<UrlEntity>,
}

#[derive(Debug, Clone, Deserialize)]
struct UrlEntity {
    url: String,
    #[serde(default)]
    expanded_url: Option<String>,
    /// Set on the link X appends for an attachment (`…/status/ID/photo/1`).
    #[serde(default)]
    media_key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Attachments {
    #[serde(default)]
    media_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ApiMedia {
    media_key: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    preview_image_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UsersPage {
    #[serde(default)]
    data: Vec<ApiUser>,
    #[serde(default)]
    errors: Vec<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiUser {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    entities: Option<UserEntities>,
    #[serde(default)]
    profile_image_url: Option<String>,
    #[serde(default)]
    pinned_tweet_id: Option<String>,
    #[serde(default)]
    protected: bool,
    #[serde(default)]
    verified_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct UserEntities {
    #[serde(default)]
    url: Option<TweetEntities>,
    #[serde(default)]
    description: Option<TweetEntities>,
}

/// Reads `x-rate-limit-*`: `reset` is a Unix time in seconds.
pub fn rate_budget(h: &HeaderMap) -> Option<RateBudget> {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let remaining = get("x-rate-limit-remaining")?.parse().ok()?;
    Some(RateBudget {
        limit: get("x-rate-limit-limit").and_then(|v| v.parse().ok()),
        remaining,
        reset: get("x-rate-limit-reset")
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|s| Utc.timestamp_opt(s, 0).single()),
    })
}

fn until(reset: Option<DateTime<Utc>>) -> Option<Duration> {
    reset.map(|r| (r - Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

/// An answer: the budget it announced (read even from errors) and its body or error.
struct Answer<T> {
    budget: Option<RateBudget>,
    result: Result<T, SourceError>,
}

struct Api {
    http: reqwest::Client,
    base: Url,
    token: Secret,
}

impl Api {
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Answer<T> {
        let url = match self.base.join(path) {
            Ok(u) => u,
            Err(e) => {
                return Answer {
                    budget: None,
                    result: Err(SourceError::Malformed {
                        what: path.into(),
                        detail: e.to_string(),
                    }),
                };
            }
        };
        let resp = match self
            .http
            .get(url)
            .query(query)
            .bearer_auth(self.token.expose())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Answer {
                    budget: None,
                    result: Err(e.into()),
                };
            }
        };
        let budget = rate_budget(resp.headers());
        let status = resp.status();
        let result = match status {
            s if s.is_success() => resp.json::<T>().await.map_err(|e| SourceError::Malformed {
                what: path.into(),
                detail: e.to_string(),
            }),
            StatusCode::TOO_MANY_REQUESTS => Err(SourceError::RateLimited(
                until(budget.as_ref().and_then(|b| b.reset))
                    .unwrap_or(Duration::from_secs(60))
                    .max(Duration::from_secs(1)),
            )),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(SourceError::Unauthorized {
                status: status.as_u16(),
            }),
            _ => Err(SourceError::Status {
                status: status.as_u16(),
                what: path.into(),
            }),
        };
        Answer { budget, result }
    }
}

/// X ids are decimal snowflakes; compare them as numbers.
fn newer(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

/// Replaces every t.co wrapper in `text` with its target: what a reader lands on.
fn expand(text: &str, entities: Option<&TweetEntities>) -> (String, Vec<String>) {
    let mut text = text.to_owned();
    let mut links = Vec::new();
    for u in entities.map(|e| e.urls.as_slice()).unwrap_or_default() {
        if u.media_key.is_some() {
            // The attachment's own link names the post's id, which changes with every edit:
            // the media are compared by their digests instead.
            text = text.replace(&u.url, "").trim_end().to_owned();
            continue;
        }
        let target = u.expanded_url.clone().unwrap_or_else(|| u.url.clone());
        text = text.replace(&u.url, &target);
        links.push(target);
    }
    (text, links)
}

fn post(t: &ApiTweet, media: &HashMap<String, ApiMedia>, history: bool) -> Post {
    let (text, links) = expand(&t.text, t.entities.as_ref());
    let media = t
        .attachments
        .as_ref()
        .map(|a| a.media_keys.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|k| match media.get(k) {
            Some(m) => format!(
                "{}:url:{}",
                m.kind,
                digest(
                    m.url
                        .as_deref()
                        .or(m.preview_image_url.as_deref())
                        .unwrap_or(k)
                )
            ),
            None => format!("media:key:{k}"),
        })
        .collect();
    // The first id of the edit history is the post's identity across edits.
    let id = t
        .edit_history_tweet_ids
        .first()
        .cloned()
        .unwrap_or_else(|| t.id.clone());
    let edited = t.edit_history_tweet_ids.len() > 1;
    Post {
        id,
        url: Some(format!("https://x.com/i/web/status/{}", t.id)),
        created_at: t.created_at,
        edited_at: edited.then_some(t.created_at),
        content: PostContent { text, links, media },
        client: t.source.clone(),
        history,
    }
}

fn profile(u: &ApiUser) -> Profile {
    let mut fields = BTreeMap::new();
    let entities = u.entities.as_ref();
    let (note, _) = expand(
        &u.description,
        entities.and_then(|e| e.description.as_ref()),
    );
    let wrapped = u.url.clone().unwrap_or_default();
    let (url, _) = expand(&wrapped, entities.and_then(|e| e.url.as_ref()));
    let mut put = |k: &str, v: String| {
        fields.insert(k.to_owned(), v);
    };
    put("handle", u.username.clone());
    put("display_name", u.name.clone());
    put("note", note);
    // The expanded target: a swapped target behind the same t.co wrapper is a changed link.
    put("url", url);
    put("avatar", u.profile_image_url.clone().unwrap_or_default());
    put("pinned_post", u.pinned_tweet_id.clone().unwrap_or_default());
    put("locked", u.protected.to_string());
    put("verified_type", u.verified_type.clone().unwrap_or_default());
    Profile { fields }
}

/// One watched account's state in the scheduler.
struct Watched {
    account: Account,
    cursor: Option<String>,
    origin: Option<String>,
    cursor_key: String,
    origin_key: String,
    /// A timeline read that spans pages.
    pending: Option<Pages>,
    /// A timeline read has ended (either way) since start.
    timeline_read: bool,
}

/// The pages of one timeline read so far: posts, media, the next page's token, pages read.
type Pages = (Vec<ApiTweet>, HashMap<String, ApiMedia>, String, usize);

/// Watches every account of one app until shutdown.
pub async fn run(accounts: Vec<Account>, limits: XLimits, ctx: SourceContext) {
    let Some(first) = accounts.first() else {
        return;
    };
    let Some(token) = first.token.clone() else {
        tracing::error!(account = %first.name, "x account without a bearer token");
        return;
    };
    let api = Api {
        http: ctx.http.clone(),
        base: first.base_url.clone(),
        token,
    };
    let names: Vec<(String, Duration)> = accounts
        .iter()
        .map(|a| (a.name.clone(), a.poll_interval))
        .collect();
    let plan = Plan::new(&names, limits);
    for line in plan.describe().lines() {
        if plan.stretched() > 0 {
            tracing::warn!(schedule = %line, "x budget stretches poll intervals");
        } else {
            tracing::info!(schedule = %line, "x schedule");
        }
    }
    let all: Vec<String> = accounts.iter().map(|a| a.name.clone()).collect();
    let mut watched: Vec<Watched> = accounts
        .into_iter()
        .map(|account| {
            let cursor_key = format!("x:{}:since", account.name);
            let origin_key = format!("x:{}:origin", account.name);
            Watched {
                cursor: ctx.store.cursor(&cursor_key).ok().flatten(),
                origin: ctx.store.cursor(&origin_key).ok().flatten(),
                cursor_key,
                origin_key,
                account,
                pending: None,
                timeline_read: false,
            }
        })
        .collect();
    let mut sched = Scheduler::new(&plan);
    let start = Instant::now();
    loop {
        let Some((at, action)) = sched.next() else {
            return;
        };
        let wait = at.saturating_sub(start.elapsed());
        if !wait.is_zero() && !ctx.sleep(wait).await {
            return;
        }
        if ctx.shutdown.is_cancelled() {
            return;
        }
        let now = start.elapsed();
        sched.start(action, now);
        let request = async {
            match action {
                Action::Timeline(i) => {
                    let w = &mut watched[i];
                    let span =
                        tracing::info_span!("poll", account = %w.account.name, platform = "x");
                    timeline(&api, &ctx, w, i).instrument(span).await
                }
                Action::Users(b) => {
                    let end = ((b + 1) * IDS_PER_LOOKUP).min(watched.len());
                    users(&api, &ctx, &mut watched[b * IDS_PER_LOOKUP..end]).await
                }
            }
        };
        // A slow answer must not hold up shutdown: what was handed over stays handed over, and
        // the cursor only moves after it, so a cut read is read again after the restart.
        let (budget, outcome) = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            answer = request => answer,
        };
        let answered = start.elapsed();
        if let Some(b) = &budget {
            if let Some(reset_in) = until(b.reset) {
                sched.budget(action.endpoint(), answered, b.remaining, reset_in);
            }
            if action.endpoint() == Endpoint::Timeline {
                ctx.health.set_rate_limit(&all, b.clone());
            }
        }
        match outcome {
            Outcome::Closed => return,
            Outcome::Done => sched.succeeded(action),
            Outcome::MorePages(i) => {
                sched.succeeded(action);
                sched.continue_now(i);
            }
            Outcome::Failed(SourceError::RateLimited(reset_in)) => {
                tracing::warn!(
                    endpoint = action.endpoint().as_str(),
                    wait_s = reset_in.as_secs(),
                    "x rate limit reached: waiting for the reset"
                );
                sched.rate_limited(action, answered, reset_in);
            }
            Outcome::Failed(_) => sched.failed(action, answered),
        }
    }
}

enum Outcome {
    Done,
    /// Account `i` has more pages to read.
    MorePages(usize),
    Failed(SourceError),
    /// The pipeline is gone: shutting down.
    Closed,
}

/// One timeline request for one account; reports its health.
async fn timeline(
    api: &Api,
    ctx: &SourceContext,
    w: &mut Watched,
    i: usize,
) -> (Option<RateBudget>, Outcome) {
    let name = w.account.name.clone();
    w.timeline_read = true;
    let path = format!("2/users/{}/tweets", w.account.account_id);
    let mut query = vec![
        ("max_results", PAGE.to_string()),
        ("tweet.fields", TWEET_FIELDS.to_owned()),
        ("expansions", "attachments.media_keys".to_owned()),
        ("media.fields", MEDIA_FIELDS.to_owned()),
    ];
    if let Some(since) = &w.cursor {
        query.push(("since_id", since.clone()));
    }
    if let Some((.., token, _)) = &w.pending {
        query.push(("pagination_token", token.clone()));
    }
    let answer: Answer<TimelinePage> = api.get(&path, &query).await;
    let budget = answer.budget.clone();
    let page = match answer.result {
        Ok(p) if p.data.is_empty() && !p.errors.is_empty() => Err(page_error(&path, &p.errors)),
        other => other,
    };
    let page = match page {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(account = %name, error = %e, "x timeline poll failed");
            let refused = matches!(e, SourceError::Unauthorized { .. });
            ctx.health
                .failure(&name, e.to_string(), refused, budget.clone());
            w.pending = None;
            return (budget, Outcome::Failed(e));
        }
    };
    let (mut tweets, mut media, pages) = w
        .pending
        .take()
        .map_or_else(|| (Vec::new(), HashMap::new(), 0), |(t, m, _, n)| (t, m, n));
    tweets.extend(page.data);
    media.extend(
        page.includes
            .media
            .into_iter()
            .map(|m| (m.media_key.clone(), m)),
    );
    // A first poll reads one page: what is there is history, however much of it.
    let first_poll = w.origin.is_none();
    if let Some(token) = page.meta.next_token.filter(|_| !first_poll) {
        if pages + 1 < MAX_PAGES {
            w.pending = Some((tweets, media, token, pages + 1));
            return (budget, Outcome::MorePages(i));
        }
        tracing::warn!(account = %name, pages, "more posts since the last poll than X's timeline pages hold: reading the newest");
    }
    let outcome = match hand_over(ctx, w, tweets, &media, first_poll).await {
        true => Outcome::Done,
        false => Outcome::Closed,
    };
    ctx.health.success(&name, budget.clone());
    (budget, outcome)
}

/// Sends the posts read (oldest first) and moves the cursors after them. False when the
/// pipeline is gone.
async fn hand_over(
    ctx: &SourceContext,
    w: &mut Watched,
    mut tweets: Vec<ApiTweet>,
    media: &HashMap<String, ApiMedia>,
    first_poll: bool,
) -> bool {
    let name = w.account.name.clone();
    tweets.sort_by(|a, b| (a.id.len(), &a.id).cmp(&(b.id.len(), &b.id)));
    tweets.dedup_by(|a, b| a.id == b.id);
    let origin = match &w.origin {
        Some(o) => o.clone(),
        None => tweets
            .last()
            .map_or_else(|| "0".to_owned(), |t| t.id.clone()),
    };
    let mut newest = w.cursor.clone();
    for t in &tweets {
        let p = post(t, media, false);
        // History: from before tocsin first looked (judged by the post's first version).
        let history = first_poll || !newer(&p.id, &origin);
        let p = Post { history, ..p };
        if !ctx.emit(&name, ObservationKind::Post(p)).await {
            return false;
        }
        if newest.as_deref().is_none_or(|n| newer(&t.id, n)) {
            newest = Some(t.id.clone());
        }
    }
    if first_poll {
        let checkpoint = ObservationKind::Checkpoint {
            cursor: w.origin_key.clone(),
            value: origin.clone(),
        };
        if !ctx.emit(&name, checkpoint).await {
            return false;
        }
        w.origin = Some(origin.clone());
    }
    let newest = newest.unwrap_or(origin);
    if w.cursor.as_deref() != Some(newest.as_str()) {
        let checkpoint = ObservationKind::Checkpoint {
            cursor: w.cursor_key.clone(),
            value: newest.clone(),
        };
        if !ctx.emit(&name, checkpoint).await {
            return false;
        }
        w.cursor = Some(newest);
    }
    true
}

fn page_error(what: &str, errors: &[ApiError]) -> SourceError {
    let e = &errors[0];
    if e.title.contains("Authorization") || e.title.contains("Forbidden") {
        return SourceError::Unauthorized { status: 403 };
    }
    SourceError::Malformed {
        what: what.into(),
        detail: format!("{}: {}", e.title, e.detail),
    }
}

/// One `GET /2/users?ids=` for a batch of accounts.
async fn users(
    api: &Api,
    ctx: &SourceContext,
    batch: &mut [Watched],
) -> (Option<RateBudget>, Outcome) {
    let ids: Vec<&str> = batch
        .iter()
        .map(|w| w.account.account_id.as_str())
        .collect();
    let query = [
        ("ids", ids.join(",")),
        ("user.fields", USER_FIELDS.to_owned()),
    ];
    let answer: Answer<UsersPage> = api.get("2/users", &query).await;
    let budget = answer.budget.clone();
    let page = match answer.result {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, accounts = batch.len(), "x profile lookup failed");
            let refused = matches!(e, SourceError::Unauthorized { .. });
            for w in batch {
                ctx.health
                    .failure(&w.account.name, e.to_string(), refused, None);
            }
            return (budget, Outcome::Failed(e));
        }
    };
    let by_id: HashMap<&str, &ApiUser> = page.data.iter().map(|u| (u.id.as_str(), u)).collect();
    for w in batch.iter_mut() {
        match by_id.get(w.account.account_id.as_str()) {
            Some(u) => {
                if !ctx
                    .emit(&w.account.name, ObservationKind::Profile(profile(u)))
                    .await
                {
                    return (budget, Outcome::Closed);
                }
                // Until its first timeline read (with 1,000 accounts, up to one stretched
                // interval after start) the profile is what shows the account is seen.
                if !w.timeline_read {
                    ctx.health.success(&w.account.name, None);
                }
            }
            None => {
                // Partial errors name the id: suspended, deleted, or no longer visible.
                let why = page
                    .errors
                    .iter()
                    .find(|e| {
                        e.value.as_deref() == Some(&w.account.account_id)
                            || e.resource_id.as_deref() == Some(&w.account.account_id)
                    })
                    .map_or("not in the answer".to_owned(), |e| {
                        format!("{}: {}", e.title, e.detail)
                    });
                let refused = why.contains("Authorization") || why.contains("Forbidden");
                ctx.health.failure(
                    &w.account.name,
                    format!("profile of X user {}: {why}", w.account.account_id),
                    refused,
                    None,
                );
            }
        }
    }
    (budget, Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(timeline: u32, users: u32) -> XLimits {
        XLimits {
            timeline_requests_per_window: timeline,
            users_requests_per_window: users,
        }
    }

    fn accounts(n: usize, every: Duration) -> Vec<(String, Duration)> {
        (0..n).map(|i| (format!("x-{i:04}"), every)).collect()
    }

    /// Runs the scheduler on a virtual clock, every request answered at once; the start times
    /// of each endpoint's requests.
    fn simulate(s: &mut Scheduler, span: Duration) -> (Vec<Duration>, Vec<Duration>, Vec<usize>) {
        let (mut timeline, mut users) = (Vec::new(), Vec::new());
        let mut per_account = vec![0usize; s.due.len()];
        let mut now = Duration::ZERO;
        while let Some((at, action)) = s.next() {
            assert!(at >= now, "time runs forward");
            if at > span {
                break;
            }
            now = at;
            s.start(action, at);
            match action {
                Action::Timeline(i) => {
                    timeline.push(at);
                    per_account[i] += 1;
                }
                Action::Users(_) => users.push(at),
            }
            s.succeeded(action);
        }
        (timeline, users, per_account)
    }

    /// The most requests any window [t, t + 15 min) holds.
    fn busiest_window(times: &[Duration]) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] >= times[lo] + WINDOW {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[test]
    fn a_thousand_accounts_never_exceed_the_budget_in_any_window() {
        let limits = limits(1500, 300);
        let plan = Plan::new(&accounts(1000, Duration::from_secs(15)), limits);
        // 1,000 accounts at 15 s would need 60,000 requests a window: stretched to 10 min.
        assert_eq!(plan.interval("x-0000"), Some(Duration::from_secs(600)));
        assert_eq!(plan.stretched(), 1000);
        assert_eq!(plan.batches, 10);
        assert!(plan.timeline_per_window() <= 1500.0 + 1e-6);
        assert!(plan.users_per_window() <= 300.0 + 1e-6);
        let mut s = Scheduler::new(&plan);
        let (timeline, users, per_account) = simulate(&mut s, Duration::from_secs(3 * 3600));
        let busiest = busiest_window(&timeline);
        eprintln!(
            "1000 accounts, 3 h simulated: {} timeline requests (busiest 15-min window {busiest}/1500), {} users lookups (busiest {}/300); per account {}..={} polls\n{}",
            timeline.len(),
            users.len(),
            busiest_window(&users),
            per_account.iter().min().unwrap(),
            per_account.iter().max().unwrap(),
            plan.describe()
        );
        assert!(busiest <= 1500, "timeline window held {busiest}");
        assert!(busiest >= 1400, "the budget is used, not wasted: {busiest}");
        assert!(busiest_window(&users) <= 300, "users");
        // Every account is polled, each about every 10 minutes (18 times in 3 hours).
        assert!(
            per_account.iter().all(|n| (17..=19).contains(n)),
            "{per_account:?}"
        );
    }

    #[test]
    fn mixed_intervals_slow_the_fast_accounts_and_keep_the_slow_ones() {
        let mut list = accounts(900, Duration::from_secs(30));
        list.extend((0..100).map(|i| (format!("slow-{i}"), Duration::from_secs(3600))));
        let plan = Plan::new(&list, limits(1500, 300));
        assert_eq!(plan.interval("slow-0"), Some(Duration::from_secs(3600)));
        let fast = plan.interval("x-0000").unwrap();
        assert!(
            fast > Duration::from_secs(30) && fast < Duration::from_secs(600),
            "{fast:?}"
        );
        assert!(plan.timeline_per_window() <= 1500.0);
        let mut s = Scheduler::new(&plan);
        let (timeline, ..) = simulate(&mut s, Duration::from_secs(2 * 3600));
        assert!(busiest_window(&timeline) <= 1500);
    }

    #[test]
    fn within_budget_nothing_is_stretched() {
        let plan = Plan::new(&accounts(10, Duration::from_secs(60)), limits(1500, 300));
        assert_eq!(plan.stretched(), 0);
        assert_eq!(plan.interval("x-0003"), Some(Duration::from_secs(60)));
        assert_eq!(plan.profile_interval, Duration::from_secs(60));
        assert!(plan.describe().contains("every 1m"), "{}", plan.describe());
    }

    /// The next timeline request, profile lookups on the way taken as sent.
    fn next_timeline(s: &mut Scheduler) -> (Duration, Action) {
        loop {
            let (t, a) = s.next().unwrap();
            if a.endpoint() == Endpoint::Timeline {
                return (t, a);
            }
            s.start(a, t);
        }
    }

    #[test]
    fn low_remaining_spreads_and_a_429_waits_for_the_reset() {
        let plan = Plan::new(&accounts(5, Duration::from_secs(1)), limits(1500, 300));
        let mut s = Scheduler::new(&plan);
        let t0 = Duration::from_secs(10);
        // Two left for the next 60 s: no sooner than 30 s apart.
        s.budget(Endpoint::Timeline, t0, 2, Duration::from_secs(60));
        let (at, a) = next_timeline(&mut s);
        assert!(at >= t0 + Duration::from_secs(30), "{at:?} {a:?}");
        s.start(a, at);
        s.rate_limited(a, at, Duration::from_secs(120));
        let (next, again) = next_timeline(&mut s);
        assert_eq!(again, a, "the refused request goes first");
        assert_eq!(next, at + Duration::from_secs(120));
    }

    #[test]
    fn failures_back_off_from_the_configured_interval() {
        let plan = Plan::new(&accounts(1, Duration::from_secs(10)), limits(1500, 300));
        let mut s = Scheduler::new(&plan);
        s.start(Action::Timeline(0), Duration::ZERO);
        s.failed(Action::Timeline(0), Duration::ZERO);
        assert_eq!(s.due[0], Duration::from_secs(20));
        s.failed(Action::Timeline(0), Duration::ZERO);
        assert_eq!(s.due[0], Duration::from_secs(40));
        s.succeeded(Action::Timeline(0));
        assert_eq!(s.failures[0], 0);
    }

    #[test]
    fn tco_links_are_compared_by_their_target_and_edits_by_their_first_id() {
        let t: ApiTweet = serde_json::from_value(serde_json::json!({
            "id": "1800000000000000002",
            "text": "Claim now https://t.co/AbC123 https://t.co/Pic456",
            "created_at": "2026-11-24T10:00:00.000Z",
            "edit_history_tweet_ids": ["1800000000000000001", "1800000000000000002"],
            "entities": {"urls": [{"start": 10, "end": 33, "url": "https://t.co/AbC123",
                "expanded_url": "https://evil.example/claim", "display_url": "evil.example/claim"},
                {"start": 34, "end": 57, "url": "https://t.co/Pic456", "media_key": "3_1",
                "expanded_url": "https://x.com/examplecorp/status/1800000000000000002/photo/1",
                "display_url": "pic.x.com/Pic456"}]},
            "attachments": {"media_keys": ["3_1"]}
        }))
        .unwrap();
        let media = HashMap::from([(
            "3_1".to_owned(),
            ApiMedia {
                media_key: "3_1".into(),
                kind: "photo".into(),
                url: Some("https://pbs.twimg.com/media/a.jpg".into()),
                preview_image_url: None,
            },
        )]);
        let p = post(&t, &media, false);
        assert_eq!(p.id, "1800000000000000001");
        assert_eq!(p.content.text, "Claim now https://evil.example/claim");
        assert_eq!(
            p.content.links,
            vec!["https://evil.example/claim".to_owned()]
        );
        assert_eq!(p.content.media.len(), 1);
        assert!(p.edited_at.is_some());
        assert!(newer("1800000000000000002", "999"));
    }

    #[test]
    fn reset_headers_are_unix_seconds() {
        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-limit", "1500".parse().unwrap());
        h.insert("x-rate-limit-remaining", "7".parse().unwrap());
        h.insert("x-rate-limit-reset", "1705420800".parse().unwrap());
        let b = rate_budget(&h).unwrap();
        assert_eq!((b.limit, b.remaining), (Some(1500), 7));
        assert_eq!(b.reset.unwrap().timestamp(), 1705420800);
    }
}
