//! Bluesky: identity from the PLC directory or `did:web` ([`identity`]), the repo polled from
//! its PDS ([`api`], [`watch`]), commits pushed by Jetstream ([`jetstream`]), and
//! `com.atproto.repo.deleteRecord` in an app-password session on the pinned PDS for takedowns
//! ([`takedown`]). Only this platform calls endpoints it learned from data (the DID document's
//! PDS, a did:web host): each passes [`check_data_endpoint`](super::check_data_endpoint).

pub mod api;
#[cfg(test)]
mod examples;
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
        Box::pin(takedown::delete_post(
            post.http,
            post.account,
            post.post_id,
            post.baseline,
        ))
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
            match (&a.write_token, &a.pds_url) {
                (None, _) => "not configured (no write_token)".to_owned(),
                (Some(_), Some(pds)) => format!(
                    "with an app password session on {pds} only, gone confirmed at {}",
                    a.appview_url()
                ),
                (Some(_), None) => format!(
                    "with an app password session on the approved PDS only, gone confirmed \
                     at {}",
                    a.appview_url()
                ),
            }
        )
    }
}
