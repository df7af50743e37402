//! The binary as operators run it: readiness, metrics, SIGTERM, and logs that hold no secret.

use std::{collections::HashMap, time::Duration};

use tocsin_fakes::{mastodon::status_html, telegram::Failure};

use crate::support::{daemon::*, *};

const MASTODON_TOKEN: &str = "mastodon-token-never-logged";

async fn readyz(base: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::get(format!("{base}/readyz")).await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Parses Prometheus/OpenMetrics text strictly enough to fail on a malformed line: every line
/// is a `# HELP|TYPE|UNIT|EOF` comment or `name{labels} value` with a float value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split_whitespace().next().unwrap_or_default();
            assert!(
                ["HELP", "TYPE", "UNIT", "EOF"].contains(&kind),
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels: {line}"
            );
        }
        out.insert(series.to_owned(), value);
    }
    out
}

#[tokio::test]
async fn readyz_follows_the_sources_and_metrics_move() {
    let (masto, bot, dir) = fakes().await;
    masto.require_token(Some("another-token".into()));
    let extra = "token = \"env:TOCSIN_TEST_MASTODON_TOKEN\"";
    let config = write_config(dir.path(), &bot, &masto, extra);
    let daemon = Daemon::spawn(
        &config,
        "info",
        &[("TOCSIN_TEST_MASTODON_TOKEN", MASTODON_TOKEN)],
    );
    let base = daemon.http_addr().await;

    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    // The container's HEALTHCHECK: the binary itself, since the image has no shell or curl.
    let healthcheck = |url: String| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["healthcheck", "--url", &url])
            .output()
            .await
            .unwrap();
        out.status.code()
    };
    assert_eq!(healthcheck(format!("{base}/healthz")).await, Some(0));
    until(
        || masto.request_count("/api/v1/accounts") >= 2,
        "refused polls",
    )
    .await;
    let (status, body) = readyz(&base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    let source = body["checks"][format!("source:{ACCOUNT}")]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(source, "no successful poll yet", "{body}");
    assert_eq!(
        healthcheck(format!("{base}/readyz")).await,
        Some(1),
        "not ready: non-zero"
    );

    // The token is accepted: the next poll succeeds and tocsin is ready.
    masto.require_token(Some(MASTODON_TOKEN.into()));
    let mut ready = false;
    for _ in 0..300 {
        let (status, body) = readyz(&base).await;
        if status == 200 {
            assert_eq!(body["checks"]["telegram"], "ok", "{body}");
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "never became ready");

    let scrape = || async {
        parse_metrics(
            &reqwest::get(format!("{base}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
    };
    // The refused token paged monitor.blind; it resolves itself now that polls succeed.
    let blind = bot
        .sent()
        .into_iter()
        .find(|m| m.text.contains("monitor.blind"))
        .expect("blind page");
    assert!(
        blind.text.contains("token was refused (401)"),
        "{}",
        blind.text
    );
    until(
        || {
            bot.message(CHAT, blind.message_id)
                .is_some_and(|m| m.text.contains("RESOLVED (contained) by tocsin"))
        },
        "monitor.blind resolved",
    )
    .await;
    // The fake shows the edit before the daemon has read Telegram's answer and counted the
    // delivery: take "before" once the polls are judged and the queue is empty (a delivery is
    // counted before its entry leaves the queue).
    let remote = quiet::Remote {
        api: base.clone(),
        bot: &bot,
    };
    quiet::settle(&remote, ACCOUNT, 1).await;
    let before = scrape().await;
    assert_eq!(before["tocsin_incidents{state=\"open\"}"], 0.0);
    let profiles = format!("tocsin_observations_total{{account=\"{ACCOUNT}\",kind=\"profile\"}}");
    masto.publish(ACCOUNT_ID, &status_html("send 1 BTC now"));
    until(
        || bot.sent().iter().any(|m| m.text.contains("send 1 BTC now")),
        "the page",
    )
    .await;
    quiet::settle(&remote, ACCOUNT, 1).await;
    let after = scrape().await;
    let grew = |name: &str| after[name] - before.get(name).copied().unwrap_or(0.0);
    assert!(after[&profiles] > before[&profiles], "observations grow");
    assert_eq!(
        after["tocsin_findings_total{rule=\"social.unapproved_post\"}"],
        1.0
    );
    assert_eq!(after["tocsin_incidents{state=\"open\"}"], 1.0);
    assert_eq!(grew("tocsin_pages_delivered_total"), 1.0);
    assert_eq!(grew("tocsin_detect_to_page_seconds_count"), 1.0);
    assert_eq!(grew("tocsin_change_to_page_seconds_count"), 1.0);
    assert_eq!(after["tocsin_outbox_depth"], 0.0);
    assert!(after[&format!("tocsin_source_poll_errors{{account=\"{ACCOUNT}\"}}")] >= 2.0);
    assert!(after.contains_key(&format!(
        "tocsin_source_rate_limit_remaining{{account=\"{ACCOUNT}\"}}"
    )));

    // A refused API call and a refused button press are counted.
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v1/incidents"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = reqwest::get(format!("{base}/api/v1/accounts"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no token");
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v1/accounts"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the configured token");
    let doc: serde_json::Value = reqwest::get(format!("{base}/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/approvals",
        "/api/v1/accounts",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    bot.press_button(CHAT, &outsider(), blind.message_id, "ack:1");
    until(|| bot.callback_answers().len() == 1, "the refusal").await;
    let last = scrape().await;
    assert_eq!(
        last["tocsin_rejected_requests{reason=\"api\"}"], 2.0,
        "wrong and missing token"
    );
    assert_eq!(last["tocsin_unauthorized_actions"], 1.0);

    // Nothing secret reached the logs, even at the most verbose level used here.
    let log = daemon.log_text();
    for secret in [BOT_TOKEN, API_TOKEN, MASTODON_TOKEN, "another-token"] {
        assert!(!log.contains(secret), "secret {secret:?} found in the log");
    }
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "JSON lines:\n{log}"
    );
    assert!(
        log.contains("\"message\":\"unauthorized action refused\""),
        "{log}"
    );
}

#[tokio::test]
async fn sigterm_with_a_queued_page_exits_promptly_and_the_next_start_delivers_it() {
    let (masto, bot, dir) = fakes().await;
    let config = write_config(dir.path(), &bot, &masto, "");
    let mut daemon = Daemon::spawn(&config, "debug", &[]);
    daemon.http_addr().await;
    until(
        || masto.request_count("/api/v1/accounts") >= 4,
        "the first polls",
    )
    .await;
    // Flood control: Telegram asks for 30 s, so the page waits in the outbox.
    bot.fail_next("sendMessage", Failure::RetryAfter(30));
    masto.publish(ACCOUNT_ID, &status_html("giveaway: send 1 BTC"));
    until(
        || bot.request_count("sendMessage") == 1,
        "the refused attempt",
    )
    .await;

    daemon.signal("TERM");
    let (code, took) = daemon.wait_exit(Duration::from_secs(12)).await;
    assert_eq!(code, Some(0), "clean exit; log:\n{}", daemon.log_text());
    eprintln!("shutdown after SIGTERM took {} ms", took.as_millis());
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(bot.sent().is_empty());
    let log = daemon.log_text();
    for secret in [BOT_TOKEN, API_TOKEN] {
        assert!(
            !log.contains(secret),
            "secret {secret:?} found in the debug log"
        );
    }

    let _daemon = Daemon::spawn(&config, "warn", &[]);
    until(|| bot.sent().len() == 1, "the page after restart").await;
    assert!(bot.sent()[0].text.contains("giveaway: send 1 BTC"));
}

#[tokio::test]
async fn sighup_reloads_accounts_keeps_state_and_refuses_a_bad_file() {
    let (masto, bot, dir) = fakes().await;
    masto.add_account(
        "2002",
        "examplecorp_support",
        "ExampleCorp Support",
        "<p>Support.</p>",
        &[],
    );
    let config = write_config(dir.path(), &bot, &masto, "");
    let daemon = Daemon::spawn(&config, "info", &[]);
    daemon.http_addr().await;
    until(
        || masto.request_count("/api/v1/accounts/109302") >= 4,
        "the first polls",
    )
    .await;
    masto.publish(ACCOUNT_ID, &status_html("send 1 BTC to get 2"));
    until(|| bot.sent().len() == 1, "the first page").await;

    let second = format!(
        "\n[[accounts]]\nname = \"support\"\nplatform = \"mastodon\"\nbase_url = \"{}\"\naccount_id = \"2002\"\npoll_interval = \"150ms\"\n",
        masto.url()
    );
    write_config(dir.path(), &bot, &masto, &second);
    daemon.signal("HUP");
    until(
        || masto.request_count("/api/v1/accounts/2002/statuses") >= 2,
        "the new account's polls",
    )
    .await;
    until(
        || daemon.log_text().contains("configuration reloaded"),
        "the reload log line",
    )
    .await;
    masto.publish("2002", &status_html("support giveaway: send 1 BTC"));
    until(|| bot.sent().len() == 2, "the second account's page").await;
    assert!(
        bot.sent()[1].text.contains("Incident #2"),
        "ids continue across the reload: {}",
        bot.sent()[1].text
    );
    // Both accounts polled and judged after the reload, everything queued sent: the first
    // post was not taken for new again.
    let remote = quiet::Remote {
        api: daemon.http_addr_of_run(2).await,
        bot: &bot,
    };
    quiet::settle(&remote, ACCOUNT, 1).await;
    let s = quiet::settle(&remote, "support", 1).await;
    assert_eq!(
        s.mentions("send 1 BTC to get 2").len(),
        1,
        "the first incident was not paged again: {:?}",
        s.sent
    );

    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("poll_interval", "pol_interval"),
    )
    .unwrap();
    daemon.signal("HUP");
    until(
        || daemon.log_text().contains("reload refused"),
        "the refusal",
    )
    .await;
    assert!(
        daemon.log_text().contains("pol_interval"),
        "the bad key is named"
    );
    let polls = masto.request_count("/api/v1/accounts/2002/statuses");
    until(
        || masto.request_count("/api/v1/accounts/2002/statuses") > polls + 2,
        "polling goes on",
    )
    .await;
}
