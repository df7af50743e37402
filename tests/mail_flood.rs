//! The social watch under a mail flood: the journal and the webhooks driven at their top rate
//! must not delay a rogue post's page. The daemon is the real binary in its own process, so the
//! flood and the watch compete for the machine as they would in production.

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

use crate::support::{daemon::Daemon, *};

const READ: &str = "masto-read-token";
/// Posts are paged at most about one a second (Telegram's per-chat pacing): spaced past it, a
/// page's latency is the daemon's, not the pacer's.
const SPACING: Duration = Duration::from_millis(1100);
/// Mail accepted but not yet judged when the rogue post is published: proof that the flood is
/// ahead of the judge, not merely running.
const BACKLOG: u64 = 2000;

/// The daemon watching one Mastodon account through its stream (polls an hour apart), with the
/// SMTP journal and the SendGrid webhook open.
struct Watched {
    masto: FakeMastodon,
    bot: FakeBotApi,
    daemon: Daemon,
    journal: SocketAddr,
    http: SocketAddr,
    signer: Arc<SendGridSigner>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

async fn start() -> Watched {
    let masto = FakeMastodon::start().await.unwrap();
    masto.add_account(ACCOUNT_ID, "examplecorp", "ExampleCorp", "<p>hi</p>", &[]);
    masto.require_token(Some(READ.into()));
    let bot = FakeBotApi::start(BOT_TOKEN).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let signer = Arc::new(SendGridSigner::new());
    let journal: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let path = dir.path().join("tocsin.toml");
    let text = format!(
        r#"
[general]
state_dir = "{state}"
listen = "{http}"
api_token = "env:TOCSIN_API_TOKEN"

[telegram]
bot_token = "env:TOCSIN_TELEGRAM_TOKEN"
api_url = "{bot}"
chat_id = {CHAT}
responders = [111]
long_poll = "1s"

[grouping]
window = "0s"

[[accounts]]
name = "{ACCOUNT}"
platform = "mastodon"
base_url = "{masto}"
account_id = "{ACCOUNT_ID}"
poll_interval = "1h"
token = "{READ}"

[email]
internal_domains = ["exchange.example"]

[email.journal]
listen = "{journal}"

[email.sendgrid]
public_key = "{key}"
tolerance = "1h"
"#,
        state = dir.path().join("state").display(),
        bot = bot.url(),
        masto = masto.url(),
        key = signer.public_key(),
    );
    std::fs::write(&path, text).unwrap();
    let daemon = Daemon::spawn(&path, "warn", &[]);
    let statuses = format!("/api/v1/accounts/{ACCOUNT_ID}/statuses");
    // The first poll's posts are history: publish only once it has completed.
    until(
        || masto.open_streams() >= 1 && masto.request_count(&statuses) >= 1,
        "the stream open and the first poll done",
    )
    .await;
    for addr in [journal, http] {
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "nothing listens on {addr}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Watched {
        masto,
        bot,
        daemon,
        journal,
        http,
        signer,
        _dir: dir,
    }
}

/// How long a rogue post took to be judged, and to be paged.
#[derive(Debug, Clone, Copy)]
struct Latency {
    /// From publication to its incident's commit (`opened_at`): the pipeline's share, the
    /// queue in front of detect included.
    recorded: Duration,
    /// From publication to the page's arrival at the Bot API: the recording, then the outbox
    /// and Telegram's pacing.
    paged: Duration,
    /// Messages and edits that reached the chat between the commit and the page.
    ahead: usize,
}

/// A rogue post as published.
struct Rogue {
    marker: String,
    id: String,
    wall: chrono::DateTime<chrono::Utc>,
    at: Instant,
}

impl Watched {
    /// Publishes a rogue post.
    fn publish(&self, marker: &str) -> Rogue {
        let wall = chrono::Utc::now();
        let id = self.masto.publish(
            ACCOUNT_ID,
            &status_html(&format!("{marker} at scam.example")),
        );
        Rogue {
            marker: marker.into(),
            at: self.masto.changed_at(&id).unwrap(),
            id,
            wall,
        }
    }

