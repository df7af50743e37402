//! The on-call chat's side: updates in, incident actions out.
//!
//! Updates arrive by long polling (`getUpdates`); the offset is kept in sled so a restart does not
//! replay presses that were already handled. Every command and button press is checked before
//! anything else: it must come from the configured chat and from an allowlisted responder.
//! Anyone else gets a refusal that reveals nothing about incidents (at most one per user an hour,
//! see [`refusals`]), and every attempt is logged and counted (a hijacked or curious account
//! poking at the bot is itself worth knowing about). Commands addressed to another bot
//! (`/ack@otherbot 3`) and forwarded commands are not run at all (see [`not_ours`]).
//!
//! One command per file; [`Command`] names them and delegates.

mod ack;
mod approve;
mod held;
mod help;
mod incidents;
mod mute;
mod pause_mailer;
mod refusals;
mod resolve;
mod status;
mod takedown;
mod unmute;

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use teloxide::{
    RequestError,
    prelude::*,
    types::{AllowedUpdate, CallbackQuery, ChatId, Message, UpdateKind, User},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    incidents::{ActionError, Incidents},
    model::{Actor, Incident, Resolution},
    platforms::telegram_channel::{ChannelUpdate, api::redact_token},
    watch::Health,
};

/// What commands need to do their work.
#[derive(Clone)]
pub struct BotContext {
    pub incidents: Incidents,
    pub health: Health,
    pub chat_id: i64,
    pub responders: Arc<Vec<u64>>,
    /// Refused commands and presses since start.
    pub refused: Arc<AtomicU64>,
    /// The mail kill switch, when `[email.kill_switch]` is configured.
    pub mailer: Option<Arc<crate::contain::mailer::Mailer>>,
    /// The MTA's hold helper, when `[email.milter] hold_helper` is configured.
    pub hold: Option<Arc<crate::contain::held::HoldHelper>>,
    /// Unix time of the last successful `getUpdates`, for readiness.
    pub last_ok: Arc<AtomicI64>,
    /// The watched accounts: takedown needs their platform and write token.
    pub accounts: Arc<Vec<crate::config::Account>>,
    /// The client takedowns call the platforms with.
    pub http: reqwest::Client,
    /// Watched Telegram channels (chat id → their source): channel posts, edits and membership
    /// changes arrive through this bot's `getUpdates` and are handed over here.
    pub channels: Arc<std::collections::HashMap<i64, mpsc::Sender<ChannelUpdate>>>,
    /// Counts the updates that could not be parsed.
    pub metrics: Arc<crate::metrics::Metrics>,
}

const OFFSET_CURSOR: &str = "telegram:update_offset";
/// The shortest time between two `getUpdates` calls when one came back early and empty: a
/// server that ignores `timeout` must not turn the loop into a busy one (at most two a second).
pub const MIN_POLL_GAP: Duration = Duration::from_millis(500);
/// The update kinds counted by name; anything else is counted as `other`.
const KINDS: &[&str] = &[
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "callback_query",
    "my_chat_member",
    "chat_member",
];

/// Which page of an incident a press acts on: Approve and Take down act only on what the
/// responder saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A typed command: the version last delivered to the chat.
    Delivered,
    /// A button: the version its page was rendered at.
    Version(u32),
    /// A button without a version (an older build's page), pressed on this message (0: not
    /// known yet): it stands for the version that message shows, if it is the incident's page.
    Message(i32),
}

/// A command or button press, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ack(u64),
    Approve(u64, Seen),
    /// `/approve N cap=… window=…`: an approval of bulk mail on the responder's terms, of what
    /// the page last delivered showed.
    ApproveWith(u64, crate::incidents::BulkTerms),
    Takedown(u64, Seen),
    Resolve(u64, Resolution),
    Incidents,
    Status,
    Mute(String, Duration),
    Unmute(String),
    PauseMailer(u64),
    /// Deliver the messages the milter held (quorum as for Approve).
    Release(u64),
    /// Delete the messages the milter held.
    Discard(u64),
    Help,
    /// A known command used wrongly: the reply is its usage.
    Usage(&'static str),
    /// A known command with a bad argument: the reply names it.
    Invalid(String),
    Unknown(String),
}

