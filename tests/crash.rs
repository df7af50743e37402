//! SIGKILL mid-burst and Bot API outages: no committed page is lost, none is sent more than
//! twice, and queued pages keep their order.
//!
//! The run count and outage length are small in CI; `TOCSIN_CRASH_RUNS=20` and
//! `TOCSIN_OUTAGE_SECS=600` give the full figures (printed with --nocapture).

use std::time::{Duration, Instant};

use tocsin_fakes::{mastodon::status_html, telegram::FakeBotApi};

use crate::support::{daemon::*, *};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Pages that carry buttons are incident pages (replies and reminders have none).
fn pages_with(bot: &FakeBotApi, marker: &str) -> usize {
    bot.sent()
        .iter()
        .filter(|m| m.reply_markup.is_some() && m.text.contains(marker))
        .count()
}

#[tokio::test]
async fn sigkill_mid_burst_loses_no_page_and_sends_none_more_than_twice() {
    const POSTS: usize = 4;
    let runs = env_or("TOCSIN_CRASH_RUNS", 3);
    let (mut committed, mut delivered, mut duplicates, mut mid_burst) = (0, 0, 0, 0);
    let mut before_kill = Vec::new();
    for run in 0..runs {
        let (masto, bot, dir) = fakes().await;
        // One page per post, so every kill can land between pages.
        let config = write_config(dir.path(), &bot, &masto, "\n[grouping]\nwindow = \"0s\"\n");
        let daemon = Daemon::spawn(&config, "warn", &[]);
        until(
            || masto.request_count("/api/v1/accounts") >= 4,
            "the first polls",
        )
        .await;
        let markers: Vec<String> = (0..POSTS).map(|k| format!("crash-{run}-{k}")).collect();
        for m in &markers {
            masto.publish(ACCOUNT_ID, &status_html(&format!("{m}: send 1 BTC")));
        }
        // Pages go out about one a second: kill somewhere inside the burst.
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let nanos = clock.subsec_nanos() as u64 + run * 7919;
        tokio::time::sleep(Duration::from_millis(nanos % (POSTS as u64 * 1000))).await;
        // What the chat had when the kill landed: 0 or all of them is a kill outside the burst.
        let seen = markers.iter().filter(|m| pages_with(&bot, m) >= 1).count();
        drop(daemon); // SIGKILL
        before_kill.push(seen);
        if (1..POSTS).contains(&seen) {
            mid_burst += 1;
        }
        let daemon = Daemon::spawn(&config, "warn,tocsin::app=info", &[]);
        until(
            || markers.iter().all(|m| pages_with(&bot, m) >= 1),
            "every page after the restart",
        )
        .await;
        // Counted once the restarted daemon has judged its polls and sent everything it
        // queued: a page sent a third time would be in the chat by then.
        let remote = quiet::Remote {
            api: daemon.http_addr().await,
            bot: &bot,
        };
        quiet::settle(&remote, ACCOUNT, 2).await;
        // Committed: the incidents the store holds for the burst, read through the API.
        let text = serde_json::to_string(&quiet::api_incidents(&remote.api).await).unwrap();
        let stored = markers.iter().filter(|m| text.contains(m.as_str())).count();
        assert_eq!(stored, POSTS, "every post of the burst is an incident");
        committed += stored;
        for m in &markers {
            let n = pages_with(&bot, m);
            assert!((1..=2).contains(&n), "{m} paged {n} times");
            delivered += 1;
            duplicates += n - 1;
        }
    }
    eprintln!(
        "crash runs: {runs}, killed mid-burst: {mid_burst} (pages in the chat at each kill: \
         {before_kill:?} of {POSTS}), incidents committed: {committed}, pages delivered: \
         {delivered}, duplicates: {duplicates}"
    );
}

#[tokio::test]
async fn pages_queued_during_a_bot_api_outage_arrive_in_order_afterwards() {
    let outage = Duration::from_secs(env_or("TOCSIN_OUTAGE_SECS", 12));
    let app = spawn_app_with(|c| c.grouping.window = Duration::ZERO).await;
    // Every request breaks off from now on; the fake keeps its port for when it is back.
    app.bot.set_down(true);
    let calls = app.bot.request_count("getUpdates");
    until(
        || app.bot.request_count("getUpdates") > calls,
        "the bot meeting the outage",
    )
    .await;
    for k in 0..3 {
        app.publish(&format!("outage post {k}: send 1 BTC"));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    until(
        || app.store.outbox_depth().unwrap().0 == 3,
        "three pages queued",
    )
    .await;
    tokio::time::sleep(outage.saturating_sub(Duration::from_millis(1500))).await;

    app.bot.set_down(false);
    let bot = &app.bot;
    let back = Instant::now();
    until(
        || {
            bot.sent()
                .iter()
                .filter(|m| m.reply_markup.is_some())
                .count()
                == 3
        },
        "the queued pages",
    )
    .await;
    let delay = back.elapsed();
    let pages: Vec<String> = bot
        .sent()
        .into_iter()
        .filter(|m| m.reply_markup.is_some())
        .map(|m| m.text)
        .collect();
    for (k, text) in pages.iter().enumerate() {
        assert!(
            text.contains(&format!("outage post {k}")),
            "page {k} out of order: {text}"
        );
    }
    eprintln!(
        "after a {}s outage: all 3 queued pages delivered {} ms after the Bot API came back",
        outage.as_secs(),
        delay.as_millis()
    );
    // Backoff is capped at 8 s and pages are paced one a second.
    assert!(delay < Duration::from_secs(15), "took {delay:?}");
    // The fake sees a page before the daemon has read the answer and emptied its queue.
    until(
        || app.store.outbox_depth().unwrap().0 == 0,
        "the outbox emptied",
    )
    .await;
    app.stop().await;
}
