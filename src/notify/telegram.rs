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

/// Why a page was not delivered this time. Every kind leaves it queued.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("telegram asked to wait {0:?}")]
    RetryAfter(Duration),
    #[error("telegram request failed: {0}")]
    Transient(String),
    #[error("telegram refused the page: {0}")]
    Refused(String),
    /// Pages cannot reach anyone until an operator acts: token revoked, bot removed from the
    /// chat or blocked, chat gone. Still kept queued: the fix brings them all out.
    #[error("telegram cannot reach the on-call chat: {0}")]
    Unreachable(String),
}

/// The text and buttons of an incident's page as it should look now.
pub struct Rendered {
    pub text: String,
    pub buttons: InlineKeyboardMarkup,
    pub digest: String,
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
                t += &format!("Posted with: {}\n", excerpt(c));
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
    let row = match inc.state {
        State::Open => vec![
            button("Ack", "ack"),
            button("Approve", "approve"),
            button("Resolve", "resolve"),
        ],
        State::Acked => vec![button("Approve", "approve"), button("Resolve", "resolve")],
        State::Resolved => vec![],
    };
    let mut rows = vec![row];
    if can_take_down && inc.state != State::Resolved {
        let at = rows[0].len().saturating_sub(1);
        rows[0].insert(at, button("Take down", "takedown"));
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

/// Telegram's per-chat flood limits: about one message per second in a chat, and at most 20 per
/// minute in a group. Edits count too. Waiting here costs a second; a 429 costs far more (and
/// slows every later page), so pages are paced before sending rather than after being refused.
#[derive(Debug, Default)]
pub struct Pacer {
    recent: std::collections::VecDeque<std::time::Instant>,
}

pub const MIN_SPACING: Duration = Duration::from_secs(1);
pub const PER_MINUTE: usize = 20;

impl Pacer {
    /// How long to wait before the next message may go.
    pub fn wait(&mut self, now: std::time::Instant) -> Duration {
        let minute = Duration::from_secs(60);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= minute)
        {
            self.recent.pop_front();
        }
        let spacing = self.recent.back().map_or(Duration::ZERO, |last| {
            MIN_SPACING.saturating_sub(now.duration_since(*last))
        });
        let window = if self.recent.len() >= PER_MINUTE {
            minute.saturating_sub(now.duration_since(self.recent[self.recent.len() - PER_MINUTE]))
        } else {
            Duration::ZERO
        };
        spacing.max(window)
    }

    /// Records a message sent at `now`.
    pub fn sent(&mut self, now: std::time::Instant) {
        self.recent.push_back(now);
        if self.recent.len() > PER_MINUTE {
            self.recent.pop_front();
        }
    }
}

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
    pub async fn remind(
        &self,
        inc: &Incident,
        reminder: &crate::store::Reminder,
    ) -> Result<(), DeliveryError> {
        let mut msg = self.bot.send_message(self.chat, reminder.text.clone());
        if let Some(page) = &inc.page {
            let reply = teloxide::types::ReplyParameters::new(MessageId(page.message_id))
                .allow_sending_without_reply();
            msg = msg.reply_parameters(reply);
        }
        msg.await.map_err(classify)?;
        if let Some(chat) = reminder.extra_chat.filter(|c| *c != self.chat.0) {
            self.bot
                .send_message(ChatId(chat), reminder.text.clone())
                .await
                .map_err(classify)?;
        }
        Ok(())
    }

    /// Whether the chat already shows the incident as it is now (no message needed).
    pub fn is_current(&self, inc: &Incident) -> bool {
        inc.page
            .as_ref()
            .is_some_and(|p| p.rendered == render_page(inc, self.pause_button).digest)
    }

    /// Brings the incident's page up to date: sends it the first time, edits it afterwards.
    /// Returns where the page is once Telegram confirmed it.
    pub async fn deliver(&self, inc: &Incident) -> Result<PageRef, DeliveryError> {
        let r = render_page(inc, self.pause_button);
        if let Some(page) = &inc.page {
            if page.rendered == r.digest {
                return Ok(page.clone());
            }
            let edit = self
                .bot
                .edit_message_text(
                    ChatId(page.chat_id),
                    MessageId(page.message_id),
                    r.text.clone(),
                )
                .reply_markup(r.buttons.clone())
                .await;
            match edit {
                Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => {
                    return Ok(PageRef {
                        rendered: r.digest,
                        ..page.clone()
                    });
                }
                // Someone deleted the page: post it again rather than lose it.
                Err(RequestError::Api(ApiError::MessageToEditNotFound)) => {}
                Err(e) => return Err(classify(e)),
            }
        }
        let sent = self
            .bot
            .send_message(self.chat, r.text)
            .reply_markup(r.buttons)
            .await
            .map_err(classify)?;
        Ok(PageRef {
            chat_id: sent.chat.id.0,
            message_id: sent.id.0,
            rendered: r.digest,
        })
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
            let text = e.to_string();
            if text.starts_with("Forbidden") || text.starts_with("Unauthorized") {
                DeliveryError::Unreachable(format!(
                    "the bot was removed from the chat or blocked (403): {text}"
                ))
            } else {
                DeliveryError::Refused(text)
            }
        }
        RequestError::MigrateToChatId(id) => DeliveryError::Refused(format!(
            "the chat became a supergroup: set telegram.chat_id = {}",
            id.0
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn cut_counts_utf16_units() {
        let s = "🔴".repeat(3000); // 6000 UTF-16 units
        let c = cut(&s, MAX_TEXT);
        assert!(c.encode_utf16().count() <= MAX_TEXT);
        assert!(c.ends_with('…'));
        assert_eq!(cut("short", MAX_TEXT), "short");
    }

    #[test]
    fn pacer_spaces_messages_and_caps_a_minute() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        assert_eq!(p.wait(t0), Duration::ZERO);
        p.sent(t0);
        assert_eq!(
            p.wait(t0 + Duration::from_millis(400)),
            Duration::from_millis(600)
        );
        for i in 1..PER_MINUTE as u64 {
            p.sent(t0 + Duration::from_secs(i));
        }
        // 20 sent within 19 s: the 21st waits until the first is a minute old.
        assert_eq!(
            p.wait(t0 + Duration::from_secs(20)),
            Duration::from_secs(40)
        );
        assert_eq!(p.wait(t0 + Duration::from_secs(60)), Duration::ZERO);
    }
}
