//! The journal listener tried as an attacker would: a peer outside `allow_from`, a client that
//! skips STARTTLS or AUTH, connections that never finish their DATA, and the 14 MB message whose
//! `To:` is 850,000 customers, measured in the real binary's own memory.

use std::{net::SocketAddr, time::Duration};

use tocsin::{
    config::{Email, Journal, JournalAuth, Secret},
    model::{Evidence, Rule},
};
use tocsin_fakes::smtp::{SmtpClient, TestCert, customers, leaky_message};
use tokio::io::AsyncReadExt;

use crate::support::{daemon::*, quiet::until_async, *};

const SENDER: &str = "mailer@exchange.example";
const USER: &str = "postfix";
const PASSWORD: &str = "journal-s3cret";

async fn guarded_app(tweak: impl FnOnce(&mut Journal)) -> (TestApp, SocketAddr) {
    let mut journal = Journal {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Journal::default()
    };
    tweak(&mut journal);
    let email = Email {
        journal: Some(journal),
        internal_domains: vec!["exchange.example".into()],
        ..Email::default()
    };
    let app = spawn_app_with(|c| c.email = Some(email)).await;
    let addr = app.journal.expect("journal listener bound");
    (app, addr)
}

async fn refused(app: &TestApp, reason: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", app.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = format!("tocsin_journal_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn exposures(app: &TestApp) -> Vec<tocsin::model::Incident> {
    app.store
        .incidents()
        .unwrap()
        .into_iter()
        .filter(|i| i.rule == Rule::ExposedRecipients)
        .collect()
}

#[tokio::test]
async fn a_peer_outside_allow_from_is_refused_at_the_greeting() {
    // Only the MTA's network may journal; this test's 127.0.0.1 is not in it.
    let (app, addr) = guarded_app(|j| j.allow_from = vec!["192.0.2.0/24".parse().unwrap()]).await;
    let (mut c, greeting) = SmtpClient::connect_raw(addr).await.unwrap();
    assert_eq!(greeting.code, 554, "{greeting:?}");
    assert!(greeting.text.contains("127.0.0.1"), "{greeting:?}");
    for command in ["EHLO forger.example", "MAIL FROM:<a@b.example>", "DATA"] {
        assert_eq!(c.command(command).await.unwrap().code, 503, "{command}");
    }
    assert_eq!(c.command("QUIT").await.unwrap().code, 221);
    assert_eq!(refused(&app, "peer").await, 1);
    // The forged 30-recipient message of the attack never reaches the rules.
    let (mut c, _) = SmtpClient::connect_raw(addr).await.unwrap();
    let to = customers(0, 30, 3);
    let m = leaky_message(SENDER, &to, "Forged", "forged-1@exchange.example");
    let reply = c.send(SENDER, &to, &m).await.unwrap();
    assert_eq!(reply.code, 503, "{reply:?}");
    app.wait_polls(2).await;
    assert!(exposures(&app).is_empty());
    assert!(app.bot.sent().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_silent_refused_peer_is_disconnected_after_its_grace() {
    let (app, addr) = guarded_app(|j| j.allow_from = vec!["10.0.0.0/8".parse().unwrap()]).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    // The server closes: read_to_end returns (within the grace and a margin).
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("closed after the grace")
        .unwrap();
    assert!(
        buf.starts_with(b"554 5.7.1"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    app.stop().await;
}

fn tls_and_auth(cert: &TestCert) -> impl FnOnce(&mut Journal) + '_ {
    move |j| {
        j.tls_cert = Some(Secret::new(cert.cert_pem.clone()));
        j.tls_key = Some(Secret::new(cert.key_pem.clone()));
        j.require_tls = true;
        j.auth = Some(JournalAuth {
            username: USER.into(),
            password: Secret::new(PASSWORD),
        });
    }
}

#[tokio::test]
async fn mail_needs_starttls_and_auth_and_wrong_credentials_are_counted() {
    let cert = TestCert::localhost().unwrap();
    let (app, addr) = guarded_app(tls_and_auth(&cert)).await;
    let mut c = SmtpClient::connect(addr).await.unwrap();
    assert!(c.ehlo.text.contains("STARTTLS"), "{:?}", c.ehlo);
    let mail = c.command("MAIL FROM:<a@exchange.example>").await.unwrap();
    assert_eq!(mail.code, 530, "require_tls: {mail:?}");
    // Input pipelined behind STARTTLS is dropped with the plaintext session (no injection).
    c.write(b"STARTTLS\r\nMAIL FROM:<injected@exchange.example>\r\n")
        .await
        .unwrap();
    assert_eq!(c.reply().await.unwrap().code, 220);
    c.write(b"QUIT\r\n").await.unwrap();
    let mut c = SmtpClient::connect(addr).await.unwrap();
    c = c.starttls(&cert.ca).await.unwrap();
    assert!(!c.ehlo.text.contains("STARTTLS"), "{:?}", c.ehlo);
    assert!(c.ehlo.text.contains("AUTH PLAIN LOGIN"), "{:?}", c.ehlo);
    let to = customers(1, 30, 3);
    let m = leaky_message(SENDER, &to, "Statement", "tls-1@exchange.example");
    let reply = c.send(SENDER, &to, &m).await.unwrap();
    assert_eq!(reply.code, 530, "AUTH first: {reply:?}");
    assert_eq!(c.auth_plain(USER, "guess").await.unwrap().code, 535);
    assert_eq!(c.auth_login("root", PASSWORD).await.unwrap().code, 535);
    assert_eq!(refused(&app, "auth").await, 2);
    assert_eq!(c.auth_login(USER, PASSWORD).await.unwrap().code, 235);
    let reply = c.send(SENDER, &to, &m).await.unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    until(|| !app.bot.sent().is_empty(), "the page").await;
    let inc = &exposures(&app)[0];
    assert!(
        matches!(&inc.evidence, Evidence::Mail(e) if e.origin_proven && e.exposed == 30),
        "{:?}",
        inc.evidence
    );
    c.quit().await.unwrap();

    // A third wrong password closes the connection.
    let mut c = SmtpClient::connect(addr)
        .await
        .unwrap()
        .starttls(&cert.ca)
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(c.auth_plain(USER, "nope").await.unwrap().code, 535);
    }
    let last = c.auth_plain(USER, "nope").await.unwrap();
    assert_eq!(last.code, 535);
    assert_eq!(
        c.reply().await.unwrap().code,
        421,
        "closed after three failures"
    );
    app.stop().await;
}

#[tokio::test]
async fn sessions_are_capped_and_an_unterminated_data_times_out() {
    let (app, addr) = guarded_app(|j| {
        j.max_sessions = 2;
        j.transaction_timeout = Duration::from_secs(2);
    })
    .await;
    let first = SmtpClient::connect(addr).await.unwrap();
    let mut second = SmtpClient::connect(addr).await.unwrap();
    let (_third, greeting) = SmtpClient::connect_raw(addr).await.unwrap();
    assert_eq!(greeting.code, 421, "over max_sessions: {greeting:?}");
    assert_eq!(refused(&app, "sessions").await, 1);

    // DATA that never ends, one line at a time well inside the idle timeout: the transaction
    // clock closes it.
    assert_eq!(
        second
            .command("MAIL FROM:<slow@exchange.example>")
            .await
            .unwrap()
            .code,
        250
    );
    assert_eq!(
        second
            .command("RCPT TO:<a@cust.example>")
            .await
            .unwrap()
            .code,
        250
    );
    assert_eq!(second.command("DATA").await.unwrap().code, 354);
    second.write(b"To: a@cust.example\r\n").await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if second.write(b"X-Slow: one more line\r\n").await.is_err() {
                break None;
            }
            tokio::select! {
                r = second.reply() => break r.ok(),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    })
    .await
    .expect("the transaction is cut");
    if let Some(reply) = closed {
        assert_eq!(reply.code, 421, "{reply:?}");
    }
    until_async(|| async { refused(&app, "timeout").await == 1 }, "counted").await;
    // Its slot is free again.
    drop(second);
    let mut again = None;
    for _ in 0..100 {
        let (c, g) = SmtpClient::connect_raw(addr).await.unwrap();
        if g.code == 220 {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut again = again.expect("a slot freed");
    assert_eq!(again.command("EHLO mta.example").await.unwrap().code, 250);
    first.quit().await.unwrap();
    app.stop().await;
}

/// The BitMEX attack's size: 850,000 addresses (14 MB) in `To:`, folded ten to a line.
pub fn huge_leak(n: usize) -> (Vec<String>, Vec<u8>) {
    // Short addresses, as in the leak: 850,000 of them make 14 MB.
    let to: Vec<String> = (0..n).map(|i| format!("u{i}@x{}.io", i % 9000)).collect();
    let m = leaky_message(SENDER, &to, "Your statement", "huge-1@exchange.example");
    (to, m)
}

/// What the daemon's own counter must say for `to`: the same addresses through the same
/// keyed hash and the same bounded counter (exact to 100,000, then HyperLogLog, whose estimate
/// is within about 1 % of the truth; the check is that the stream lost and added nothing).
fn counted_as(key: &tocsin::model::AddressKey, to: &[String]) -> u64 {
    let mut d = tocsin::model::Distinct::default();
    for a in to {
        d.insert(key.hash(a));
    }
    d.count()
}

/// Peak RSS (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn the_850000_address_message_and_a_rogue_post_at_once_both_page_on_time_under_300_mb() {
    let (masto, bot, dir) = fakes().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(
        dir.path(),
        &bot,
        &masto,
        &format!(
            "\n[email]\ninternal_domains = [\"exchange.example\"]\n\n[email.journal]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    let daemon = Daemon::spawn(&config, "info", &[]);
    daemon.http_addr().await;
    // The account's history is read before the takeover starts.
    let statuses = format!("/api/v1/accounts/{ACCOUNT_ID}/statuses");
    until(
        || masto.request_count(&statuses) >= 2,
        "the first polls of the account",
    )
    .await;
    let before = peak_rss_kib(daemon.pid());
    let (to, message) = huge_leak(850_000);
    assert!(message.len() > 14_000_000, "{} bytes", message.len());
    eprintln!("the message: {} bytes", message.len());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = SmtpClient::connect(addr).await.unwrap();
    let rcpt = vec!["journal@exchange.example".to_string()];
    // The takeover and the leak at the same moment: the rogue post is published as the 14 MB
    // starts to stream, and its page must leave as it would on a quiet day.
    let send = tokio::spawn(async move {
        let reply = c.send(SENDER, &rcpt, &message).await.unwrap();
        (c, reply)
    });
    let rogue_at = std::time::Instant::now();
    masto.publish(
        ACCOUNT_ID,
        "<p>Send 1 BTC, get 2 back: https://scam.example/claim</p>",
    );
    let rogue_page = loop {
        if let Some(m) = bot
            .sent()
            .into_iter()
            .find(|m| m.text.contains("scam.example"))
        {
            break m.received_instant.duration_since(rogue_at);
        }
        assert!(
            rogue_at.elapsed() < Duration::from_secs(30),
            "no page for the rogue post; log:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!(
        "rogue post published with the 850,000-address message: paged after {} ms",
        rogue_page.as_millis()
    );
    // One 150 ms poll, the judging, and at most one pacing second behind another page.
    assert!(
        rogue_page < Duration::from_millis(1500),
        "the rogue post's page took {rogue_page:?} beside the leak"
    );
    let (c, reply) = send.await.unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let page = loop {
        if let Some(m) = bot.sent().into_iter().find(|m| m.text.contains("exposed")) {
            break m.text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no page; log:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let peak = peak_rss_kib(daemon.pid());
    eprintln!(
        "850,000-address message: daemon peak RSS {} MiB (at start {} MiB)",
        peak / 1024,
        before / 1024
    );
    let exposed: u64 = page
        .split("exposed addresses: ~")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an estimated count on the page: {page}"));
    assert!(page.contains("estimated"), "{page}");
    assert!(peak < 300 * 1024, "peak RSS {} MiB", peak / 1024);
    c.quit().await.unwrap();
    // The page's count is what the daemon's counter gives for the 850,000 addresses under
    // this install's key (read once the daemon let go of the store).
    drop(daemon);
    let store = tocsin::store::Store::open(&dir.path().join("state")).unwrap();
    let expected = counted_as(&store.address_key().unwrap(), &to);
    assert_eq!(exposed, expected, "{page}");
    assert!(
        (exposed as f64 - 850_000.0).abs() < 850_000.0 * 0.05,
        "{exposed}: {page}"
    );
    let _ = (masto, dir);
}

#[tokio::test]
async fn a_large_to_header_streams_without_a_copy_of_the_list() {
    // In process: the counts are exact up to the limit, the incident and its sets stay small.
    let (app, addr) = guarded_app(|_| {}).await;
    let (to, message) = huge_leak(120_000);
    let mut c = SmtpClient::connect(addr).await.unwrap();
    let rcpt = vec!["journal@exchange.example".to_string()];
    assert_eq!(c.send(SENDER, &rcpt, &message).await.unwrap().code, 250);
    until(|| !exposures(&app).is_empty(), "judged").await;
    let inc = &exposures(&app)[0];
    let Evidence::Mail(e) = &inc.evidence else {
        panic!("mail evidence")
    };
    assert!(e.estimated, "past 100,000 the count is an estimate");
    let expected = counted_as(&app.store.address_key().unwrap(), &to);
    assert_eq!(e.exposed, expected, "the stream lost or added addresses");
    assert!(
        (e.exposed as f64 - 120_000.0).abs() < 6_000.0,
        "{}",
        e.exposed
    );
    assert!(serde_json::to_vec(inc).unwrap().len() < 4096);
    c.quit().await.unwrap();
    app.stop().await;
}
