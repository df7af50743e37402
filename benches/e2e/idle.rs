//! Idle cost: the release binary watching 50 Mastodon accounts on a loopback fake, sampled from
//! /proc for 60 s (5 s with `--quick`). Prints one JSON object per line: metric, value, unit.
//!
//! Run: `cargo bench --bench e2e -- idle` (add `--quick` for 5 s).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use tocsin_fakes::{mastodon::FakeMastodon, telegram::FakeBotApi};

use crate::common::emit;

const ACCOUNTS: usize = 50;

/// Resident set size in KiB, from /proc/PID/status.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().ok();
    out.and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn run(quick: bool) {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(measure(quick));
}

async fn measure(quick: bool) {
    let window = if quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(60)
    };
    let masto = FakeMastodon::start().await.expect("fake Mastodon");
    let bot = FakeBotApi::start("1:bench").await.expect("fake Bot API");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = format!(
        "[general]\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\napi_token = \"bench\"\n\n\
         [telegram]\nbot_token = \"1:bench\"\napi_url = \"{}\"\nchat_id = -100\nresponders = [1]\n",
        dir.path().join("state").display(),
        bot.url()
    );
    for i in 0..ACCOUNTS {
        let id = format!("{}", 1000 + i);
        masto.add_account(
            &id,
            &format!("acct{i}"),
            "Bench",
            "<p>bio</p>",
            &[("Website", "https://example.com")],
        );
        masto.publish(&id, "<p>hello</p>");
        config += &format!(
            "\n[[accounts]]\nname = \"a{i}\"\nplatform = \"mastodon\"\nbase_url = \"{}\"\naccount_id = \"{id}\"\npoll_interval = \"15s\"\n",
            masto.url()
        );
    }
    masto.set_rate_limit(1_000_000, Duration::from_secs(300));
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config).expect("write config");

    let mut child = crate::common::spawn_daemon(&path);
    let pid = child.id();
    let started = Instant::now();
    while masto.request_count("/api/v1/accounts") < ACCOUNTS * 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "first polls did not complete"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    emit(
        "idle.first_poll_of_all_accounts",
        started.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );

    let ticks0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let mut peak = 0;
    while t0.elapsed() < window {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cpu_s = (cpu_ticks(pid) - ticks0) as f64 / ticks_per_second();
    emit("idle.accounts", ACCOUNTS as f64, "count");
    emit("idle.window", window.as_secs_f64(), "s");
    let end = rss_kib(pid);
    emit("idle.rss_end", end as f64 / 1024.0, "MiB");
    emit("idle.rss_peak", peak.max(end) as f64 / 1024.0, "MiB");
    emit(
        "idle.cpu",
        cpu_s / t0.elapsed().as_secs_f64() * 100.0,
        "percent_of_one_core",
    );

    let term = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = child.wait().expect("wait");
    emit(
        "idle.shutdown_after_sigterm",
        term.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );
    assert!(status.success(), "tocsin exited with {status}");
}
