//! Postfix's own throughput, in one run on this machine, three ways: delivering to `discard:`
//! alone, with the journal hop (`always_bcc` relayed to tocsin's journal over STARTTLS), and
//! with tocsin's milter consulted for every message (`smtpd_milters`). Each phase is a fresh
//! private Postfix (`tests/mta/postfix`) taking N messages over 8 concurrent SMTP connections;
//! its throughput is N over the time from the first submission to an empty queue. The milter's
//! added latency is the per-message submission time (end of DATA to Postfix's 250) with the
//! milter minus without, at p50 and p99. Skipped, loudly, when Postfix is not installed.
//!
//! Run: `cargo bench --bench e2e -- mta` (2,000 messages a phase; `--quick`: 100).

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use tocsin_fakes::{
    smtp::{SmtpClient, TestCert},
    telegram::FakeBotApi,
};

use crate::common::{emit, emit_latencies, free_port, ms, percentile, spawn_daemon, stop_daemon};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mta/postfix");
const CONNECTIONS: usize = 8;

pub fn run(quick: bool) {
    if !Command::new("bash")
        .args([SCRIPT, "available"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!(
            "!!! mta SKIPPED: Postfix/swaks are not installed (`bash tests/mta/postfix install` as \
             root); Postfix's throughput with the milter and the journal was NOT measured"
        );
        return;
    }
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(measure(if quick { 100 } else { 2000 }));
}

fn script(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("run tests/mta/postfix");
    assert!(
        out.status.success(),
        "postfix {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One phase: a fresh Postfix configured by `settings`, `n` messages submitted, the queue
/// drained. Returns (messages per second, per-message submission latencies).
async fn phase(
    dir: &Path,
    journal_port: u16,
    settings: &[String],
    n: usize,
) -> (f64, Vec<Duration>) {
    let smtpd = free_port();
    let path = dir.to_str().unwrap().to_owned();
    script(&[
        "start",
        &path,
        &smtpd.to_string(),
        &journal_port.to_string(),
    ]);
    if !settings.is_empty() {
        let mut args = vec!["postconf", path.as_str()];
        args.extend(settings.iter().map(String::as_str));
        script(&args);
    }
    let addr: SocketAddr = format!("127.0.0.1:{smtpd}").parse().unwrap();
    let t0 = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CONNECTIONS {
        let count = n / CONNECTIONS + usize::from(c < n % CONNECTIONS);
        clients.push(tokio::spawn(async move {
            let mut smtp = SmtpClient::connect(addr).await.expect("connect");
            let sender = format!("mailer{c}@exchange.example");
            let mut latencies = Vec::with_capacity(count);
            for i in 0..count {
                let to = vec![format!("customer{c}x{i}@cust{}.example", i % 40)];
                let message = format!(
                    "From: {sender}\r\nTo: {}\r\nSubject: Your statement\r\n\
                     Message-ID: <{c}-{i}@exchange.example>\r\n\r\nHello.\r\n",
                    to[0]
                );
                let started = Instant::now();
                let reply = smtp
                    .send(&sender, &to, message.as_bytes())
                    .await
                    .expect("send");
                latencies.push(started.elapsed());
                assert_eq!(reply.code, 250, "{reply:?}");
            }
            let _ = smtp.quit().await;
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for c in clients {
        latencies.extend(c.await.expect("client"));
    }
    loop {
        let queued = script(&["count", &path])
            .trim()
            .parse::<usize>()
            .unwrap_or(0);
        if queued == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "postfix did not drain: {queued} queued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = t0.elapsed();
    script(&["stop", &path]);
    (n as f64 / elapsed.as_secs_f64(), latencies)
}

async fn measure(n: usize) {
    let bot = FakeBotApi::start("1:bench").await.expect("fake Bot API");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = TestCert::localhost().expect("test certificate");
    let (journal, milter) = (free_port(), free_port());
    let config = format!(
        "[general]\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\napi_token = \"bench\"\n\n\
         [telegram]\nbot_token = \"1:bench\"\napi_url = \"{}\"\nchat_id = -100\nresponders = [1]\n\n\
         [email]\ninternal_domains = [\"exchange.example\"]\nbulk_threshold = 100000000\n\n\
         [email.journal]\nlisten = \"127.0.0.1:{journal}\"\ntls_cert = '''{}'''\ntls_key = '''{}'''\n\n\
         [email.milter]\nlisten = \"127.0.0.1:{milter}\"\n",
        dir.path().join("state").display(),
        bot.url(),
        cert.cert_pem,
        cert.key_pem,
    );
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config).expect("write config");
    let child = spawn_daemon(&path);
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", milter))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tocsin did not come up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let no_journal = "always_bcc=".to_owned();
    let milter_on = format!("smtpd_milters=inet:127.0.0.1:{milter}");
    let phases: [(&str, Vec<String>); 3] = [
        ("discard", vec![no_journal.clone()]),
        ("journal", vec![]),
        (
            "milter",
            vec![
                no_journal,
                milter_on,
                "milter_default_action=tempfail".into(),
            ],
        ),
    ];
    let mut results = Vec::new();
    for (name, settings) in &phases {
        let pdir = tempfile::tempdir().expect("temp dir");
        let (rate, latencies) = phase(pdir.path(), journal, settings, n).await;
        emit(&format!("mta_{name}_messages_per_s"), rate, "msg/s");
        emit_latencies(&format!("mta_{name}_submit_ms"), &latencies);
        results.push((rate, latencies));
    }
    let (discard, milter) = (&results[0], &results[2]);
    emit(
        "mta_milter_throughput_cost_pct",
        (1.0 - milter.0 / discard.0) * 100.0,
        "%",
    );
    emit(
        "mta_journal_throughput_cost_pct",
        (1.0 - results[1].0 / discard.0) * 100.0,
        "%",
    );
    for p in [50.0, 99.0] {
        emit(
            &format!("mta_milter_added_ms_p{p}"),
            ms(percentile(&milter.1, p)) - ms(percentile(&discard.1, p)),
            "ms",
        );
    }
    assert!(stop_daemon(child), "tocsin did not exit cleanly");
}
