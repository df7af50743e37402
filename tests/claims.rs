//! What the README promises that no other file tests: each test names the sentence it holds
//! the product to.

use std::time::Duration;

use tocsin_fakes::{mastodon::status_html, pagerduty::FakePagerDuty, telegram::FakeUser};

use crate::{
    channels::with_pagerduty,
    support::{
        daemon,
        quiet::{self, until_async},
        *,
    },
};

/// README, PagerDuty: "429 and 5xx are retried with backoff (honouring `Retry-After`)". The
/// first backoff is a second: a retry three seconds later is the header's doing.
#[tokio::test]
async fn pagerduty_retry_after_is_waited_out_before_the_retry() {
    let pd = FakePagerDuty::start().await.unwrap();
    pd.fail_next_retry_after(429, 3);
    let app = spawn_app_with(with_pagerduty(&pd)).await;
    app.publish("giveaway! send 1 BTC https://evil.example/claim");
    until(|| !pd.events().is_empty(), "the trigger, after the 429").await;
    let arrivals = pd.arrivals();
    assert_eq!(arrivals.len(), 2, "one refused, one accepted");
    let waited = arrivals[1].duration_since(arrivals[0]);
    assert!(
        waited >= Duration::from_secs(3),
        "retried after {waited:?}, before the 3 s Retry-After"
    );
    assert!(waited < Duration::from_secs(5), "retried after {waited:?}");
    app.stop().await;
}

/// README, Mastodon: "`X-RateLimit-*` headers are honoured": at zero remaining the next poll
/// waits for the window's reset instead of earning a 429, and polling resumes after it.
#[tokio::test]
async fn mastodon_at_zero_remaining_waits_for_the_reset_without_a_429() {
    let app = spawn_app().await;
    // A new window of two requests, reset 3 s from now: the next poll spends it.
    let before = app.masto.requests().len();
    app.masto.set_rate_limit(2, Duration::from_secs(3));
    let window_start = std::time::Instant::now();
    until(
        || app.masto.requests().len() >= before + 2,
        "the window's two requests",
    )
    .await;
    let post = app.publish("giveaway! send 1 BTC https://evil.example/claim");
    until(
        || app.incident_by_object(&post).is_some(),
        "the rogue post judged after the reset",
    )
    .await;
    let judged_after = window_start.elapsed();
    assert_eq!(
        app.masto.over_limit(),
        0,
        "a request was sent over the limit"
    );
    assert!(
        judged_after >= Duration::from_secs(3),
        "judged {judged_after:?} after the window opened: the limit was not waited for"
    );
    assert!(judged_after < Duration::from_secs(6), "{judged_after:?}");
    app.wait_polls(2).await;
    assert_eq!(
        app.masto.over_limit(),
        0,
        "a request was sent over the limit"
    );
    app.stop().await;
}

/// README, SIGHUP: the reload reopens "the new accounts, chat and responders": after it, pages
/// go to the new chat, and only the new responders may act.
#[tokio::test]
async fn sighup_moves_pages_to_the_new_chat_and_hands_the_buttons_to_the_new_responders() {
    const NEW_CHAT: i64 = -1_009_990_001;
    let (masto, bot, dir) = daemon::fakes().await;
    let config = daemon::write_config(dir.path(), &bot, &masto, "");
    let daemon = daemon::Daemon::spawn(&config, "info", &[]);
    daemon.http_addr().await;
    let statuses = format!("/api/v1/accounts/{ACCOUNT_ID}/statuses");
    until(|| masto.request_count(&statuses) >= 2, "the first polls").await;
    let text = std::fs::read_to_string(&config).unwrap();
    let moved = text
        .replace(
            &format!("chat_id = {CHAT}"),
            &format!("chat_id = {NEW_CHAT}"),
        )
        .replace("responders = [111]", "responders = [222]");
    assert_ne!(moved, text, "the config names the chat and the responder");
    std::fs::write(&config, moved).unwrap();
    daemon.signal("HUP");
    until(
        || daemon.log_text().contains("configuration reloaded"),
        "the reload",
    )
    .await;

    masto.publish(
        ACCOUNT_ID,
        &status_html("send 1 BTC to get 2 https://evil.example"),
    );
    until(|| !bot.sent().is_empty(), "the page").await;
    let page = bot.sent()[0].clone();
    assert_eq!(
        page.chat_id, NEW_CHAT,
        "paged to the chat of before the reload"
    );
    let id: u64 = page
        .text
        .split("Incident #")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an incident number on the page: {}", page.text));

    // The responder of before the reload is an outsider now: refused, the page unchanged.
    bot.press_button(
        NEW_CHAT,
        &responder(),
        page.message_id,
        &format!("ack:{id}"),
    );
    until(
        || bot.callback_answers().len() == 1,
        "the answer to the old responder",
    )
    .await;
    let refusal = bot.callback_answers()[0].text.clone().unwrap_or_default();
    assert!(refusal.starts_with("Refused"), "{refusal}");
    let new_responder = FakeUser::new(222, "Bob", Some("bob_oncall"));
    bot.press_button(
        NEW_CHAT,
        &new_responder,
        page.message_id,
        &format!("ack:{id}"),
    );
    until(
        || {
            bot.message(NEW_CHAT, page.message_id)
                .is_some_and(|m| m.text.contains("ACKED"))
        },
        "the ack of the new responder",
    )
    .await;
    let answer = bot.callback_answers()[1].text.clone().unwrap_or_default();
    assert!(!answer.starts_with("Refused"), "{answer}");
    // Polled and judged again, everything queued sent: then nothing is in the old chat.
    let remote = quiet::Remote {
        api: daemon.http_addr_of_run(2).await,
        bot: &bot,
    };
    let s = quiet::settle(&remote, ACCOUNT, 1).await;
    assert!(
        s.sent.iter().all(|m| m.chat_id == NEW_CHAT),
        "nothing went to the old chat: {:?}",
        s.sent.iter().map(|m| m.chat_id).collect::<Vec<_>>()
    );
    let _ = (masto, dir);
}

