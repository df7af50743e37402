//! Pages in the on-call chat: sending, and editing in place (the text and buttons come from
//! [`super::render`]).

use std::time::Duration;

use teloxide::{
    ApiError, RequestError,
    prelude::*,
    types::{ChatId, MessageId},
};

pub use super::pacing::{Gate, KEPT_FOR_NEW, MIN_SPACING, PER_MINUTE, Pacer};
pub use super::render::{MAX_TEXT, Rendered, render, render_page};
use crate::model::{Incident, PageRef};

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
