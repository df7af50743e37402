//! A page survives Bot API failures and a killed daemon, and arrives exactly once.

use std::time::Duration;

use tocsin_fakes::{mastodon::status_html, telegram::Failure};

use crate::support::{daemon::*, *};

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

#[tokio::test]
async fn page_queued_when_the_daemon_is_killed_is_delivered_after_restart() {
    let (masto, bot, dir) = fakes().await;
    let config = write_config(dir.path(), &bot, &masto, "");

    let daemon = Daemon::spawn(&config, "warn", &[]);
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

    let _daemon = Daemon::spawn(&config, "warn", &[]);
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