impl Command {
    /// Parses a message; None when it is not a command at all.
    pub fn parse(text: &str) -> Option<Command> {
        let mut words = text.split_whitespace();
        let head = words.next()?.strip_prefix('/')?;
        // `/ack@tocsin_bot 3` is how Telegram writes commands picked from the menu in groups.
        let name = head
            .split('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let args: Vec<&str> = words.collect();
        Some(match name.as_str() {
            "ack" => ack::parse(&args),
            "approve" => approve::parse(&args),
            "takedown" => takedown::parse(&args),
            "resolve" => resolve::parse(&args),
            "mute" => mute::parse(&args),
            "unmute" => unmute::parse(&args),
            "pause_mailer" | "pause-mailer" | "pausemailer" => pause_mailer::parse(&args),
            "release" => held::parse_release(&args),
            "discard" => held::parse_discard(&args),
            "incidents" => Command::Incidents,
            "status" => Command::Status,
            "help" | "start" => Command::Help,
            _ => Command::Unknown(name),
        })
    }

    /// Parses a button's callback data (`ack:3`, `approve:3:7` with the page's evidence
    /// version). Anything else is forged or stale: None.
    pub fn from_callback(data: &str) -> Option<Command> {
        let mut parts = data.split(':');
        let (action, id) = (parts.next()?, parts.next()?);
        let id: u64 = id.parse().ok()?;
        let version = parts.next().map(str::parse::<u32>).transpose().ok()?;
        if parts.next().is_some() {
            return None;
        }
        let seen = version.map_or(Seen::Message(0), Seen::Version);
        match (action, version) {
            ("approve", _) => return Some(Command::Approve(id, seen)),
            ("takedown", _) => return Some(Command::Takedown(id, seen)),
            (_, Some(_)) => return None,
            _ => {}
        }
        match action {
            "ack" => Some(Command::Ack(id)),
            "resolve" => Some(Command::Resolve(id, Resolution::Contained)),
            "pause" => Some(Command::PauseMailer(id)),
            "release" => Some(Command::Release(id)),
            "discard" => Some(Command::Discard(id)),
            _ => None,
        }
    }

    /// A button press on chat message `message`: a button without a version stands for
    /// what that message shows.
    fn pressed_on(self, message: i32) -> Command {
        match self {
            Command::Approve(id, Seen::Message(_)) => Command::Approve(id, Seen::Message(message)),
            Command::Takedown(id, Seen::Message(_)) => {
                Command::Takedown(id, Seen::Message(message))
            }
            c => c,
        }
    }

    /// Whether the command waits on a platform or the mailer, which may take as long as their
    /// timeout: such a command runs beside the update loop, so the next update (an ack, another
    /// takedown) is handled meanwhile.
    fn calls_out(&self) -> bool {
        matches!(self, Command::Takedown(..) | Command::PauseMailer(_))
    }

    /// Carries the command out; the reply for the responder.
    pub async fn apply(self, ctx: &BotContext, who: &Actor) -> String {
        match self {
            Command::Ack(id) => ack::apply(ctx, id, who).await,
            Command::Approve(id, seen) => approve::apply(ctx, id, seen, who).await,
            Command::ApproveWith(id, terms) => {
                approve::apply_with(ctx, id, Seen::Delivered, who, terms).await
            }
            Command::Takedown(id, seen) => takedown::apply(ctx, id, seen, who).await,
            Command::Resolve(id, r) => resolve::apply(ctx, id, r, who).await,
            Command::Incidents => incidents::apply(ctx),
            Command::Status => status::apply(ctx),
            Command::Mute(account, d) => mute::apply(ctx, &account, d, who).await,
            Command::Unmute(account) => unmute::apply(ctx, &account, who).await,
            Command::PauseMailer(id) => pause_mailer::apply(ctx, id, who).await,
            Command::Release(id) => held::release(ctx, id, who).await,
            Command::Discard(id) => held::discard(ctx, id, who).await,
            Command::Help => help::TEXT.to_owned(),
            Command::Usage(usage) => format!("Usage: {usage}"),
            Command::Invalid(why) => why,
            Command::Unknown(name) => format!("Unknown command /{name}. Send /help for the list."),
        }
    }
}

/// Parses the single incident-number argument shared by the incident commands.
fn incident_arg(args: &[&str]) -> Option<u64> {
    match args {
        [n] => n.trim_start_matches('#').parse().ok(),
        _ => None,
    }
}

/// The evidence version a press acts on, or the answer when it cannot be known (the current
/// state then goes out as a new message, with buttons that carry it).
async fn seen_version(ctx: &BotContext, id: u64, seen: Seen) -> Result<u32, String> {
    let page = match seen {
        Seen::Version(v) => return Ok(v),
        Seen::Delivered | Seen::Message(_) => match ctx.incidents.store().incident(id) {
            Ok(Some(inc)) => inc.page,
            Ok(None) => return Err(ActionError::NotFound(id).to_string()),
            Err(e) => return Err(outcome(Err(ActionError::Store(e)), |_| String::new())),
        },
    };
    let version = match (seen, page) {
        (Seen::Delivered, Some(p)) => p.version,
        (Seen::Message(m), Some(p)) if m != 0 && p.message_id == m => p.version,
        _ => None,
    };
    if let Some(v) = version {
        return Ok(v);
    }
    repost(ctx, id).await;
    Err(match seen {
        Seen::Delivered => format!(
            "Refused: tocsin does not know what the chat was shown of incident #{id}. \
             Its current state is sent as a new message: act there."
        ),
        _ => format!(
            "Refused: this button is from an older page of incident #{id}. \
             Its current state is sent as a new message: press there."
        ),
    })
}

/// Sends the incident's current state as a new message, for a responder who pressed on a page
/// that no longer shows it.
async fn repost(ctx: &BotContext, id: u64) {
    if let Err(e) = ctx.incidents.repost_page(id).await {
        tracing::warn!(incident = id, error = %e, "could not send the page again");
    }
}

/// The reply once an action on an incident went through or was refused for a reason.
fn outcome(result: Result<Incident, ActionError>, done: impl Fn(&Incident) -> String) -> String {
    match result {
        Ok(inc) => done(&inc),
        Err(ActionError::Store(e)) => {
            tracing::error!(error = %e, "incident action failed");
            "Internal error: the action was not recorded. Try again.".to_owned()
        }
        Err(e) => e.to_string(),
    }
}

fn actor(user: &User) -> Actor {
    let name = match &user.username {
        Some(u) => format!("@{u}"),
        None => user.first_name.clone(),
    };
    Actor {
        id: user.id.0,
        name,
    }
}

impl BotContext {
    /// Whether this user, in this chat, may act. Logs and counts a refusal.
    fn authorize(&self, chat: ChatId, user: Option<&User>, what: &str) -> Result<Actor, String> {
        let Some(user) = user else {
            self.refuse(chat, 0, what, "no sender");
            return Err("Refused: anonymous senders cannot act.".into());
        };
        if chat.0 != self.chat_id {
            self.refuse(chat, user.id.0, what, "wrong chat");
            return Err("Refused: this is not the on-call chat.".into());
        }
        if !self.responders.contains(&user.id.0) {
            self.refuse(chat, user.id.0, what, "not a responder");
            return Err(format!(
                "Refused: user {} is not an on-call responder.",
                user.id.0
            ));
        }
        Ok(actor(user))
    }

