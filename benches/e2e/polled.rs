//! Polled change → page: posts published on a fake Mastodon one at a time, paged by the
//! release binary polling every second. A post waits for the next poll (0 to one interval);
//! what tocsin adds on top of that wait is measured from the moment the fake first listed the
//! post to the poller (`over_interval`), and the whole latency from publication is printed too.

use std::time::{Duration, Instant};

use tocsin_fakes::{
    mastodon::{FakeMastodon, status_html},
    telegram::FakeBotApi,
};

use crate::common::{emit, emit_latencies, free_port, ms, percentile, spawn_daemon, stop_daemon};

const INTERVAL: Duration = Duration::from_secs(1);

pub fn run(quick: bool) {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(measure(quick));
}

async fn measure(quick: bool) {
    let posts = if quick { 3 } else { 40 };
    let masto = FakeMastodon::start().await.expect("fake Mastodon");
    let bot = FakeBotApi::start("1:bench").await.expect("fake Bot API");
    masto.add_account("42", "brand", "Brand", "<p>bio</p>", &[]);
    masto.set_rate_limit(1_000_000, Duration::from_secs(300));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "[general]\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:{}\"\napi_token = \"bench\"\n\n\
         [telegram]\nbot_token = \"1:bench\"\napi_url = \"{}\"\nchat_id = -100\nresponders = [1]\n\n\
         [grouping]\nwindow = \"0s\"\n\n\
         [[accounts]]\nname = \"brand\"\nplatform = \"mastodon\"\nbase_url = \"{}\"\n\
         account_id = \"42\"\npoll_interval = \"{}ms\"\n",
        dir.path().join("state").display(),
        free_port(),
        bot.url(),
        masto.url(),
        INTERVAL.as_millis(),
    );
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config).expect("write config");
    let daemon = spawn_daemon(&path);
    let deadline = Instant::now() + Duration::from_secs(30);
    while masto.request_count("/api/v1/accounts/42/statuses") < 2 {
        assert!(Instant::now() < deadline, "the daemon never polled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut latencies = Vec::with_capacity(posts);
    let mut over = Vec::with_capacity(posts);
    for k in 0..posts {
        let marker = format!("polled-bench-{k}");
        let published = Instant::now();
        let id = masto.publish("42", &status_html(&format!("{marker}: send 1 BTC")));
        let page = loop {
            if let Some(m) = bot.sent().into_iter().find(|m| m.text.contains(&marker)) {
                break m;
            }
            assert!(
                published.elapsed() < Duration::from_secs(30),
                "{marker} never paged"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        latencies.push(page.received_instant.duration_since(published));
        let served = masto.first_served(&id).expect("a paged post was listed");
        over.push(page.received_instant.duration_since(served));
        // Past Telegram's per-chat pacing (20 messages a minute), so each page goes out on its
        // own rather than waiting its turn, at an offset that walks through the poll cycle.
        tokio::time::sleep(Duration::from_millis(3_100 + (k as u64 * 137) % 400)).await;
    }
    emit("polled.poll_interval", ms(INTERVAL), "ms");
    emit_latencies("polled.change_to_page", &latencies);
    emit(
        "polled.over_interval.p50",
        ms(percentile(&over, 50.0)),
        "ms",
    );
    emit(
        "polled.over_interval.p99",
        ms(percentile(&over, 99.0)),
        "ms",
    );
    assert!(stop_daemon(daemon), "tocsin did not exit cleanly");
}
