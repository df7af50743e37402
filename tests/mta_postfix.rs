//! Debian's Postfix in front of the journal, as in production: it journals every message with
//! `always_bcc` over STARTTLS and AUTH, and keeps (then re-delivers) what tocsin could not take.
//! Needs `tests/mta/postfix install` (CI runs it); says so loudly when Postfix is missing.

use std::time::Duration;

use tocsin::{
    config::{Email, Journal, JournalAuth, Secret},
    model::{Evidence, Rule},
};
use tocsin_fakes::smtp::{TestCert, customers, leaky_message};

use crate::support::{postfix::*, *};

const SENDER: &str = "statements@exchange.example";
const USER: &str = "postfix-journal";
const PASSWORD: &str = "journal-pass-8c1f";

fn email(port: u16, cert: &TestCert) -> Email {
    Email {
        journal: Some(Journal {
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            tls_cert: Some(Secret::new(cert.cert_pem.clone())),
            tls_key: Some(Secret::new(cert.key_pem.clone())),
            require_tls: true,
            auth: Some(JournalAuth {
                username: USER.into(),
                password: Secret::new(PASSWORD),
            }),
            ..Journal::default()
        }),
        internal_domains: vec!["exchange.example".into()],
        ..Email::default()
    }
}

/// The BitMEX leak: one message to 1,000 customers, every address visible in `To:`.
fn bitmex_style() -> (Vec<String>, Vec<u8>) {
    let to = customers(3, 1000, 40);
    let m = leaky_message(
        SENDER,
        &to,
        "Your statement",
        "bitmex-style@exchange.example",
    );
    (to, m)
}

#[tokio::test]
async fn postfix_journals_through_starttls_and_auth_and_the_leak_is_paged() {
    if !Postfix::available("postfix_journals_through_starttls_and_auth").await {
        return;
    }
    let cert = TestCert::localhost().unwrap();
    let port = free_port();
    let app = spawn_app_with(|c| c.email = Some(email(port, &cert))).await;
    let postfix = Postfix::start(port, Some((USER, PASSWORD))).await;
    let (to, message) = bitmex_style();
    postfix.send(SENDER, &to, &message).await;
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains("exposed addresses: 1000 · domains: 40"))
        },
        "the leak paged",
    )
    .await;
    let inc = app
        .store
        .incidents()
        .unwrap()
        .into_iter()
        .find(|i| i.rule == Rule::ExposedRecipients)
        .unwrap();
    assert!(
        matches!(&inc.evidence, Evidence::Mail(e) if e.origin_proven),
        "authenticated over TLS: {:?}",
        inc.evidence
    );
    postfix.wait_empty(Duration::from_secs(30)).await;
    let log = postfix.log();
    assert!(
        log.contains("TLS connection established to 127.0.0.1"),
        "{log}"
    );
    assert!(
        log.contains("to=<journal@tocsin.test>") && log.contains("status=sent"),
        "{log}"
    );
    app.stop().await;
}

#[tokio::test]
async fn postfix_keeps_what_tocsin_refused_while_down_and_delivers_it_later() {
    if !Postfix::available("postfix_keeps_what_tocsin_refused_while_down").await {
        return;
    }
    let cert = TestCert::localhost().unwrap();
    let port = free_port();
    let postfix = Postfix::start(port, Some((USER, PASSWORD))).await;
    // tocsin is down: the journal copy is deferred, not lost.
    let (to, message) = bitmex_style();
    postfix.send(SENDER, &to, &message).await;
    postfix
        .wait_log("status=deferred", Duration::from_secs(30))
        .await;
    assert_eq!(postfix.count().await, 1, "{}", postfix.log());
    let app = spawn_app_with(|c| c.email = Some(email(port, &cert))).await;
    postfix.flush().await;
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains("exposed addresses: 1000"))
        },
        "the deferred leak delivered and paged",
    )
    .await;
    postfix.wait_empty(Duration::from_secs(30)).await;
    app.stop().await;
}

#[tokio::test]
async fn an_smtputf8_leak_reaches_the_journal_and_is_paged() {
    if !Postfix::available("an_smtputf8_leak_reaches_the_journal_and_is_paged").await {
        return;
    }
    let cert = TestCert::localhost().unwrap();
    let port = free_port();
    let app = spawn_app_with(|c| c.email = Some(email(port, &cert))).await;
    let postfix = Postfix::start(port, Some((USER, PASSWORD))).await;
    let mut to = customers(5, 59, 10);
    to.push("kündin@müller.example".into());
    let message = leaky_message(SENDER, &to, "für März", "utf8-leak@exchange.example");
    let reply = postfix.submit(SENDER, "SMTPUTF8", &to, &message).await;
    assert_eq!(reply.code, 250, "{reply:?}\n{}", postfix.log());
    let page = app
        .page_containing(
            "exposed addresses: 60 · domains: 11",
            "the SMTPUTF8 leak paged",
        )
        .await;
    assert!(page.contains("Subject: “für März”"), "{page}");
    postfix.wait_empty(Duration::from_secs(30)).await;
    let log = postfix.log();
    assert!(!log.contains("SMTPUTF8 is required"), "{log}");
    app.stop().await;
}

#[tokio::test]
async fn a_one_line_to_refolded_by_postfix_is_counted_as_written() {
    if !Postfix::available("a_one_line_to_refolded_by_postfix_is_counted_as_written").await {
        return;
    }
    let cert = TestCert::localhost().unwrap();
    let port = free_port();
    let app = spawn_app_with(|c| c.email = Some(email(port, &cert))).await;
    let postfix = Postfix::start(port, Some((USER, PASSWORD))).await;
    // 1,000 bare addresses on one 22 KB line: Postfix breaks it every 998 bytes, anywhere.
    let to = customers(6, 1000, 40);
    let message = format!(
        "From: {SENDER}\r\nTo: {}\r\nSubject: Your statement\r\n\
         Message-ID: <one-line@exchange.example>\r\nDate: {}\r\n\r\nHello.\r\n",
        to.join(", "),
        chrono::Utc::now().to_rfc2822()
    );
    let reply = postfix.submit(SENDER, "", &to, message.as_bytes()).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    let page = app
        .page_containing("exposed addresses:", "the one-line leak paged")
        .await;
    assert!(
        page.contains("exposed addresses: 1000 · domains: 40"),
        "{page}"
    );
    app.stop().await;
}