    /// Waits for the post's page; then reads when its incident was opened.
    async fn latency(&self, post: &Rogue) -> Latency {
        let deadline = Instant::now() + Duration::from_secs(120);
        let (paged, paged_at) = loop {
            let sent = self.bot.sent();
            if let Some(m) = sent.iter().find(|m| m.text.contains(&post.marker)) {
                break (m.received_instant.duration_since(post.at), m.received_at);
            }
            assert!(
                Instant::now() < deadline,
                "no page for {}; log:\n{}",
                post.marker,
                self.daemon.log_text()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let opened = self.opened_at(&post.id).await;
        // What reached the chat between the incident's commit and its page.
        let between = |at: chrono::DateTime<chrono::Utc>| at > opened && at < paged_at;
        let ahead = self
            .bot
            .sent()
            .iter()
            .filter(|m| between(m.received_at))
            .count()
            + self
                .bot
                .edits()
                .iter()
                .filter(|m| between(m.received_at))
                .count();
        Latency {
            recorded: (opened - post.wall).to_std().unwrap_or_default(),
            paged,
            ahead,
        }
    }

    /// When the incident of the post `object` was opened, from the API.
    async fn opened_at(&self, object: &str) -> chrono::DateTime<chrono::Utc> {
        quiet::api_incidents(&format!("http://{}", self.http))
            .await
            .into_iter()
            .find(|i| i.object == object)
            .unwrap_or_else(|| panic!("no incident for the post {object}"))
            .opened_at
    }

    /// Mail observations the daemon's pipeline has taken so far (`/metrics`).
    async fn mail_observed(&self) -> u64 {
        let text = reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("tocsin_observations_total{") && l.contains("kind=\"mail\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// The mail load of [`a_mail_flood_does_not_delay_a_rogue_posts_page`]: the journal's 1,000-
/// recipient leaks on 8 connections and SendGrid batches of 1,000 events, 4 at a time. Another
/// input (one 850,000-address message, a Mailgun burst) goes here; the measurement stays.
fn flood(w: &Watched) -> Vec<Flood> {
    vec![
        Flood::journal(w.journal, 8, 1, 1000),
        Flood::sendgrid(
            format!("http://{}/hooks/sendgrid", w.http),
            w.signer.clone(),
            1000,
            4,
        ),
    ]
}

/// What the lane split guarantees: the post is judged and its incident committed as fast
/// under the flood as idle. Its page then waits for Telegram's per-chat pacing, which the
/// flood's own burst page (edited as the burst grows) also draws on: printed, not asserted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_flood_does_not_delay_judging_or_paging_a_rogue_post() {
    let w = start().await;
    let mut idle = Vec::new();
    for i in 0..3 {
        let t0 = Instant::now();
        let post = w.publish(&format!("idle-{i}"));
        idle.push(w.latency(&post).await);
        tokio::time::sleep(SPACING.saturating_sub(t0.elapsed())).await;
    }
    let load = flood(&w);
    let accepted = |load: &[Flood]| load.iter().map(Flood::accepted).sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let observed = w.mail_observed().await;
        if accepted(&load) >= observed + BACKLOG {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flood never got ahead of the judge"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut posts = Vec::new();
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(SPACING).await;
        }
        posts.push(w.publish(&format!("flooded-{i}")));
    }
    let mut flooded = Vec::new();
    for post in &posts {
        flooded.push(w.latency(post).await);
    }
    let backlog_after = accepted(&load).saturating_sub(w.mail_observed().await);
    let mut counts = Vec::new();
    for f in load {
        counts.push(f.stop().await);
    }
    for (phase, latencies) in [("idle", &idle), ("flooded", &flooded)] {
        for l in latencies {
            eprintln!(
                "{phase}: judged in {:?}, paged in {:?}, {} messages ahead",
                l.recorded, l.paged, l.ahead
            );
        }
    }
    eprintln!("mail accepted {counts:?}; not yet judged after the posts: {backlog_after}");
    let worst_idle = idle.iter().map(|l| l.recorded).max().unwrap();
    for l in &flooded {
        assert!(
            l.recorded <= Duration::from_millis(1000).max(worst_idle * 4),
            "a rogue post waited {:?} to be judged under the mail flood (idle: {idle:?})",
            l.recorded
        );
        // The flood's own burst pages are edited as they grow; an edit never takes a slot
        // ahead of a new page, so at most what was already on its way (an edit, a ring) reaches
        // the chat between the rogue post's commit and its page, however slow the machine.
        assert!(
            l.ahead <= 2,
            "{} messages reached the chat before the rogue post's page (judged in {:?}, paged \
             in {:?})",
            l.ahead,
            l.recorded,
            l.paged
        );
    }
}
