//! Bluesky: identity from the PLC directory or `did:web` ([`identity`]), the repo polled from
//! its PDS ([`api`], [`watch`]), commits pushed by Jetstream ([`jetstream`]), and
//! `com.atproto.repo.deleteRecord` in an app-password session for takedowns ([`takedown`]).

pub mod api;
pub mod identity;
pub mod jetstream;
mod state;
pub mod takedown;
pub mod watch;

use super::{Platform, Takedown, TakedownFuture, WatchContext, per_account};
use crate::{
    config::{self, Account},
    watch::SourceFuture,
};

pub struct Bluesky;

impl Platform for Bluesky {
    fn kind(&self) -> config::Platform {
        config::Platform::Bluesky
    }

    fn watch(&self, accounts: &[&Account], cx: &mut WatchContext<'_>) -> Vec<SourceFuture> {
        per_account(accounts, cx, watch::run)
    }

    fn takedown<'a>(&'a self, post: Takedown<'a>) -> TakedownFuture<'a> {
        Box::pin(takedown::delete_post(post.http, post.account, post.post_id))
    }

    fn describe(&self, a: &Account) -> String {
        format!(
            "watch         {} · bluesky {} · identity via {} (PLC {}) · posts and profile \
             from its PDS every {} · push from Jetstream {} · takedown {}\n",
            a.name,
            a.account_id,
            a.base_url,
            a.plc_url(),
            humantime::format_duration(a.poll_interval),
            a.jetstream_url(),
            if a.write_token.is_some() {
                "with an app password session"
            } else {
                "not configured (no write_token)"
            }
        )
    }
}
