//! X: the API v2 polled under one rate-limit schedule per app ([`schedule`], [`watch`]), posts
//! and deletions pushed to the `/hooks/x` webhook when `[x]` has its keys ([`push`]), and
//! `DELETE /2/tweets/:id` with the account's user token for takedowns ([`takedown`]).

pub mod api;
#[cfg(test)]
mod examples;
pub mod push;
pub mod schedule;
pub mod takedown;
pub mod watch;

use std::time::Duration;

use super::{Platform, Takedown, TakedownFuture, WatchContext};
use crate::{
    config::{self, Account, Config},
    watch::SourceFuture,
};

pub struct X;

impl Platform for X {
    fn kind(&self) -> config::Platform {
        config::Platform::X
    }

    /// One scheduler per app: the accounts of an app share its rate-limit budget.
    /// And, with `[x]`'s push keys, the webhook that X pushes posts and deletions to.
    fn watch(&self, accounts: &[&Account], cx: &mut WatchContext<'_>) -> Vec<SourceFuture> {
        let mut out: Vec<SourceFuture> = schedule::groups(cx.config)
            .into_iter()
            .map(|group| {
                Box::pin(watch::run(group, cx.config.x.clone(), cx.source.clone())) as SourceFuture
            })
            .collect();
        out.extend(push::start(accounts, cx));
        out
    }

    /// An account whose interval its app's budget stretched gets three of those intervals,
    /// unless it sets its own `grace`.
    fn graces(&self, accounts: &[&Account], config: &Config) -> Vec<(String, Duration)> {
        let plans = schedule::Plan::for_config(config);
        accounts
            .iter()
            .map(|a| {
                let stretched = plans.iter().find_map(|p| p.interval(&a.name));
                let grace = match (a.grace, stretched) {
                    (None, Some(e)) => a.grace().max(e * 3),
                    _ => a.grace(),
                };
                (a.name.clone(), grace)
            })
            .collect()
    }

    fn takedown<'a>(&'a self, post: Takedown<'a>) -> TakedownFuture<'a> {
        Box::pin(takedown::delete_post(post.http, post.account, post.post_id))
    }

    fn describe(&self, a: &Account) -> String {
        format!(
            "watch         {} · x {} user {} · poll_interval {} · app bearer token set · {}\n",
            a.name,
            a.base_url,
            a.account_id,
            humantime::format_duration(a.poll_interval),
            if a.write_token.is_some() {
                "user token set: Take down deletes with it"
            } else {
                "no write_token: takedown unavailable"
            }
        )
    }

    /// The accounts of an app share its budget: the schedule says what each gets. Then which
    /// accounts X pushes, and how.
    fn describe_all(&self, config: &Config) -> String {
        let mut out: String = schedule::Plan::for_config(config)
            .iter()
            .map(schedule::Plan::describe)
            .collect();
        out.push_str(&push::describe(config));
        out
    }
}
