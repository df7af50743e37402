//! `spawn_app()`: loopback fakes first, then the real daemon pointed at them on a temp sled dir.

pub mod daemon;
pub mod dovecot;
pub mod postfix;
pub mod quiet;

use std::time::{Duration, Instant};

use tocsin::{
    App, Config,
    model::{Incident, SharedClock},
    store::Store,
    watch::Health,
};
use tocsin_fakes::{
    loopback_config,
    mastodon::{FakeMastodon, status_html},
    telegram::{FakeBotApi, FakeUser},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const CHAT: i64 = tocsin_fakes::ONCALL_CHAT;
pub const OTHER_CHAT: i64 = -1009999999999;
pub const ACCOUNT: &str = tocsin_fakes::ACCOUNT;
pub const ACCOUNT_ID: &str = "109302";
pub const BOT_TOKEN: &str = "4242:test-bot-token-secret";
pub const API_TOKEN: &str = "test-api-token-secret";
pub const POLL: Duration = Duration::from_millis(150);
pub const WAIT: Duration = Duration::from_secs(30);

pub fn responder() -> FakeUser {
    FakeUser {
        id: 111,
        first_name: "Alice".into(),
        username: Some("alice".into()),
    }
}

/// A second responder, for what needs two (quorum).
pub fn second_responder() -> FakeUser {
    FakeUser {
        id: 222,
        first_name: "Bob".into(),
        username: Some("bob".into()),
    }
}

pub fn outsider() -> FakeUser {
    FakeUser {
        id: 666,
        first_name: "Mallory".into(),
        username: Some("mallory".into()),
    }
}

pub struct TestApp {
    pub api: String,
    pub bot: FakeBotApi,
    pub masto: FakeMastodon,
    pub store: Store,
    pub health: Health,
    pub shutdown: CancellationToken,
    pub handle: Option<JoinHandle<Result<(), tocsin::AppError>>>,
    pub state: tempfile::TempDir,
    /// The SMTP journal listener, when the config has `[email.journal]`.
    pub journal: Option<std::net::SocketAddr>,
}

pub fn config(state: &std::path::Path, bot: &FakeBotApi, masto: &FakeMastodon) -> Config {
    let text = loopback_config(state, bot, masto, ACCOUNT_ID, API_TOKEN, POLL);
    let mut config = Config::parse(&text, "loopback").expect("the loopback config parses");
    config.telegram.responders.push(second_responder().id);
    config
}

/// Fakes with one account that already has a post, the daemon started, the first polls done.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] with the config adjusted first (escalation, grouping, …).
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let (masto, bot, state) = fakes_with_history().await;
    start_with(masto, bot, state, tweak).await
}

/// [`spawn_app_with`], the daemon reading the time of day from `clock`.
pub async fn spawn_app_at(tweak: impl FnOnce(&mut Config), clock: SharedClock) -> TestApp {
    let (masto, bot, state) = fakes_with_history().await;
    start_at(masto, bot, state, tweak, Some(clock)).await
}

/// The watched account with one post from before tocsin, a Bot API, and a state dir.
async fn fakes_with_history() -> (FakeMastodon, FakeBotApi, tempfile::TempDir) {
    let masto = FakeMastodon::start().await.unwrap();
    masto.add_account(
        ACCOUNT_ID,
        "examplecorp",
        "ExampleCorp",
        "<p>Official account.</p>",
        &[("Website", "https://example.com")],
    );
    masto.publish(ACCOUNT_ID, &status_html("An old post from before tocsin"));
    let bot = FakeBotApi::start(BOT_TOKEN).await.unwrap();
    (masto, bot, tempfile::tempdir().unwrap())
}

/// A clock the test sets and moves: the daemon's time of day, whatever the real one.
#[derive(Debug, Clone)]
pub struct TestClock(std::sync::Arc<std::sync::Mutex<chrono::DateTime<chrono::Utc>>>);

impl TestClock {
    /// Stopped at `rfc3339` until moved.
    pub fn at(rfc3339: &str) -> TestClock {
        let t = chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&chrono::Utc);
        TestClock(std::sync::Arc::new(std::sync::Mutex::new(t)))
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }

    /// Stops the clock at `t`.
    pub fn set(&self, t: chrono::DateTime<chrono::Utc>) {
        *self.0.lock().unwrap() = t;
    }

    pub fn shared(&self) -> SharedClock {
        std::sync::Arc::new(self.clone())
    }
}

