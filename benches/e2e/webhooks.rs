//! Webhook throughput: the daemon (built in this process, so its SNS certificate fetch can be
//! pointed at the loopback SNS fake) takes signed SendGrid batches of 1,000 events and signed SES
//! notifications in batches of 1,000 (SNS posts one message per request), on 127.0.0.1.
//!
//! Two rates per provider, one JSON object per line:
//! - `webhook_events_per_s`: provider events from the first request to the pipeline having
//!   judged the last one (end to end: verified, committed, detected);
//! - `webhook_ack_events_per_s`: the same events up to the last 200 (committed to sled).
//!
//! Run: `cargo bench --bench e2e -- webhooks` (add `--quick` for a smaller load).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use tocsin::{
    App,
    config::{
        Email, Secret,
        email::{SendGridHook, SesHook},
    },
    store::Store,
};
use tocsin_fakes::{
    loopback_config,
    mail_signers::{SendGridSigner, sendgrid_events, ses_event},
    mastodon::FakeMastodon,
    sns::FakeSns,
    telegram::FakeBotApi,
};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";
const BATCH: usize = 1000;

fn emit(metric: &str, value: f64, unit: &str, provider: &str) {
    crate::common::record(&format!("{metric}[{provider}]"), value);
    println!(
        "{}",
        serde_json::json!({ "metric": metric, "value": value.round(), "unit": unit, "provider": provider })
    );
}

/// Posts every request with at most `parallel` in flight; panics on anything but 200.
async fn post_all(
    url: String,
    requests: Vec<(Vec<(&'static str, String)>, String)>,
    parallel: usize,
) {
    let client = reqwest::Client::new();
    let gate = Arc::new(Semaphore::new(parallel));
    let mut set = JoinSet::new();
    for (headers, body) in requests {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (client, url) = (client.clone(), url.clone());
        set.spawn(async move {
            let mut req = client
                .post(url)
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.expect("the daemon answers");
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            assert!(status.is_success(), "{status}: {text}");
            drop(permit);
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

async fn judged(store: &Store) {
    let last = store.inbox_last_seq().unwrap();
    while store.inbox_checkpoint().unwrap() < last {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs one provider's load and prints its two rates.
async fn measure(
    provider: &str,
    url: String,
    store: &Store,
    requests: Vec<(Vec<(&'static str, String)>, String)>,
    events: usize,
    parallel: usize,
) {
    let start = Instant::now();
    post_all(url, requests, parallel).await;
    let acked = start.elapsed();
    judged(store).await;
    let done = start.elapsed();
    emit(
        "webhook_events_per_s",
        events as f64 / done.as_secs_f64(),
        "events/s",
        provider,
    );
    emit(
        "webhook_ack_events_per_s",
        events as f64 / acked.as_secs_f64(),
        "events/s",
        provider,
    );
}

pub fn run(quick: bool) {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(measure_all(quick));
}

async fn measure_all(quick: bool) {
    let (sendgrid_batches, ses_batches) = if quick { (20, 1) } else { (200, 5) };

    let masto = FakeMastodon::start().await.unwrap();
    masto.add_account("1", "corp", "Corp", "", &[]);
    let bot = FakeBotApi::start("1:bench").await.unwrap();
    let sns = FakeSns::start().await.unwrap();
    let signer = SendGridSigner::new();
    let state = tempfile::tempdir().unwrap();
    let text = loopback_config(
        state.path(),
        &bot,
        &masto,
        "1",
        "bench-token",
        Duration::from_secs(60),
    );
    let mut config = tocsin::Config::parse(&text, "loopback").unwrap();
    config.email = Some(Email {
        ses: Some(SesHook {
            name: "ses".into(),
            topic_arns: vec![TOPIC.into()],
            confirm_subscriptions: false,
            max_age: Duration::from_secs(3600),
            campaign_tag: "campaign".into(),
            max_body: 1024 * 1024,
            certificates: Vec::new(),
        }),
        sendgrid: Some(SendGridHook {
            name: "sendgrid".into(),
            public_key: Secret::new(signer.public_key()),
            tolerance: Duration::from_secs(3600),
            max_body: 8 * 1024 * 1024,
        }),
        ..Default::default()
    });
    let app = App::build(config)
        .await
        .unwrap()
        .with_sns_client(sns.client());
    let base = format!("http://{}", app.http_addr());
    let store = app.store().clone();
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(app.run_until(shutdown.clone()));

    // SendGrid: each batch 500 messages × (processed, delivered) = 1,000 events, signed.
    let now = Utc::now();
    let requests: Vec<_> = (0..sendgrid_batches)
        .map(|i| {
            let at = now + chrono::Duration::microseconds(i as i64);
            let body = sendgrid_events(BATCH / 2, 1, "bench", at);
            let headers = signer.headers(body.as_bytes(), now).to_vec();
            (headers, body)
        })
        .collect();
    measure(
        "sendgrid",
        format!("{base}/hooks/sendgrid"),
        &store,
        requests,
        sendgrid_batches * BATCH,
        4,
    )
    .await;

    // SES: SNS delivers one signed notification per request; 1,000 of them per batch.
    let total = ses_batches * BATCH;
    let signed = {
        let sns = sns.clone();
        tokio::task::spawn_blocking(move || {
            (0..total)
                .map(|i| {
                    let to = vec![
                        format!("a{i}@example.net"),
                        format!("b{i}@example.org"),
                        format!("c{i}@example.com"),
                    ];
                    let msg = ses_event(
                        &format!("bench-{i}"),
                        "news@corp.example",
                        &to,
                        "Hi",
                        "bench",
                    );
                    let body = sns.notification(TOPIC, &msg, 2, Utc::now());
                    (FakeSns::headers(&body), body)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap()
    };
    measure(
        "ses",
        format!("{base}/hooks/ses"),
        &store,
        signed,
        total,
        // SNS delivers with many connections at once; each commit takes every waiting request.
        128,
    )
    .await;

    shutdown.cancel();
    let _ = daemon.await;
}
