//! Reduces a message to its [`MailSummary`]: the headers the email rules read and the
//! envelope. The body is parsed only as far as an Exchange journal report needs (the envelope
//! list and the attached original's headers); nothing of it is kept.

use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderValue, Message, MessageParser};

use crate::model::MailSummary;

/// Headers that name the campaign a bulk message belongs to, in order of preference.
const CAMPAIGN_HEADERS: &[&str] = &[
    "X-Campaign-Id",
    "X-Campaign",
    "X-Mailgun-Tag",
    "X-SES-Configuration-Set",
    "X-SMTPAPI-Category",
    "X-Mailchimp-Campaign",
    "Feedback-ID",
];

/// Why a message could not be summarised.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("the message has no parsable header block")]
    Unparsable,
}

/// Summarises one message received by the journal listener. `mail_from` and `rcpt_to` are the
/// SMTP envelope of the journaled copy; an Exchange journal report replaces them with the
/// original's envelope, read from the report.
pub fn summarise(
    feed: &str,
    raw: &[u8],
    mail_from: &str,
    rcpt_to: &[String],
) -> Result<MailSummary, SummaryError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(SummaryError::Unparsable)?;
    if message.headers().is_empty() {
        return Err(SummaryError::Unparsable);
    }
    if message.header_raw("X-MS-Journal-Report").is_some()
        && let Some(summary) = journal_report(feed, &message)
    {
        return Ok(summary);
    }
    let mut s = headers_of(feed, &message);
    s.sender = normalise(mail_from);
    if s.sender.is_empty() {
        s.sender = s.from.clone();
    }
    s.envelope = rcpt_to.iter().map(|r| normalise(r)).collect();
    Ok(s)
}

/// An Exchange journal report: the report's first text part lists the original envelope
/// (`Sender:`, `To:`/`Cc:`/`Bcc:`/`Recipient:` lines), the original is attached as
/// message/rfc822.
fn journal_report(feed: &str, report: &Message<'_>) -> Option<MailSummary> {
    let original = report.attachments().find_map(|p| p.message())?;
    let mut s = headers_of(feed, original);
    let text = report.body_text(0)?;
    let mut envelope = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        // `To: a@x.com, Forwarded: b@y.com`: the first address is the recipient.
        let first = value.split(',').next().unwrap_or("").trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "sender" => s.sender = normalise(first),
            "to" | "cc" | "bcc" | "recipient" if first.contains('@') => {
                envelope.push(normalise(first))
            }
            _ => {}
        }
    }
    if s.sender.is_empty() {
        s.sender = s.from.clone();
    }
    s.envelope = envelope;
    Some(s)
}

fn headers_of(feed: &str, m: &Message<'_>) -> MailSummary {
    let mut visible = Vec::new();
    for a in m.all_to().chain(m.all_cc()) {
        push_addresses(a, &mut visible);
    }
    let from = m
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(normalise)
        .unwrap_or_default();
    let campaign = CAMPAIGN_HEADERS
        .iter()
        .find_map(|h| m.header_raw(*h).map(|v| v.trim().to_owned()))
        .or_else(|| match m.list_id() {
            HeaderValue::Text(t) => Some(t.trim().to_owned()),
            HeaderValue::TextList(l) => l.first().map(|t| t.trim().to_owned()),
            _ => m.header_raw("List-Id").map(|v| v.trim().to_owned()),
        })
        .filter(|c| !c.is_empty());
    MailSummary {
        feed: feed.to_owned(),
        message_id: m.message_id().unwrap_or_default().to_owned(),
        sender: String::new(),
        from,
        subject: m.subject().unwrap_or_default().to_owned(),
        visible,
        envelope: Vec::new(),
        campaign,
        sent_at: m
            .date()
            .and_then(|d| DateTime::<Utc>::from_timestamp(d.to_timestamp(), 0)),
        // Whether the peer that handed it over may be believed is the listener's to say.
        origin_proven: false,
    }
}

/// Every address of a header, groups included (`undisclosed-recipients:;` has none).
fn push_addresses(a: &Address<'_>, out: &mut Vec<String>) {
    for addr in a.iter() {
        if let Some(address) = addr.address()
            && address.contains('@')
        {
            out.push(normalise(address));
        }
    }
}

