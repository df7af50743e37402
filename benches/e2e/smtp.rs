//! Journal throughput: the release binary with `[email.journal]` on loopback, N concurrent SMTP
//! clients each sending 1,000-recipient messages (every recipient visible, the leak) pipelined
//! like an MTA. A message counts when the listener answered 250, which it does only once the
//! summary is in sled and flushed. Prints one JSON object per line: metric, value, unit.
//!
//! Run: `cargo bench --bench e2e -- smtp` (20 s; `--quick`: 3 s). `TOCSIN_BENCH_SMTP_CLIENTS=N` sets the connections.

use std::{
    net::SocketAddr,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tocsin_fakes::{
    smtp::{SmtpClient, customers, leaky_message},
    telegram::FakeBotApi,
};

use crate::common::{emit, free_port};

/// Concurrent connections by default (`TOCSIN_BENCH_SMTP_CLIENTS` changes it). An MTA opens several
/// (Postfix: `default_destination_concurrency_limit` = 20).
const CLIENTS: usize = 16;
const RECIPIENTS: usize = 1000;

pub fn run(quick: bool) {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(measure(quick));
}

async fn measure(quick: bool) {
    let connections = std::env::var("TOCSIN_BENCH_SMTP_CLIENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CLIENTS);
    let window = Duration::from_secs(if quick { 3 } else { 20 });
    let bot = FakeBotApi::start("1:bench").await.expect("fake Bot API");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = format!(
        "[general]\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\napi_token = \"bench\"\n\n\
         [telegram]\nbot_token = \"1:bench\"\napi_url = \"{}\"\nchat_id = -100\nresponders = [1]\n\n\
         [email]\ninternal_domains = [\"exchange.example\"]\n\n\
         [email.journal]\nlisten = \"127.0.0.1:{port}\"\n",
        dir.path().join("state").display(),
        bot.url()
    );
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config).expect("write config");
    let mut child = crate::common::spawn_daemon(&path);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the journal listener did not come up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let t0 = Instant::now();
    for c in 0..connections {
        let (sent, stop) = (sent.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let sender = format!("mailer{c}@exchange.example");
            let to = customers(c, RECIPIENTS, 50);
            let message =
                leaky_message(&sender, &to, "Statement", &format!("m{c}@exchange.example"));
            let mut smtp = SmtpClient::connect(addr).await.expect("connect");
            while !stop.load(Ordering::Relaxed) {
                let reply = smtp.send(&sender, &to, &message).await.expect("send");
                assert_eq!(reply.code, 250, "{reply:?}");
                sent.fetch_add(1, Ordering::Relaxed);
            }
            let _ = smtp.quit().await;
        }));
    }
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed_at_stop = t0.elapsed();
    let counted_at_stop = sent.load(Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let rate = counted_at_stop as f64 / elapsed_at_stop.as_secs_f64();
    emit("smtp_messages_per_s", rate, "msg/s");
    emit("smtp_recipients_per_s", rate * RECIPIENTS as f64, "rcpt/s");
    emit("smtp_clients", connections as f64, "count");
    emit("smtp_window", elapsed_at_stop.as_secs_f64(), "s");
    let pages = bot.sent().len();
    emit("smtp_pages_sent", pages as f64, "count");

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "tocsin exited with {status}");
}
