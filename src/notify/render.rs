//! A page's text and buttons, rendered from the incident as it is now.
//!
//! Pages are plain text (no parse mode), so post text chosen by an attacker cannot break the
//! markup or hide part of the page. The text is cut to stay under Telegram's 4,096 characters.

use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

use crate::{
    incidents::{PauseState, ordinal, pausable},
    model::{Action, Actor, Evidence, Incident, Resolution, Severity, State, cut, digest},
};

/// Telegram's limit for a message's text.
pub const MAX_TEXT: usize = 4096;
/// Post ids listed on a burst's page.
const BURST_IDS: usize = 5;
/// What one evidence excerpt may take, so the rest of the page always fits.
const EXCERPT: usize = 1200;

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