    fn refuse(&self, chat: ChatId, user: u64, what: &str, reason: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            chat = chat.0,
            user,
            what,
            reason,
            "unauthorized action refused"
        );
    }
}

/// Why a command in `msg` is not this bot's to run, if it is not: `/ack@otherbot 3` is meant
/// for another bot in the same group, and a forwarded message was written by someone else —
/// run, it would act as the responder who forwarded it. `me` is this bot's username (from
/// `getMe`); until it is known, every addressed command is taken as another bot's.
fn not_ours(msg: &Message, me: Option<&str>) -> Option<&'static str> {
    if msg.forward_origin().is_some() || msg.is_automatic_forward() {
        return Some("forwarded");
    }
    let head = msg.text()?.split_whitespace().next()?;
    let (_, to) = head.split_once('@')?;
    match me {
        Some(me) if to.eq_ignore_ascii_case(me) => None,
        _ => Some("other_bot"),
    }
}

/// What the update loop keeps from one update to the next.
#[derive(Debug, Default)]
struct Inbox {
    /// This bot's username (from `getMe`), None until learnt.
    me: Option<String>,
    /// Who was told "Refused" lately.
    refusals: refusals::RefusalLimit,
    /// Takedowns and pauses under way (see [`Command::calls_out`]).
    actions: tokio::task::JoinSet<()>,
}

