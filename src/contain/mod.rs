//! Containment: what a responder's press does to the outside world. Takedowns delete a post
//! through the platform's API with the account's write token (each platform's `takedown.rs`,
//! reached through the [`Platform`](crate::platforms::Platform) seam); the mail kill switch
//! ([`mailer`]) pauses the mailer. Every attempt and its answer is written in the incident's
//! timeline by the caller. A platform call never panics or returns an error type: every answer,
//! including a network failure, is one of the [`TakedownOutcome`]s the responder reads.

pub mod held;
pub mod mailer;

use chrono::{DateTime, Utc};

use crate::{
    config::Account,
    model::TakedownOutcome,
    platforms::{self, Takedown},
    store::Store,
};

/// Deletes one post of `account`. `posted_at` is the platform's time of the post when known,
/// for platforms with a deletion window. The caller checks `write_token` first: without it
/// nothing is called (this returns `Forbidden` as a guard, never reached from the chat).
/// The account's approved profile baseline is read from `store` and handed to the platform,
/// which pins the endpoints it learned from data to it.
pub async fn takedown(
    http: &reqwest::Client,
    store: &Store,
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
    let baseline = match store.baselines(&account.name) {
        Ok(b) => b.into_iter().map(|(field, b)| (field, b.value)).collect(),
        Err(e) => {
            return TakedownOutcome::Failed {
                detail: format!("cannot read the approved baseline: {e}"),
            };
        }
    };
    platforms::of(account.platform)
        .takedown(Takedown {
            http,
            account,
            post_id,
            posted_at,
            baseline: &baseline,
        })
        .await
}
