//! What an attacker or a careless operator can send: secrets must not come back out through
//! logs, the chat or the API; a client dripping a body is cut off. (Forged buttons, outsiders and
//! other chats are in `bot.rs`; API tokens in `api.rs`; a hand-edited log in `cli.rs`.)

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{daemon::*, *};

#[tokio::test]
async fn secrets_never_reach_the_log_the_chat_or_the_api() {
    let (masto, bot, dir) = fakes().await;
    let read_token = "mastodon-read-token-never-shown";
    let write_token = "mastodon-write-token-never-shown";
    masto.require_token(Some(read_token.into()));
    let config = write_config(
        dir.path(),
        &bot,
        &masto,
        "token = \"env:TOCSIN_TEST_READ\"\nwrite_token = \"env:TOCSIN_TEST_WRITE\"\n",
    );
    let daemon = Daemon::spawn(
        &config,
        "debug",
        &[
            ("TOCSIN_TEST_READ", read_token),
            ("TOCSIN_TEST_WRITE", write_token),
        ],
    );
    let addr = daemon.http_addr().await;
    until(
        || masto.request_count("/api/v1/accounts") >= 4,
        "the first polls",
    )
    .await;
    bot.push_command(CHAT, &responder(), "/status");
    until(
        || bot.sent().iter().any(|m| m.text.contains(ACCOUNT)),
        "the /status reply",
    )
    .await;
    let client = reqwest::Client::new();
    let mut seen = String::new();
    for path in [
        "/api/v1/accounts",
        "/api/v1/incidents",
        "/metrics",
        "/readyz",
        "/healthz",
    ] {
        let body = client
            .get(format!("{addr}{path}"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        seen += &body;
    }
    let check = tokio::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check-config", "--config"])
        .arg(&config)
        .env("TOCSIN_API_TOKEN", API_TOKEN)
        .env("TOCSIN_TELEGRAM_TOKEN", BOT_TOKEN)
        .env("TOCSIN_TEST_READ", read_token)
        .env("TOCSIN_TEST_WRITE", write_token)
        .output()
        .await
        .unwrap();
    assert!(check.status.success());
    seen += &String::from_utf8_lossy(&check.stdout);
    seen += &String::from_utf8_lossy(&check.stderr);
    for m in bot.sent() {
        seen += &m.text;
    }
    seen += &daemon.log_text();
    for secret in [read_token, write_token, API_TOKEN, BOT_TOKEN] {
        assert!(!seen.contains(secret), "secret {secret:?} disclosed");
    }
}

#[tokio::test]
async fn a_body_dripped_a_byte_at_a_time_is_cut_off() {
    let app = spawn_app().await;
    let addr = app.api.trim_start_matches("http://").to_owned();
    let addr = addr.split('/').next().unwrap().to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /api/v1/approvals HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // One byte every 200 ms: 4,000 bytes would take over 13 minutes.
    let drip = tokio::spawn(async move {
        while writer.write_all(b" ").await.is_ok() && started.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(20), reader.read(&mut answer))
        .await
        .expect("an answer before the client gave up")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < tocsin::http::REQUEST_DEADLINE + Duration::from_secs(3),
        "cut off after {:?}",
        started.elapsed()
    );
    drip.abort();
    app.stop().await;
}

#[tokio::test]
async fn headers_dripped_a_line_at_a_time_lose_the_connection() {
    let app = spawn_app().await;
    let addr = app.api.trim_start_matches("http://").to_owned();
    let addr = addr.split('/').next().unwrap().to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    // A new header line every 500 ms, never the blank line that ends them.
    let drip = tokio::spawn(async move {
        let mut k = 0;
        while writer
            .write_all(format!("X-Drip-{k}: x\r\n").as_bytes())
            .await
            .is_ok()
            && started.elapsed() < Duration::from_secs(40)
        {
            k += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(30), reader.read(&mut buf))
        .await
        .expect("the server closed the connection before the client gave up")
        .unwrap_or(0);
    assert!(
        n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        started.elapsed() < tocsin::http::HEADER_DEADLINE + Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
    drip.abort();
    app.stop().await;
}
