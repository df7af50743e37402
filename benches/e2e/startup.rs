//! Start-up with a large approved log: the time from spawning the release binary to its
//! `/healthz` answering, on a state dir holding a million approvals (10,000 with `--quick`).
//! Nothing at start-up may scan the log: approvals are looked up through their indexes.

use std::time::{Duration, Instant};

use chrono::Utc;
use tocsin::store::{ApprovedEntry, Store};
use tocsin_fakes::telegram::FakeBotApi;

use crate::common::{emit, free_port, ms, spawn_daemon, stop_daemon};

pub fn run(quick: bool) {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(measure(quick));
}

async fn measure(quick: bool) {
    let entries: u64 = std::env::var("TOCSIN_BENCH_APPROVALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 10_000 } else { 1_000_000 });
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let filled = Instant::now();
    {
        let store = Store::open(&state).expect("open store");
        let at = Utc::now();
        for i in 0..entries {
            let entry = ApprovedEntry::ApprovedPost {
                account: "brand".into(),
                fingerprint: Some(tocsin::model::digest(&format!("approved post {i}"))),
                post_id: None,
                expires_at: None,
                by: "bench".into(),
                note: None,
            };
            store.approve(entry, at).expect("approve");
        }
        store.flush().await.expect("flush");
    }
    let fill = filled.elapsed();
    emit("startup.approved_entries", entries as f64, "count");
    emit(
        "startup.fill_rate",
        entries as f64 / fill.as_secs_f64(),
        "approvals/s",
    );
    let size: u64 = walk_size(&state);
    emit("startup.state_dir", size as f64 / 1_048_576.0, "MiB");

    let bot = FakeBotApi::start("1:bench").await.expect("fake Bot API");
    let port = free_port();
    let config = format!(
        "[general]\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\napi_token = \"bench\"\n\n\
         [telegram]\nbot_token = \"1:bench\"\napi_url = \"{}\"\nchat_id = -100\nresponders = [1]\n",
        state.display(),
        bot.url(),
    );
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config).expect("write config");
    // sled replays what was written since it last opened the database: the first start after
    // the million approvals were written in one run pays for that; later starts do not.
    let first = time_to_healthz(&path, port).await;
    emit("startup.first_after_bulk_write", ms(first), "ms");
    let again = time_to_healthz(&path, port).await;
    emit("startup.to_healthz", ms(again), "ms");
}

/// Spawns the daemon, waits for `/healthz`, stops it; the time to the first answer.
async fn time_to_healthz(config: &std::path::Path, port: u16) -> Duration {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let started = Instant::now();
    let daemon = spawn_daemon(config);
    loop {
        if let Ok(r) = http.get(&url).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the daemon never answered /healthz"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    assert!(stop_daemon(daemon), "tocsin did not exit cleanly");
    took
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
