//! YouTube: the Data API v3 polled by quota plan ([`watch`], [`schedule`]), uploads and live
//! broadcasts pushed through WebSub ([`websub`]), and `videos.delete` for takedowns
//! ([`takedown`]).

pub mod api;
pub mod schedule;
pub mod takedown;
pub mod watch;
pub mod websub;

use super::{Platform, Takedown, TakedownFuture, WatchContext};
use crate::{
    config::{self, Account, Config},
    watch::SourceFuture,
};

pub struct YouTube;

/// Where the hub delivers one channel's pushes: `general.public_url` + `/hooks/youtube/<name>`.
pub fn callback(public: &url::Url, account: &str) -> url::Url {
    let mut url = public.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments
            .pop_if_empty()
            .extend(["hooks", "youtube", account]);
    }
    url
}

impl Platform for YouTube {
    fn kind(&self) -> config::Platform {
        config::Platform::YouTube
    }

    fn watch(&self, accounts: &[&Account], cx: &mut WatchContext<'_>) -> Vec<SourceFuture> {
        let yt = &cx.config.youtube;
        let Some(key) = yt.api_key.clone() else {
            return Vec::new();
        };
        let plan = schedule::Plan::new(yt.daily_quota, accounts);
        let quota = schedule::Quota::new(yt.daily_quota);
        let public = cx.config.general.public_url.clone();
        let subs = public
            .as_ref()
            .map(|_| websub::WebSub::new(cx.metrics.clone()));
        if let Some(ws) = &subs {
            cx.hook_routes
                .push(axum::Router::new().nest(websub::ROUTE, ws.router()));
        }
        let mut out: Vec<SourceFuture> = Vec::new();
        for a in accounts {
            let mut pushed = None;
            if let (Some(ws), Some(public)) = (&subs, &public) {
                let (rx, leases) = ws.add(&a.name, &a.account_id);
                pushed = Some(rx);
                out.push(Box::pin(websub::keep_subscribed(
                    ws.clone(),
                    cx.source.http.clone(),
                    yt.hub_url.clone(),
                    callback(public, &a.name),
                    a.name.clone(),
                    yt.lease,
                    leases,
                    cx.source.health.clone(),
                    cx.source.shutdown.clone(),
                )));
            }
            let w = watch::Watcher {
                account: (*a).clone(),
                ctx: cx.source.clone(),
                client: api::Client {
                    http: cx.source.http.clone(),
                    base: a.base_url.clone(),
                    key: key.clone(),
                },
                interval: plan.interval(&a.name),
                quota: quota.clone(),
                pushed,
            };
            out.push(Box::pin(w.run()));
        }
        out
    }

    fn takedown<'a>(&'a self, post: Takedown<'a>) -> TakedownFuture<'a> {
        Box::pin(takedown::delete_video(
            post.http,
            post.account,
            post.post_id,
        ))
    }

    fn describe(&self, a: &Account) -> String {
        format!(
            "watch         {} · youtube channel {} via {} · title, handle, description, avatar, banner, uploads, live broadcasts · {}\n",
            a.name,
            a.account_id,
            a.base_url,
            if a.write_token.is_some() {
                "takedown on (videos.delete with write_token)"
            } else {
                "takedown off (no write_token)"
            }
        )
    }

    fn describe_all(&self, config: &Config) -> String {
        let accounts: Vec<&Account> = config
            .accounts
            .iter()
            .filter(|a| a.platform == config::Platform::YouTube)
            .collect();
        let yt = &config.youtube;
        let mut out = schedule::Plan::new(yt.daily_quota, &accounts).describe();
        match &config.general.public_url {
            Some(public) => out.push_str(&format!(
                "youtube push  WebSub at {} · callbacks {}/hooks/youtube/<account> · lease {}, renewed at 4/5\n",
                yt.hub_url,
                public.as_str().trim_end_matches('/'),
                humantime::format_duration(yt.lease),
            )),
            None => out.push_str(
                "youtube push  off (no general.public_url): uploads and live broadcasts are seen by polling only\n",
            ),
        }
        out
    }
}
