//! A disk that cannot take tocsin's writes: refusing to start, or alerting while running;
//! never dropping a page silently.

use std::time::Duration;

use tocsin_fakes::mastodon::status_html;

use crate::support::{daemon::*, *};

#[tokio::test]
async fn a_state_dir_that_cannot_be_written_refuses_to_start() {
    let (masto, bot, dir) = fakes().await;
    let config = write_config(dir.path(), &bot, &masto, "");
    let mut daemon = Daemon::spawn_with_file_limit(&config, "info", 0);
    let (code, _) = daemon.wait_exit(WAIT).await;
    assert_ne!(code, Some(0));
    let log = daemon.log_text();
    assert!(
        log.contains(&dir.path().join("state").display().to_string())
            && log.contains("File too large"),
        "{log}"
    );
    assert_eq!(
        masto.request_count("/api/v1/accounts"),
        0,
        "nothing watched"
    );
}

#[tokio::test]
async fn a_disk_that_fills_while_running_alerts_and_loses_nothing() {
    let (masto, bot, dir) = fakes().await;
    masto.set_rate_limit(1_000_000, Duration::from_secs(300));
    let config = write_config(dir.path(), &bot, &masto, "");
    let daemon = Daemon::spawn_with_file_limit(&config, "info", 64);
    until(
        || masto.request_count("/api/v1/accounts") >= 4,
        "the first polls",
    )
    .await;
    // A burst bigger than the disk: the scam posts of a takeover, two and a half pages of the
    // API's 40, so the restart has to read on from a cursor inside the burst.
    let ids: Vec<String> = (0..100)
        .map(|k| {
            masto.publish(
                ACCOUNT_ID,
                &status_html(&format!("disk-{k}: {}", "send 1 BTC ".repeat(40))),
            )
        })
        .collect();
    until(
        || {
            bot.sent()
                .iter()
                .any(|m| m.text.contains("cannot write its state database"))
        },
        "the alarm in the on-call chat",
    )
    .await;
    let addr = daemon.http_addr().await;
    let ready = reqwest::get(format!("{addr}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(
        body["checks"]["store"]
            .as_str()
            .is_some_and(|s| s.contains("refusing writes")),
        "{body}"
    );
    drop(daemon);

    // Room again: a restart reads the platform from the last committed cursor, so every post of
    // the burst ends up in an incident; none was marked seen without being recorded.
    let daemon = Daemon::spawn(&config, "info", &[]);
    let addr = daemon.http_addr().await;
    let client = reqwest::Client::new();
    let recorded = || async {
        let all: serde_json::Value = client
            .get(format!("{addr}/api/v1/incidents"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = all.to_string();
        ids.iter()
            .filter(|id| text.contains(&format!("\"{id}\"")))
            .count()
    };
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let n = recorded().await;
        if n == ids.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} of {} posts recorded after the restart",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
