//! Isolation: push event → page while the mail inputs are flooded, beside the same figure idle,
//! in one run of the release binary. The account is a Mastodon account watched through its user
//! stream (polls an hour apart). Two figures per phase, for each rogue post:
//! - `judged`: publication at the fake → its incident committed (`opened_at`, from the API): the
//!   lanes' share, the queue in front of detect included;
//! - `paged`: publication at the fake → the page's arrival at the fake Bot API: the above, then
//!   the outbox and Telegram's per-chat pacing (about 1 message/s, 20/min). Posts are spaced
//!   3.1 s apart (1.1 s for the 3 of `--quick`) so that idle, no page waits for the pacer.
//!
//! The flood: 16 SMTP connections sending 1,000-recipient leaks to the journal back to back (one
//! sender: one burst incident whose page keeps being edited) and signed SendGrid batches of 1,000
//! events, 4 requests in flight, each as fast as the daemon answers. Measuring starts once the
//! burst's first page is out and the flood has run for a while. The burst's edits draw on the
//! same per-chat pacing as the posts' pages.
//!
//! Prints `isolation.{idle,flooded}.{judged,paged}.*` (count, p50, p99, max in ms), the flooded
//! p99 over the idle p99 for both, and what the flood achieved while the posts were measured.
//! Run: `cargo bench --bench e2e -- isolation` (20 posts each; `--quick`: 3 each).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tocsin_fakes::{
    flood::Flood,
    mail_signers::SendGridSigner,
    mastodon::{FakeMastodon, status_html},
    telegram::FakeBotApi,
};

use crate::common::{emit, emit_latencies, free_port, ms, percentile, spawn_daemon, stop_daemon};

const ACCOUNT_ID: &str = "4242";
const TOKEN: &str = "9:isolation-bench";
const READ: &str = "bench-read-token";
const API_TOKEN: &str = "bench";

pub fn run(quick: bool) {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(measure(quick));
}

struct Bench {
    masto: FakeMastodon,
    bot: FakeBotApi,
    http: SocketAddr,
    /// Between two posts: past the pacer's per-message spacing, and within its per-minute
    /// budget over the posts of a phase.
    spacing: Duration,
}

/// A phase's latencies: publication → incident committed, and → page.
struct Phase {
    judged: Vec<Duration>,
    paged: Vec<Duration>,
}

