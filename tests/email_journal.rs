//! The SMTP journal listener over real sockets, and the email rules it feeds.

use std::net::SocketAddr;

use tocsin::{
    config::{Email, Journal, NoticeAccount},
    model::{Evidence, Incident, Rule},
    store::ApprovedEntry,
};
use tocsin_fakes::smtp::{SmtpClient, customers, leaky_message};

use crate::support::{
    quiet::{Observed, until_async},
    *,
};

const SENDER: &str = "mailer@exchange.example";
/// The journal's default `name`: the account its observations and judged polls are counted
/// under.
const JOURNAL: &str = "journal";

async fn journal_app(tweak: impl FnOnce(&mut Email)) -> (TestApp, SocketAddr) {
    let mut email = Email {
        journal: Some(Journal {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_message_size: 256 * 1024,
            ..Journal::default()
        }),
        internal_domains: vec!["exchange.example".into()],
        ..Email::default()
    };
    tweak(&mut email);
    let app = spawn_app_with(|c| c.email = Some(email)).await;
    let addr = app.journal.expect("journal listener bound");
    (app, addr)
}

fn mail_incidents(app: &TestApp, rule: Rule) -> Vec<Incident> {
    app.store
        .incidents()
        .unwrap()
        .into_iter()
        .filter(|i| i.rule == rule)
        .collect()
}

