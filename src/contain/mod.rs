//! Containment: what a responder's press does to the outside world. Takedowns delete a post
//! through the platform's API with the account's write token; the mail kill switch pauses the
//! mailer. Every attempt and its answer is written in the incident's timeline by the caller.
//!
//! One file per platform, each exposing
//! `pub async fn delete_post(http: &reqwest::Client, account: &config::Account, post_id: &str,
//! …) -> TakedownOutcome`; [`takedown`] dispatches on the account's platform. A platform call
//! never panics or returns an error type: every answer, including a network failure, is one of
//! the [`TakedownOutcome`]s the responder reads on the page.

pub mod bluesky;
pub mod mailer;
pub mod mastodon;
pub mod telegram_channel;
pub mod x;

use chrono::{DateTime, Utc};

use crate::{
    config::{Account, Platform},
    model::TakedownOutcome,
};

/// Deletes one post of `account`. `posted_at` is the platform's time of the post when known,
/// for platforms with a deletion window. The caller checks `write_token` first: without it
/// nothing is called (this returns `Forbidden` as a guard, never reached from the chat).
pub async fn takedown(
    http: &reqwest::Client,
    account: &Account,
    post_id: &str,
    posted_at: Option<DateTime<Utc>>,
) -> TakedownOutcome {
    if account.write_token.is_none() {
        return TakedownOutcome::Forbidden {
            detail: format!(
                "no accounts[].write_token configured for `{}`",
                account.name
            ),
        };
    }
    match account.platform {
        Platform::Mastodon => mastodon::delete_post(http, account, post_id).await,
        Platform::TelegramChannel => {
            telegram_channel::delete_post(http, account, post_id, posted_at).await
        }
        Platform::Bluesky => bluesky::delete_post(http, account, post_id).await,
        Platform::X => x::delete_post(http, account, post_id).await,
    }
}

/// Shortens a platform's error text for the page.
fn short(text: &str) -> String {
    const MAX: usize = 200;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}
