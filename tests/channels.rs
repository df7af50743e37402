//! Fallback channels, Telegram outages and signs of life.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tocsin::{
    Config,
    config::{Heartbeat, PagerDutyChannel, Secret, WebhookChannel},
    model::{Resolution, Rule, Severity, State},
};
use tocsin_fakes::{pagerduty::FakePagerDuty, telegram::Failure, webhook::FakeReceiver};

use crate::support::*;

/// PagerDuty checks the length: 32 characters, like a real integration key.
pub const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";
const WEBHOOK_SECRET: &str = "webhook-secret-never-logged";

pub fn with_pagerduty(pd: &FakePagerDuty) -> impl FnOnce(&mut Config) {
    let url = pd.url();
    move |c: &mut Config| {
        c.channels.pagerduty.push(PagerDutyChannel {
            name: "ops".into(),
            routing_key: Secret::new(ROUTING_KEY),
            api_url: url,
            severities: None,
        })
    }
}

fn actions(pd: &FakePagerDuty) -> Vec<(String, String)> {
    pd.actions()
}

fn action(a: &str, id: u64) -> (String, String) {
    (a.to_owned(), format!("tocsin-{id}"))
}

#[tokio::test]
async fn pagerduty_follows_the_incident_from_trigger_to_resolve() {
    let pd = FakePagerDuty::start().await.unwrap();
    let app = spawn_app_with(with_pagerduty(&pd)).await;
    let post = app.publish("giveaway! send 1 BTC https://evil.example/claim");
    until(
        || !pd.events().is_empty() && app.bot.sent().len() == 1,
        "the trigger and the Telegram page",
    )
    .await;
    let id = app.incident_by_object(&post).unwrap().id;
    let trigger = &pd.events()[0];
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], format!("tocsin-{id}"));
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["component"], ACCOUNT);
    let summary = trigger["payload"]["summary"].as_str().unwrap();
    assert!(summary.contains("send 1 BTC"), "{summary}");
    assert_eq!(trigger["payload"]["custom_details"]["id"], id);

    app.bot
        .push_command(CHAT, &responder(), &format!("/ack {id}"));
    until(|| pd.events().len() == 2, "the acknowledge").await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/resolve {id}"));
    until(|| pd.events().len() == 3, "the resolve").await;
    for event in pd.events() {
        let errors = tocsin_fakes::pagerduty::validate(&event);
        assert!(errors.is_empty(), "{errors:?}: {event}");
    }
    app.wait_polls(3).await;
    assert_eq!(
        actions(&pd),
        vec![
            action("trigger", id),
            action("acknowledge", id),
            action("resolve", id)
        ],
        "the alert follows the incident, once per state"
    );
    let pages = app
        .bot
        .sent()
        .into_iter()
        .filter(|m| m.text.contains("social.unapproved_post"))
        .count();
    assert_eq!(
        pages, 1,
        "Telegram still has its one page (the rest are replies)"
    );
    // Edited in place to the resolved state: the ack and the resolve may be one edit when
    // they come within the pacing second.
    let page = app.bot.sent()[0].message_id;
    until(
        || {
            app.bot
                .message(CHAT, page)
                .is_some_and(|m| m.text.contains("RESOLVED"))
        },
        "the page edited to the resolved state",
    )
    .await;
    until(
        || app.store.outbox_depth().unwrap().0 == 0,
        "every queue drained once confirmed",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn pagerduty_429_and_500_are_retried_and_400_is_not() {
    let pd = FakePagerDuty::start().await.unwrap();
    let app = spawn_app_with(with_pagerduty(&pd)).await;
    pd.fail_next(429);
    pd.fail_next(500);
    let first = app.publish("send 1 BTC now");
    until(|| pd.events().len() == 1, "the trigger after 429 and 500").await;
    assert_eq!(pd.requests(), 3, "429, 500, then the accepted one");
    let id = app.incident_by_object(&first).unwrap().id;
    assert_eq!(actions(&pd), vec![action("trigger", id)]);

    // An event PagerDuty refuses as invalid is dropped, not retried: here the acknowledge.
    pd.fail_next(400);
    app.bot
        .push_command(CHAT, &responder(), &format!("/ack {id}"));
    until(|| pd.requests() == 4, "the refused acknowledge").await;
    until(
        || app.store.outbox_depth().unwrap().0 == 0,
        "the refused page dropped",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pd.requests(), 4, "a 400 is not retried");
    assert_eq!(pd.events().len(), 1, "delivered once");
    let metrics = reqwest::get(format!("{}/metrics", app.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"tocsin_channel_deliveries_total{channel="pagerduty:ops"} 1"#,
        r#"tocsin_channel_failures_total{channel="pagerduty:ops",reason="retry"} 2"#,
        r#"tocsin_channel_failures_total{channel="pagerduty:ops",reason="rejected"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn severities_filter_what_reaches_a_channel() {
    let pd = FakePagerDuty::start().await.unwrap();
    let url = pd.url();
    let app = spawn_app_with(move |c| {
        c.channels.pagerduty.push(PagerDutyChannel {
            name: "ops".into(),
            routing_key: Secret::new(ROUTING_KEY),
            api_url: url,
            severities: Some(vec![Severity::High]),
        })
    })
    .await;
    app.publish("a critical rogue post");
    until(|| app.bot.sent().len() == 1, "the Telegram page").await;
    app.wait_polls(3).await;
    assert_eq!(
        pd.requests(),
        0,
        "critical is not in this channel's severities"
    );
    app.stop().await;
}

fn hmac_hex(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn webhook_posts_the_incident_signed_and_retries_5xx() {
    let hook = FakeReceiver::start().await.unwrap();
    let url = hook.url("hooks/tocsin");
    let app = spawn_app_with(move |c| {
        c.channels.webhook.push(WebhookChannel {
            name: "soc".into(),
            url,
            secret: Secret::new(WEBHOOK_SECRET),
            severities: None,
        })
    })
    .await;
    hook.fail_next(503);
    let post = app.publish("giveaway! send 1 BTC");
    until(|| hook.received().len() == 1, "the webhook after a 503").await;
    assert_eq!(hook.requests(), 2);
    let got = &hook.received()[0];
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/hooks/tocsin");
    let ts = got.header("x-tocsin-timestamp").unwrap().to_owned();
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "a current unix timestamp: {ts}");
    let sig = got.header("x-tocsin-signature").unwrap();
    assert_eq!(
        sig,
        format!("v1={}", hmac_hex(WEBHOOK_SECRET, &ts, &got.body))
    );
    assert_ne!(
        sig,
        format!("v1={}", hmac_hex("another-secret", &ts, &got.body)),
        "a wrong secret does not verify"
    );
    assert!(!tocsin::notify::webhook::verify(
        b"another-secret",
        ts.parse().unwrap(),
        &got.body,
        sig
    ));
    let body = got.json();
    let inc = app.incident_by_object(&post).unwrap();
    assert_eq!(body["id"], inc.id);
    assert_eq!(body["rule"], "social.unapproved_post");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["account"], ACCOUNT);
    assert_eq!(body["object"], post);
    assert_eq!(body["state"], "open");
    assert_eq!(body["evidence"]["text"], "giveaway! send 1 BTC");
    assert!(body["timeline"].as_array().is_some_and(|t| !t.is_empty()));

    hook.fail_next(404);
    app.bot
        .push_command(CHAT, &responder(), &format!("/ack {}", inc.id));
    until(|| hook.requests() == 3, "the refused update").await;
    until(
        || app.store.outbox_depth().unwrap().0 == 0,
        "the refused update dropped",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.requests(), 3, "a 404 is not retried");
    app.stop().await;
}

#[tokio::test]
async fn telegram_401_pages_pagerduty_about_telegram_and_resolves_when_it_heals() {
    let pd = FakePagerDuty::start().await.unwrap();
    let app = spawn_app_with(with_pagerduty(&pd)).await;
    for _ in 0..2 {
        app.bot
            .fail_next("sendMessage", Failure::Status(401, "Unauthorized".into()));
    }
    let post = app.publish("giveaway! send 1 BTC");
    let rogue = loop {
        if let Some(i) = app.incident_by_object(&post) {
            break i.id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let key = tocsin::notify::telegram_down_key(CHAT);
    until(
        || app.store.incident_by_key(&key).unwrap().is_some(),
        "the telegram_down incident",
    )
    .await;
    let down = app.store.incident_by_key(&key).unwrap().unwrap();
    assert_eq!(down.rule, Rule::TelegramDown);
    assert_eq!(down.severity, Severity::Critical);
    assert_eq!(down.account, "telegram");
    assert_eq!(down.object, CHAT.to_string());
    until(
        || pd.actions().contains(&action("trigger", down.id)),
        "PagerDuty hears that Telegram is down",
    )
    .await;
    // Telegram accepts the third attempt: the page arrives and the outage is over.
    until(|| app.bot.sent().len() == 1, "the page once Telegram heals").await;
    until(
        || pd.actions().contains(&action("resolve", down.id)),
        "the telegram_down alert resolved",
    )
    .await;
    let down = app.store.incident(down.id).unwrap().unwrap();
    assert_eq!(down.state, State::Resolved);
    assert_eq!(down.resolution, Some(Resolution::Contained));
    assert_eq!(down.resolved_by.unwrap().name, "tocsin");
    // Everything queued has gone out (or was dropped) by now: had the outage been queued
    // for Telegram too, its page would be in the chat.
    let s = app.settle(2).await;
    assert_eq!(s.sent.len(), 1, "the outage is never queued for Telegram");
    assert!(s.sent[0].text.contains("send 1 BTC"));
    s.assert_not_mentioned(
        "notify.telegram_down",
        "the outage is never queued for Telegram",
    );
    assert!(pd.actions().contains(&action("trigger", rogue)));
    app.stop().await;
}

#[tokio::test]
async fn telegram_failing_past_the_grace_counts_as_down() {
    let pd = FakePagerDuty::start().await.unwrap();
    let add_pd = with_pagerduty(&pd);
    let app = spawn_app_with(|c| {
        add_pd(c);
        c.telegram.failure_grace = Duration::from_secs(1);
    })
    .await;
    // Refusals that could heal (not 401/403/chat not found): down only once the grace is over.
    for _ in 0..3 {
        app.bot.fail_next(
            "sendMessage",
            Failure::Status(400, "Bad Request: message text is empty".into()),
        );
    }
    app.publish("giveaway! send 1 BTC");
    let key = tocsin::notify::telegram_down_key(CHAT);
    until(
        || app.store.incident_by_key(&key).unwrap().is_some(),
        "the telegram_down incident",
    )
    .await;
    let down = app.store.incident_by_key(&key).unwrap().unwrap();
    assert!(
        app.bot.request_count("sendMessage") >= 2,
        "not declared on the first refusal"
    );
    let tocsin::model::Evidence::Channel { problem, .. } = &down.evidence else {
        panic!("channel evidence: {:?}", down.evidence)
    };
    assert!(problem.contains("failing for"), "{problem}");
    until(|| app.bot.sent().len() == 1, "the page once Telegram heals").await;
    until(
        || pd.actions().contains(&action("resolve", down.id)),
        "the outage resolved",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn telegram_down_without_fallback_shows_in_readyz() {
    let app = spawn_app_with(|c| c.telegram.failure_grace = Duration::from_secs(1)).await;
    for _ in 0..3 {
        app.bot.fail_next(
            "sendMessage",
            Failure::Status(
                403,
                "Forbidden: bot was kicked from the supergroup chat".into(),
            ),
        );
    }
    app.publish("giveaway! send 1 BTC");
    let readyz = || async {
        let r = reqwest::get(format!("{}/readyz", app.api)).await.unwrap();
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.unwrap())
    };
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = readyz().await;
        let check = body["checks"]["telegram"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if check.contains("no fallback channel") {
            assert_eq!(status, 503, "{body}");
            assert!(
                check.contains("removed from the chat or blocked"),
                "{check}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readyz never said it: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until(|| app.bot.sent().len() == 1, "the page once Telegram heals").await;
    // The fake records the page before the daemon has read Telegram's answer: wait for it.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, body) = readyz().await;
        if body["checks"]["telegram"] == "ok" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "telegram check never cleared: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn heartbeat_pings_at_its_interval_and_the_daily_summary_is_sent_once() {
    let monitor = FakeReceiver::start().await.unwrap();
    // The daemon's clock says 12:00:30 (whatever the real time): the summary set for 12:00
    // is due at start, and not again after a restart the same day.
    let clock = TestClock::at("2024-05-14T12:00:30Z");
    let at = chrono::NaiveTime::from_hms_opt(12, 0, 0).unwrap();
    let heartbeat = Heartbeat {
        url: Some(Secret::new(monitor.url("ping/abc").to_string())),
        interval: Duration::from_millis(200),
        daily_summary: Some(at),
    };
    let hb = heartbeat.clone();
    monitor.fail_next(503);
    let app = spawn_app_at(move |c| c.heartbeat = Some(hb), clock.shared()).await;
    until(|| monitor.received().len() >= 5, "five heartbeats").await;
    let metrics = reqwest::get(format!("{}/metrics", app.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tocsin_heartbeats_total ")
                && l[24..].trim().parse::<f64>().unwrap() >= 5.0),
        "{metrics}"
    );
    let pings = monitor.received();
    assert!(
        pings
            .iter()
            .all(|p| p.method == "GET" && p.path == "/ping/abc")
    );
    for pair in pings.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(150),
            "pinged too early: {gap:?}"
        );
    }
    let summaries = |app: &TestApp| {
        app.bot
            .sent()
            .into_iter()
            .filter(|m| m.text.contains("daily summary"))
            .collect::<Vec<_>>()
    };
    until(|| summaries(&app).len() == 1, "the daily summary").await;
    let text = summaries(&app)[0].text.clone();
    assert!(text.contains("all quiet"), "{text}");
    assert_eq!(summaries(&app)[0].chat_id, CHAT);

    let (masto, bot, state) = app.stop().await;
    clock.advance(chrono::Duration::minutes(5));
    let app = start_at(
        masto,
        bot,
        state,
        move |c| c.heartbeat = Some(heartbeat),
        Some(clock.shared()),
    )
    .await;
    let before = monitor.received().len();
    until(
        || monitor.received().len() >= before + 3,
        "heartbeats after restart",
    )
    .await;
    assert_eq!(summaries(&app).len(), 1, "not sent twice across a restart");

    // The next day at the same hour it is due again: the check after a restart is a real one.
    let (masto, bot, state) = app.stop().await;
    clock.advance(chrono::Duration::days(1));
    let hb = Heartbeat {
        url: None,
        interval: Duration::from_millis(200),
        daily_summary: Some(at),
    };
    let app = start_at(
        masto,
        bot,
        state,
        move |c| c.heartbeat = Some(hb),
        Some(clock.shared()),
    )
    .await;
    until(|| summaries(&app).len() == 2, "the next day's summary").await;
    app.stop().await;
}

#[tokio::test]
async fn channel_secrets_stay_out_of_the_debug_log() {
    use tocsin_fakes::mastodon::status_html;

    use crate::support::daemon::*;

    let (masto, bot, dir) = fakes().await;
    let pd = FakePagerDuty::start().await.unwrap();
    let hook = FakeReceiver::start().await.unwrap();
    let ping_token = "ping-token-never-logged";
    let extra = format!(
        r#"
[[channels.pagerduty]]
name = "ops"
routing_key = "env:TOCSIN_TEST_ROUTING_KEY"
api_url = "{pd}"

[[channels.webhook]]
name = "soc"
url = "{hook}"
secret = "env:TOCSIN_TEST_WEBHOOK_SECRET"

[heartbeat]
url = "env:TOCSIN_TEST_HEARTBEAT_URL"
interval = "200ms"
"#,
        pd = pd.url(),
        hook = hook.url("hook"),
    );
    let config = write_config(dir.path(), &bot, &masto, &extra);
    let ping = hook.url(&format!("ping/{ping_token}")).to_string();
    let daemon = Daemon::spawn(
        &config,
        "debug",
        &[
            ("TOCSIN_TEST_ROUTING_KEY", ROUTING_KEY),
            ("TOCSIN_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("TOCSIN_TEST_HEARTBEAT_URL", &ping),
        ],
    );
    daemon.http_addr().await;
    until(
        || masto.request_count("/api/v1/accounts") >= 4,
        "the first polls",
    )
    .await;
    pd.fail_next(500);
    hook.fail_next(500);
    masto.publish(ACCOUNT_ID, &status_html("giveaway: send 1 BTC"));
    until(
        || {
            pd.events().len() == 1
                && hook.received().iter().any(|r| r.path == "/hook")
                && bot.sent().len() == 1
        },
        "the page on every channel",
    )
    .await;
    until(
        || {
            hook.received()
                .iter()
                .filter(|r| r.path.starts_with("/ping"))
                .count()
                >= 2
        },
        "heartbeats",
    )
    .await;
    let log = daemon.log_text();
    for secret in [ROUTING_KEY, WEBHOOK_SECRET, ping_token, BOT_TOKEN] {
        assert!(
            !log.contains(secret),
            "secret {secret:?} found in the debug log"
        );
    }
}

#[tokio::test]
async fn fake_pagerduty_refuses_what_pagerduty_refuses() {
    let pd = FakePagerDuty::start().await.unwrap();
    let post = |body: serde_json::Value| {
        let url = pd.url().join("v2/enqueue").unwrap();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let trigger = serde_json::json!({
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "tocsin-1",
        "payload": {"summary": "s", "source": "tocsin", "severity": "critical"},
    });
    let (status, body) = post(trigger.clone()).await;
    assert_eq!(status, 202);
    assert_eq!(
        body,
        serde_json::json!({"status": "success", "message": "Event processed", "dedup_key": "tocsin-1"})
    );
    for (field, value) in [
        ("/routing_key", serde_json::Value::Null),
        ("/routing_key", serde_json::json!("short")),
        ("/event_action", serde_json::json!("explode")),
        ("/payload/summary", serde_json::Value::Null),
        ("/payload/severity", serde_json::json!("high")),
    ] {
        let mut bad = trigger.clone();
        *bad.pointer_mut(field).unwrap() = value;
        let (status, body) = post(bad).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["status"], "invalid event");
    }
    let (status, _) =
        post(serde_json::json!({"routing_key": ROUTING_KEY, "event_action": "resolve"})).await;
    assert_eq!(status, 400, "resolve needs a dedup_key");
    pd.fail_next(429);
    assert_eq!(post(trigger.clone()).await.0, 429);
    pd.fail_next(500);
    assert_eq!(post(trigger).await.0, 500);
    assert_eq!(
        pd.events().len(),
        1,
        "only the valid, unforced event is recorded"
    );
}

#[tokio::test]
async fn the_bot_token_stays_out_of_readyz_fallback_evidence_and_logs_with_a_prefixed_api_url() {
    use tocsin_fakes::mastodon::status_html;

    use crate::support::daemon::*;

    let (masto, bot, dir) = fakes().await;
    let hook = FakeReceiver::start().await.unwrap();
    let api_url = format!("{}telegram-proxy/", route_echoing_proxy().await);
    let extra = format!(
        r#"
[[channels.webhook]]
name = "soc"
url = "{hook}"
secret = "{WEBHOOK_SECRET}"
"#,
        hook = hook.url("hook"),
    );
    let config = write_config(dir.path(), &bot, &masto, &extra);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            &format!("api_url = \"{}\"", bot.url()),
            &format!("api_url = \"{api_url}\""),
        )
        .replace(
            "long_poll = \"1s\"",
            "long_poll = \"1s\"\nfailure_grace = \"1s\"",
        );
    assert!(text.contains(&api_url), "{text}");
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::spawn(&config, "debug", &[]);
    let addr = daemon.http_addr().await;
    until(
        || masto.request_count("/api/v1/accounts") >= 4,
        "the first polls",
    )
    .await;
    masto.publish(ACCOUNT_ID, &status_html("giveaway: send 1 BTC"));
    let down = || {
        hook.received().into_iter().find(|r| {
            r.path == "/hook" && String::from_utf8_lossy(&r.body).contains("telegram_down")
        })
    };
    until(|| down().is_some(), "notify.telegram_down on the fallback").await;
    let evidence = String::from_utf8_lossy(&down().unwrap().body).into_owned();
    assert!(
        evidence.contains("telegram-proxy"),
        "the error is shown: {evidence}"
    );

    let readyz = reqwest::get(format!("{addr}/readyz"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(readyz.contains("telegram"), "{readyz}");
    let log = daemon.log_text();
    assert!(log.contains("getUpdates failed"), "{log}");
    for (what, text) in [
        ("the fallback evidence", &evidence),
        ("/readyz", &readyz),
        ("the log", &log),
    ] {
        assert!(!text.contains(BOT_TOKEN), "the bot token in {what}: {text}");
        assert!(
            !text.contains("test-bot-token-secret"),
            "the token's secret in {what}: {text}"
        );
    }
}

/// A reverse proxy in front of the Bot API that has no route for what it is asked: it answers
/// in the Bot API's error envelope, naming the path it got (token included), as proxies'
/// "no route for POST /…" pages do.
async fn route_echoing_proxy() -> url::Url {
    use axum::{
        Json, Router,
        http::{Method, StatusCode, Uri},
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(|method: Method, uri: Uri| async move {
        let description = format!("Not Found: no route for {method} {}", uri.path());
        let body = serde_json::json!({"ok": false, "error_code": 404, "description": description});
        (StatusCode::NOT_FOUND, Json(body))
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url::Url::parse(&format!("http://{addr}/")).unwrap()
}