fn counters(inc: &Incident) -> (u64, u64, u64) {
    match &inc.evidence {
        Evidence::Mail(m) => (m.messages, m.exposed, m.domains),
        other => panic!("mail evidence expected, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_commands_are_refused_without_losing_the_session() {
    let (app, addr) = journal_app(|_| {}).await;
    let (mut c, greeting) = SmtpClient::connect_raw(addr).await.unwrap();
    assert_eq!(greeting.code, 220);
    assert_eq!(
        c.command("MAIL FROM:<a@b.example>").await.unwrap().code,
        503
    );
    assert_eq!(c.command("EHLO").await.unwrap().code, 501);
    let ehlo = c.command("EHLO mta.example").await.unwrap();
    assert_eq!(ehlo.code, 250);
    for ext in ["PIPELINING", "SIZE 262144", "8BITMIME", "SMTPUTF8"] {
        assert!(ehlo.text.contains(ext), "{ext} advertised: {}", ehlo.text);
    }
    assert_eq!(c.command("RCPT TO:<x@y.example>").await.unwrap().code, 503);
    assert_eq!(c.command("DATA").await.unwrap().code, 503);
    assert_eq!(c.command("MAIL FROM:no-brackets").await.unwrap().code, 501);
    assert_eq!(
        c.command("MAIL FROM:<a@b.example> SIZE=abc")
            .await
            .unwrap()
            .code,
        501
    );
    assert_eq!(c.command("FROBNICATE").await.unwrap().code, 500);
    let long = format!("NOOP {}", "x".repeat(5000));
    assert_eq!(c.command(&long).await.unwrap().code, 500, "line too long");
    // SMTPUTF8 takes no value (RFC 6531 §3.4).
    assert_eq!(
        c.command("MAIL FROM:<a@b.example> SMTPUTF8=yes")
            .await
            .unwrap()
            .code,
        555
    );
    assert_eq!(
        c.command("MAIL FROM:<a@b.example>").await.unwrap().code,
        250
    );
    assert_eq!(
        c.command("MAIL FROM:<a@b.example>").await.unwrap().code,
        503
    );
    assert_eq!(
        c.command("RCPT TO:<not-an-address>").await.unwrap().code,
        501
    );
    assert_eq!(c.command("RSET").await.unwrap().code, 250);
    assert_eq!(
        c.command("RCPT TO:<x@y.example>").await.unwrap().code,
        503,
        "RSET ended it"
    );
    assert_eq!(c.command("NOOP").await.unwrap().code, 250);
    assert_eq!(c.command("QUIT").await.unwrap().code, 221);
    app.stop().await;
}

#[tokio::test]
async fn pipelined_dot_stuffed_message_is_queued_and_judged() {
    let (app, addr) = journal_app(|_| {}).await;
    let mut c = SmtpClient::connect(addr).await.unwrap();
    let to = customers(0, 30, 3);
    let mut message = leaky_message(SENDER, &to, "Dots", "dots-1@exchange.example");
    // Lines that would end DATA early, or read as commands, if the dots were not undone.
    message.extend_from_slice(b".\r\n..\r\n.QUIT\r\nend\r\n");
    // MAIL, 30 RCPTs and DATA arrive in one write; the replies come back in order.
    let reply = c.send(SENDER, &to, &message).await.unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(c.command("NOOP").await.unwrap().code, 250, "still in step");
    until(|| !app.bot.sent().is_empty(), "the page").await;
    let incs = mail_incidents(&app, Rule::ExposedRecipients);
    assert_eq!(incs.len(), 1);
    assert_eq!(counters(&incs[0]), (1, 30, 3));
    c.quit().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn oversize_messages_get_552_and_the_connection_stays_usable() {
    let (app, addr) = journal_app(|e| {
        e.journal.as_mut().unwrap().max_message_size = 4096;
    })
    .await;
    let mut c = SmtpClient::connect(addr).await.unwrap();
    let declared = c
        .command("MAIL FROM:<big@exchange.example> SIZE=100000")
        .await
        .unwrap();
    assert_eq!(declared.code, 552, "declared size over the limit");
    // Undeclared: the body is read to its end, then refused.
    let to = vec!["a@cust.example".to_string()];
    let mut big = leaky_message(SENDER, &to, "Big", "big-1@exchange.example");
    big.extend(
        std::iter::repeat_n(b'x', 70)
            .chain(*b"\r\n")
            .cycle()
            .take(20_000),
    );
    c.write(b"MAIL FROM:<big@exchange.example>\r\n")
        .await
        .unwrap();
    assert_eq!(c.reply().await.unwrap().code, 250);
    assert_eq!(
        c.command("RCPT TO:<a@cust.example>").await.unwrap().code,
        250
    );
    assert_eq!(c.command("DATA").await.unwrap().code, 354);
    c.write(&tocsin_fakes::smtp::dot_stuff(&big)).await.unwrap();
    assert_eq!(c.reply().await.unwrap().code, 552);
    assert_eq!(c.command("NOOP").await.unwrap().code, 250);
    let small = leaky_message(SENDER, &to, "Small", "small-1@exchange.example");
    assert_eq!(c.send(SENDER, &to, &small).await.unwrap().code, 250);
    app.stop().await;
}

#[tokio::test]
async fn a_thousand_visible_recipients_page_once_with_the_right_counters() {
    let (app, addr) = journal_app(|_| {}).await;
    let judged = app.judged_polls(JOURNAL).await;
    let mut c = SmtpClient::connect(addr).await.unwrap();
    let to = customers(1, 1000, 40);
    let message = leaky_message(SENDER, &to, "Your statement", "batch-1@exchange.example");
    assert_eq!(c.send(SENDER, &to, &message).await.unwrap().code, 250);
    until(|| !app.bot.sent().is_empty(), "the page").await;
    let page = app.bot.sent()[0].text.clone();
    assert!(page.contains("email.exposed_recipients"), "{page}");
    assert!(
        page.contains("Messages: 1 · exposed addresses: 1000 · domains: 40 · recipients: 1000"),
        "{page}"
    );
    assert!(page.contains("***@cust"), "masked samples: {page}");
    assert!(!page.contains("customer1x"), "no address in clear: {page}");
    // Nothing else happens: still one page, no edits. The journal's round that carried the
    // message is judged (every finding of it committed); once everything queued is sent, the
    // chat shows all there is.
    until_async(
        || async { app.judged_polls(JOURNAL).await > judged },
        "the journal's round judged",
    )
    .await;
    let s = app.settle(0).await;
    assert_eq!(s.sent.len(), 1, "one page: {:?}", s.sent);
    assert!(s.edits.is_empty(), "no edits: {:?}", s.edits);
    let inc = &mail_incidents(&app, Rule::ExposedRecipients)[0];
    assert!(
        serde_json::to_vec(inc).unwrap().len() < 4096,
        "the incident keeps counters, not the list"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_burst_of_forty_leaky_messages_is_one_incident_edited_in_place() {
    let (app, addr) = journal_app(|_| {}).await;
    // Four connections sending ten messages each, concurrently, as an MTA would.
    let mut senders = Vec::new();
    for conn in 0..4 {
        senders.push(tokio::spawn(async move {
            let mut c = SmtpClient::connect(addr).await.unwrap();
            for i in 0..10 {
                let batch = conn * 10 + i;
                let to = customers(batch, 50, 5);
                let id = format!("burst-{batch}@exchange.example");
                let m = leaky_message(SENDER, &to, "Launch", &id);
                assert_eq!(c.send(SENDER, &to, &m).await.unwrap().code, 250);
            }
            c.quit().await.unwrap();
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    until(
        || {
            mail_incidents(&app, Rule::ExposedRecipients)
                .first()
                .is_some_and(|i| counters(i).0 == 40)
        },
        "all 40 messages judged",
    )
    .await;
    let incs = mail_incidents(&app, Rule::ExposedRecipients);
    assert_eq!(incs.len(), 1, "one incident for the burst");
    assert_eq!(counters(&incs[0]), (40, 2000, 5));
    let id = incs[0].id;
    until(
        || {
            app.store
                .incident(id)
                .unwrap()
                .and_then(|i| i.page)
                .is_some_and(|p| {
                    app.bot
                        .message(CHAT, p.message_id)
                        .is_some_and(|m| m.text.contains("Messages: 40 "))
                })
        },
        "the page shows the final counters",
    )
    .await;
    assert_eq!(app.bot.sent().len(), 1, "one page");
    let edits = app.bot.edits().len();
    assert!(
        (1..=12).contains(&edits),
        "edits collapse under Telegram's pacing: {edits}"
    );
    let json = serde_json::to_vec(&app.store.incident(id).unwrap().unwrap()).unwrap();
    assert!(
        json.len() < 4096,
        "incident stays small: {} bytes",
        json.len()
    );
    app.stop().await;
}

#[tokio::test]
async fn approved_campaign_does_not_page_but_an_unapproved_bulk_send_does() {
    let (app, addr) = journal_app(|e| e.bulk_threshold = 100).await;
    let (status, body) = app
        .api_post(
            "/api/v1/approvals",
            serde_json::json!({
                "type": "campaign",
                "sender": "news@exchange.example",
                "campaign": "launch",
                "max_recipients": 1000,
                "window": "1h",
                "by": "marketing"
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .api_post(
            "/api/v1/approvals",
            serde_json::json!({ "type": "campaign", "sender": "news@exchange.example", "campaign": "launch", "window": "soon" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("window"), "{body}");

    let mut c = SmtpClient::connect(addr).await.unwrap();
    // Bcc-style: one visible address each, 60 envelope recipients.
    for (sender, batch) in [("news@exchange.example", 0), ("news@exchange.example", 1)]
        .into_iter()
        .chain([("rogue@exchange.example", 2), ("rogue@exchange.example", 3)])
    {
        let rcpt = customers(batch, 60, 3);
        let visible = vec!["undisclosed@exchange.example".to_string()];
        let id = format!("bulk-{batch}@exchange.example");
        let m = leaky_message(sender, &visible, "Launch", &id);
        assert_eq!(c.send(sender, &rcpt, &m).await.unwrap().code, 250);
    }
    until(|| !app.bot.sent().is_empty(), "the bulk page").await;
    let bulk = mail_incidents(&app, Rule::UnapprovedBulk);
    assert_eq!(bulk.len(), 1, "{bulk:?}");
    assert_eq!(bulk[0].object, "rogue@exchange.example");
    let page = &app.bot.sent()[0].text;
    assert!(
        page.contains("email.unapproved_bulk") && page.contains("recipients: 120"),
        "{page}"
    );
    // Every message of the window is counted, not only those after the threshold.
    assert!(page.contains("Messages: 2 · recipients: 120"), "{page}");

    // `/approve N` on the bulk page approves the campaign: the sender's next batch is quiet.
    app.bot
        .push_command(CHAT, &responder(), &format!("/approve {}", bulk[0].id));
    until(
        || {
            app.store.log_records().unwrap().iter().any(|r| {
                matches!(&r.entry, ApprovedEntry::ApprovedCampaign { sender, .. } if sender == "rogue@exchange.example")
            })
        },
        "the campaign approved from the chat",
    )
    .await;
    let rcpt = customers(4, 60, 3);
    let m = leaky_message(
        "rogue@exchange.example",
        &["u@exchange.example".into()],
        "Launch",
        "bulk-4@exchange.example",
    );
    assert_eq!(
        c.send("rogue@exchange.example", &rcpt, &m)
            .await
            .unwrap()
            .code,
        250
    );
    // A marker message after it: once it is judged, so was the batch before it.
    let to = customers(9, 30, 2);
    let marker = leaky_message(
        "marker@exchange.example",
        &to,
        "Marker",
        "marker@exchange.example",
    );
    assert_eq!(
        c.send("marker@exchange.example", &to, &marker)
            .await
            .unwrap()
            .code,
        250
    );
    until(
        || !mail_incidents(&app, Rule::ExposedRecipients).is_empty(),
        "the marker judged",
    )
    .await;
    assert_eq!(mail_incidents(&app, Rule::UnapprovedBulk).len(), 1);
    assert!(app.store.verify_log().unwrap().is_ok());

    // The CLI adds campaigns too.
    let (ok, out, err) = app
        .cli(&[
            "approve",
            "campaign",
            "--sender",
            "letters@exchange.example",
            "--campaign",
            "q4",
            "--max-recipients",
            "5000",
            "--window",
            "24h",
        ])
        .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("letters@exchange.example"), "{out}");
    app.stop().await;
}

#[tokio::test]
async fn a_platform_security_notice_pages_linked_to_the_account() {
    let (app, addr) = journal_app(|e| {
        e.security_notices.accounts.push(NoticeAccount {
            account: "x-main".into(),
            platform: "x".into(),
            address: "social@exchange.example".into(),
        });
    })
    .await;
    let mut c = SmtpClient::connect(addr).await.unwrap();
    let m = b"From: X <verify@x.com>\r\nTo: social@exchange.example\r\n\
Subject: Your X password was changed\r\nMessage-ID: <n1@x.com>\r\n\r\nIf this was not you...\r\n";
    let rcpt = vec!["social@exchange.example".to_string()];
    assert_eq!(c.send("bounces@x.com", &rcpt, m).await.unwrap().code, 250);
    until(|| !app.bot.sent().is_empty(), "the notice page").await;
    let inc = &mail_incidents(&app, Rule::SecurityNotice)[0];
    assert_eq!(inc.account, "x-main");
    let page = &app.bot.sent()[0].text;
    assert!(
        page.contains("Account: x-main") && page.contains("password was changed"),
        "{page}"
    );
    app.stop().await;
}

/// Sends `n` envelope recipients from `sender` in one Bcc-style message that names no campaign.
async fn bulk(c: &mut SmtpClient, sender: &str, batch: usize, n: usize) {
    let rcpt = customers(batch, n, 3);
    let id = format!("bulk-{batch}@exchange.example");
    let m = leaky_message(sender, &["u@exchange.example".into()], "Launch", &id);
    let m = String::from_utf8(m)
        .unwrap()
        .replace("X-Campaign-Id: launch\r\n", "");
    assert!(!m.contains("Campaign"), "{m}");
    let m = m.into_bytes();
    assert_eq!(c.send(sender, &rcpt, &m).await.unwrap().code, 250);
}

/// A message that pages on its own (exposed recipients): once it is judged, so is everything
/// the same connection sent before it.
async fn marker(app: &TestApp, c: &mut SmtpClient, n: usize) {
    let to = customers(900 + n, 30, 2);
    let sender = format!("marker{n}@exchange.example");
    let m = leaky_message(
        &sender,
        &to,
        "Marker",
        &format!("marker{n}@exchange.example"),
    );
    assert_eq!(c.send(&sender, &to, &m).await.unwrap().code, 250);
    until(
        || {
            mail_incidents(app, Rule::ExposedRecipients)
                .iter()
                .any(|i| i.object == sender)
        },
        "the marker judged",
    )
    .await;
}

#[tokio::test]
async fn approving_untagged_bulk_mail_covers_twice_its_volume_for_a_day() {
    let (app, addr) = journal_app(|e| e.bulk_threshold = 100).await;
    let sender = "rogue@exchange.example";
    let mut c = SmtpClient::connect(addr).await.unwrap();
    bulk(&mut c, sender, 0, 60).await;
    bulk(&mut c, sender, 1, 60).await;
    until(
        || mail_incidents(&app, Rule::UnapprovedBulk).len() == 1,
        "the bulk page",
    )
    .await;
    let id = mail_incidents(&app, Rule::UnapprovedBulk)[0].id;
    // `/approve N` acts on what the chat was shown: wait for the page to carry this version.
    until(
        || {
            app.store.incident(id).unwrap().is_some_and(|i| {
                i.page
                    .as_ref()
                    .is_some_and(|p| p.version == Some(i.version()))
            })
        },
        "the bulk page delivered",
    )
    .await;
    let asked = chrono::Utc::now();
    app.bot
        .push_command(CHAT, &responder(), &format!("/approve {id}"));
    until(
        || {
            app.store
                .incident(id)
                .unwrap()
                .is_some_and(|i| i.resolution.is_some())
        },
        "the approval",
    )
    .await;
    let entry = app
        .store
        .log_records()
        .unwrap()
        .into_iter()
        .rev()
        .find_map(|r| match r.entry {
            ApprovedEntry::ApprovedCampaign {
                sender: s,
                campaign,
                max_recipients,
                window,
                expires_at,
                ..
            } if s == sender => Some((campaign, max_recipients, window, expires_at)),
            _ => None,
        })
        .expect("the campaign entry");
    assert_eq!(entry.0, "*");
    assert_eq!(entry.1, Some(240), "twice the 120 recipients seen");
    assert_eq!(entry.2.as_deref(), Some("1d"));
    let expires = entry.3.expect("an untagged approval expires");
    let day = chrono::Duration::hours(24);
    assert!(
        expires >= asked + day && expires <= chrono::Utc::now() + day,
        "expires a day after the approval: {expires}"
    );
    // Up to twice the volume is quiet: 120 seen, 120 more.
    bulk(&mut c, sender, 2, 60).await;
    bulk(&mut c, sender, 3, 60).await;
    marker(&app, &mut c, 1).await;
    assert_eq!(mail_incidents(&app, Rule::UnapprovedBulk).len(), 1);
    // Past the cap it pages again.
    bulk(&mut c, sender, 4, 1).await;
    until(
        || mail_incidents(&app, Rule::UnapprovedBulk).len() == 2,
        "the sender paged again past the cap",
    )
    .await;
    assert!(app.store.verify_log().unwrap().is_ok());
    app.stop().await;
}

#[tokio::test]
async fn bulk_approval_terms_are_checked_and_named_when_wrong() {
    let (app, addr) = journal_app(|e| e.bulk_threshold = 100).await;
    let sender = "rogue@exchange.example";
    let mut c = SmtpClient::connect(addr).await.unwrap();
    bulk(&mut c, sender, 0, 150).await;
    app.page_containing("email.unapproved_bulk", "the bulk page")
        .await;
    let id = mail_incidents(&app, Rule::UnapprovedBulk)[0].id;
    for (args, named) in [
        ("cap=0", "cap"),
        ("cap=lots", "cap"),
        ("window=30m", "window"),
        ("window=31d", "window"),
        ("limit=5", "limit"),
    ] {
        let before = app.bot.sent().len();
        app.bot
            .push_command(CHAT, &responder(), &format!("/approve {id} {args}"));
        until(|| app.bot.sent().len() > before, args).await;
        let reply = app.bot.sent().pop().unwrap().text;
        assert!(
            reply.starts_with(&format!("`{named}")) && reply.contains("/approve N"),
            "{args}: {reply}"
        );
    }
    let s = app.settle(0).await;
    let inc = s.incidents.iter().find(|i| i.id == id).unwrap();
    assert!(inc.resolution.is_none(), "nothing approved: {inc:?}");
    app.bot.push_command(
        CHAT,
        &responder(),
        &format!("/approve {id} cap=50000 window=7d"),
    );
    until(
        || {
            app.store.log_records().unwrap().iter().any(|r| {
                matches!(&r.entry, ApprovedEntry::ApprovedCampaign { sender: s, max_recipients: Some(50000), window: Some(w), expires_at: Some(_), .. } if s == sender && w == "7d")
            })
        },
        "the campaign approved on the responder's terms",
    )
    .await;
    app.stop().await;
}
