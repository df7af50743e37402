//! A Telegram channel the company publishes in (`platform = "telegram_channel"`).
//!
//! The on-call bot is an admin of the channel, so Telegram pushes the channel's posts and edits
//! (`channel_post`, `edited_channel_post`) and membership changes (`chat_member`,
//! `my_chat_member`) to the bot's `getUpdates`; the bot's update loop hands those of watched
//! channels to this source through an mpsc channel. What Telegram does not push is polled:
//! `getChat` (title, description, public username, photo, pinned message) becomes the profile,
//! and `getChatAdministrators` the admin list, each compared with its baseline by detect.
//!
//! The bot being removed or demoted makes the source blind (reported to health as a refusal),
//! so `monitor.blind` pages at once and resolves itself when the bot is an admin again.
//! `account_id` is the channel's chat id; `base_url` the Bot API's URL; the bot token is the
//! `[telegram]` one, since the updates arrive through that bot.

use std::time::Duration;

use serde_json::json;
use teloxide::types::ChatMemberUpdated;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{
    ChannelUpdate,
    api::{Api, CallError, admins_from, post_from, profile_from},
};
use crate::{
    config::{Account, Secret},
    model::{ObservationKind, Profile},
    watch::{SourceContext, SourceError},
};

/// Watches one channel until shutdown.
pub async fn run(
    account: Account,
    ctx: SourceContext,
    bot_token: Secret,
    mut updates: mpsc::Receiver<ChannelUpdate>,
) {
    let api = Api {
        http: ctx.http.clone(),
        base: account.base_url.clone(),
        token: bot_token,
        chat: account.account_id.trim().to_owned(),
    };
    let mut next_poll = tokio::time::Instant::now();
    let mut admins: Option<Profile> = None;
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next_poll) => {
                let span = tracing::info_span!("poll", account = %account.name);
                let wait = poll(&api, &account, &ctx, &mut admins).instrument(span).await;
                next_poll = tokio::time::Instant::now() + wait;
            }
            update = updates.recv() => {
                let Some(update) = update else { return };
                let poll_now = on_update(&account, &ctx, update, admins.as_ref()).await;
                if poll_now {
                    next_poll = tokio::time::Instant::now();
                }
            }
        }
    }
}

/// Handles a pushed update; true when the polled state (admins) should be read again now.
pub(super) async fn on_update(
    account: &Account,
    ctx: &SourceContext,
    update: ChannelUpdate,
    admins: Option<&Profile>,
) -> bool {
    match update {
        ChannelUpdate::Post(m) | ChannelUpdate::Edited(m) => {
            let post = post_from(&m);
            ctx.emit(&account.name, ObservationKind::Post(post)).await;
            false
        }
        ChannelUpdate::Bot(c) => {
            if c.new_chat_member.is_privileged() {
                tracing::info!(account = %account.name, "the bot is an admin of the channel again");
                return true;
            }
            let reason = format!(
                "the bot was {} in the channel by {}",
                match c.new_chat_member.is_present() {
                    true => "demoted to a non-admin",
                    false => "removed",
                },
                who(&c)
            );
            tracing::error!(account = %account.name, %reason, "blind");
            // The admin list as last read, with the bot's entry as it is now: detect pages the
            // change (critical) naming who made it; health makes the source blind until the
            // bot is an admin again.
            if let Some(known) = admins {
                let mut now = known.clone();
                now.fields.insert(
                    c.new_chat_member.user.id.0.to_string(),
                    format!("{:?} (changed by {})", c.new_chat_member.status(), who(&c))
                        .to_lowercase(),
                );
                ctx.emit(&account.name, ObservationKind::Admins(now)).await;
            }
            ctx.health.failure(&account.name, reason, true, None);
            false
        }
        // Admin rights given or taken: read the admin list now rather than at the next poll.
        ChannelUpdate::Member(c) => {
            c.new_chat_member.is_privileged() || c.old_chat_member.is_privileged()
        }
    }
}

pub(super) fn who(c: &ChatMemberUpdated) -> String {
    match &c.from.username {
        Some(u) => format!("@{u} ({})", c.from.id.0),
        None => format!("{} ({})", c.from.first_name, c.from.id.0),
    }
}

/// Reads the channel's profile and admins; returns how long to wait before the next poll.
pub(super) async fn poll(
    api: &Api,
    account: &Account,
    ctx: &SourceContext,
    last_admins: &mut Option<Profile>,
) -> Duration {
    let result = async {
        let chat = api.call("getChat", json!({"chat_id": api.chat})).await?;
        let admins = api
            .call("getChatAdministrators", json!({"chat_id": api.chat}))
            .await?;
        let admins = admins_from(&admins).map_err(|error| CallError {
            error,
            refused: false,
        })?;
        Ok::<_, CallError>((profile_from(&chat), admins))
    }
    .await;
    match result {
        Ok((profile, admins)) => {
            ctx.health.success(&account.name, None);
            ctx.emit(&account.name, ObservationKind::Profile(profile))
                .await;
            *last_admins = Some(admins.clone());
            ctx.emit(&account.name, ObservationKind::Admins(admins))
                .await;
            account.poll_interval
        }
        Err(CallError { error: e, refused }) => {
            tracing::warn!(account = %account.name, error = %e, "channel poll failed");
            let wait = match &e {
                SourceError::RateLimited(d) => *d,
                _ => account.poll_interval,
            };
            ctx.health
                .failure(&account.name, e.to_string(), refused, None);
            wait
        }
    }
}
