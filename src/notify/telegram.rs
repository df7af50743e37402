//! Pages in the on-call chat: rendering, sending, and editing in place.
//!
//! Pages are plain text (no parse mode), so post text chosen by an attacker cannot break the
//! markup or hide part of the page. The text is cut to stay under Telegram's 4,096 characters.

use std::time::Duration;

use teloxide::{
    ApiError, RequestError,
    prelude::*,
    types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId},
};

pub use super::pacing::{Gate, KEPT_FOR_NEW, MIN_SPACING, PER_MINUTE, Pacer};
use crate::{
    incidents::{PauseState, ordinal, pausable},
    model::{Action, Actor, Evidence, Incident, PageRef, Resolution, Severity, State, cut, digest},
};

/// Telegram's limit for a message's text.
pub const MAX_TEXT: usize = 4096;
/// Post ids listed on a burst's page.
const BURST_IDS: usize = 5;
/// What one evidence excerpt may take, so the rest of the page always fits.
const EXCERPT: usize = 1200;

/// Why a page was not delivered this time. Every kind leaves it queued; the worker decides
/// how long to wait and when to give up (`notify::per_incident`).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Flood control: the whole chat waits.
    #[error("telegram asked to wait {0:?}")]
    RetryAfter(Duration),
    /// The request or Telegram failed (network, 5xx, an answer that is not the Bot API's):
    /// the next attempt may work, and other pages may fail the same way.
    #[error("telegram request failed: {0}")]
    Transient(String),
    /// Telegram refused this request (a 4xx not about the chat or the token): about this
    /// page, not the chat.
    #[error("telegram refused the page: {0}")]
    Refused(String),
    /// Pages cannot reach anyone until an operator acts: token revoked, bot removed from the
    /// chat or blocked, chat gone. Still kept queued: the fix brings them all out.
    #[error("telegram cannot reach the on-call chat: {0}")]
    Unreachable(String),
}

impl DeliveryError {
    /// The same error with the bot token taken out of its text: it becomes `/readyz`'s check,
    /// the `notify.telegram_down` evidence sent to every fallback, and log lines.
    fn redacted(self, token: &str) -> DeliveryError {
        use crate::platforms::telegram_channel::api::redact_token;
        match self {
            DeliveryError::RetryAfter(d) => DeliveryError::RetryAfter(d),
            DeliveryError::Transient(t) => DeliveryError::Transient(redact_token(&t, token)),
            DeliveryError::Refused(t) => DeliveryError::Refused(redact_token(&t, token)),
            DeliveryError::Unreachable(t) => DeliveryError::Unreachable(redact_token(&t, token)),
        }
    }
}

/// The text and buttons of an incident's page as it should look now.
pub struct Rendered {
    pub text: String,
    pub buttons: InlineKeyboardMarkup,
    pub digest: String,
    /// The incident's evidence version this rendering shows ([`Incident::version`]).
    pub version: u32,
}

/// The last answer of the platform for each post a takedown asked about, newest attempt last.
fn takedown_results(inc: &Incident) -> String {
    let mut last: Vec<(&str, &crate::model::TakedownOutcome)> = Vec::new();
    for e in &inc.timeline {
        if let Action::TakedownResult { post_id, outcome } = &e.action {
            match last.iter_mut().find(|(p, _)| *p == post_id.as_str()) {
                Some(slot) => slot.1 = outcome,
                None => last.push((post_id.as_str(), outcome)),
            }
        }
    }
    if last.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = last
        .iter()
        .take(BURST_IDS)
        .map(|(p, o)| format!("{p} {}", excerpt(&o.describe())))
        .collect();
    let more = last.len().saturating_sub(BURST_IDS);
    format!(
        "\nTakedown: {}{}",
        shown.join("; "),
        if more > 0 {
            format!("; … {more} more")
        } else {
            String::new()
        }
    )
}

pub fn render(inc: &Incident) -> Rendered {
    render_page(inc, false)
}

