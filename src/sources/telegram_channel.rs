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

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};
use teloxide::types::{ChatMemberUpdated, MessageEntityKind};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{SourceContext, SourceError};
use crate::model::{ObservationKind, Post, PostContent, Profile};
use crate::{bot::ChannelUpdate, config::Account, config::Secret};

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
async fn on_update(
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

fn who(c: &ChatMemberUpdated) -> String {
    match &c.from.username {
        Some(u) => format!("@{u} ({})", c.from.id.0),
        None => format!("{} ({})", c.from.first_name, c.from.id.0),
    }
}

/// A channel post as detect compares it: text (or caption) with its link targets, media by
/// Telegram's stable `file_unique_id`.
pub fn post_from(m: &teloxide::types::Message) -> Post {
    let text = m.text().or(m.caption()).unwrap_or_default().to_owned();
    let mut links = Vec::new();
    let mut full = text.clone();
    for e in m
        .parse_entities()
        .or_else(|| m.parse_caption_entities())
        .unwrap_or_default()
    {
        match e.kind() {
            MessageEntityKind::Url => links.push(e.text().to_owned()),
            // A text link shows one thing and points elsewhere: the target is what counts.
            MessageEntityKind::TextLink { url } => {
                links.push(url.to_string());
                full.push(' ');
                full.push_str(url.as_str());
            }
            _ => {}
        }
    }
    let mut media = Vec::new();
    if let Some(p) = m.photo().and_then(|p| p.last()) {
        media.push(format!("tg:{}", p.file.unique_id));
    }
    if let Some(d) = m.document() {
        media.push(format!("tg:{}", d.file.unique_id));
    }
    if let Some(v) = m.video() {
        media.push(format!("tg:{}", v.file.unique_id));
    }
    let url = m
        .chat
        .username()
        .map(|u| format!("https://t.me/{u}/{}", m.id.0));
    Post {
        id: m.id.0.to_string(),
        url,
        created_at: m.date,
        edited_at: m.edit_date().copied(),
        content: PostContent {
            text: full,
            links,
            media,
        },
        client: m.author_signature().map(|s| format!("signed by {s}")),
        history: false,
    }
}

/// Reads the channel's profile and admins; returns how long to wait before the next poll.
async fn poll(
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

pub fn profile_from(chat: &Value) -> Profile {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut fields = BTreeMap::new();
    fields.insert("title".to_owned(), s(&chat["title"]));
    fields.insert("description".to_owned(), s(&chat["description"]));
    // The public t.me name: whoever changes it moves the audience's links.
    fields.insert("handle".to_owned(), s(&chat["username"]));
    fields.insert("photo".to_owned(), s(&chat["photo"]["big_file_unique_id"]));
    let pinned = &chat["pinned_message"];
    let pinned = if pinned.is_object() {
        let text = pinned["text"].as_str().or(pinned["caption"].as_str());
        format!("#{}: {}", pinned["message_id"], text.unwrap_or("(no text)"))
    } else {
        String::new()
    };
    fields.insert("pinned".to_owned(), pinned);
    Profile { fields }
}

/// The admin list by user id: role, name and the rights that matter for a takeover.
pub fn admins_from(list: &Value) -> Result<Profile, SourceError> {
    let items = list.as_array().ok_or_else(|| SourceError::Malformed {
        what: "getChatAdministrators".into(),
        detail: "result is not an array".into(),
    })?;
    let mut fields = BTreeMap::new();
    for m in items {
        let user = &m["user"];
        let Some(id) = user["id"].as_i64() else {
            return Err(SourceError::Malformed {
                what: "getChatAdministrators".into(),
                detail: "a member without user.id".into(),
            });
        };
        let name = match user["username"].as_str() {
            Some(u) => format!("@{u}"),
            None => user["first_name"].as_str().unwrap_or_default().to_owned(),
        };
        let role = m["status"].as_str().unwrap_or("unknown");
        let rights: Vec<&str> = m
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| k.starts_with("can_") && v.as_bool() == Some(true))
            .map(|(k, _)| k.as_str())
            .collect();
        let mut value = format!("{role} {name}");
        if !rights.is_empty() {
            value += &format!(" [{}]", rights.join(","));
        }
        fields.insert(id.to_string(), value);
    }
    Ok(Profile { fields })
}

/// A failed call; `refused`: the bot cannot see the channel (kicked, not a member, chat gone)
/// until someone acts, so the source is blind at once.
struct CallError {
    error: SourceError,
    refused: bool,
}

/// The few Bot API methods the source polls, read as plain JSON: only a handful of fields matter
/// and a schema change elsewhere in the answer must not blind the source.
struct Api {
    http: reqwest::Client,
    base: url::Url,
    token: Secret,
    chat: String,
}

impl Api {
    async fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        self.call_inner(method, params)
            .await
            .map_err(|(error, refused)| CallError { error, refused })
    }

    async fn call_inner(&self, method: &str, params: Value) -> Result<Value, (SourceError, bool)> {
        let url = format!(
            "{}/bot{}/{method}",
            self.base.as_str().trim_end_matches('/'),
            self.token.expose()
        );
        let response = self
            .http
            .post(url)
            .json(&params)
            .send()
            .await
            .map_err(|e| (SourceError::Http(e.without_url()), false))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.map_err(|e| {
            let error = SourceError::Malformed {
                what: method.into(),
                detail: e.without_url().to_string(),
            };
            (error, false)
        })?;
        if body["ok"].as_bool() == Some(true) {
            return Ok(body["result"].clone());
        }
        let description = body["description"].as_str().unwrap_or_default();
        if let Some(s) = body["parameters"]["retry_after"].as_u64() {
            return Err((SourceError::RateLimited(Duration::from_secs(s)), false));
        }
        // Kicked, not a member, chat gone: the bot cannot see the channel until someone acts.
        let refused = matches!(status, 401 | 403)
            || description.contains("chat not found")
            || description.contains("not a member");
        let error = SourceError::Status {
            status,
            what: format!("{method}: {description}"),
        };
        Err((error, refused))
    }
}
