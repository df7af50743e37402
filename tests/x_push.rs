//! X pushed: X's CRC check of the webhook, the subscriptions (X Activity API and the Account
//! Activity API), a pushed post and deletion paging within a second with the poll an hour
//! away, forged, unsigned and oversized deliveries refused and counted, a CRC answer that
//! cannot be used to sign a delivery, and a redelivery counted once.

use std::time::{Duration, Instant};

use tocsin::{
    config::{Account, Secret, XPushApi},
    model::Rule,
};
use tocsin_fakes::x::{FakeX, XEndpoint, signature};

use crate::{
    support::{postfix::free_port, *},
    x::{X_ID, X_NAME, x_account},
};

const X_CONSUMER_SECRET: &str = "x-consumer-secret-of-the-app";

/// The X fake the polling tests use, with the app's consumer secret: the key of the CRC
/// answers and the deliveries' signatures.
async fn fake_x() -> FakeX {
    let x = crate::x::fake_x().await;
    x.set_consumer_secret(X_CONSUMER_SECRET);
    x
}

struct Pushed {
    app: TestApp,
    /// `general.public_url`: the hooks listener.
    hooks: String,
}

fn x_judged(app: &TestApp) -> u64 {
    app.health
        .snapshot()
        .get(X_NAME)
        .map_or(0, |s| s.judged_polls)
}

/// The daemon watching the X account with push through `api`, the webhook registered (by
/// the operator, before tocsin started) at its hooks listener: returns once X checked the
/// webhook (CRC), the account is subscribed and its first poll is judged.
async fn spawn_pushed(x: &FakeX, api: XPushApi, poll_interval: Duration) -> Pushed {
    let port = free_port();
    let hooks = format!("http://127.0.0.1:{port}");
    let webhook_id = x.add_webhook(&format!("{hooks}/hooks/x"));
    let account = Account {
        poll_interval,
        ..x_account(x)
    };
    let id = webhook_id.clone();
    let public = hooks.clone();
    let app = spawn_app_with(move |c| {
        c.accounts.push(account);
        c.x.timeline_requests_per_window = 90_000;
        c.x.users_requests_per_window = 90_000;
        c.x.consumer_secret = Some(Secret::new(X_CONSUMER_SECRET));
        c.x.webhook_id = Some(id);
        c.x.push = api;
        c.paging.page_approved_deletions = true;
        c.general.hooks_listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
        c.general.public_url = Some(url::Url::parse(&public).unwrap());
    })
    .await;
    until(|| x_judged(&app) >= 1, "the first poll of the X account").await;
    until(
        || x.webhook_valid(&webhook_id),
        "X's CRC check of the webhook",
    )
    .await;
    until(
        || match api {
            XPushApi::Activity => x.activity_subscriptions().len() == 2,
            XPushApi::AccountActivity => x.account_activity_subscriptions().len() == 1,
        },
        "the account subscribed",
    )
    .await;
    Pushed { app, hooks }
}

/// The spacing the daemon keeps between messages to one chat (Telegram's flood limit).
const CHAT_SPACING: Duration = Duration::from_secs(1);

fn paged(app: &TestApp, needle: &str) -> bool {
    app.bot.sent().iter().any(|m| m.text.contains(needle))
}

