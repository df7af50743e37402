//! Telegram channels the company publishes in: posts pushed to the on-call bot and handed over
//! ([`ChannelUpdate`]), the chat and its admins polled ([`watch`], [`api`]), and
//! `deleteMessage` by the bot for takedowns ([`takedown`]).

pub mod api;
pub mod takedown;
pub mod watch;

use teloxide::types::{ChatMemberUpdated, Message};
use tokio::sync::mpsc;

use super::{Platform, Takedown, TakedownFuture, WatchContext};
use crate::{
    config::{self, Account},
    watch::SourceFuture,
};

/// Channel updates waiting for their watcher: a burst of posts queues here, not in the bot loop.
const CHANNEL_DEPTH: usize = 1024;

/// What the update loop hands a watched channel's source.
#[derive(Debug, Clone)]
pub enum ChannelUpdate {
    Post(Box<Message>),
    Edited(Box<Message>),
    /// The bot's own membership changed (`my_chat_member`).
    Bot(Box<ChatMemberUpdated>),
    /// Someone else's membership or rights changed (`chat_member`).
    Member(Box<ChatMemberUpdated>),
}

pub struct TelegramChannel;

impl Platform for TelegramChannel {
    fn kind(&self) -> config::Platform {
        config::Platform::TelegramChannel
    }

    /// Its posts arrive through the bot's `getUpdates` (see `bot::run`): each channel's watcher
    /// leaves the bot the sender of its queue.
    fn watch(&self, accounts: &[&Account], cx: &mut WatchContext<'_>) -> Vec<SourceFuture> {
        accounts
            .iter()
            .map(|a| {
                let (updates_tx, updates_rx) = mpsc::channel(CHANNEL_DEPTH);
                let chat = a.account_id.trim().parse::<i64>().unwrap_or_default();
                cx.bot_updates.insert(chat, updates_tx);
                Box::pin(watch::run(
                    (*a).clone(),
                    cx.source.clone(),
                    cx.config.telegram.bot_token.clone(),
                    updates_rx,
                )) as SourceFuture
            })
            .collect()
    }

    fn takedown<'a>(&'a self, post: Takedown<'a>) -> TakedownFuture<'a> {
        Box::pin(takedown::delete_post(
            post.http,
            post.account,
            post.post_id,
            post.posted_at,
        ))
    }

    fn describe(&self, a: &Account) -> String {
        format!(
            "watch         {} · telegram_channel chat {} · channel posts and edits pushed to the bot (it must be an admin) · title, description, photo, pinned message and admins polled every {} · takedown {}\n",
            a.name,
            a.account_id,
            humantime::format_duration(a.poll_interval),
            if a.write_token.is_some() {
                "by deleteMessage (within 48 h)"
            } else {
                "off (no write_token)"
            }
        )
    }
}