/// How long shutdown waits for takedowns and pauses under way to record their outcome.
const ACTIONS_GRACE: Duration = Duration::from_secs(5);

async fn on_message(bot: &Bot, ctx: &BotContext, msg: &Message, inbox: &mut Inbox) {
    let Some(command) = msg.text().and_then(Command::parse) else {
        return;
    };
    if let Some(reason) = not_ours(msg, inbox.me.as_deref()) {
        ctx.metrics.command_ignored(reason);
        tracing::info!(
            chat = msg.chat.id.0,
            user = msg.from.as_ref().map_or(0, |u| u.id.0),
            reason,
            "command ignored"
        );
        return;
    }
    let reply = match (
        &command,
        ctx.authorize(msg.chat.id, msg.from.as_ref(), "command"),
    ) {
        // Help reveals nothing, so it is answered for anyone in the on-call chat.
        (Command::Help, _) if msg.chat.id.0 == ctx.chat_id => help::TEXT.to_owned(),
        (_, Ok(who)) => {
            tracing::info!(user = who.id, ?command, "command");
            if command.calls_out() {
                let (bot, ctx, chat, command) =
                    (bot.clone(), ctx.clone(), msg.chat.id, command.clone());
                inbox.actions.spawn(async move {
                    let reply = command.apply(&ctx, &who).await;
                    send_reply(&bot, chat, reply).await;
                });
                return;
            }
            command.apply(ctx, &who).await
        }
        (_, Err(refusal)) => {
            let user = msg.from.as_ref().map_or(0, |u| u.id.0);
            if !inbox.refusals.allow(user, tokio::time::Instant::now()) {
                tracing::debug!(user, "refused again within the hour; not answered");
                return;
            }
            refusal
        }
    };
    send_reply(bot, msg.chat.id, reply).await;
}

async fn send_reply(bot: &Bot, chat: ChatId, reply: String) {
    if let Err(e) = bot.send_message(chat, reply).await {
        let error = redact_token(&e.to_string(), bot.token());
        tracing::warn!(%error, "could not reply to a command");
    }
}

async fn on_callback(bot: &Bot, ctx: &BotContext, q: &CallbackQuery, inbox: &mut Inbox) {
    let chat = q.message.as_ref().map_or(ChatId(0), |m| m.chat().id);
    let reply = match ctx.authorize(chat, Some(&q.from), "button") {
        Err(refusal) => refusal,
        Ok(who) => match q.data.as_deref().and_then(Command::from_callback).map(|c| {
            // A button without a version stands for what the message it was pressed on shows.
            c.pressed_on(q.message.as_ref().map_or(0, |m| m.id().0))
        }) {
            Some(command) if command.calls_out() => {
                tracing::info!(user = who.id, ?command, "button");
                let (bot, ctx, query) = (bot.clone(), ctx.clone(), q.id.clone());
                inbox.actions.spawn(async move {
                    let reply = command.apply(&ctx, &who).await;
                    answer_press(&bot, query, reply).await;
                });
                return;
            }
            Some(command) => {
                tracing::info!(user = who.id, ?command, "button");
                command.apply(ctx, &who).await
            }
            None => {
                ctx.refuse(chat, q.from.id.0, "button", "unknown callback data");
                "Refused: this button is not one of tocsin's.".to_owned()
            }
        },
    };
    answer_press(bot, q.id.clone(), reply).await;
}

