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

use chrono::Utc;
use tracing::Instrument;

use super::{
    api::{ApiAccount, ApiStatus, Client, cmp_id, post, profile},
    stream::stream,
};
use crate::{
    config::Account,
    model::ObservationKind,
    watch::{RateBudget, SourceContext, SourceError},
};

/// Statuses per request; Mastodon's maximum.
pub(super) const PAGE: usize = 40;
/// Gap pages read in one poll before handing over and continuing next poll.
pub(super) const MAX_GAP_PAGES: usize = 10;
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Watches one account until shutdown: the poller, and the push stream where a token allows.
pub async fn run(account: Account, ctx: SourceContext) {
    if account.token.is_some() {
        tokio::spawn(stream(account.clone(), ctx.clone()));
    }
    run_poller(account, ctx).await;
}

pub(super) async fn run_poller(account: Account, ctx: SourceContext) {
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
pub(super) fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}

/// One poll. Ok(false) when the pipeline is closed.
pub(super) async fn poll(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{content_from_text, fingerprint};
    use crate::platforms::mastodon::api::html_to_content;

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