/// `pause_button`: a mail kill switch is configured, so email pages offer `Pause mailer`.
pub fn render_page(inc: &Incident, pause_button: bool) -> Rendered {
    let badge = match inc.severity {
        Severity::Critical => "🔴 CRITICAL",
        Severity::High => "🟠 HIGH",
        Severity::Medium => "🟡 MEDIUM",
        Severity::Low => "⚪ LOW",
    };
    let mut t = format!("{badge} · {}\nAccount: {}\n", inc.rule, inc.account);
    match &inc.evidence {
        Evidence::Post {
            post_id,
            url,
            text,
            links,
            media,
            client,
            ..
        } => {
            t += &format!("Post {post_id}: “{}”\n", excerpt(text));
            if !links.is_empty() {
                t += &format!("Links: {}\n", excerpt(&links.join(" ")));
            }
            if *media > 0 {
                t += &format!("Media: {media} attachment(s)\n");
            }
            if let Some(c) = client {
                t += &format!("Posted from: {}\n", excerpt(c));
            }
            if let Some(u) = url {
                t += &format!("Open: {}\n", excerpt(u));
            }
        }
        Evidence::PostEdited {
            post_id,
            url,
            before,
            after,
            ..
        } => {
            t += &format!(
                "Post {post_id} was edited\nBefore: “{}”\nAfter: “{}”\n",
                excerpt(before),
                excerpt(after)
            );
            if let Some(u) = url {
                t += &format!("Open: {}\n", excerpt(u));
            }
        }
        Evidence::Profile { changes } => {
            let each = EXCERPT / changes.len().max(1);
            for (field, c) in changes {
                let before = c
                    .before
                    .as_deref()
                    .map_or_else(|| "(none)".to_owned(), |b| cut(b, each / 2));
                let after = if c.after.is_empty() {
                    "(removed)".to_owned()
                } else {
                    cut(&c.after, each / 2)
                };
                t += &format!("{field}: “{before}” → “{after}”\n");
            }
        }
        Evidence::Channel {
            channel,
            problem,
            since,
        } => {
            t += &format!(
                "{channel}: {problem} since {}\n",
                since.format("%H:%M:%S UTC")
            );
        }
        Evidence::Mail(m) => {
            t += &format!("Sender: {}\n", excerpt(&m.sender));
            t += &format!("Subject: “{}”\n", cut(&m.subject, 300));
            if let Some(c) = &m.campaign {
                t += &format!("Campaign: {}\n", cut(c, 200));
            }
            // A message that showed at most one address (its own recipient) exposed nobody:
            // such a page (bulk) counts messages and recipients only.
            if m.largest <= 1 {
                t += &format!("Messages: {} · recipients: {}\n", m.messages, m.recipients);
            } else {
                // Past 100,000 distinct addresses the counts are estimates, and say so.
                let about = if m.estimated { "~" } else { "" };
                t += &format!(
                    "Messages: {} · exposed addresses: {about}{} · domains: {about}{} · recipients: {}\n",
                    m.messages, m.exposed, m.domains, m.recipients
                );
                if m.estimated {
                    t += "(address and domain counts estimated, within about 2%)\n";
                }
                t += &format!("Most visible in one message: {}\n", m.largest);
                if !m.samples.is_empty() {
                    t += &format!("Samples: {}\n", m.samples.join(", "));
                }
            }
            if !m.held.is_empty() {
                t += &format!("Held at the MTA: {} messages\n", m.held.len());
            }
        }
        Evidence::SecurityNotice(n) => {
            t += &format!(
                "Platform: {} says the account changed\nFrom: {}\nTo: {}\nSubject: “{}”\n",
                n.platform,
                excerpt(&n.sender),
                excerpt(&n.recipient),
                cut(&n.subject, 300)
            );
        }
        Evidence::Mailbox {
            feed,
            risk,
            actor,
            action,
            target,
            parameter,
            at,
            ..
        } => {
            t += &format!("Risk: {risk}\n");
            t += &format!("Actor: {}\n", excerpt(actor));
            t += &format!("Action: {} ({feed})\n", excerpt(action));
            t += &format!("Target: {}\n", excerpt(target));
            if !parameter.is_empty() {
                t += &format!("Setting: {}\n", excerpt(parameter));
            }
            t += &format!("At: {}\n", at.format("%Y-%m-%d %H:%M:%S UTC"));
        }
    }
    if inc.members.len() > 1 {
        // A burst: the counters first, then the newest few ids, so the page stays short.
        let n = inc.members.len();
        let newest: Vec<&str> = inc
            .members
            .iter()
            .rev()
            .take(BURST_IDS)
            .map(|m| m.object.as_str())
            .collect();
        t += &format!(
            "Burst: {n} posts, {} findings, latest shown above\n",
            inc.findings
        );
        t += &format!(
            "Newest: {}{}\n",
            newest.join(", "),
            if n > BURST_IDS { ", …" } else { "" }
        );
    } else if inc.findings > 1 && !matches!(inc.evidence, Evidence::Mail(_)) {
        t += &format!("Seen {} times, latest shown\n", inc.findings);
    }
    let approved = inc.members.iter().filter(|m| m.approved).count();
    if approved > 0 {
        t += &format!("Approved from an older page: {approved} of them; the rest is still open\n");
    }
    t += &format!(
        "Incident #{} · seen {}\n",
        inc.id,
        inc.opened_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    t += &match (inc.state, inc.resolution) {
        (State::Open, _) => "State: OPEN — press a button or /ack N".to_owned(),
        (State::Acked, _) => format!("State: ACKED by {}", who(inc, &inc.acked_by, is_ack)),
        (State::Resolved, r) => {
            let how = r.map_or("resolved", Resolution::as_str);
            let by = who(inc, &inc.resolved_by, |a| {
                matches!(a, Action::Approved | Action::Resolved { .. })
            });
            let mut s = format!("State: RESOLVED ({how}) by {by}");
            if inc.acked_by.is_some() {
                s += &format!("\nAcked by {}", who(inc, &inc.acked_by, is_ack));
            }
            s
        }
    };
    let votes: Vec<_> = inc.approve_votes().collect();
    if inc.state != State::Resolved && !votes.is_empty() {
        let needed = votes.iter().map(|v| v.needed).max().unwrap_or(1);
        let names: Vec<_> = votes.iter().map(|v| v.who.name.as_str()).collect();
        t += &format!(
            "\nApprove: {}/{needed} — waiting for a {} responder (voted: {})",
            votes.len(),
            ordinal(votes.len() + 1),
            names.join(", ")
        );
    }
    for (what, votes) in [
        ("Resolve", inc.resolve_votes().collect::<Vec<_>>()),
        ("False alarm", inc.false_alarm_votes().collect()),
    ] {
        if inc.state != State::Resolved && !votes.is_empty() {
            let needed = votes.iter().map(|v| v.needed).max().unwrap_or(1);
            let names: Vec<_> = votes.iter().map(|v| v.who.name.as_str()).collect();
            t += &format!(
                "\n{what}: {}/{needed} — waiting for a {} responder (asked: {})",
                votes.len(),
                ordinal(votes.len() + 1),
                names.join(", ")
            );
        }
    }
    let takedown_votes: Vec<_> = inc.takedown_votes().collect();
    if inc.state != State::Resolved && !takedown_votes.is_empty() {
        let needed = takedown_votes.iter().map(|v| v.needed).max().unwrap_or(1);
        let names: Vec<_> = takedown_votes.iter().map(|v| v.who.name.as_str()).collect();
        t += &format!(
            "\nTake down: {}/{needed} — waiting for a {} responder (asked: {})",
            takedown_votes.len(),
            ordinal(takedown_votes.len() + 1),
            names.join(", ")
        );
    }
    if inc.takedown_started.is_some() {
        t += "\nTake down: in progress";
    }
    t += &takedown_results(inc);
    let pause = PauseState::of(inc);
    if let Some(line) = pause.line() {
        t += &format!("\n{line}");
    }
    if let Some((e, op, messages, ok, detail)) =
        inc.timeline.iter().rev().find_map(|e| match &e.action {
            Action::HeldMail {
                op,
                messages,
                ok,
                detail,
            } => Some((e, op, messages, ok, detail)),
            _ => None,
        })
    {
        t += &format!(
            "\nHeld mail: {op} of {messages} message(s) by {} at {}: {}",
            e.who,
            e.at.format("%H:%M:%S UTC"),
            if *ok {
                "done".to_owned()
            } else {
                format!("FAILED ({})", cut(detail, 200))
            }
        );
    }
    let t = cut(&t, MAX_TEXT);
    let id = inc.id;
    let can_take_down = !inc.takedown_targets().is_empty() && inc.takedown_started.is_none();
    let button =
        |label: &str, action: &str| InlineKeyboardButton::callback(label, format!("{action}:{id}"));
    // Approve and Take down act on what this page shows: their data carries its version
    // (`approve:12:7`, well under Telegram's 64 bytes).
    let version = inc.version();
    let versioned = |label: &str, action: &str| {
        InlineKeyboardButton::callback(label, format!("{action}:{id}:{version}"))
    };
    let row = match inc.state {
        State::Open => vec![
            button("Ack", "ack"),
            versioned("Approve", "approve"),
            button("Resolve", "resolve"),
        ],
        State::Acked => vec![
            versioned("Approve", "approve"),
            button("Resolve", "resolve"),
        ],
        State::Resolved => vec![],
    };
    let mut rows = vec![row];
    if can_take_down && inc.state != State::Resolved {
        let at = rows[0].len().saturating_sub(1);
        rows[0].insert(at, versioned("Take down", "takedown"));
    }
    if pause_button && inc.state != State::Resolved && pausable(inc.rule) && pause.may_press() {
        rows.push(vec![button("Pause mailer", "pause")]);
    }
    // Release approves (and takes its quorum), so it is offered while the incident is open.
    if let Evidence::Mail(m) = &inc.evidence
        && !m.held.is_empty()
        && inc.state != State::Resolved
    {
        rows.push(vec![
            button("Release", "release"),
            button("Discard", "discard"),
        ]);
    }
    rows.retain(|r| !r.is_empty());
    let buttons = if rows.is_empty() {
        InlineKeyboardMarkup::default()
    } else {
        InlineKeyboardMarkup::new(rows)
    };
    let digest = digest(&format!(
        "{t}\n{}",
        serde_json::to_string(&buttons).unwrap_or_default()
    ));
    Rendered {
        text: t,
        buttons,
        digest,
        version,
    }
}

/// "alice (111) at 20:15:07 UTC", the time taken from the incident's own timeline.
fn who(inc: &Incident, actor: &Option<Actor>, action: impl Fn(&Action) -> bool) -> String {
    let name = actor
        .as_ref()
        .map_or_else(|| "someone".into(), Actor::to_string);
    match inc.timeline.iter().rev().find(|e| action(&e.action)) {
        Some(e) => format!("{name} at {}", e.at.format("%H:%M:%S UTC")),
        None => name,
    }
}

fn is_ack(a: &Action) -> bool {
    matches!(a, Action::Acked)
}

fn excerpt(s: &str) -> String {
    cut(s, EXCERPT)
}

/// How a page reached the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// It already showed the incident as it is: nothing was sent.
    Unchanged,
    /// The page was edited in place.
    Edited,
    /// Sent as the incident's first message.
    Sent,
    /// Sent as a new message in place of the old page, for this reason.
    Resent(String),
}

