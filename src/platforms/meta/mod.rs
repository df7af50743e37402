//! Meta's Graph API: Facebook Pages (`facebook_page`) and Instagram professional accounts
//! (`instagram`). Both are polled ([`watch`]) with the shared client ([`api`]); Pages are also
//! pushed through the Graph API webhooks ([`push`]), which wake the Page's poller; Page posts
//! are taken down with the Page token, Instagram's are not deletable through the API
//! ([`takedown`]).

pub mod api;
pub mod push;
pub mod takedown;
pub mod watch;

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use tokio::sync::Notify;

use super::{Platform, Takedown, TakedownFuture, WatchContext};
use crate::{
    config::{self, Account, Config},
    watch::SourceFuture,
};
use watch::Kind;

pub struct FacebookPage;
pub struct Instagram;

/// The running configuration's `[meta] graph_version`, for takedowns: `contain` hands a
/// platform the account, not the configuration. Set whenever the watchers are built (start and
/// every reload), before any takedown can be asked for.
static GRAPH_VERSION: RwLock<Option<String>> = RwLock::new(None);

fn set_graph_version(config: &Config) {
    *GRAPH_VERSION.write().expect("version lock") = Some(config.meta.graph_version.clone());
}

fn graph_version() -> String {
    GRAPH_VERSION
        .read()
        .expect("version lock")
        .clone()
        .unwrap_or_else(|| config::DEFAULT_GRAPH_VERSION.to_owned())
}

impl Platform for FacebookPage {
    fn kind(&self) -> config::Platform {
        config::Platform::FacebookPage
    }

    /// One poller per Page; with `[meta]` webhook secrets, the webhook route that wakes them.
    fn watch(&self, accounts: &[&Account], cx: &mut WatchContext<'_>) -> Vec<SourceFuture> {
        set_graph_version(cx.config);
        let meta = &cx.config.meta;
        let wakes: HashMap<String, Arc<Notify>> = accounts
            .iter()
            .map(|a| (a.account_id.clone(), Arc::new(Notify::new())))
            .collect();
        if let (Some(secret), Some(verify)) = (&meta.app_secret, &meta.verify_token) {
            let hooks = push::MetaHooks::new(
                secret.clone(),
                verify.clone(),
                meta.max_body,
                wakes.clone(),
                cx.metrics.clone(),
            );
            cx.hook_routes.push(Arc::new(hooks).router());
        }
        let push = meta.push();
        accounts
            .iter()
            .map(|a| {
                let wake = push.then(|| wakes[&a.account_id].clone());
                Box::pin(watch::run(
                    Kind::Page,
                    (*a).clone(),
                    cx.source.clone(),
                    meta.graph_version.clone(),
                    wake,
                )) as SourceFuture
            })
            .collect()
    }

    fn takedown<'a>(&'a self, post: Takedown<'a>) -> TakedownFuture<'a> {
        Box::pin(async move {
            let version = graph_version();
            takedown::delete_page_post(post.http, post.account, &version, post.post_id).await
        })
    }

    fn describe(&self, a: &Account) -> String {
        describe(
            a,
            "Page",
            if a.write_token.is_some() {
                " · takedown on (DELETE with the Page token)"
            } else {
                " · takedown off (no write_token)"
            },
        )
    }

    /// The pinned version and the budget rule, and whether Pages are pushed and where to.
    fn describe_all(&self, config: &Config) -> String {
        let of = |kind| config.accounts.iter().any(|a| a.platform == kind);
        let pages = of(config::Platform::FacebookPage);
        if !pages && !of(config::Platform::Instagram) {
            return String::new();
        }
        let meta = &config.meta;
        let mut out = format!(
            "meta          Graph API {} · Meta's usage headers read on every answer: an account's \
             polls stretch x2 past 75% of its limit, x4 past 90%, and wait for Meta's estimate \
             (at least 5 min) at 100% or when throttled\n",
            meta.graph_version
        );
        if pages {
            out += &match (&config.general.public_url, meta.push()) {
                (Some(base), true) => format!(
                    "meta          Pages pushed: webhook callback {}{} (object Page, field feed; \
                     X-Hub-Signature-256 with the app secret, handshake with the verify token), \
                     each delivery wakes the Page's poll\n",
                    base.as_str().trim_end_matches('/'),
                    push::PATH
                ),
                _ => "meta          Pages polled only: set [meta] app_secret and verify_token and \
                      general.public_url for webhooks\n"
                    .to_owned(),
            };
        }
        out
    }
}

impl Platform for Instagram {
    fn kind(&self) -> config::Platform {
        config::Platform::Instagram
    }

    /// Polled only: Meta's Instagram webhooks announce comments and mentions, not new media.
    fn watch(&self, accounts: &[&Account], cx: &mut WatchContext<'_>) -> Vec<SourceFuture> {
        set_graph_version(cx.config);
        let version = cx.config.meta.graph_version.clone();
        accounts
            .iter()
            .map(|a| {
                Box::pin(watch::run(
                    Kind::Instagram,
                    (*a).clone(),
                    cx.source.clone(),
                    version.clone(),
                    None,
                )) as SourceFuture
            })
            .collect()
    }

    fn takedown<'a>(&'a self, post: Takedown<'a>) -> TakedownFuture<'a> {
        Box::pin(async move {
            let version = graph_version();
            takedown::instagram_by_hand(post.http, post.account, &version, post.post_id).await
        })
    }

    fn describe(&self, a: &Account) -> String {
        describe(
            a,
            "Instagram account",
            " · takedown by hand (the API cannot delete media)",
        )
    }
}

fn describe(a: &Account, what: &str, takedown: &str) -> String {
    format!(
        "watch         {} · {} {what} {} on {} · polled every {}{takedown}\n",
        a.name,
        a.platform,
        a.account_id,
        a.base_url,
        humantime::format_duration(a.poll_interval),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"[general]
state_dir = "/tmp/unused"
api_token = "a"
public_url = "https://hooks.example.com/"
[telegram]
bot_token = "b"
chat_id = -100123
responders = [1]
[[accounts]]
name = "fb"
platform = "facebook_page"
account_id = "104512345678901"
token = "t"
{extra}"#
        );
        Config::parse(&text, "t").unwrap()
    }

    #[test]
    fn check_config_names_the_version_the_budget_and_the_callback() {
        let polled = FacebookPage.describe_all(&config(""));
        assert!(polled.contains("Graph API v21.0"), "{polled}");
        assert!(polled.contains("75%"), "{polled}");
        assert!(polled.contains("Pages polled only"), "{polled}");
        let pushed = FacebookPage.describe_all(&config(
            "[meta]\ngraph_version = \"v22.0\"\napp_secret = \"s\"\nverify_token = \"v\"",
        ));
        assert!(pushed.contains("Graph API v22.0"), "{pushed}");
        assert!(
            pushed.contains("callback https://hooks.example.com/hooks/meta"),
            "{pushed}"
        );
        let line = FacebookPage.describe(&config("").accounts[0]);
        assert!(line.contains("takedown off (no write_token)"), "{line}");
    }
}
