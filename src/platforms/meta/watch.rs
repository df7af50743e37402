//! Polls one Facebook Page or Instagram professional account through the Graph API.
//!
//! Each poll reads the profile (`GET /{id}?fields=…`) and the newest posts (Page:
//! `GET /{id}/feed`, the Page's own posts kept; Instagram: `GET /{id}/media`), 25 a page. The
//! newest page doubles as the edit check, as on Mastodon. When more than a page appeared since
//! the last poll, older pages are read with the `after` cursor (on the configured server, never
//! the `next` URL the answer names) until the last poll's newest post.
//!
//! The first poll is history: the profile becomes the baseline and the posts are recorded
//! without paging. Its newest post time is kept as the account's origin, so an older post met
//! later is history too.
//!
//! A webhook delivery about the account (see `push`) wakes the poller at once: the delivery
//! says that something changed, the poll reads what, in the same shape as every other poll.
//!
//! Budget: Meta's usage headers are read on every answer; past three quarters of the limit the
//! interval is stretched, and at the limit (or on a throttling error) the poller waits for
//! Meta's `estimated_time_to_regain_access` (at least five minutes).

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tracing::Instrument;

use super::api::{
    Graph, IG_MEDIA_FIELDS, IG_USER_FIELDS, IgMedia, IgUser, List, PAGE_FIELDS, POST_FIELDS,
    PageFields, PagePost, ig_post, ig_profile, page_post, page_profile,
};
use crate::{
    config::Account,
    model::{ObservationKind, Post, Profile},
    watch::{SourceContext, SourceError},
};

/// Posts per request.
const PAGE: usize = 25;
/// Older pages read in one poll when the account posted more than a page since the last one.
const MAX_GAP_PAGES: usize = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Which of Meta's two account kinds is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Page,
    Instagram,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Page => "facebook_page",
            Kind::Instagram => "instagram",
        }
    }
}

