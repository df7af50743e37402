//! Mastodon: the REST API v1 polled ([`watch`]), the user stream pushed where a token allows
//! ([`stream`]), and `DELETE /api/v1/statuses/:id` for takedowns ([`takedown`]).

pub mod api;
#[cfg(test)]
mod examples;
pub mod stream;
pub mod takedown;
pub mod watch;

use std::time::Duration;

use super::{Platform, Takedown, TakedownFuture, WatchContext, account_graces, per_account};
use crate::{
    config::{self, Account, Config},
    watch::SourceFuture,
};

pub struct Mastodon;

impl Platform for Mastodon {
    fn kind(&self) -> config::Platform {
        config::Platform::Mastodon
    }

    fn watch(&self, accounts: &[&Account], cx: &mut WatchContext<'_>) -> Vec<SourceFuture> {
        per_account(accounts, cx, watch::run)
    }

    /// A push stream is judged like a source of its own: a dropped stream pages
    /// `monitor.blind` after the account's grace even while the poller still works.
    fn graces(&self, accounts: &[&Account], _config: &Config) -> Vec<(String, Duration)> {
        let mut out = account_graces(accounts);
        out.extend(
            accounts
                .iter()
                .filter(|a| a.token.is_some())
                .map(|a| (stream::stream_health_key(&a.name), a.grace())),
        );
        out
    }

    fn takedown<'a>(&'a self, post: Takedown<'a>) -> TakedownFuture<'a> {
        Box::pin(takedown::delete_post(post.http, post.account, post.post_id))
    }

    fn describe(&self, a: &Account) -> String {
        format!(
            "watch         {} · {} {} account {} · every {} · {}{}\n",
            a.name,
            a.platform,
            a.base_url,
            a.account_id,
            humantime::format_duration(a.poll_interval),
            if a.token.is_some() {
                "token set"
            } else {
                "no token (public fields only)"
            },
            if a.write_token.is_some() {
                " · takedown on"
            } else {
                " · takedown off (no write_token)"
            }
        )
    }
}
