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

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;
use tracing::Instrument;

use super::{
    api::{
        Answer, Api, ApiError, ApiMedia, ApiTweet, ApiUser, MAX_PAGES, MEDIA_FIELDS, PAGE,
        TWEET_FIELDS, TimelinePage, USER_FIELDS, UsersPage, newer, post, profile, until,
    },
    schedule::{Action, Endpoint, IDS_PER_LOOKUP, Plan, Scheduler},
};
use crate::{
    config::{Account, XLimits},
    model::{ObservationKind, Post},
    watch::{RateBudget, SourceContext, SourceError},
};

/// One watched account's state in the scheduler.
pub(super) struct Watched {
    pub(super) account: Account,
    pub(super) cursor: Option<String>,
    pub(super) origin: Option<String>,
    pub(super) cursor_key: String,
    pub(super) origin_key: String,
    /// A timeline read that spans pages.
    pub(super) pending: Option<Pages>,
    /// A timeline read has ended (either way) since start.
    pub(super) timeline_read: bool,
}

/// The pages of one timeline read so far: posts, media, the next page's token, pages read.
pub(super) type Pages = (Vec<ApiTweet>, HashMap<String, ApiMedia>, String, usize);

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

pub(super) enum Outcome {
    Done,
    /// Account `i` has more pages to read.
    MorePages(usize),
    Failed(SourceError),
    /// The pipeline is gone: shutting down.
    Closed,
}

/// One timeline request for one account; reports its health.
pub(super) async fn timeline(
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
pub(super) async fn hand_over(
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

pub(super) fn page_error(what: &str, errors: &[ApiError]) -> SourceError {
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
pub(super) async fn users(
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