impl tocsin::model::Clock for TestClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().unwrap()
    }
}

/// Starts the daemon on existing fakes and state (used for restarts too).
pub async fn start_with(
    masto: FakeMastodon,
    bot: FakeBotApi,
    state: tempfile::TempDir,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    start_at(masto, bot, state, tweak, None).await
}

/// [`start_with`] with the daemon reading the time of day from `clock`.
pub async fn start_at(
    masto: FakeMastodon,
    bot: FakeBotApi,
    state: tempfile::TempDir,
    tweak: impl FnOnce(&mut Config),
    clock: Option<SharedClock>,
) -> TestApp {
    let mut config = config(state.path(), &bot, &masto);
    tweak(&mut config);
    let mut app = App::build(config).await.unwrap();
    if let Some(clock) = clock {
        app = app.with_clock(clock);
    }
    let api = format!("http://{}", app.http_addr());
    let journal = app.journal_addr();
    let store = app.store().clone();
    let health = app.health().clone();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run_until(shutdown.clone()));
    let t = TestApp {
        api,
        bot,
        masto,
        store,
        health,
        shutdown,
        handle: Some(handle),
        state,
        journal,
    };
    t.wait_polls(2).await;
    t
}

impl TestApp {
    /// Waits until `n` more polls of the watched account have been judged: their observations
    /// committed (or refused) by the pipeline, not just queued for it.
    pub async fn wait_polls(&self, n: u64) {
        self.wait_judged(ACCOUNT, n).await;
    }

    /// Waits until `n` more polls of `account` have been judged.
    pub async fn wait_judged(&self, account: &str, n: u64) {
        let judged = |h: &Health| h.snapshot().get(account).map_or(0, |s| s.judged_polls);
        let target = judged(&self.health) + n;
        until(|| judged(&self.health) >= target, "judged polls").await;
    }

    /// Proves the daemon judged `polls` more polls of the watched account and sent (or dropped)
    /// everything it queued, then reads what it did: see [`quiet`].
    pub async fn settle(&self, polls: u64) -> quiet::Settled {
        quiet::settle(self, ACCOUNT, polls).await
    }

    /// The text of the first page that contains `needle`, once there is one.
    pub async fn page_containing(&self, needle: &str, what: &str) -> String {
        let first = || {
            self.bot
                .sent()
                .into_iter()
                .find(|m| m.text.contains(needle))
        };
        until(|| first().is_some(), what).await;
        first().unwrap().text
    }

    pub fn incident_by_object(&self, object: &str) -> Option<Incident> {
        self.store
            .incidents()
            .unwrap()
            .into_iter()
            .find(|i| i.object == object)
    }

    pub async fn approve_text(&self, text: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/api/v1/approvals", self.api))
            .bearer_auth(API_TOKEN)
            .json(&serde_json::json!({ "account": ACCOUNT, "text": text }))
            .send()
            .await
            .unwrap()
    }

    /// `GET` on the API with the token: the status and the JSON body (null when not JSON).
    pub async fn api_get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", self.api))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    /// One series of `/metrics` (`name` with its labels as printed), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.api))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// `POST` of a JSON body on the API with the token.
    pub async fn api_post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.api))
            .bearer_auth(API_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    /// Runs `tocsin ARGS --url … --token …` against this daemon: exit success, stdout, stderr.
    /// Async, because the daemon answering it runs on the test's own runtime.
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(args)
            .args(["--url", &self.api, "--token", API_TOKEN])
            .env_remove("TOCSIN_API_TOKEN")
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn publish(&self, text: &str) -> String {
        self.masto.publish(ACCOUNT_ID, &status_html(text))
    }

    /// Stops the daemon gracefully and waits for it; the fakes and state stay.
    pub async fn stop(mut self) -> (FakeMastodon, FakeBotApi, tempfile::TempDir) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        (self.masto, self.bot, self.state)
    }
}

/// Polls `f` until true; panics naming `what` after [`WAIT`].
pub async fn until(f: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