impl Bench {
    /// Publishes `n` rogue posts `spacing` apart, then waits for their pages.
    async fn posts(&self, phase: &str, n: usize) -> Phase {
        let mut published = Vec::with_capacity(n);
        for i in 0..n {
            let t0 = Instant::now();
            let marker = format!("{phase}-{i}-rogue");
            let wall = chrono::Utc::now();
            let id = self
                .masto
                .publish(ACCOUNT_ID, &status_html(&format!("{marker} scam.example")));
            let at = self.masto.changed_at(&id).expect("published");
            published.push((marker, id, wall, at));
            if i + 1 < n {
                tokio::time::sleep(self.spacing.saturating_sub(t0.elapsed())).await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut paged = Vec::with_capacity(n);
        for (marker, _, _, at) in &published {
            loop {
                if let Some(m) = self.bot.sent().iter().find(|m| m.text.contains(marker)) {
                    paged.push(m.received_instant.duration_since(*at));
                    break;
                }
                assert!(Instant::now() < deadline, "no page for {marker}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let incidents: serde_json::Value = reqwest::Client::new()
            .get(format!("http://{}/api/v1/incidents", self.http))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("the incidents API")
            .json()
            .await
            .expect("JSON");
        let incidents = incidents["incidents"].as_array().expect("incidents");
        let judged = published
            .iter()
            .map(|(marker, id, wall, _)| {
                let incident = incidents
                    .iter()
                    .find(|i| i["object"] == id.as_str())
                    .unwrap_or_else(|| panic!("no incident for {marker}"));
                let opened: chrono::DateTime<chrono::Utc> = incident["opened_at"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .expect("opened_at");
                (opened - *wall).to_std().unwrap_or_default()
            })
            .collect();
        Phase { judged, paged }
    }
}

/// Mail observations judged so far, from `/metrics`.
async fn mail_judged(http: SocketAddr) -> u64 {
    let Ok(r) = reqwest::get(format!("http://{http}/metrics")).await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("tocsin_observations_total{") && l.contains("kind=\"mail\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn measure(quick: bool) {
    let (posts, spacing, warmup) = if quick {
        (3, Duration::from_millis(1100), Duration::from_millis(500))
    } else {
        (20, Duration::from_millis(3100), Duration::from_secs(5))
    };
    let masto = FakeMastodon::start().await.expect("fake Mastodon");
    masto.add_account(ACCOUNT_ID, "corp", "Corp", "<p>Official</p>", &[]);
    masto.require_token(Some(READ.into()));
    let bot = FakeBotApi::start(TOKEN).await.expect("fake Bot API");
    let signer = Arc::new(SendGridSigner::new());
    let dir = tempfile::tempdir().expect("temp dir");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let journal: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = format!(
        "[general]\nstate_dir = \"{state}\"\nlisten = \"{http}\"\napi_token = \"{API_TOKEN}\"\n\n\
         [telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{bot}\"\nchat_id = -100\nresponders = [1]\nlong_poll = \"10s\"\n\n\
         [grouping]\nwindow = \"0s\"\n\n\
         [[accounts]]\nname = \"corp\"\nplatform = \"mastodon\"\nbase_url = \"{masto}\"\naccount_id = \"{ACCOUNT_ID}\"\n\
         poll_interval = \"1h\"\ntoken = \"{READ}\"\n\n\
         [email]\ninternal_domains = [\"exchange.example\"]\n\n\
         [email.journal]\nlisten = \"{journal}\"\n\n\
         [email.sendgrid]\npublic_key = \"{key}\"\ntolerance = \"1h\"\n",
        state = dir.path().join("state").display(),
        bot = bot.url(),
        masto = masto.url(),
        key = signer.public_key(),
    );
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config).expect("write config");
    let child = spawn_daemon(&path);
    let started = Instant::now();
    let statuses = format!("/api/v1/accounts/{ACCOUNT_ID}/statuses");
    // Ready: the stream open, the first poll done (what it lists is history), the listeners up.
    while masto.open_streams() == 0
        || masto.request_count(&statuses) == 0
        || tokio::net::TcpStream::connect(journal).await.is_err()
        || tokio::net::TcpStream::connect(http).await.is_err()
    {
        assert!(started.elapsed() < Duration::from_secs(30), "daemon not up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bench = Bench {
        masto,
        bot,
        http,
        spacing,
    };

    let idle = bench.posts("idle", posts).await;

    let flood = [
        Flood::journal(journal, 16, 1, 1000),
        Flood::sendgrid(
            format!("http://{http}/hooks/sendgrid"),
            signer.clone(),
            1000,
            4,
        ),
    ];
    // The burst's own first page out of the way (it is a new message like the posts' pages), and
    // the flood running for a while.
    let flood_started = Instant::now();
    while !bench
        .bot
        .sent()
        .iter()
        .any(|m| m.text.contains("email.exposed_recipients"))
        || flood_started.elapsed() < warmup
    {
        assert!(
            flood_started.elapsed() < Duration::from_secs(60),
            "the flood was never paged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (journal_before, events_before) = (flood[0].accepted(), flood[1].accepted());
    let judged_before = mail_judged(http).await;
    let t0 = Instant::now();
    let flooded = bench.posts("flooded", posts).await;
    let window = t0.elapsed().as_secs_f64();
    let (journal_after, events_after) = (flood[0].accepted(), flood[1].accepted());
    let judged_after = mail_judged(http).await;
    let [journal_flood, sendgrid_flood] = flood;
    let journal_count = journal_flood.stop().await;
    let sendgrid_count = sendgrid_flood.stop().await;

    for (figure, idle, flooded) in [
        ("judged", &idle.judged, &flooded.judged),
        ("paged", &idle.paged, &flooded.paged),
    ] {
        emit_latencies(&format!("isolation.idle.{figure}"), idle);
        emit_latencies(&format!("isolation.flooded.{figure}"), flooded);
        emit(
            &format!("isolation.{figure}.flooded_over_idle_p99"),
            ms(percentile(flooded, 99.0)) / ms(percentile(idle, 99.0)).max(0.001),
            "ratio",
        );
    }
    emit(
        "isolation.flood.journal_messages_per_s",
        (journal_after - journal_before) as f64 / window,
        "msg/s",
    );
    emit(
        "isolation.flood.sendgrid_events_per_s",
        (events_after - events_before) as f64 / window,
        "events/s",
    );
    emit(
        "isolation.flood.mail_judged_per_s",
        judged_after.saturating_sub(judged_before) as f64 / window,
        "obs/s",
    );
    emit(
        "isolation.flood.refused",
        (journal_count.refused + sendgrid_count.refused) as f64,
        "count",
    );
    emit(
        "isolation.flood.mail_backlog_at_start",
        (journal_before + events_before).saturating_sub(judged_before) as f64,
        "count",
    );
    emit(
        "isolation.flood.mail_backlog_at_end",
        (journal_after + events_after).saturating_sub(judged_after) as f64,
        "count",
    );
    assert!(stop_daemon(child), "tocsin exited cleanly");
}