async fn answer_press(bot: &Bot, query: teloxide::types::CallbackQueryId, reply: String) {
    if let Err(e) = bot.answer_callback_query(query).text(reply).await {
        let error = redact_token(&e.to_string(), bot.token());
        tracing::warn!(%error, "could not answer a button press");
    }
}

/// An update teloxide could not parse (it keeps the raw JSON): logged, counted, and, for a
/// button press whose id can still be read, answered, so the responder knows the press did
/// nothing and what to do instead.
async fn on_unparsed(bot: &Bot, ctx: &BotContext, id: u32, raw: &serde_json::Value) {
    let key = raw
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "update_id"))
        .map_or("unknown", String::as_str);
    let body = &raw[key];
    // Parse the body alone again, for the reason: teloxide keeps only the raw value.
    let error = match key {
        "callback_query" => serde_json::from_value::<CallbackQuery>(body.clone()).err(),
        "message" | "edited_message" | "channel_post" | "edited_channel_post" => {
            serde_json::from_value::<Message>(body.clone()).err()
        }
        "my_chat_member" | "chat_member" => {
            serde_json::from_value::<teloxide::types::ChatMemberUpdated>(body.clone()).err()
        }
        _ => None,
    }
    .map_or_else(
        || "unknown or unreadable update".to_owned(),
        |e| e.to_string(),
    );
    let kind = KINDS
        .iter()
        .find(|k| **k == key)
        .copied()
        .unwrap_or("other");
    ctx.metrics.update_unparsed(kind);
    tracing::warn!(
        update_id = id,
        kind = key,
        error,
        "update could not be parsed; skipped"
    );
    if key != "callback_query" {
        return;
    }
    let Some(query) = body["id"].as_str() else {
        return;
    };
    let incident = body["data"]
        .as_str()
        .and_then(|d| d.split(':').nth(1))
        .and_then(|n| n.parse::<u64>().ok());
    let text = match incident {
        Some(n) => {
            format!("tocsin could not read this press — use /ack {n} (or the command you meant)")
        }
        None => "tocsin could not read this press — use /ack N".to_owned(),
    };
    let answered = bot
        .answer_callback_query(teloxide::types::CallbackQueryId(query.to_owned()))
        .text(text)
        .await;
    if let Err(e) = answered {
        tracing::warn!(error = %e, "could not answer an unreadable button press");
    }
}

/// Hands a channel update to the channel's source; updates of channels nobody watches are
/// dropped (the bot may be an admin elsewhere).
async fn to_channel(ctx: &BotContext, chat: ChatId, update: ChannelUpdate) {
    match ctx.channels.get(&chat.0) {
        Some(tx) => {
            if tx.send(update).await.is_err() {
                tracing::warn!(chat = chat.0, "channel source stopped; update dropped");
            }
        }
        None => tracing::debug!(chat = chat.0, "update from an unwatched channel"),
    }
}

/// The bot's own username, which `/command@name` must name. None when `getMe` fails: asked
/// again before the next poll.
async fn whoami(bot: &Bot) -> Option<String> {
    match bot.get_me().await {
        Ok(me) => me.user.username,
        Err(e) => {
            let error = redact_token(&e.to_string(), bot.token());
            tracing::warn!(%error, "getMe failed; commands addressed by name are ignored until it answers");
            None
        }
    }
}

/// Receives updates until shutdown. `updates` long-polls; `bot` answers, with a short timeout.
/// At shutdown, takedowns and pauses under way get [`ACTIONS_GRACE`] to record their outcome.
pub async fn run(
    updates: Bot,
    bot: Bot,
    ctx: BotContext,
    long_poll: Duration,
    shutdown: CancellationToken,
) {
    let mut inbox = Inbox::default();
    poll(updates, bot, ctx, long_poll, shutdown, &mut inbox).await;
    if !inbox.actions.is_empty() {
        let pending = inbox.actions.len();
        tracing::info!(pending, "waiting for takedowns and pauses under way");
        let drained = tokio::time::timeout(ACTIONS_GRACE, async {
            while inbox.actions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                pending = inbox.actions.len(),
                "takedowns or pauses still waiting at shutdown were stopped"
            );
        }
    }
}