/// A page Telegram took.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub page: PageRef,
    pub how: How,
    /// Telegram answered success with something else than the method documents (the method):
    /// taken as delivered, with a warning.
    pub unexpected: Option<&'static str>,
    /// Telegram refused the text for its content and the plain-text rendering went instead.
    pub plain: Option<String>,
}

/// How Telegram answered one request, sorted by what it means for the page.
enum Answer<T> {
    Done(T),
    /// `"ok": true` with a result that is not what the method documents (`null`, `true`, …):
    /// Telegram did it; the raw answer is kept for what can be read from it.
    Unexpected(serde_json::Value),
    /// `message is not modified`: the chat already shows it.
    NotModified,
    /// The edit will never be applied: the message was deleted, is too old, is not ours.
    EditRefused(String),
    /// The text was refused for its content (markup, length).
    ContentRefused(String),
    Failed(DeliveryError),
}

fn answer<T>(result: Result<T, RequestError>) -> Answer<T> {
    match result {
        Ok(v) => Answer::Done(v),
        Err(RequestError::InvalidJson { raw, source }) => {
            match serde_json::from_str::<serde_json::Value>(&raw) {
                Ok(v) if v["ok"] == serde_json::Value::Bool(true) => Answer::Unexpected(v),
                _ => Answer::Failed(DeliveryError::Transient(format!(
                    "invalid answer: {source}"
                ))),
            }
        }
        Err(RequestError::Api(ApiError::MessageNotModified)) => Answer::NotModified,
        Err(RequestError::Api(
            e @ (ApiError::MessageToEditNotFound
            | ApiError::MessageCantBeEdited
            | ApiError::MessageIdInvalid),
        )) => Answer::EditRefused(e.to_string()),
        Err(RequestError::Api(ApiError::Unknown(text)))
            if text.contains("MESSAGE_AUTHOR_REQUIRED") =>
        {
            Answer::EditRefused(text)
        }
        Err(RequestError::Api(
            e @ (ApiError::CantParseEntities(_)
            | ApiError::MessageIsTooLong
            | ApiError::EditedMessageIsTooLong),
        )) => Answer::ContentRefused(e.to_string()),
        Err(e) => Answer::Failed(classify(e)),
    }
}

