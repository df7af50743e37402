//! The social platforms, one folder each: its API client and wire types (`api.rs`), what it
//! watches (`watch.rs`, and its push streams), and its takedown (`takedown.rs`).
//!
//! [`Platform`] is the one seam the rest of the daemon sees: `app` builds the watchers and
//! `check-config` describes the accounts through it, `contain` takes a post down through it.
//! Adding a platform is a new folder implementing it, a fake in the `tocsin-fakes` crate, and
//! one line in [`PLATFORMS`] (plus the name in `config::Platform`, the config's vocabulary).
//! No platform reaches into another's folder; what they share (the source context, health,
//! rate-limit headers) lives in `crate::watch`.

pub mod bluesky;
pub mod mastodon;
pub mod telegram_channel;
pub mod x;

use std::{collections::HashMap, future::Future, pin::Pin, time::Duration};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::{
    config::{self, Account, Config},
    model::TakedownOutcome,
    watch::{SourceContext, SourceFuture},
};

/// Every platform this build watches.
pub static PLATFORMS: [&dyn Platform; 4] = [
    &mastodon::Mastodon,
    &x::X,
    &bluesky::Bluesky,
    &telegram_channel::TelegramChannel,
];

/// What a platform's watchers are built with at start-up.
pub struct WatchContext<'a> {
    pub config: &'a Config,
    pub source: SourceContext,
    /// Updates the on-call bot receives on a watcher's behalf (Telegram channels push their
    /// posts to the bot's `getUpdates`): chat id → the watcher that takes them.
    pub bot_updates: &'a mut HashMap<i64, mpsc::Sender<telegram_channel::ChannelUpdate>>,
}

/// One post to delete, as `contain` asks for it.
#[derive(Clone, Copy)]
pub struct Takedown<'a> {
    pub http: &'a reqwest::Client,
    pub account: &'a Account,
    pub post_id: &'a str,
    /// The platform's time of the post when known, for platforms with a deletion window.
    pub posted_at: Option<DateTime<Utc>>,
}

/// A takedown in flight.
pub type TakedownFuture<'a> = Pin<Box<dyn Future<Output = TakedownOutcome> + Send + 'a>>;

/// One platform, as `app` and `contain` need it.
pub trait Platform: Sync {
    /// The name `accounts[].platform` gives it.
    fn kind(&self) -> config::Platform;

    /// The futures that watch `accounts` (this platform's, in config order) until shutdown.
    fn watch(&self, accounts: &[&Account], cx: &mut WatchContext<'_>) -> Vec<SourceFuture>;

    /// How long each watched thing may go without a success before it is blind
    /// (`monitor.blind`, `/readyz`): the accounts, and any health entry of their own (a push
    /// stream). By default each account's `grace`.
    fn graces(&self, accounts: &[&Account], _config: &Config) -> Vec<(String, Duration)> {
        accounts
            .iter()
            .map(|a| (a.name.clone(), a.grace()))
            .collect()
    }

    /// Deletes one post with the account's write token. Never fails as such: every answer, a
    /// network failure included, is one of the outcomes the responder reads.
    fn takedown<'a>(&'a self, post: Takedown<'a>) -> TakedownFuture<'a>;

    /// `check-config`'s line for one account.
    fn describe(&self, account: &Account) -> String;

    /// `check-config`'s lines about the platform as a whole, after the accounts.
    fn describe_all(&self, _config: &Config) -> String {
        String::new()
    }
}

/// The platform of `kind`.
pub fn of(kind: config::Platform) -> &'static dyn Platform {
    PLATFORMS
        .iter()
        .copied()
        .find(|p| p.kind() == kind)
        .expect("every config::Platform is in PLATFORMS")
}

fn accounts_of(config: &Config, kind: config::Platform) -> Vec<&Account> {
    config
        .accounts
        .iter()
        .filter(|a| a.platform == kind)
        .collect()
}

/// The watchers of every configured account, each registered for health.
pub fn watch_all(cx: &mut WatchContext<'_>) -> Vec<SourceFuture> {
    let mut out = Vec::new();
    for p in PLATFORMS {
        let accounts = accounts_of(cx.config, p.kind());
        if accounts.is_empty() {
            continue;
        }
        for a in &accounts {
            cx.source.health.register(&a.name, a.platform);
        }
        out.extend(p.watch(&accounts, cx));
    }
    out
}

/// One watcher per account, each `run(account, context)`.
pub fn per_account<F, Fut>(
    accounts: &[&Account],
    cx: &WatchContext<'_>,
    run: F,
) -> Vec<SourceFuture>
where
    F: Fn(Account, SourceContext) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    accounts
        .iter()
        .map(|a| Box::pin(run((*a).clone(), cx.source.clone())) as SourceFuture)
        .collect()
}

/// Each account's own `grace`.
pub fn account_graces(accounts: &[&Account]) -> Vec<(String, Duration)> {
    accounts
        .iter()
        .map(|a| (a.name.clone(), a.grace()))
        .collect()
}

/// Every account's grace (and its push streams'), accounts in config order.
pub fn graces(config: &Config) -> Vec<(String, Duration)> {
    let mut out: Vec<(String, Duration)> = PLATFORMS
        .iter()
        .flat_map(|p| p.graces(&accounts_of(config, p.kind()), config))
        .collect();
    let position = |name: &str| {
        config
            .accounts
            .iter()
            .position(|a| a.name == name)
            .unwrap_or(usize::MAX)
    };
    out.sort_by_key(|(name, _)| position(name));
    out
}

/// Shortens a platform's error text for the page.
pub(crate) fn short(text: &str) -> String {
    const MAX: usize = 200;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}