async fn poll(
    updates: Bot,
    bot: Bot,
    ctx: BotContext,
    long_poll: Duration,
    shutdown: CancellationToken,
    inbox: &mut Inbox,
) {
    let store = ctx.incidents.store().clone();
    let mut offset: i32 = store
        .cursor(OFFSET_CURSOR)
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut failures = 0u32;
    loop {
        while let Some(done) = inbox.actions.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "a takedown or pause stopped before its outcome");
            }
        }
        if inbox.me.is_none() {
            inbox.me = tokio::select! {
                _ = shutdown.cancelled() => return,
                me = whoami(&bot) => me,
            };
        }
        let started = tokio::time::Instant::now();
        let request = updates
            .get_updates()
            .offset(offset)
            .timeout(long_poll.as_secs() as u32)
            .allowed_updates([
                AllowedUpdate::Message,
                AllowedUpdate::CallbackQuery,
                AllowedUpdate::ChannelPost,
                AllowedUpdate::EditedChannelPost,
                AllowedUpdate::ChatMember,
                AllowedUpdate::MyChatMember,
            ]);
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = request.send() => r,
        };
        let wait = match result {
            // Back at once with nothing, whatever `timeout` asked: wait before asking again.
            Ok(updates) if updates.is_empty() => {
                failures = 0;
                ctx.last_ok
                    .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                MIN_POLL_GAP.saturating_sub(started.elapsed())
            }
            Ok(updates) => {
                failures = 0;
                ctx.last_ok
                    .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                for update in updates {
                    match &update.kind {
                        UpdateKind::Message(m) => on_message(&bot, &ctx, m, inbox).await,
                        UpdateKind::CallbackQuery(q) => on_callback(&bot, &ctx, q, inbox).await,
                        UpdateKind::ChannelPost(m) => {
                            to_channel(&ctx, m.chat.id, ChannelUpdate::Post(Box::new(m.clone())))
                                .await;
                        }
                        UpdateKind::EditedChannelPost(m) => {
                            let u = ChannelUpdate::Edited(Box::new(m.clone()));
                            to_channel(&ctx, m.chat.id, u).await;
                        }
                        UpdateKind::MyChatMember(c) => {
                            to_channel(&ctx, c.chat.id, ChannelUpdate::Bot(Box::new(c.clone())))
                                .await;
                        }
                        UpdateKind::ChatMember(c) => {
                            let u = ChannelUpdate::Member(Box::new(c.clone()));
                            to_channel(&ctx, c.chat.id, u).await;
                        }
                        UpdateKind::Error(raw) => on_unparsed(&bot, &ctx, update.id.0, raw).await,
                        _ => {}
                    }
                    offset = update.id.0 as i32 + 1;
                    if let Err(e) = store.set_cursor(OFFSET_CURSOR, &offset.to_string()) {
                        tracing::error!(error = %e, "cannot persist the update offset");
                    }
                }
                continue;
            }
            Err(RequestError::RetryAfter(s)) => s.duration(),
            Err(e) => {
                failures += 1;
                let error = redact_token(&e.to_string(), updates.token());
                tracing::warn!(%error, failures, "getUpdates failed");
                Duration::from_secs(1u64 << failures.min(3))
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Updates recorded from real chats (teloxide's test suite, the Bot API client tocsin
    /// parses `getUpdates` with; `tests/fixtures/platforms/telegram/examples/`, sources in
    /// `tests/fixtures/platforms/SOURCE.md`): they parse as messages, and their plain text is no
    /// command.
    #[test]
    fn recorded_updates_parse_as_messages() {
        let cases = [
            (
                include_str!(
                    "../../tests/fixtures/platforms/telegram/examples/update-message.json"
                ),
                892_252_934,
                218_485_655,
                "hello there",
            ),
            (
                include_str!(
                    "../../tests/fixtures/platforms/telegram/examples/update-private-text-message.json"
                ),
                306_197_398,
                408_258_968,
                "4",
            ),
        ];
        for (json, update_id, chat, text) in cases {
            let update: teloxide::types::Update = serde_json::from_str(json).unwrap();
            assert_eq!(update.id.0, update_id);
            let UpdateKind::Message(m) = &update.kind else {
                panic!("a message: {:?}", update.kind)
            };
            assert_eq!(m.chat.id.0, chat);
            assert_eq!(m.from.as_ref().map(|u| u.id.0), Some(chat as u64));
            assert_eq!(m.text(), Some(text));
            assert_eq!(Command::parse(text), None);
        }
        let pinned: teloxide::types::Update = serde_json::from_str(include_str!(
            "../../tests/fixtures/platforms/telegram/examples/update-pinned-message.json"
        ))
        .unwrap();
        let UpdateKind::Message(m) = &pinned.kind else {
            panic!("a message: {:?}", pinned.kind)
        };
        assert_eq!(m.chat.id.0, -1_001_276_785_818);
        assert!(m.pinned_message().is_some(), "{m:?}");
    }

    #[test]
    fn parses_commands_and_callbacks() {
        assert_eq!(Command::parse("/ack 3"), Some(Command::Ack(3)));
        assert_eq!(Command::parse("/ack@tocsin_bot #3"), Some(Command::Ack(3)));
        assert_eq!(Command::parse("/ACK"), Some(Command::Usage(ack::USAGE)));
        assert_eq!(
            Command::parse("/resolve 4 false-alarm"),
            Some(Command::Resolve(4, Resolution::FalseAlarm))
        );
        assert_eq!(
            Command::parse("/resolve 4 whatever"),
            Some(Command::Usage(resolve::USAGE))
        );
        assert_eq!(
            Command::parse("/frobnicate"),
            Some(Command::Unknown("frobnicate".into()))
        );
        assert_eq!(Command::parse("hello"), None);
        assert_eq!(
            Command::parse("/mute main 30m"),
            Some(Command::Mute("main".into(), Duration::from_secs(1800)))
        );
        assert_eq!(
            Command::parse("/mute main 1h 30m"),
            Some(Command::Mute("main".into(), Duration::from_secs(5400)))
        );
        assert_eq!(
            Command::parse("/mute main soon"),
            Some(Command::Usage(mute::USAGE))
        );
        assert_eq!(
            Command::parse("/mute main"),
            Some(Command::Usage(mute::USAGE))
        );
        assert_eq!(
            Command::parse("/unmute main"),
            Some(Command::Unmute("main".into()))
        );
        assert_eq!(
            Command::from_callback("approve:12"),
            Some(Command::Approve(12, Seen::Message(0)))
        );
        assert_eq!(
            Command::from_callback("approve:12:7"),
            Some(Command::Approve(12, Seen::Version(7)))
        );
        assert_eq!(
            Command::from_callback("takedown:12:4294967295"),
            Some(Command::Takedown(12, Seen::Version(u32::MAX)))
        );
        assert_eq!(Command::from_callback("approve:12:evil"), None);
        assert_eq!(Command::from_callback("approve:12:7:8"), None);
        assert_eq!(Command::from_callback("ack:12:7"), None);
        assert_eq!(
            Command::parse("/approve 12"),
            Some(Command::Approve(12, Seen::Delivered))
        );
        assert_eq!(Command::from_callback("delete:1"), None);
        assert_eq!(
            Command::from_callback("pause:7"),
            Some(Command::PauseMailer(7))
        );
        assert_eq!(
            Command::parse("/pause-mailer 7"),
            Some(Command::PauseMailer(7))
        );
        assert_eq!(
            Command::parse("/pause_mailer@tocsin_bot #7"),
            Some(Command::PauseMailer(7))
        );
        assert_eq!(
            Command::parse("/pause-mailer"),
            Some(Command::Usage(pause_mailer::USAGE))
        );
    }
}
