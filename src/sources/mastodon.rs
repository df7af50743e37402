//! Mastodon: polls the REST API v1 for one account.
//!
//! Each poll reads the profile (`GET /api/v1/accounts/:id`) and the newest statuses
//! (`GET /api/v1/accounts/:id/statuses?limit=40`). The newest page doubles as the edit check —
//! Mastodon keeps a status id when it is edited and sets `edited_at` — so a quiet account costs
//! two requests a poll. When more than a page of posts appeared since the last poll, the gap is
//! read with `min_id` paging from the stored cursor.
//!
//! On the first poll of an account, what is there is history: the profile becomes the baseline
//! and the posts are recorded without paging. The first poll's newest id is kept as the account's
//! origin so that an old post first met later (it scrolled into view) is history too.
//!
//! Rate limits: `X-RateLimit-Remaining`/`-Reset` are read on every answer; at zero the next poll
//! waits for the reset, a 429 waits for the reset (or `Retry-After`), and 5xx or network errors
//! back off exponentially up to five minutes.

use std::{cmp::Ordering, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::{Response, StatusCode, header::HeaderMap};
use serde::Deserialize;
use tracing::Instrument;
use url::Url;

use super::{RateBudget, SourceContext, SourceError};
use crate::config::Account;
use crate::model::digest;
use crate::model::{ObservationKind, Post, PostContent, Profile};

/// Statuses per request; Mastodon's maximum.
const PAGE: usize = 40;
/// Gap pages read in one poll before handing over and continuing next poll.
const MAX_GAP_PAGES: usize = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
struct ApiAccount {
    id: String,
    #[serde(default)]
    acct: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    avatar: String,
    #[serde(default)]
    header: String,
    #[serde(default)]
    locked: bool,
    #[serde(default)]
    bot: bool,
    #[serde(default)]
    fields: Vec<ApiField>,
    #[serde(default)]
    moved: Option<Box<ApiAccount>>,
}

#[derive(Debug, Deserialize)]
struct ApiField {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
struct ApiStatus {
    id: String,
    created_at: DateTime<Utc>,
    #[serde(default)]
    edited_at: Option<DateTime<Utc>>,
    #[serde(default)]
    content: String,
    #[serde(default)]
    spoiler_text: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    reblog: Option<Box<ApiStatus>>,
    #[serde(default)]
    application: Option<ApiApplication>,
    #[serde(default)]
    media_attachments: Vec<ApiMedia>,
    #[serde(default)]
    poll: Option<ApiPoll>,
    /// Who posted it: the user stream also carries the home timeline (followed accounts).
    #[serde(default)]
    account: Option<ApiStatusAccount>,
}

#[derive(Debug, Deserialize)]
struct ApiStatusAccount {
    id: String,
}

#[derive(Debug, Deserialize)]
struct ApiApplication {
    name: String,
}

#[derive(Debug, Deserialize)]
struct ApiMedia {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    remote_url: Option<String>,
    #[serde(default)]
    blurhash: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiPoll {
    #[serde(default)]
    options: Vec<ApiPollOption>,
}

#[derive(Debug, Deserialize)]
struct ApiPollOption {
    title: String,
}

/// A client for one account on one server.
struct Client {
    http: reqwest::Client,
    base: Url,
    account_id: String,
    token: Option<crate::config::Secret>,
    budget: Option<RateBudget>,
}

impl Client {
    async fn get<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, SourceError> {
        let url = self.base.join(path).map_err(|e| SourceError::Malformed {
            what: path.into(),
            detail: e.to_string(),
        })?;
        let mut req = self.http.get(url).query(query);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        let resp = req.send().await?;
        self.budget = rate_budget(resp.headers()).or(self.budget.take());
        check(resp, path)
            .await?
            .json::<T>()
            .await
            .map_err(|e| SourceError::Malformed {
                what: path.into(),
                detail: e.to_string(),
            })
    }
}

async fn check(resp: Response, what: &str) -> Result<Response, SourceError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    match status {
        StatusCode::TOO_MANY_REQUESTS => {
            let wait = retry_after(resp.headers()).unwrap_or(Duration::from_secs(60));
            Err(SourceError::RateLimited(wait))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(SourceError::Unauthorized {
            status: status.as_u16(),
        }),
        _ => Err(SourceError::Status {
            status: status.as_u16(),
            what: what.into(),
        }),
    }
}

fn rate_budget(h: &HeaderMap) -> Option<RateBudget> {
    super::rate_budget(h, "x-ratelimit-", |v| {
        DateTime::parse_from_rfc3339(v)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    super::retry_after(h, rate_budget(h).as_ref())
}

/// Mastodon ids are decimal strings of growing length; compare them as numbers.
fn cmp_id(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Watches one account until shutdown: the poller, and the push stream where a token allows.
pub async fn run(account: Account, ctx: SourceContext) {
    if account.token.is_some() {
        tokio::spawn(stream(account.clone(), ctx.clone()));
    }
    run_poller(account, ctx).await;
}

/// The health entry of an account's push stream, judged by `monitor.blind` like a source.
pub fn stream_health_key(account: &str) -> String {
    format!("{account}:stream")
}

/// How long a stream may stay silent (Mastodon sends a `:thump` comment every few seconds)
/// before it counts as dropped.
const STREAM_SILENCE: Duration = Duration::from_secs(45);

/// Push: `GET /api/v1/streaming/user` (server-sent events). `update` and `status.update`
/// events of the account become the same `Post` observations the poller makes (detect drops
/// whichever of the two arrives second), `delete` becomes `PostDeleted`. The poller keeps
/// running as a backstop; a dropped stream reconnects with backoff and reports its failure to
/// health under [`stream_health_key`], so `monitor.blind` pages once it stays down past the
/// account's grace.
async fn stream(account: Account, ctx: SourceContext) {
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
async fn stream_once(
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
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
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
async fn on_stream_event(account: &Account, ctx: &SourceContext, text: &str) -> bool {
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

async fn run_poller(account: Account, ctx: SourceContext) {
    let mut client = Client {
        http: ctx.http.clone(),
        base: account.base_url.clone(),
        account_id: account.account_id.clone(),
        token: account.token.clone(),
        budget: None,
    };
    let cursor_key = format!("mastodon:{}:since", account.name);
    let origin_key = format!("mastodon:{}:origin", account.name);
    let mut cursor = ctx.store.cursor(&cursor_key).ok().flatten();
    let mut origin = ctx.store.cursor(&origin_key).ok().flatten();
    let mut failures = 0u32;
    loop {
        let span = tracing::info_span!("poll", account = %account.name, platform = "mastodon");
        let result = poll(
            &mut client,
            &ctx,
            &account.name,
            &mut cursor,
            &mut origin,
            &cursor_key,
            &origin_key,
        )
        .instrument(span)
        .await;
        let budget = client.budget.clone();
        let wait = match result {
            Ok(true) => {
                failures = 0;
                ctx.health.success(&account.name, budget.clone());
                // At zero remaining, wait for the window to reset rather than earn a 429.
                match budget {
                    Some(RateBudget {
                        remaining: 0,
                        reset: Some(reset),
                        ..
                    }) => (reset - Utc::now())
                        .to_std()
                        .unwrap_or_default()
                        .max(account.poll_interval),
                    _ => account.poll_interval,
                }
            }
            // The pipeline is gone: shutting down.
            Ok(false) => return,
            Err(e) => {
                failures += 1;
                tracing::warn!(account = %account.name, error = %e, failures, "mastodon poll failed");
                let refused = matches!(e, SourceError::Unauthorized { .. });
                ctx.health
                    .failure(&account.name, e.to_string(), refused, budget);
                match e {
                    SourceError::RateLimited(d) => d.max(account.poll_interval),
                    _ => backoff(account.poll_interval, failures),
                }
            }
        };
        if !ctx.sleep(wait).await {
            return;
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

/// One poll. Ok(false) when the pipeline is closed.
async fn poll(
    client: &mut Client,
    ctx: &SourceContext,
    name: &str,
    cursor: &mut Option<String>,
    origin: &mut Option<String>,
    cursor_key: &str,
    origin_key: &str,
) -> Result<bool, SourceError> {
    let path = format!("api/v1/accounts/{}", client.account_id);
    let account: ApiAccount = client.get(&path, &[]).await?;
    if account.id != client.account_id {
        return Err(SourceError::Malformed {
            what: path,
            detail: format!("got account {}", account.id),
        });
    }
    if !ctx
        .emit(name, ObservationKind::Profile(profile(&account)))
        .await
    {
        return Ok(false);
    }

    let statuses_path = format!("api/v1/accounts/{}/statuses", client.account_id);
    let mut recent: Vec<ApiStatus> = client
        .get(&statuses_path, &[("limit", PAGE.to_string())])
        .await?;
    recent.sort_by(|a, b| cmp_id(&a.id, &b.id));

    let first_poll = origin.is_none();
    let mut posts = Vec::new();
    if let Some(since) = cursor.clone()
        && recent.len() == PAGE
        && recent
            .first()
            .is_some_and(|oldest| cmp_id(&oldest.id, &since) == Ordering::Greater)
    {
        // More than a page since the last poll: read the gap oldest first with min_id.
        let mut min_id = since;
        let mut gap_read = false;
        for _ in 0..MAX_GAP_PAGES {
            let mut page: Vec<ApiStatus> = client
                .get(
                    &statuses_path,
                    &[("min_id", min_id.clone()), ("limit", PAGE.to_string())],
                )
                .await?;
            page.sort_by(|a, b| cmp_id(&a.id, &b.id));
            let Some(newest) = page.last() else {
                gap_read = true;
                break;
            };
            min_id = newest.id.clone();
            let reached_recent = recent
                .first()
                .is_some_and(|r| cmp_id(&min_id, &r.id) != Ordering::Less);
            let full = page.len() == PAGE;
            posts.extend(page.into_iter().filter(|s| {
                recent
                    .first()
                    .is_none_or(|r| cmp_id(&s.id, &r.id) == Ordering::Less)
            }));
            if reached_recent || !full {
                gap_read = true;
                break;
            }
        }
        // Not through the gap yet: hand over what was read and continue from there next poll,
        // so the cursor never passes posts nobody looked at.
        if !gap_read {
            recent.clear();
        }
    }
    posts.extend(recent);

    let origin_id = match origin {
        Some(o) => o.clone(),
        None => posts
            .last()
            .map_or_else(|| "0".to_owned(), |s| s.id.clone()),
    };
    let mut newest = cursor.clone();
    for status in &posts {
        let history = first_poll || cmp_id(&status.id, &origin_id) != Ordering::Greater;
        if !ctx
            .emit(name, ObservationKind::Post(post(status, history)))
            .await
        {
            return Ok(false);
        }
        if newest
            .as_deref()
            .is_none_or(|n| cmp_id(&status.id, n) == Ordering::Greater)
        {
            newest = Some(status.id.clone());
        }
    }
    let newest = newest.unwrap_or_else(|| origin_id.clone());
    if first_poll {
        let checkpoint = ObservationKind::Checkpoint {
            cursor: origin_key.into(),
            value: origin_id.clone(),
        };
        if !ctx.emit(name, checkpoint).await {
            return Ok(false);
        }
        *origin = Some(origin_id);
    }
    if cursor.as_deref() != Some(newest.as_str()) {
        let checkpoint = ObservationKind::Checkpoint {
            cursor: cursor_key.into(),
            value: newest.clone(),
        };
        if !ctx.emit(name, checkpoint).await {
            return Ok(false);
        }
        *cursor = Some(newest);
    }
    Ok(true)
}

fn profile(a: &ApiAccount) -> Profile {
    let mut fields = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: String| {
        fields.insert(k.to_owned(), v);
    };
    put("handle", a.acct.clone());
    put("display_name", a.display_name.clone());
    put("note", html_to_content(&a.note).text);
    put("url", a.url.clone().unwrap_or_default());
    put("avatar", a.avatar.clone());
    put("header", a.header.clone());
    put("locked", a.locked.to_string());
    put("bot", a.bot.to_string());
    put(
        "moved",
        a.moved.as_ref().map(|m| m.acct.clone()).unwrap_or_default(),
    );
    for f in &a.fields {
        put(&format!("field:{}", f.name), html_to_content(&f.value).text);
    }
    Profile { fields }
}

fn post(s: &ApiStatus, history: bool) -> Post {
    // A boost puts someone else's words on the account: judge those words.
    let shown = s.reblog.as_deref().unwrap_or(s);
    let mut content = html_to_content(&shown.content);
    if !shown.spoiler_text.is_empty() {
        content.text = format!("{}\n{}", shown.spoiler_text, content.text);
    }
    if let Some(poll) = &shown.poll {
        for option in &poll.options {
            content.text.push_str("\n• ");
            content.text.push_str(&option.title);
        }
    }
    if let Some(original) = s
        .reblog
        .as_deref()
        .and_then(|r| r.url.clone().or(r.uri.clone()))
    {
        content.text = format!("boost of {original}\n{}", content.text);
        content.links.push(original);
    }
    content.media = shown
        .media_attachments
        .iter()
        .map(|m| match &m.blurhash {
            Some(hash) => format!("{}:blurhash:{hash}", m.kind),
            None => format!(
                "{}:url:{}",
                m.kind,
                digest(
                    m.remote_url
                        .as_deref()
                        .or(m.url.as_deref())
                        .unwrap_or_default()
                )
            ),
        })
        .collect();
    Post {
        id: s.id.clone(),
        url: s.url.clone().or(s.uri.clone()),
        created_at: s.created_at,
        edited_at: s.edited_at,
        content,
        client: shown.application.as_ref().map(|a| a.name.clone()),
        history,
    }
}

/// Turns Mastodon's status HTML into the text a reader sees with every link written as its
/// target, plus the set of link targets. Mentions and hashtags keep their visible text: they
/// point inside the platform, and their href differs between servers.
pub fn html_to_content(html: &str) -> PostContent {
    let mut text = String::new();
    let mut links = Vec::new();
    // The open anchor: its href if it is an outside link, and its visible text so far.
    let mut anchor: Option<(Option<String>, String)> = None;
    let mut rest = html;
    while !rest.is_empty() {
        let (chunk, tag) = match rest.find('<') {
            Some(0) => {
                let end = rest.find('>').map_or(rest.len(), |i| i + 1);
                let tag = &rest[..end];
                rest = &rest[end..];
                ("", Some(tag))
            }
            Some(i) => {
                let chunk = &rest[..i];
                rest = &rest[i..];
                (chunk, None)
            }
            None => {
                let chunk = rest;
                rest = "";
                (chunk, None)
            }
        };
        let decoded = decode_entities(chunk);
        match &mut anchor {
            Some((_, inner)) => inner.push_str(&decoded),
            None => text.push_str(&decoded),
        }
        let Some(tag) = tag else { continue };
        let name = tag_name(tag);
        match name.as_str() {
            "br" => text.push('\n'),
            "/p" => text.push_str("\n\n"),
            "a" => {
                let class = attr(tag, "class").unwrap_or_default();
                let internal = class
                    .split_whitespace()
                    .any(|c| c == "mention" || c == "hashtag");
                let href = if internal {
                    None
                } else {
                    attr(tag, "href").map(|h| decode_entities(&h))
                };
                anchor = Some((href, String::new()));
            }
            "/a" => {
                if let Some((href, inner)) = anchor.take() {
                    match href {
                        Some(h) => {
                            text.push_str(&h);
                            links.push(h);
                        }
                        None => text.push_str(&inner),
                    }
                }
            }
            _ => {}
        }
    }
    if let Some((_, inner)) = anchor {
        text.push_str(&inner);
    }
    PostContent {
        text: text.trim().to_owned(),
        links,
        media: Vec::new(),
    }
}

fn tag_name(tag: &str) -> String {
    tag.trim_start_matches('<')
        .trim_end_matches('>')
        .trim_end_matches('/')
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn attr(tag: &str, name: &str) -> Option<String> {
    for quote in ['"', '\''] {
        let needle = format!(" {name}={quote}");
        if let Some(start) = tag.find(&needle) {
            let value = &tag[start + needle.len()..];
            return value.find(quote).map(|end| value[..end].to_owned());
        }
    }
    None
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{content_from_text, fingerprint};

    #[test]
    fn html_links_are_expanded_and_match_a_typed_approval() {
        let html = r#"<p>Our Q4 update &amp; more: <a href="https://example.com/q4" target="_blank" rel="nofollow noopener noreferrer" translate="no"><span class="invisible">https://</span><span class="">example.com/q4</span><span class="invisible"></span></a>. <a href="https://m.example/tags/news" class="mention hashtag" rel="tag">#<span>news</span></a></p>"#;
        let content = html_to_content(html);
        assert_eq!(
            content.text,
            "Our Q4 update & more: https://example.com/q4. #news"
        );
        assert_eq!(content.links, vec!["https://example.com/q4".to_string()]);
        let typed = content_from_text("Our Q4 update & more: https://example.com/q4. #news");
        assert_eq!(fingerprint(&content), fingerprint(&typed));
    }

    #[test]
    fn paragraphs_breaks_and_numeric_entities() {
        let c = html_to_content("<p>a<br />b</p><p>it&#39;s &#x263A;</p>");
        assert_eq!(c.text, "a\nb\n\nit's ☺");
    }

    #[test]
    fn ids_compare_as_numbers() {
        assert_eq!(cmp_id("99", "100"), Ordering::Less);
        assert_eq!(cmp_id("113", "112"), Ordering::Greater);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let i = Duration::from_secs(15);
        assert_eq!(backoff(i, 1), Duration::from_secs(30));
        assert_eq!(backoff(i, 2), Duration::from_secs(60));
        assert_eq!(backoff(i, 30), MAX_BACKOFF);
    }
}