/// A post and the deletion of an approved post, pushed, each paged; the timeline is not read
/// in between (the next poll is an hour away). The event → page times, as measured.
async fn post_and_deletion_page(x: &FakeX, app: &TestApp, api: &str) {
    let (status, _) = app
        .api_post(
            "/api/v1/approvals",
            serde_json::json!({ "account": X_NAME, "text": "Our launch https://example.com/launch" }),
        )
        .await;
    assert_eq!(status, 201);
    let polls = x.count(XEndpoint::Timeline);

    let t0 = Instant::now();
    let rogue = x.publish(X_ID, "Free crypto for followers https://evil.example/claim");
    until(
        || paged(app, "https://evil.example/claim"),
        "the pushed post paged",
    )
    .await;
    let post_to_page = t0.elapsed();
    // Telegram's flood limit spaces messages to the chat; the deletion is measured from an
    // idle chat, as the post was.
    let chat_idle = tokio::time::Instant::now() + CHAT_SPACING;
    let inc = app
        .incident_by_object(&rogue)
        .expect("the rogue post's incident");
    assert_eq!(inc.rule, Rule::UnapprovedPost);

    let launch = x.publish(X_ID, "Our launch https://example.com/launch");
    until(
        || app.store.seen_post(X_NAME, &launch).unwrap().is_some(),
        "the approved post, pushed",
    )
    .await;
    tokio::time::sleep_until(chat_idle).await;
    let t1 = Instant::now();
    x.delete_by_author(&launch);
    until(
        || paged(app, "social.approved_post_deleted"),
        "the pushed deletion paged",
    )
    .await;
    let deletion_to_page = t1.elapsed();
    assert_eq!(
        x.count(XEndpoint::Timeline),
        polls,
        "paged from the push: the timeline was not read"
    );
    eprintln!(
        "x push ({api}) → page: post {} ms, deletion {} ms",
        post_to_page.as_millis(),
        deletion_to_page.as_millis()
    );
    assert!(
        post_to_page < Duration::from_secs(1) && deletion_to_page < Duration::from_secs(1),
        "a pushed post or deletion pages within a second: {post_to_page:?}, {deletion_to_page:?}"
    );
    assert!(
        x.deliveries().iter().all(|d| d.status == 200),
        "every delivery taken"
    );
}

#[tokio::test]
async fn activity_api_pushes_a_post_and_a_deletion_that_page_within_a_second() {
    let x = fake_x().await;
    let p = spawn_pushed(&x, XPushApi::Activity, Duration::from_secs(3600)).await;
    let subs = x.activity_subscriptions();
    for event in ["post.create", "post.delete"] {
        assert!(
            subs.iter()
                .any(|(e, u, w)| e == event && u == X_ID && w.is_some()),
            "{event} subscribed on the webhook: {subs:?}"
        );
    }
    post_and_deletion_page(&x, &p.app, "X Activity API").await;
    p.app.stop().await;
}

#[tokio::test]
async fn account_activity_api_pushes_a_post_and_a_deletion_that_page_within_a_second() {
    let x = fake_x().await;
    let p = spawn_pushed(&x, XPushApi::AccountActivity, Duration::from_secs(3600)).await;
    assert_eq!(
        x.account_activity_subscriptions()[0].1,
        X_ID,
        "subscribed with the account's own user token"
    );
    post_and_deletion_page(&x, &p.app, "Account Activity API").await;
    p.app.stop().await;
}

#[tokio::test]
async fn forged_unsigned_and_oversized_deliveries_are_refused_and_counted() {
    let x = fake_x().await;
    let p = spawn_pushed(&x, XPushApi::Activity, Duration::from_millis(150)).await;
    let app = &p.app;
    let forged = serde_json::json!({"data": {"event_uuid": "1", "filter": {"user_id": X_ID},
        "event_type": "post.create", "payload": {"id": "1999999999999999999",
        "text": "Forged giveaway https://evil.example/forged", "author_id": X_ID}}})
    .to_string();
    assert_eq!(x.deliver_raw(&forged, None).await, 401, "unsigned");
    assert_eq!(
        x.deliver_raw(
            &forged,
            Some(&signature("a-guessed-secret", forged.as_bytes()))
        )
        .await,
        401,
        "signed with another key"
    );
    let big = format!(
        "{{\"pad\":\"{}\"}}",
        "a".repeat(tocsin::platforms::x::push::MAX_BODY)
    );
    let sig = signature(X_CONSUMER_SECRET, big.as_bytes());
    assert_eq!(x.deliver_raw(&big, Some(&sig)).await, 413, "oversized");
    let rejected = |reason: &str| {
        format!("tocsin_webhook_rejected_total{{provider=\"x\",reason=\"{reason}\"}}")
    };
    assert_eq!(app.metric(&rejected("missing_signature")).await, 1.0);
    assert_eq!(app.metric(&rejected("bad_signature")).await, 1.0);
    assert_eq!(app.metric(&rejected("too_large")).await, 1.0);
    let s = quiet::settle(app, X_NAME, 2).await;
    s.assert_not_mentioned("evil.example/forged", "a forged delivery must not page");
    assert!(
        app.store
            .seen_post(X_NAME, "1999999999999999999")
            .unwrap()
            .is_none(),
        "nothing of a refused delivery is recorded"
    );
    p.app.stop().await;
}