/// `<Jane@Example.COM>` → `jane@example.com`.
pub fn normalise(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_with_encoded_headers_and_a_group() {
        let raw = b"From: =?UTF-8?Q?J=C3=BCrgen?= <Juergen@Shop.example>\r\n\
To: undisclosed-recipients:;\r\n\
Cc: \"Ann\" <ann@one.example>, bob@two.example\r\n\
To: Friends: carol@three.example, dan@four.example;\r\n\
Subject: =?UTF-8?B?w4RyZ2VyIMO8YmVyIGRpZSBSZWNobnVuZw==?=\r\n\
Message-ID: <abc@shop.example>\r\n\
X-Campaign-Id: spring-sale\r\n\
Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\
\r\n\
the body is never kept\r\n";
        let s = summarise(
            "journal",
            raw,
            "<Bounce@Shop.example>",
            &["x@y.example".into()],
        )
        .unwrap();
        assert_eq!(s.from, "juergen@shop.example");
        assert_eq!(s.sender, "bounce@shop.example");
        assert_eq!(s.subject, "Ärger über die Rechnung");
        assert_eq!(s.message_id, "abc@shop.example");
        assert_eq!(s.campaign.as_deref(), Some("spring-sale"));
        let mut visible = s.visible.clone();
        visible.sort();
        assert_eq!(
            visible,
            [
                "ann@one.example",
                "bob@two.example",
                "carol@three.example",
                "dan@four.example"
            ]
        );
        assert_eq!(s.envelope, ["x@y.example"]);
        assert!(s.sent_at.is_some());
    }

    #[test]
    fn undisclosed_recipients_alone_shows_nobody() {
        let raw = b"From: news@shop.example\r\nTo: undisclosed-recipients:;\r\nSubject: hi\r\n\r\nbody\r\n";
        let s = summarise("journal", raw, "", &[]).unwrap();
        assert!(s.visible.is_empty());
        assert_eq!(s.sender, "news@shop.example", "no envelope: From stands in");
    }

    #[test]
    fn list_id_names_the_campaign_when_nothing_else_does() {
        let raw = b"From: a@b.example\r\nList-Id: Weekly <weekly.shop.example>\r\nSubject: s\r\n\r\nx\r\n";
        let s = summarise("journal", raw, "a@b.example", &[]).unwrap();
        assert!(s.campaign.unwrap().contains("weekly.shop.example"));
    }

    #[test]
    fn exchange_journal_report_takes_the_original_and_its_envelope() {
        let raw = b"From: Microsoft Exchange <journal@corp.example>\r\n\
To: journal@tocsin.example\r\n\
Subject: Journal report\r\n\
X-MS-Journal-Report:\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Sender: mailer@corp.example\r\n\
Subject: Your statement\r\n\
Message-Id: <orig-1@corp.example>\r\n\
To: alice@cust-a.example\r\n\
To: bob@cust-b.example, Forwarded: team@corp.example\r\n\
Bcc: hidden@cust-c.example\r\n\
\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: Corp <mailer@corp.example>\r\n\
To: alice@cust-a.example, bob@cust-b.example\r\n\
Subject: Your statement\r\n\
Message-ID: <orig-1@corp.example>\r\n\
X-Mailgun-Tag: statements\r\n\
\r\n\
Dear customer\r\n\
--b1--\r\n";
        let s = summarise(
            "journal",
            raw,
            "exchange@corp.example",
            &["j@t.example".into()],
        )
        .unwrap();
        assert_eq!(s.message_id, "orig-1@corp.example");
        assert_eq!(s.subject, "Your statement");
        assert_eq!(s.sender, "mailer@corp.example");
        assert_eq!(s.visible, ["alice@cust-a.example", "bob@cust-b.example"]);
        assert_eq!(
            s.envelope,
            [
                "alice@cust-a.example",
                "bob@cust-b.example",
                "hidden@cust-c.example"
            ]
        );
        assert_eq!(s.campaign.as_deref(), Some("statements"));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(summarise("journal", b"", "", &[]).is_err());
    }
}