/// The first cursor of a source ("everything up to here is history") is flushed at once, not
/// left to sled's periodic flush: killed right after its first poll, the restarted daemon does
/// not poll for the first time again, which would take a post published meanwhile for history.
#[tokio::test]
async fn a_kill_right_after_the_first_poll_does_not_turn_the_next_post_into_history() {
    let (masto, bot, dir) = daemon::fakes().await;
    let config = daemon::write_config(dir.path(), &bot, &masto, "");
    let daemon = daemon::Daemon::spawn(&config, "info,tocsin::app::pipeline=debug", &[]);
    let origin = format!("mastodon:{ACCOUNT}:origin");
    until(
        || {
            daemon
                .log_text()
                .lines()
                .any(|l| l.contains("a source's first cursor made durable") && l.contains(&origin))
        },
        "the first poll's cursor made durable",
    )
    .await;
    // Killed well inside sled's 200 ms flush period.
    drop(daemon);
    let rogue = masto.publish(ACCOUNT_ID, &status_html("send 1 BTC while tocsin was down"));
    let daemon = daemon::Daemon::spawn(&config, "info", &[]);
    until(
        || {
            bot.sent()
                .iter()
                .any(|m| m.text.contains("while tocsin was down"))
        },
        "the post published while tocsin was down, paged",
    )
    .await;
    let _ = (rogue, daemon, dir);
}

/// `/readyz` as the daemon in this process answers it: the status and the named checks.
async fn readyz(app: &TestApp) -> (u16, serde_json::Value) {
    let resp = reqwest::get(format!("{}/readyz", app.api)).await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// One check of `/readyz`: `"ok"` or what is wrong.
async fn ready_check(app: &TestApp, check: &str) -> String {
    let (_, body) = readyz(app).await;
    body["checks"][check]
        .as_str()
        .unwrap_or_else(|| panic!("no {check} check: {body}"))
        .to_owned()
}

/// A clock stopped at the real time now: the daemon's readiness judges ages against it.
fn stopped_clock() -> TestClock {
    TestClock::at(&chrono::Utc::now().to_rfc3339())
}

/// README, Health: "`outbox` fails when a page has waited more than 2 minutes in any
/// channel's queue" — and passes again once the page is delivered.
#[tokio::test]
async fn readyz_fails_outbox_for_a_page_queued_over_two_minutes_and_recovers_on_delivery() {
    let clock = stopped_clock();
    let app = spawn_app_at(|_| {}, clock.shared()).await;
    app.bot
        .fail_always("sendMessage", tocsin_fakes::telegram::Failure::Reset);
    app.publish("giveaway! send 1 BTC https://evil.example/claim");
    let queued = || app.store.outbox_depth().unwrap();
    until(|| queued().0 == 1, "the page queued").await;
    let oldest = queued().1.expect("a queued page has a time");

    clock.set(oldest + chrono::Duration::seconds(120));
    assert_eq!(
        ready_check(&app, "outbox").await,
        "ok",
        "2 minutes is not more"
    );
    clock.set(oldest + chrono::Duration::seconds(121));
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["checks"]["outbox"], "1 page(s) queued, oldest 121s",
        "{body}"
    );

    app.bot.clear_failures();
    until_async(
        || async { ready_check(&app, "outbox").await == "ok" },
        "the outbox check passing once the page is delivered",
    )
    .await;
    assert_eq!(queued().0, 0, "the page left the queue");
    assert!(!app.bot.sent().is_empty(), "the page reached the chat");
    app.stop().await;
}

/// README, Health: "`telegram` fails when no `getUpdates` succeeded for 3 × `long_poll` +
/// 30 s" (33 s at the tests' 1 s long poll) — and passes again after the next success.
#[tokio::test]
async fn readyz_fails_telegram_when_get_updates_fails_past_its_grace_and_recovers() {
    let clock = stopped_clock();
    let app = spawn_app_at(|_| {}, clock.shared()).await;
    let last_ok = || async {
        let text = reqwest::get(format!("{}/metrics", app.api))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("tocsin_bot_updates_last_ok_seconds "))
            .expect("the metric is served")
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    until_async(|| async { last_ok().await > 0 }, "a first getUpdates").await;
    let before = app.bot.request_count("getUpdates");
    app.bot
        .fail_always("getUpdates", tocsin_fakes::telegram::Failure::Reset);
    // The bot asks again only once it has handled the answer before: the long poll in flight
    // when the failures began has stored its success by the time a second request arrives.
    until(
        || app.bot.request_count("getUpdates") >= before + 2,
        "getUpdates failing",
    )
    .await;
    let last = last_ok().await;
    let at = |secs: i64| chrono::DateTime::from_timestamp(last + secs, 0).unwrap();

    clock.set(at(33));
    assert_eq!(
        ready_check(&app, "telegram").await,
        "ok",
        "33 s is the grace"
    );
    clock.set(at(34));
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["checks"]["telegram"], "last successful getUpdates 34s ago",
        "{body}"
    );

    // The clock stays 34 s after the last success: the next success moves it.
    app.bot.clear_failures();
    until_async(
        || async { ready_check(&app, "telegram").await == "ok" },
        "the telegram check passing after getUpdates succeeds again",
    )
    .await;
    assert!(last_ok().await > last, "a newer success");
    clock.set(chrono::Utc::now());
    until_async(
        || async { readyz(&app).await.0 == 200 },
        "readiness as a whole",
    )
    .await;
    app.stop().await;
}