#[tokio::test]
async fn the_crc_answer_cannot_be_used_to_sign_a_forged_delivery() {
    let x = fake_x().await;
    let p = spawn_pushed(&x, XPushApi::Activity, Duration::from_millis(150)).await;
    let forged = serde_json::json!({"data": {"event_uuid": "2", "filter": {"user_id": X_ID},
        "event_type": "post.create", "payload": {"id": "1999999999999999998",
        "text": "Oracle giveaway https://evil.example/oracle", "author_id": X_ID}}})
    .to_string();
    // Anyone can send a CRC challenge: were its token a delivery body, the answer would be
    // that body's signature.
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{}/hooks/x", p.hooks))
        .query(&[("crc_token", forged.as_str())])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let answer: serde_json::Value = resp.json().await.unwrap_or_default();
    let oracle = answer["response_token"].as_str().map(str::to_owned);
    let delivered = x
        .deliver_raw(&forged, Some(oracle.as_deref().unwrap_or("sha256=")))
        .await;
    assert_eq!(
        (status, delivered),
        (400, 401),
        "the CRC must not sign a body; the forged delivery is refused"
    );
    // X's own challenge is still answered.
    let resp = client
        .get(format!("{}/hooks/x", p.hooks))
        .query(&[("crc_token", "c2FtcGxlLXRva2Vu")])
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        answer["response_token"],
        signature(X_CONSUMER_SECRET, b"c2FtcGxlLXRva2Vu")
    );
    let s = quiet::settle(&p.app, X_NAME, 2).await;
    s.assert_not_mentioned("evil.example/oracle", "a forged delivery must not page");
    p.app.stop().await;
}

#[tokio::test]
async fn a_redelivered_post_is_taken_once_and_counted() {
    let x = fake_x().await;
    let p = spawn_pushed(&x, XPushApi::Activity, Duration::from_millis(150)).await;
    let app = &p.app;
    let rogue = x.publish(X_ID, "Double your coins https://evil.example/double");
    until(
        || paged(app, "https://evil.example/double"),
        "the pushed post paged",
    )
    .await;
    until(
        || x.deliveries().iter().any(|d| d.status == 200),
        "the delivery answered",
    )
    .await;
    assert_eq!(
        x.redeliver_last().await,
        200,
        "a redelivery is acknowledged"
    );
    assert_eq!(
        app.metric("tocsin_webhook_duplicates_total{provider=\"x\"}")
            .await,
        1.0
    );
    let s = quiet::settle(app, X_NAME, 2).await;
    let incidents: Vec<_> = s
        .incidents
        .iter()
        .filter(|i| i.object == rogue || i.members.iter().any(|m| m.object == rogue))
        .collect();
    assert_eq!(incidents.len(), 1, "one incident for the post");
    assert_eq!(
        s.pages_with("https://evil.example/double").len(),
        1,
        "paged once"
    );
    p.app.stop().await;
}

const CHECK_BASE: &str = "[general]\napi_token = \"t\"\npublic_url = \"https://hooks.example.com/tocsin\"\n[telegram]\nbot_token = \"1:b\"\nchat_id = -100\nresponders = [1]\n[[accounts]]\nname = \"x-main\"\nplatform = \"x\"\naccount_id = \"783214\"\ntoken = \"env:TOCSIN_X_BEARER_TOKEN\"\nwrite_token = \"env:TOCSIN_X_USER_TOKEN\"\n[[accounts]]\nname = \"x-jobs\"\nplatform = \"x\"\naccount_id = \"783215\"\ntoken = \"env:TOCSIN_X_BEARER_TOKEN\"\n";

async fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, text).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env("TOCSIN_X_BEARER_TOKEN", "s3cr3t-x-app-token")
        .env("TOCSIN_X_USER_TOKEN", "s3cr3t-x-user-token")
        .env("TOCSIN_X_CONSUMER_SECRET", "s3cr3t-consumer")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn check_config_says_which_accounts_are_pushed_and_by_which_api() {
    let activity = format!(
        "{CHECK_BASE}[x]\nconsumer_secret = \"env:TOCSIN_X_CONSUMER_SECRET\"\nwebhook_id = \"1146654567674912769\"\n"
    );
    let (ok, out) = check_config(&activity).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(
            "x push        2 account(s) pushed by the X Activity API (post.create and post.delete"
        ) && out
            .contains("to webhook 1146654567674912769 at https://hooks.example.com/tocsin/hooks/x")
            && out.contains(": x-main, x-jobs"),
        "{out}"
    );
    let aaa = format!("{activity}push = \"account_activity\"\n");
    let (ok, out) = check_config(&aaa).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("1 account(s) pushed by the Account Activity API")
            && out.contains("deprecated")
            && out.contains("polled only, no write_token to subscribe with: x-jobs"),
        "{out}"
    );
    for secret in [
        "s3cr3t-consumer",
        "s3cr3t-x-app-token",
        "s3cr3t-x-user-token",
    ] {
        assert!(!out.contains(secret), "secrets stay out of the summary");
    }
    let (ok, out) = check_config(CHECK_BASE).await;
    assert!(ok, "{out}");
    assert!(out.contains("x push        off"), "{out}");

    // Half the keys, a malformed id, or no public URL: refused, naming the key.
    for (text, key) in [
        (
            format!("{CHECK_BASE}[x]\nconsumer_secret = \"env:TOCSIN_X_CONSUMER_SECRET\"\n"),
            "x.webhook_id",
        ),
        (
            format!("{CHECK_BASE}[x]\nwebhook_id = \"1146654567674912769\"\n"),
            "x.consumer_secret",
        ),
        (
            format!(
                "{CHECK_BASE}[x]\nconsumer_secret = \"env:TOCSIN_X_CONSUMER_SECRET\"\nwebhook_id = \"hook-1\"\n"
            ),
            "x.webhook_id",
        ),
        (
            activity.replace("public_url = \"https://hooks.example.com/tocsin\"\n", ""),
            "general.public_url",
        ),
    ] {
        let (ok, out) = check_config(&text).await;
        assert!(!ok && out.contains(key), "{key}: {out}");
    }
}

#[tokio::test]
async fn a_pushed_edit_pages_as_post_edited_on_the_original() {
    let x = fake_x().await;
    let p = spawn_pushed(&x, XPushApi::Activity, Duration::from_secs(3600)).await;
    let app = &p.app;
    let (status, _) = app
        .api_post(
            "/api/v1/approvals",
            serde_json::json!({ "account": X_NAME, "text": "Store opens at nine https://example.com/store" }),
        )
        .await;
    assert_eq!(status, 201);
    let original = x.publish(X_ID, "Store opens at nine https://example.com/store");
    until(
        || app.store.seen_post(X_NAME, &original).unwrap().is_some(),
        "the approved post, pushed",
    )
    .await;
    let polls = x.count(XEndpoint::Timeline);
    // X delivers an edit as the new version's post.create, its history starting with the
    // original: the same identity the poller gives it.
    x.edit(&original, "Store opens at nine https://evil.example/store");
    until(
        || {
            app.store
                .incidents()
                .unwrap()
                .iter()
                .any(|i| i.rule == Rule::PostEdited && i.object == original && i.page.is_some())
        },
        "the pushed edit paged on the original",
    )
    .await;
    assert_eq!(x.count(XEndpoint::Timeline), polls, "paged from the push");
    p.app.stop().await;
}