/// Watches one account until shutdown; `wake` is notified by the account's webhook deliveries.
pub async fn run(
    kind: Kind,
    account: Account,
    ctx: SourceContext,
    version: String,
    wake: Option<Arc<Notify>>,
) {
    let mut graph = Graph::new(ctx.http.clone(), &account, &version);
    let keys = Keys {
        since: format!("{}:{}:since", kind.label(), account.name),
        origin: format!("{}:{}:origin", kind.label(), account.name),
    };
    let parse = |v: Option<String>| {
        v.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let mut cursor = parse(ctx.store.cursor(&keys.since).ok().flatten());
    let mut origin = parse(ctx.store.cursor(&keys.origin).ok().flatten());
    let mut failures = 0u32;
    loop {
        let span = tracing::info_span!("poll", account = %account.name, platform = kind.label());
        let result = poll(
            kind,
            &mut graph,
            &ctx,
            &account,
            &keys,
            &mut cursor,
            &mut origin,
        )
        .instrument(span)
        .await;
        let budget = graph.usage.map(|u| u.budget());
        let wait = match result {
            Ok(true) => {
                failures = 0;
                ctx.health.success(&account.name, budget);
                graph.usage.map_or(account.poll_interval, |u| {
                    u.next_wait(account.poll_interval)
                })
            }
            Ok(false) => return,
            Err(e) => {
                failures += 1;
                tracing::warn!(account = %account.name, error = %e, failures, "graph poll failed");
                let refused = matches!(e, SourceError::Unauthorized { .. });
                ctx.health
                    .failure(&account.name, e.to_string(), refused, budget);
                match e {
                    SourceError::RateLimited(d) => d.max(account.poll_interval),
                    _ => backoff(account.poll_interval, failures),
                }
            }
        };
        let woken = async {
            match &wake {
                Some(w) => w.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            awake = ctx.sleep(wait) => if !awake { return },
            () = woken => tracing::debug!(account = %account.name, "woken by a webhook delivery"),
        }
    }
}

fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}

struct Keys {
    since: String,
    origin: String,
}

/// One poll. Ok(false) when the pipeline is closed.
async fn poll(
    kind: Kind,
    graph: &mut Graph,
    ctx: &SourceContext,
    account: &Account,
    keys: &Keys,
    cursor: &mut Option<DateTime<Utc>>,
    origin: &mut Option<DateTime<Utc>>,
) -> Result<bool, SourceError> {
    let id = account.account_id.as_str();
    let (profile, mut posts) = match kind {
        Kind::Page => read_page(graph, id, *cursor).await?,
        Kind::Instagram => read_instagram(graph, id, *cursor).await?,
    };
    let name = account.name.as_str();
    if !ctx.emit(name, ObservationKind::Profile(profile)).await {
        return Ok(false);
    }
    posts.sort_by_key(|(at, _)| *at);
    let first_poll = origin.is_none();
    let origin_at = origin.unwrap_or_else(|| {
        posts
            .last()
            .map_or(DateTime::<Utc>::UNIX_EPOCH, |(at, _)| *at)
    });
    let mut newest = *cursor;
    for (at, make) in posts {
        // Graph times are whole seconds: a post of the origin's second not read by the first
        // poll is judged (one that was is already seen, and judged as nothing).
        let history = first_poll || at < origin_at;
        if !ctx.emit(name, ObservationKind::Post(make(history))).await {
            return Ok(false);
        }
        newest = Some(newest.map_or(at, |n| n.max(at)));
    }
    if first_poll {
        let checkpoint = ObservationKind::Checkpoint {
            cursor: keys.origin.clone(),
            value: origin_at.to_rfc3339(),
        };
        if !ctx.emit(name, checkpoint).await {
            return Ok(false);
        }
        *origin = Some(origin_at);
    }
    if let Some(n) = newest
        && *cursor != Some(n)
    {
        let checkpoint = ObservationKind::Checkpoint {
            cursor: keys.since.clone(),
            value: n.to_rfc3339(),
        };
        if !ctx.emit(name, checkpoint).await {
            return Ok(false);
        }
        *cursor = Some(n);
    }
    Ok(true)
}

/// A post read, with its time: built once its history flag is known.
type Pending = (DateTime<Utc>, Box<dyn FnOnce(bool) -> Post + Send>);

async fn read_page(
    graph: &mut Graph,
    id: &str,
    since: Option<DateTime<Utc>>,
) -> Result<(Profile, Vec<Pending>), SourceError> {
    let page: PageFields = graph.get(id, &[("fields", PAGE_FIELDS)]).await?;
    if page.id != id {
        return Err(SourceError::Malformed {
            what: id.into(),
            detail: format!("got Page {}", page.id),
        });
    }
    let feed: Vec<PagePost> = read_list(
        graph,
        &format!("{id}/feed"),
        POST_FIELDS,
        since,
        |p: &PagePost| p.created_time,
    )
    .await?;
    // The feed also holds visitors' posts on the Page: the Page's own voice is what is watched.
    let posts = feed
        .into_iter()
        .filter(|p| p.from.as_ref().is_none_or(|f| f.id == id))
        .map(|p| {
            let at = p.created_time;
            (
                at,
                Box::new(move |history| page_post(&p, history))
                    as Box<dyn FnOnce(bool) -> Post + Send>,
            )
        })
        .collect();
    Ok((page_profile(&page), posts))
}

async fn read_instagram(
    graph: &mut Graph,
    id: &str,
    since: Option<DateTime<Utc>>,
) -> Result<(Profile, Vec<Pending>), SourceError> {
    let user: IgUser = graph.get(id, &[("fields", IG_USER_FIELDS)]).await?;
    if user.id != id {
        return Err(SourceError::Malformed {
            what: id.into(),
            detail: format!("got Instagram account {}", user.id),
        });
    }
    let media: Vec<IgMedia> = read_list(
        graph,
        &format!("{id}/media"),
        IG_MEDIA_FIELDS,
        since,
        |m: &IgMedia| m.timestamp,
    )
    .await?;
    let posts = media
        .into_iter()
        .map(|m| {
            let at = m.timestamp;
            (
                at,
                Box::new(move |history| ig_post(&m, history))
                    as Box<dyn FnOnce(bool) -> Post + Send>,
            )
        })
        .collect();
    Ok((ig_profile(&user), posts))
}

/// The newest page of a list, and older pages while they are all newer than `since`.
async fn read_list<T: serde::de::DeserializeOwned>(
    graph: &mut Graph,
    path: &str,
    fields: &str,
    since: Option<DateTime<Utc>>,
    time: impl Fn(&T) -> DateTime<Utc>,
) -> Result<Vec<T>, SourceError> {
    let limit = PAGE.to_string();
    let mut list: List<T> = graph
        .get(path, &[("fields", fields), ("limit", &limit)])
        .await?;
    let mut out = Vec::new();
    for _ in 0..MAX_GAP_PAGES {
        let reached = since.is_none_or(|s| list.data.iter().any(|item| time(item) <= s));
        let after = list
            .paging
            .as_ref()
            .filter(|p| p.next.is_some())
            .and_then(|p| p.cursors.as_ref())
            .and_then(|c| c.after.clone());
        out.append(&mut list.data);
        let Some(after) = after.filter(|_| !reached) else {
            return Ok(out);
        };
        list = graph
            .get(
                path,
                &[("fields", fields), ("limit", &limit), ("after", &after)],
            )
            .await?;
    }
    tracing::warn!(
        path,
        pages = MAX_GAP_PAGES,
        "more posts since the last poll than one poll reads; the rest are read next poll"
    );
    out.append(&mut list.data);
    Ok(out)
}
