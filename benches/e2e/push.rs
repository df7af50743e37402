//! Push latency: the release binary watching a Telegram channel on the loopback fake Bot API.
//! Channel posts are injected as `channel_post` updates; the daemon receives them through its
//! `getUpdates` long poll, judges them and pages.
//!
//! Two figures, because Telegram's per-chat flood limit (about 1 message/s, 20/min, which
//! `notify::Pacer` respects) caps pages, not pushes:
//! - `push_event_to_page_ms`: event → `sendMessage` received by the fake, for posts spaced
//!   1.1 s apart so that no page waits for the pacer (20 posts; 10 with `--quick`).
//! - `push_event_to_incident_ms`: event → incident committed to sled (returned by the API,
//!   which reads the store), for 1,000 posts (200 with `--quick`) injected back to back.
//!
//! Prints JSON lines `{"metric": …, "value": …, "unit": "ms", "n": …}` with p50, p99 and max.
//! Run: `cargo bench --bench e2e -- push` (add `--quick` for the short run).

use std::{
    collections::HashMap,
    process::Command,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tocsin::store::Store;
use tocsin_fakes::telegram::{FakeBotApi, FakeUser};

use crate::common::free_port;

const CHANNEL: i64 = -1005550001;
const TOKEN: &str = "77:push-bench";

fn emit_stats(metric: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let at = |q: f64| samples[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    for (name, v) in [
        ("p50", at(0.50)),
        ("p99", at(0.99)),
        ("max", samples[n - 1]),
    ] {
        crate::common::record(&format!("{metric}_{name}"), v);
        println!(
            "{}",
            serde_json::json!({ "metric": format!("{metric}_{name}"), "value": (v * 100.0).round() / 100.0, "unit": "ms", "n": n })
        );
    }
}

pub fn run(quick: bool) {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(measure(quick));
}

async fn measure(quick: bool) {
    let (paced, burst) = if quick { (10, 200) } else { (20, 1000) };
    let bot = FakeBotApi::start(TOKEN).await.expect("fake Bot API");
    bot.add_channel(CHANNEL, "Bench channel", &FakeUser::new(9, "Owner", None));
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let port = free_port();
    let config = format!(
        "[general]\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\napi_token = \"bench\"\n\n\
         [telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{url}\"\nchat_id = -100\nresponders = [1]\nlong_poll = \"10s\"\n\n\
         [grouping]\nwindow = \"0s\"\n\n\
         [[accounts]]\nname = \"channel\"\nplatform = \"telegram_channel\"\nbase_url = \"{url}\"\naccount_id = \"{CHANNEL}\"\npoll_interval = \"30s\"\n",
        state.display(),
        url = bot.url()
    );
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config).expect("write config");
    let mut child = crate::common::spawn_daemon(&path);
    let started = Instant::now();
    // Ready: the channel's first poll (getChatAdministrators) done and a long poll waiting.
    while bot.request_count("getChatAdministrators") == 0 || bot.request_count("getUpdates") < 2 {
        assert!(started.elapsed() < Duration::from_secs(30), "daemon not up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Phase 1: event → page, spaced so the pacer never holds a page.
    let mut page_ms = Vec::new();
    for i in 0..paced {
        let marker = format!("paced-{i}-scam");
        let t0 = Instant::now();
        bot.push_channel_post(CHANNEL, &format!("{marker} https://scam.example/{i}"));
        loop {
            if let Some(m) = bot.sent().into_iter().find(|m| m.text.contains(&marker)) {
                page_ms.push(m.received_instant.duration_since(t0).as_secs_f64() * 1000.0);
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no page for {marker}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(1100).saturating_sub(t0.elapsed())).await;
    }
    emit_stats("push_event_to_page_ms", page_ms);

    // Phase 2: a burst, event → incident committed. A watcher walks the incident ids through
    // the API as the burst is judged: an incident is committed when the API (which reads sled)
    // returns it, so the figure covers the transaction and its flush, plus at most one ~1 ms
    // poll of the watcher.
    let client = reqwest::Client::new();
    let watcher = tokio::spawn(watch_commits(
        client.clone(),
        format!("http://127.0.0.1:{port}/api/v1/incidents"),
        paced as u64 + 1,
        burst,
    ));
    let mut pushed: HashMap<String, DateTime<Utc>> = HashMap::new();
    for i in 0..burst {
        let at = Utc::now();
        let id = bot.push_channel_post(
            CHANNEL,
            &format!("burst-{i} scam https://scam.example/b{i}"),
        );
        pushed.insert(id.to_string(), at);
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let committed = tokio::time::timeout(Duration::from_secs(600), watcher)
        .await
        .expect("burst not judged within 600 s")
        .expect("watcher");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "tocsin exited with {status}");

    let mut incident_ms = Vec::new();
    for (object, seen) in &committed {
        let Some(at) = pushed.get(object) else {
            continue;
        };
        incident_ms.push((*seen - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    assert_eq!(
        incident_ms.len(),
        burst,
        "every burst post became an incident"
    );
    // The store after the stop agrees: one incident per post.
    let store = Store::open(&state).expect("open the bench store");
    let objects = store
        .incidents()
        .expect("incidents")
        .into_iter()
        .filter(|i| pushed.contains_key(&i.object))
        .count();
    assert_eq!(
        objects, burst,
        "the store holds one incident per burst post"
    );
    emit_stats("push_event_to_incident_ms", incident_ms);
}

/// Walks incident ids from `first` through `GET {url}/{id}` until `want` incidents were seen;
/// each incident's object with the time the API first returned it. The ids ahead are asked
/// `WINDOW` at a time, so the watcher keeps up with a burst committed faster than one request
/// at a time; an id that never appears (a transaction retried after taking one) is stepped over.
async fn watch_commits(
    client: reqwest::Client,
    url: String,
    first: u64,
    want: usize,
) -> Vec<(String, DateTime<Utc>)> {
    const WINDOW: u64 = 16;
    let fetch = |id: u64| {
        let req = client.get(format!("{url}/{id}")).bearer_auth("bench");
        async move {
            let r = req.send().await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            let v: serde_json::Value = r.json().await.ok()?;
            let object = v["object"].as_str()?.to_owned();
            Some((id, object, Utc::now()))
        }
    };
    let mut seen: HashMap<u64, (String, DateTime<Utc>)> = HashMap::new();
    let mut next = first;
    let mut idle = 0u32;
    while seen.len() < want {
        let ids: Vec<u64> = (next..next + WINDOW)
            .filter(|i| !seen.contains_key(i))
            .collect();
        let found = futures_util::future::join_all(ids.into_iter().map(fetch)).await;
        let mut any = false;
        for (id, object, at) in found.into_iter().flatten() {
            seen.insert(id, (object, at));
            any = true;
        }
        while seen.contains_key(&next) {
            next += 1;
        }
        idle = if any { 0 } else { idle + 1 };
        // A gap behind later ids: after a second without news, step over it.
        if idle > 1000 && seen.keys().any(|&i| i > next) {
            next += 1;
        }
        if !any {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    seen.into_values().collect()
}