/// The plain-text fallback of a page whose text Telegram refused for its content: characters
/// that only format or steer text (controls, zero-width and direction marks) removed, and cut
/// to [`PLAIN_LIMIT`] bytes, the strictest reading of "4,096 characters".
pub fn plain_text(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| {
            *c == '\n'
                || !(c.is_control()
                    || matches!(*c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'))
        })
        .collect();
    if clean.len() <= PLAIN_LIMIT {
        return clean;
    }
    let mut end = PLAIN_LIMIT - '…'.len_utf8();
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &clean[..end])
}

/// The plain-text fallback's length in bytes.
pub const PLAIN_LIMIT: usize = MAX_TEXT;

/// Sends pages to the on-call chat.
#[derive(Clone)]
pub struct TelegramPager {
    bot: Bot,
    chat: ChatId,
    pause_button: bool,
}

impl TelegramPager {
    pub fn new(bot: Bot, chat_id: i64) -> TelegramPager {
        TelegramPager {
            bot,
            chat: ChatId(chat_id),
            pause_button: false,
        }
    }

    /// Email pages get a `Pause mailer` button (a kill switch is configured).
    pub fn with_pause_button(mut self, on: bool) -> TelegramPager {
        self.pause_button = on;
        self
    }

    /// Sends a reminder: to the on-call chat as a reply to the page, and to the tier's chat.
    /// Returns the method whose answer was unexpected, if one was.
    pub async fn remind(
        &self,
        inc: &Incident,
        reminder: &crate::store::Reminder,
        gate: &Gate,
    ) -> Result<Option<&'static str>, DeliveryError> {
        let sent = self.send_reminder(inc, reminder, gate).await;
        sent.map_err(|e| e.redacted(self.bot.token()))
    }

    async fn send_reminder(
        &self,
        inc: &Incident,
        reminder: &crate::store::Reminder,
        gate: &Gate,
    ) -> Result<Option<&'static str>, DeliveryError> {
        let unexpected = self.send_reply(inc, &reminder.text, gate).await?;
        if let Some(chat) = reminder.extra_chat.filter(|c| *c != self.chat.0) {
            // Another chat: the on-call chat's pacing does not hold between the two.
            let sent = self
                .bot
                .send_message(ChatId(chat), reminder.text.clone())
                .await;
            match answer(sent) {
                Answer::Done(_) => {}
                Answer::Unexpected(_) => return Ok(Some("sendMessage")),
                Answer::Failed(e) => return Err(e),
                Answer::NotModified | Answer::EditRefused(_) | Answer::ContentRefused(_) => {
                    return Err(DeliveryError::Refused(
                        "the tier's chat refused the reminder".into(),
                    ));
                }
            }
        }
        Ok(unexpected)
    }

    /// Sends `text` to the on-call chat as a reply to the incident's page, so that it notifies
    /// (an edit does not) and shows what it is about; sent even if the page was deleted.
    /// Returns the method whose answer was unexpected, if one was.
    pub async fn reply(
        &self,
        inc: &Incident,
        text: &str,
        gate: &Gate,
    ) -> Result<Option<&'static str>, DeliveryError> {
        let sent = self.send_reply(inc, text, gate).await;
        sent.map_err(|e| e.redacted(self.bot.token()))
    }

    async fn send_reply(
        &self,
        inc: &Incident,
        text: &str,
        gate: &Gate,
    ) -> Result<Option<&'static str>, DeliveryError> {
        let send = |text: String| {
            let mut msg = self.bot.send_message(self.chat, text);
            if let Some(page) = inc.page.as_ref().filter(|p| p.message_id != 0) {
                let reply = teloxide::types::ReplyParameters::new(MessageId(page.message_id))
                    .allow_sending_without_reply();
                msg = msg.reply_parameters(reply);
            }
            gate.request(msg)
        };
        match answer(send(text.to_owned()).await) {
            Answer::Done(_) => Ok(None),
            Answer::Unexpected(_) => Ok(Some("sendMessage")),
            Answer::ContentRefused(_) => match answer(send(plain_text(text)).await) {
                Answer::Done(_) => Ok(None),
                Answer::Unexpected(_) => Ok(Some("sendMessage")),
                Answer::Failed(e) => Err(e),
                _ => Err(DeliveryError::Refused(
                    "the plain-text message was refused too".into(),
                )),
            },
            Answer::Failed(e) => Err(e),
            Answer::NotModified | Answer::EditRefused(_) => Err(DeliveryError::Refused(
                "unexpected refusal of a new message".into(),
            )),
        }
    }

    /// Whether the chat already shows the incident as it is now (no message needed).
    pub fn is_current(&self, inc: &Incident) -> bool {
        inc.page
            .as_ref()
            .is_some_and(|p| p.rendered == render_page(inc, self.pause_button).digest)
    }

    /// Brings the incident's page up to date: sends it the first time, edits it afterwards.
    /// An edit Telegram will never apply (the page was deleted, is too old or not the bot's)
    /// sends the current state as a new message instead, as [`TelegramPager::resend`] does.
    /// Returns where the page is once Telegram confirmed it.
    pub async fn deliver(&self, inc: &Incident, gate: &Gate) -> Result<Delivered, DeliveryError> {
        let delivered = self.send_or_edit(inc, gate).await;
        delivered.map_err(|e| e.redacted(self.bot.token()))
    }

    async fn send_or_edit(&self, inc: &Incident, gate: &Gate) -> Result<Delivered, DeliveryError> {
        let r = render_page(inc, self.pause_button);
        let Some(page) = &inc.page else {
            return self.send(&r, How::Sent, gate).await;
        };
        if page.rendered == r.digest {
            return Ok(Delivered {
                page: page.clone(),
                how: How::Unchanged,
                unexpected: None,
                plain: None,
            });
        }
        // 0: a send whose answer did not say where the message is; it cannot be edited.
        if page.message_id == 0 {
            return self
                .send(
                    &r,
                    How::Resent("the page's message id is unknown".into()),
                    gate,
                )
                .await;
        }
        let edited = |text: String| {
            let edit = self
                .bot
                .edit_message_text(ChatId(page.chat_id), MessageId(page.message_id), text)
                .reply_markup(r.buttons.clone());
            gate.request(edit)
        };
        let done = |unexpected, plain| Delivered {
            page: PageRef {
                rendered: r.digest.clone(),
                version: Some(r.version),
                ..page.clone()
            },
            how: How::Edited,
            unexpected,
            plain,
        };
        match answer(edited(r.text.clone()).await) {
            Answer::Done(_) | Answer::NotModified => Ok(done(None, None)),
            Answer::Unexpected(_) => Ok(done(Some("editMessageText"), None)),
            Answer::EditRefused(why) => self.send(&r, How::Resent(why), gate).await,
            Answer::ContentRefused(why) => match answer(edited(plain_text(&r.text)).await) {
                Answer::Done(_) | Answer::NotModified => Ok(done(None, Some(why))),
                Answer::Unexpected(_) => Ok(done(Some("editMessageText"), Some(why))),
                Answer::EditRefused(gone) => self.send(&r, How::Resent(gone), gate).await,
                Answer::ContentRefused(again) => Err(DeliveryError::Refused(format!(
                    "the plain-text page was refused too: {again}"
                ))),
                Answer::Failed(e) => Err(e),
            },
            Answer::Failed(e) => Err(e),
        }
    }

    /// Sends the incident's current state as a new message, which becomes its page (record it
    /// with `Incidents::delivered`); the message in the chat now is left as it is. A new
    /// message rings where an edit would not.
    pub async fn resend(
        &self,
        inc: &Incident,
        reason: &str,
        gate: &Gate,
    ) -> Result<Delivered, DeliveryError> {
        let r = render_page(inc, self.pause_button);
        let sent = self.send(&r, How::Resent(reason.to_owned()), gate).await;
        sent.map_err(|e| e.redacted(self.bot.token()))
    }

    /// Sends a rendered page as a new message; refused for its content, sends the plain-text
    /// rendering instead.
    async fn send(&self, r: &Rendered, how: How, gate: &Gate) -> Result<Delivered, DeliveryError> {
        let send = |text: String| {
            let msg = self
                .bot
                .send_message(self.chat, text)
                .reply_markup(r.buttons.clone());
            gate.request(msg)
        };
        let page = |message_id: i32| PageRef {
            chat_id: self.chat.0,
            message_id,
            rendered: r.digest.clone(),
            sent_at: Some(chrono::Utc::now()),
            version: Some(r.version),
        };
        // Where an unexpected answer still says where the message is, the page can be edited
        // later; otherwise the next update sends a new one.
        let unexpected_at = |v: &serde_json::Value| {
            v["result"]["message_id"]
                .as_i64()
                .and_then(|id| i32::try_from(id).ok())
                .unwrap_or(0)
        };
        let delivered = |message_id, unexpected, plain| Delivered {
            page: page(message_id),
            how: how.clone(),
            unexpected,
            plain,
        };
        match answer(send(r.text.clone()).await) {
            Answer::Done(m) => Ok(delivered(m.id.0, None, None)),
            Answer::Unexpected(v) => Ok(delivered(unexpected_at(&v), Some("sendMessage"), None)),
            Answer::ContentRefused(why) => match answer(send(plain_text(&r.text)).await) {
                Answer::Done(m) => Ok(delivered(m.id.0, None, Some(why))),
                Answer::Unexpected(v) => {
                    Ok(delivered(unexpected_at(&v), Some("sendMessage"), Some(why)))
                }
                Answer::ContentRefused(again) => Err(DeliveryError::Refused(format!(
                    "the plain-text page was refused too: {again}"
                ))),
                Answer::Failed(e) => Err(e),
                Answer::NotModified | Answer::EditRefused(_) => Err(DeliveryError::Refused(
                    "unexpected refusal of a new message".into(),
                )),
            },
            Answer::Failed(e) => Err(e),
            Answer::NotModified | Answer::EditRefused(_) => Err(DeliveryError::Refused(
                "unexpected refusal of a new message".into(),
            )),
        }
    }
}

