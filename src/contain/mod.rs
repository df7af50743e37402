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

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Account, Platform};

/// How a takedown ended, as the platform answered. Each is shown on the page and in the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TakedownOutcome {
    /// The platform confirmed the deletion.
    Deleted,
    /// The post was no longer there (404): someone else removed it first.
    AlreadyGone,
    /// The platform refused our token (401/403): the account's write access is gone or lacking.
    Forbidden { detail: String },
    /// The platform no longer allows deleting it (Telegram: older than 48 hours).
    TooOld { detail: String },
    /// Anything else; worth retrying by hand.
    Failed { detail: String },
}

impl TakedownOutcome {
    /// The post is no longer public: the incident is contained.
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            TakedownOutcome::Deleted | TakedownOutcome::AlreadyGone
        )
    }

    /// How the page and the chat say it.
    pub fn describe(&self) -> String {
        match self {
            TakedownOutcome::Deleted => "deleted".into(),
            TakedownOutcome::AlreadyGone => "already gone".into(),
            TakedownOutcome::Forbidden { detail } => format!("forbidden ({detail})"),
            TakedownOutcome::TooOld { detail } => format!("too old ({detail})"),
            TakedownOutcome::Failed { detail } => format!("failed ({detail})"),
        }
    }
}

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
        Platform::X => TakedownOutcome::Failed {
            detail: format!(
                "takedown not supported for {} in this build",
                account.platform
            ),
        },
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
