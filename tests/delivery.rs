//! A page survives Bot API failures and a killed daemon, and arrives exactly once.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use tocsin::fakes::{
    mastodon::{FakeMastodon, status_html},
    telegram::{Failure, FakeBotApi},
};

use crate::support::*;

#[tokio::test]
async fn bot_api_500_then_429_then_ok_delivers_exactly_once() {
    let app = spawn_app().await;
    app.bot.fail_next(
        "sendMessage",
        Failure::Status(500, "Internal Server Error".into()),
    );
    app.bot.fail_next("sendMessage", Failure::RetryAfter(1));
    app.publish("send 1 BTC now");
    until(|| app.bot.sent().len() == 1, "the page after the failures").await;
    app.wait_polls(3).await;
    assert_eq!(app.bot.sent().len(), 1, "delivered exactly once");
    assert_eq!(
        app.bot.request_count("sendMessage"),
        3,
        "500, 429, then the accepted one"
    );
    assert_eq!(
        app.store.outbox_depth().unwrap().0,
        0,
        "removed from the outbox once confirmed"
    );
    app.stop().await;
}

/// Kills the child on drop so a failing test leaves no daemon behind.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_daemon(config: &std::path::Path) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["run", "--config"])
        .arg(config)
        .env("TOCSIN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the tocsin binary");
    Daemon(child)
}

fn write_config(
    dir: &std::path::Path,
    bot: &FakeBotApi,
    masto: &FakeMastodon,
) -> std::path::PathBuf {
    let path = dir.join("tocsin.toml");
    let text = format!(
        r#"
[general]
state_dir = "{state}"
listen = "127.0.0.1:0"
api_token = "{API_TOKEN}"

[telegram]
bot_token = "{BOT_TOKEN}"
api_url = "{bot}"
chat_id = {CHAT}
responders = [111]
long_poll = "1s"

[[accounts]]
name = "{ACCOUNT}"
platform = "mastodon"
base_url = "{masto}"
account_id = "{ACCOUNT_ID}"
poll_interval = "150ms"
"#,
        state = dir.join("state").display(),
        bot = bot.url(),
        masto = masto.url(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn page_queued_when_the_daemon_is_killed_is_delivered_after_restart() {
    let masto = FakeMastodon::start().await.unwrap();
    masto.add_account(
        ACCOUNT_ID,
        "examplecorp",
        "ExampleCorp",
        "<p>Official account.</p>",
        &[],
    );
    let bot = FakeBotApi::start(BOT_TOKEN).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &bot, &masto);

    let daemon = spawn_daemon(&config);
    until(
        || masto.request_count("/api/v1/accounts") >= 4,
        "the first polls",
    )
    .await;
    // The first send hangs: the page is queued and in flight, never confirmed.
    bot.fail_next("sendMessage", Failure::Hang(Duration::from_secs(30)));
    masto.publish(ACCOUNT_ID, &status_html("giveaway: send 1 BTC"));
    until(
        || bot.request_count("sendMessage") == 1,
        "the first delivery attempt",
    )
    .await;
    drop(daemon); // SIGKILL
    assert!(bot.sent().is_empty());

    let _daemon = spawn_daemon(&config);
    until(|| bot.sent().len() == 1, "the page after restart").await;
    let polls = masto.request_count("/api/v1/accounts");
    until(
        || masto.request_count("/api/v1/accounts") >= polls + 6,
        "more polls",
    )
    .await;
    assert_eq!(
        bot.sent().len(),
        1,
        "delivered once, not re-detected after restart"
    );
    assert!(bot.sent()[0].text.contains("giveaway: send 1 BTC"));
}
