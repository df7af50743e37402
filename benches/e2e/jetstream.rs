//! Push latency: a Jetstream post event sent by the fake → the page's `sendMessage` received by
//! the fake Bot API, through the release binary (`tocsin run`) on loopback fakes.
//!
//! What is measured: each event is a new post on its own (grouping off), so each has a first
//! page of its own, and the time from the event leaving the fake Jetstream to that page's
//! `sendMessage` arriving is one sample. Telegram allows one message a second and twenty a
//! minute per chat, and the daemon paces itself accordingly; back-to-back events would measure
//! the pacer's queue, not the pipeline. So the events of one daemon are spaced 3.2 s apart (past
//! both limits), and to reach 2,000 samples in minutes rather than an hour, DAEMONS daemons run
//! side by side, each watching its own DID and paging its own chat (its own fake Bot API), with
//! their events interleaved. Polls are 10 minutes apart: every page comes from the push.
//!
//! Prints JSON lines: `{"metric": …, "value": …, "unit": …}`.
//! Run: `cargo bench --bench e2e -- jetstream` (2,000 events, ~2.5 min; `--quick`: 20 events).

use std::{
    process::{Child, Command},
    time::{Duration, Instant},
};

use tocsin_fakes::{bluesky::FakeBluesky, telegram::FakeBotApi};

use crate::common::emit;

const SPACING: Duration = Duration::from_millis(3200);

fn did(i: usize) -> String {
    format!("did:plc:bench{i:020}")
}

struct Daemon {
    bot: FakeBotApi,
    child: Child,
    _dir: tempfile::TempDir,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn run(quick: bool) {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(measure(quick));
}

async fn measure(quick: bool) {
    let (daemons, per_daemon) = if quick { (4, 5) } else { (50, 40) };
    let sky = FakeBluesky::start().await.expect("fake Bluesky");
    let mut running = Vec::new();
    for d in 0..daemons {
        let did = did(d);
        sky.add_account(&did, &format!("bench{d}.example.com"), "Bench", "bio");
        sky.publish(&did, "history");
        let token = format!("{}:bench", 1000 + d);
        let bot = FakeBotApi::start(&token).await.expect("fake Bot API");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "[general]\nstate_dir = \"{state}\"\nlisten = \"127.0.0.1:0\"\napi_token = \"bench\"\n\n\
             [telegram]\nbot_token = \"{token}\"\napi_url = \"{bot}\"\nchat_id = -100\nresponders = [1]\n\
             long_poll = \"5s\"\n\n[grouping]\nwindow = \"0s\"\n\n\
             [[accounts]]\nname = \"sky\"\nplatform = \"bluesky\"\nbase_url = \"{url}\"\n\
             account_id = \"{did}\"\npoll_interval = \"10m\"\nplc_url = \"{url}\"\n\
             jetstream_url = \"{ws}\"\nallow_private_endpoints = true\n",
            state = dir.path().join("state").display(),
            bot = bot.url(),
            url = sky.url(),
            ws = sky.jetstream_url(),
        );
        let path = dir.path().join("tocsin.toml");
        std::fs::write(&path, config).expect("write config");
        let child = crate::common::spawn_daemon(&path);
        running.push(Daemon {
            bot,
            child,
            _dir: dir,
        });
    }
    let start = Instant::now();
    while sky.open_streams() < daemons {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "streams did not connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    emit(
        "jetstream_daemons_connected_ms",
        start.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );

    // Interleave: one event every SPACING / daemons, round robin over the daemons.
    let tick = SPACING / daemons as u32;
    let total = daemons * per_daemon;
    let mut pending: Vec<(usize, String, Instant)> = Vec::with_capacity(total);
    let mut samples = Vec::with_capacity(total);
    let mut next = Instant::now();
    let collect = |pending: &mut Vec<(usize, String, Instant)>, samples: &mut Vec<f64>| {
        pending.retain(|(d, marker, sent)| {
            let got = running[*d]
                .bot
                .sent()
                .into_iter()
                .find(|m| m.text.contains(marker.as_str()));
            match got {
                Some(m) => {
                    samples.push(m.received_instant.duration_since(*sent).as_secs_f64() * 1000.0);
                    false
                }
                None => true,
            }
        });
    };
    for n in 0..total {
        let d = n % daemons;
        let marker = format!("bench-event-{n:05}");
        tokio::time::sleep_until(next.into()).await;
        next += tick;
        let sent = Instant::now();
        sky.publish(
            &did(d),
            &format!("{marker} claim at https://evil.example/{n}"),
        );
        pending.push((d, marker, sent));
        collect(&mut pending, &mut samples);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        collect(&mut pending, &mut samples);
    }
    for mut d in running {
        let _ = Command::new("kill")
            .args(["-TERM", &d.child.id().to_string()])
            .status();
        let _ = d.child.wait();
    }
    assert!(
        pending.is_empty(),
        "{} of {total} events never paged",
        pending.len()
    );
    samples.sort_by(f64::total_cmp);
    emit("jetstream_events", samples.len() as f64, "count");
    emit("jetstream_daemons", daemons as f64, "count");
    emit(
        "jetstream_event_to_page_ms_p50",
        percentile(&samples, 50.0),
        "ms",
    );
    emit(
        "jetstream_event_to_page_ms_p99",
        percentile(&samples, 99.0),
        "ms",
    );
    emit(
        "jetstream_event_to_page_ms_max",
        *samples.last().expect("samples"),
        "ms",
    );
}
