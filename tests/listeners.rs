//! The two HTTP listeners: with `general.hooks_listen` the webhooks are served there alone (with
//! `/healthz`), and `/metrics`, `/readyz` and the API stay on the private listener; each serves
//! at most `general.max_connections` connections at once.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use chrono::Utc;
use tocsin::{
    App,
    config::{Email, Secret, email::PostmarkHook},
};
use tocsin_fakes::{mail_signers::basic_auth, mastodon::FakeMastodon, telegram::FakeBotApi};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::support::{self, API_TOKEN, WAIT};

const USER: &str = "postmark";
const PASS: &str = "postmark-hook-password";
const MAX: usize = 3;

struct Listeners {
    main: String,
    hooks: String,
    shutdown: CancellationToken,
    _state: tempfile::TempDir,
    _fakes: (FakeMastodon, FakeBotApi),
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The daemon with a Postmark webhook, `hooks_listen` set (or not), `MAX` connections each.
async fn start(hooks_apart: bool) -> Listeners {
    let masto = FakeMastodon::start().await.unwrap();
    masto.add_account(support::ACCOUNT_ID, "examplecorp", "ExampleCorp", "", &[]);
    let bot = FakeBotApi::start(support::BOT_TOKEN).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut config = support::config(state.path(), &bot, &masto);
    config.general.max_connections = MAX;
    if hooks_apart {
        config.general.hooks_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    config.email = Some(Email {
        postmark: Some(PostmarkHook {
            name: "postmark".into(),
            username: USER.into(),
            password: Secret::new(PASS),
            max_body: 1024 * 1024,
        }),
        ..Default::default()
    });
    let app = App::build(config).await.unwrap();
    let (main, hooks) = (app.http_addr(), app.hooks_addr());
    assert_eq!(hooks_apart, main != hooks);
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until(shutdown.clone()));
    Listeners {
        main: format!("http://{main}"),
        hooks: format!("http://{hooks}"),
        shutdown,
        _state: state,
        _fakes: (masto, bot),
    }
}

/// The status of `GET url` with the API token, on a connection of its own.
async fn get(url: &str) -> u16 {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn post_delivery(base: &str) -> u16 {
    let body = serde_json::json!({
        "RecordType": "Delivery", "MessageID": format!("m-{}", Utc::now().timestamp_micros()),
        "Recipient": "a@example.net", "DeliveredAt": Utc::now(),
    });
    reqwest::Client::new()
        .post(format!("{base}/hooks/postmark"))
        .header("authorization", basic_auth(USER, PASS))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn with_hooks_listen_the_webhooks_port_serves_nothing_else() {
    let l = start(true).await;
    // What an outsider reaching the webhooks' port can ask for: the webhooks and /healthz.
    assert_eq!(post_delivery(&l.hooks).await, 200);
    assert_eq!(get(&format!("{}/healthz", l.hooks)).await, 200);
    for private in [
        "/metrics",
        "/readyz",
        "/api/v1/incidents",
        "/api/v1/accounts",
        "/api/v1/openapi.json",
    ] {
        assert_eq!(
            get(&format!("{}{private}", l.hooks)).await,
            404,
            "{private} on the webhooks' port"
        );
    }
    // The private listener keeps them, and no longer serves the webhooks.
    assert_eq!(get(&format!("{}/metrics", l.main)).await, 200);
    assert_eq!(get(&format!("{}/api/v1/incidents", l.main)).await, 200);
    assert_eq!(post_delivery(&l.main).await, 404);
    let text = metrics(&l.main).await;
    assert!(
        text.contains("tocsin_webhook_summaries_total{provider=\"postmark\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn without_hooks_listen_everything_is_on_one_listener() {
    let l = start(false).await;
    assert_eq!(post_delivery(&l.main).await, 200);
    assert_eq!(get(&format!("{}/metrics", l.main)).await, 200);
}

/// Opens `n` connections that send nothing, held until dropped.
async fn idle(base: &str, n: usize) -> Vec<TcpStream> {
    let addr = base.strip_prefix("http://").unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.unwrap());
    }
    out
}

/// Waits until `GET url` answers 200 (the server has seen closed connections go).
async fn until_served(url: &str) {
    let deadline = Instant::now() + WAIT;
    while get(url).await != 200 {
        assert!(Instant::now() < deadline, "{url} never served again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_on_each_listener() {
    let l = start(true).await;
    let refused = |listener: &str| {
        format!("tocsin_http_connections_refused_total{{listener=\"{listener}\"}}")
    };

    // The webhooks' port full of idle connections: one more is answered 503 and closed, and
    // the private listener, with a cap of its own, still answers.
    let held = idle(&l.hooks, MAX).await;
    let resp = reqwest::get(format!("{}/healthz", l.hooks)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.text().await.unwrap().contains("too many connections"));
    let text = metrics(&l.main).await;
    assert!(
        text.contains(&format!("{} 1\n", refused("hooks_listen"))),
        "{text}"
    );
    drop(held);
    until_served(&format!("{}/healthz", l.hooks)).await;
    assert_eq!(post_delivery(&l.hooks).await, 200);

    // The same on the private listener.
    let held = idle(&l.main, MAX).await;
    assert_eq!(get(&format!("{}/metrics", l.main)).await, 503);
    drop(held);
    until_served(&format!("{}/metrics", l.main)).await;
    // At least the 503 above; the waits for the server to see the idle ones go may add more.
    let text = metrics(&l.main).await;
    let count: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix(&refused("listen"))?.trim().parse().ok())
        .unwrap_or(0);
    assert!(count >= 1, "{text}");
}