fn classify(e: RequestError) -> DeliveryError {
    match e {
        RequestError::RetryAfter(s) => DeliveryError::RetryAfter(s.duration()),
        RequestError::Network(e) => DeliveryError::Transient(e.to_string()),
        RequestError::Io(e) => DeliveryError::Transient(e.to_string()),
        RequestError::InvalidJson { source, .. } => {
            DeliveryError::Transient(format!("invalid answer: {source}"))
        }
        RequestError::Api(ApiError::InvalidToken) => {
            DeliveryError::Unreachable("the bot token was refused (401): revoked?".into())
        }
        RequestError::Api(ApiError::ChatNotFound) => {
            DeliveryError::Unreachable("chat not found (400): check telegram.chat_id".into())
        }
        RequestError::Api(e) => {
            // Descriptions teloxide does not know come as they were sent.
            let text = match e {
                ApiError::Unknown(text) => text,
                e => e.to_string(),
            };
            if text.starts_with("Forbidden") || text.starts_with("Unauthorized") {
                DeliveryError::Unreachable(format!(
                    "the bot was removed from the chat or blocked (403): {text}"
                ))
            } else if text.starts_with("Internal Server Error")
                || text.starts_with("Bad Gateway")
                || text.starts_with("Gateway")
                || text.starts_with("Service Unavailable")
            {
                DeliveryError::Transient(text)
            } else {
                DeliveryError::Refused(text)
            }
        }
        RequestError::MigrateToChatId(id) => DeliveryError::Unreachable(format!(
            "the chat became a supergroup: set telegram.chat_id = {}",
            id.0
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_counts_utf16_units() {
        let s = "🔴".repeat(3000); // 6000 UTF-16 units
        let c = cut(&s, MAX_TEXT);
        assert!(c.encode_utf16().count() <= MAX_TEXT);
        assert!(c.ends_with('…'));
        assert_eq!(cut("short", MAX_TEXT), "short");
    }
}
