//! The registered mailbox over IMAP IDLE (`[[email.imap]]`), against the loopback fake IMAP
//! server: the mailbox's old mail is history; a notice the provider vouches for pages as it
//! arrives (IDLE); a forged one is counted, never paged; a refused login is blind at once; a
//! dropped connection is reopened; a recreated mailbox (new UIDVALIDITY) is read again; and
//! nothing ever marks a message `\Seen`.

use std::time::{Duration, Instant};

use tocsin::{
    config::{Email, ImapFeed, Secret},
    model::{Rule, State},
};
use tocsin_fakes::imap::FakeImap;

use crate::support::*;

pub const FEED: &str = "social-mailbox";
pub const AUTHSERV: &str = "mx.example.com";
const USER: &str = "social@example.com";
const PASSWORD: &str = "imap-test-password";

/// A security notice from X as the provider delivers it: its own `Authentication-Results` on
/// top, saying `result` for X's DKIM signature.
pub fn notice(authserv: &str, result: &str, id: &str, subject: &str) -> Vec<u8> {
    format!(
        "Authentication-Results: {authserv};\r\n\tdkim={result} header.d=x.com header.s=s2048;\r\n\
         \tspf=pass smtp.mailfrom=x.com\r\n\
         From: X <verify@x.com>\r\nTo: {USER}\r\nSubject: {subject}\r\n\
         Message-ID: <{id}@x.com>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n\
         Your email address was changed to attacker@evil.test.\r\n"
    )
    .into_bytes()
}

pub fn feed(host: &str, port: u16, password: &str, ca_file: std::path::PathBuf) -> ImapFeed {
    ImapFeed {
        name: FEED.into(),
        account: ACCOUNT.into(),
        host: host.into(),
        port,
        username: USER.into(),
        password: Secret::new(password),
        mailbox: "INBOX".into(),
        authserv_id: AUTHSERV.into(),
        ca_file: Some(ca_file),
        grace: Some(Duration::from_secs(30)),
    }
}

async fn start(imap: &FakeImap) -> TestApp {
    let ca = std::env::temp_dir().join(format!("tocsin-imap-ca-{}.pem", imap.port()));
    std::fs::write(&ca, imap.ca_pem()).unwrap();
    watching(feed("localhost", imap.port(), PASSWORD, ca)).await
}

/// The daemon reading the mailbox of `f`, once its first look (history) is judged: the feed is
/// in IDLE from here.
pub(crate) async fn watching(f: ImapFeed) -> TestApp {
    let app = spawn_app_with(move |c| {
        c.email = Some(Email {
            imap: vec![f],
            ..Email::default()
        })
    })
    .await;
    until(
        || {
            app.health
                .snapshot()
                .get(FEED)
                .is_some_and(|h| h.judged_polls >= 1)
        },
        "the mailbox's first look judged",
    )
    .await;
    app
}

fn notices(app: &TestApp) -> Vec<tocsin::model::Incident> {
    app.store
        .incidents()
        .unwrap()
        .into_iter()
        .filter(|i| i.rule == Rule::SecurityNotice)
        .collect()
}

#[tokio::test]
async fn a_vouched_notice_pages_by_idle_history_and_forgeries_do_not() {
    let imap = FakeImap::start(USER, PASSWORD).await.unwrap();
    imap.deliver(&notice(
        AUTHSERV,
        "pass",
        "old",
        "Your password was changed",
    ));
    let app = start(&imap).await;

    let forged_before = tocsin::metrics::IMAP_UNVOUCHED.load(std::sync::atomic::Ordering::Relaxed);
    // Forged: the provider's header says fail; a pass written by the sender below it, or one
    // from another authserv-id, is not the provider's word.
    let mut forged = notice(
        AUTHSERV,
        "fail",
        "f1",
        "Your email address was changed (f1)",
    );
    let below = b"Authentication-Results: mx.example.com; dkim=pass header.d=x.com\r\n";
    let at = forged.windows(4).position(|w| w == b"From").unwrap();
    forged.splice(at..at, below.iter().copied());
    imap.deliver(&forged);
    imap.deliver(&notice(
        "mx.attacker.test",
        "pass",
        "f2",
        "Your email address was changed (f2)",
    ));

    let sent = Instant::now();
    imap.deliver(&notice(
        AUTHSERV,
        "pass",
        "n1",
        "Your email address was changed",
    ));
    let page = app
        .page_containing("Your email address was changed", "the notice's page")
        .await;
    let latency = sent.elapsed();
    println!("imap idle → page: {} ms", latency.as_millis());
    assert!(page.contains("email.security_notice"), "{page}");
    assert!(
        page.contains(ACCOUNT),
        "linked to the social account: {page}"
    );

    let settled = app.settle(2).await;
    settled.assert_not_mentioned("password was changed", "history is not paged");
    settled.assert_not_mentioned("(f1)", "a notice the provider did not vouch for");
    settled.assert_not_mentioned("(f2)", "another authserv-id's results");
    assert_eq!(notices(&app).len(), 1);
    let forged_now = tocsin::metrics::IMAP_UNVOUCHED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(forged_now >= forged_before + 2, "forgeries counted");
    assert!(
        app.metric("tocsin_imap_unvouched_notices").await >= 2.0,
        "shown in /metrics"
    );
    assert!(imap.seen_setting().is_empty(), "{:?}", imap.seen_setting());
    app.stop().await;
}

#[tokio::test]
async fn a_refused_login_is_blind_at_once_and_a_dropped_connection_is_reopened() {
    let imap = FakeImap::start(USER, PASSWORD).await.unwrap();
    let app = start(&imap).await;

    imap.drop_connections();
    until(|| imap.logins() >= 2, "logged in again after the drop").await;
    imap.deliver(&notice(AUTHSERV, "pass", "d1", "New login to your account"));
    app.page_containing("New login to your account", "a notice after the drop")
        .await;

    imap.refuse_logins(true);
    imap.drop_connections();
    let page = app
        .page_containing("monitor.blind", "the blind page of a refused login")
        .await;
    assert!(page.contains(FEED), "{page}");
    let blind = app
        .store
        .incidents()
        .unwrap()
        .into_iter()
        .find(|i| i.rule == Rule::MonitorBlind)
        .unwrap();

    imap.refuse_logins(false);
    until(
        || app.store.incident(blind.id).unwrap().unwrap().state == State::Resolved,
        "resolved once the mailbox is seen again",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_recreated_mailbox_is_read_again() {
    let imap = FakeImap::start(USER, PASSWORD).await.unwrap();
    for i in 0..3 {
        imap.deliver(&notice(AUTHSERV, "pass", &format!("h{i}"), "history"));
    }
    let app = start(&imap).await;
    imap.recreate(1_800_000_000);
    imap.drop_connections();
    // UID 1 again, below the cursor of the old mailbox: read because UIDVALIDITY changed.
    imap.deliver(&notice(
        AUTHSERV,
        "pass",
        "r1",
        "Two-factor authentication was turned off",
    ));
    app.page_containing("Two-factor authentication", "the notice in the new mailbox")
        .await;
    until(
        || {
            app.store
                .cursor(&tocsin::mail::imap::cursor_key(FEED))
                .unwrap()
                .as_deref()
                == Some("1800000000:1")
        },
        "the cursor under the new UIDVALIDITY",
    )
    .await;
    app.stop().await;
}
