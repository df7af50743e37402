//! The summariser against messages as MTAs write them: folded, refolded, encoded, journal
//! reports, and garbage.

use super::*;

fn key() -> AddressKey {
    AddressKey::new(&[3; 64])
}

fn summarise(
    feed: &str,
    raw: &[u8],
    mail_from: &str,
    rcpt_to: &[String],
) -> Result<MailSummary, SummaryError> {
    super::summarise(feed, &key(), raw, mail_from, rcpt_to)
}

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
    let raw =
        b"From: news@shop.example\r\nTo: undisclosed-recipients:;\r\nSubject: hi\r\n\r\nbody\r\n";
    let s = summarise("journal", raw, "", &[]).unwrap();
    assert!(s.visible.is_empty());
    assert_eq!(s.sender, "news@shop.example", "no envelope: From stands in");
}

#[test]
fn list_id_names_the_campaign_when_nothing_else_does() {
    let raw =
        b"From: a@b.example\r\nList-Id: Weekly <weekly.shop.example>\r\nSubject: s\r\n\r\nx\r\n";
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

/// Feeds `raw` in pieces of at most `piece` bytes, as the session reads a long line.
fn streamed(raw: &[u8], piece: usize, max_envelope: usize) -> MailSummary {
    let mut r = Reader::new("journal", key(), max_envelope);
    let mut at_line_start = true;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        for chunk in line.chunks(piece) {
            let complete = chunk.ends_with(b"\n");
            r.push(chunk, at_line_start, complete);
            at_line_start = complete;
        }
    }
    r.finish("bounce@corp.example", &["j@t.example".into()])
        .unwrap()
}

#[test]
fn an_unfolded_to_line_is_counted_in_pieces_and_only_a_sample_kept() {
    let to: Vec<String> = (0..20_000)
        .map(|i| format!("c{i}@d{}.example", i % 300))
        .collect();
    let raw = format!(
        "From: a@corp.example\r\nTo: {}\r\nSubject: s\r\n\r\nbody\r\n",
        to.join(", ")
    );
    let s = streamed(raw.as_bytes(), 4096, 100);
    let t = s.tally.as_ref().unwrap();
    assert_eq!(t.addresses.count(), 20_000);
    assert_eq!(t.domains.len(), 300);
    assert_eq!(s.visible.len(), VISIBLE_SAMPLE);
    assert_eq!(s.visible[0], "c0@d0.example");
    assert_eq!(s.subject, "s", "headers after the long one are still read");
}

/// Breaks every line longer than 998 bytes as Postfix's SMTP client does: CRLF and one space
/// inserted at byte 998, wherever that falls.
fn broken_at_998(raw: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in raw.split_inclusive("\r\n") {
        let (text, end) = line.split_at(line.len() - 2);
        let mut chunks = text.as_bytes().chunks(998).peekable();
        while let Some(c) = chunks.next() {
            out.extend_from_slice(c);
            if chunks.peek().is_some() {
                out.extend_from_slice(b"\r\n ");
            }
        }
        out.extend_from_slice(end.as_bytes());
    }
    out
}

#[test]
fn a_line_an_mta_broke_inside_addresses_is_read_as_written() {
    let to: Vec<String> = (0..1000)
        .map(|i| format!("customer6x{i}@cust{}.example", i % 40))
        .collect();
    let subject = "Statement ".repeat(120);
    let raw = format!(
        "From: a@corp.example\r\nTo: {}\r\nSubject: {subject}\r\n\r\nbody\r\n",
        to.join(", ")
    );
    let broken = broken_at_998(&raw);
    assert!(broken.len() > raw.len() + 20, "broken many times");
    for piece in [4096, 100] {
        let s = streamed(&broken, piece, 100);
        let t = s.tally.as_ref().unwrap();
        assert_eq!(t.addresses.count(), 1000);
        assert_eq!(t.domains.len(), 40);
        assert_eq!(s.subject, subject.trim_end());
    }
}

#[test]
fn display_names_comments_and_quotes_hide_no_address_and_add_none() {
    let raw = b"From: a@corp.example\r\n\
To: \"Doe, Jane\" <Jane@X.example>, (a comment, with@comma) bob@y.example,\r\n\
\x20Team: <c@z.example>, d@z.example;, <@relay.example:e@w.example>\r\n\
Cc: no-address-here\r\n\r\n";
    let s = streamed(raw, 7, 100);
    assert_eq!(
        s.visible,
        [
            "jane@x.example",
            "bob@y.example",
            "c@z.example",
            "d@z.example",
            "e@w.example"
        ]
    );
}

#[test]
fn a_journal_report_lists_recipients_up_to_the_cap_and_counts_the_rest() {
    let mut raw = String::from(
        "From: Exchange <j@corp.example>\r\nX-MS-Journal-Report:\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
Content-Type: text/plain\r\n\r\nSender: mailer@corp.example\r\n",
    );
    for i in 0..50 {
        raw.push_str(&format!("To: r{i}@cust.example\r\n"));
    }
    raw.push_str(
        "\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: mailer@corp.example\r\n\
To: a@one.example, b@two.example\r\nSubject: orig\r\n\r\nbody\r\n--b1--\r\n",
    );
    let s = streamed(raw.as_bytes(), 1 << 16, 10);
    assert_eq!(s.envelope.len(), 10);
    assert_eq!(s.envelope_unlisted, 40);
    assert_eq!(s.recipients(), 50);
    assert_eq!(s.sender, "mailer@corp.example");
    assert_eq!(s.subject, "orig");
    assert_eq!(s.tally.unwrap().addresses.count(), 2);
}

#[test]
fn garbage_is_refused() {
    assert!(summarise("journal", b"", "", &[]).is_err());
}
