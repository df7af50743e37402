//! X accounts: rogue posts, edits, profile drift behind an unchanged t.co link, a handle change,
//! a revoked token, 5xx, the rate-limit scheduler backing off and recovering, and takedown.

use std::time::Duration;

use tocsin::{
    config::{Account, Platform, Secret},
    model::{Evidence, Incident, Rule, Severity, State, TakedownOutcome},
    platforms::x::takedown::delete_post,
};
use tocsin_fakes::x::{Failure, FakeX, XEndpoint};

use crate::support::*;

pub(crate) const X_BEARER: &str = "x-app-bearer-token";
pub(crate) const X_USER_TOKEN: &str = "x-user-token-of-examplecorp";
pub(crate) const X_NAME: &str = "x-main";
pub(crate) const X_ID: &str = "783214";

pub(crate) async fn fake_x() -> FakeX {
    let x = FakeX::start(X_BEARER).await.unwrap();
    x.add_user(
        X_ID,
        "examplecorp",
        "ExampleCorp",
        "Official account. https://example.com/help",
        Some("https://example.com"),
    );
    x.set_write_token(X_ID, X_USER_TOKEN);
    // Room for polls every 150 ms; the rate test narrows the timeline's budget itself.
    x.set_limit(XEndpoint::Timeline, 100_000, Duration::from_secs(900));
    x.set_limit(XEndpoint::Users, 100_000, Duration::from_secs(900));
    x.publish(
        X_ID,
        "An old post from before tocsin https://example.com/old",
    );
    x
}

pub(crate) fn x_account(x: &FakeX) -> Account {
    Account {
        name: X_NAME.into(),
        platform: Platform::X,
        base_url: x.url(),
        account_id: X_ID.into(),
        token: Some(Secret::new(X_BEARER)),
        write_token: Some(Secret::new(X_USER_TOKEN)),
        poll_interval: Duration::from_millis(150),
        grace: None,
        plc_url: None,
        jetstream_url: None,
        pds_url: None,
        appview_url: None,
        allow_private_endpoints: false,
        trusted_clients: Vec::new(),
    }
}

/// The daemon watching the Mastodon account of `spawn_app` and one X account, with budgets
/// that let the fake's own limits be the ones that bind.
async fn spawn_with_x(x: &FakeX, tweak: impl FnOnce(&mut tocsin::Config)) -> TestApp {
    let account = x_account(x);
    let app = spawn_app_with(move |c| {
        c.accounts.push(account);
        c.x.timeline_requests_per_window = 90_000;
        c.x.users_requests_per_window = 90_000;
        tweak(c);
    })
    .await;
    wait_x_polls(&app, 2).await;
    app
}

/// Waits until `n` more polls of the X account are judged.
async fn wait_x_polls(app: &TestApp, n: u64) {
    app.wait_judged(X_NAME, n).await;
}

fn x_incidents(app: &TestApp, rule: Rule) -> Vec<Incident> {
    app.store
        .incidents()
        .unwrap()
        .into_iter()
        .filter(|i| i.account == X_NAME && i.rule == rule)
        .collect()
}

fn paged(app: &TestApp, needle: &str) -> bool {
    app.bot.sent().iter().any(|m| m.text.contains(needle))
}

#[tokio::test]
async fn a_rogue_post_pages_with_its_real_link_and_history_does_not() {
    let x = fake_x().await;
    let app = spawn_with_x(&x, |_| {}).await;
    let history = quiet::settle(&app, X_NAME, 1).await;
    assert!(
        history.incidents.is_empty() && history.sent.is_empty(),
        "history is not paged"
    );
    let id = x.publish(X_ID, "Free crypto for followers https://evil.example/claim");
    until(
        || paged(&app, "https://evil.example/claim"),
        "the rogue post paged",
    )
    .await;
    let inc = x_incidents(&app, Rule::UnapprovedPost).remove(0);
    assert_eq!(inc.severity, Severity::Critical);
    assert_eq!(inc.object, id);
    let Evidence::Post { text, links, .. } = &inc.evidence else {
        panic!("post evidence")
    };
    // The t.co wrapper is gone: the fingerprint and the page see the target.
    assert_eq!(text, "Free crypto for followers https://evil.example/claim");
    assert_eq!(links, &vec!["https://evil.example/claim".to_owned()]);
    assert!(
        !paged(&app, "https://t.co/"),
        "pages show targets, not wrappers"
    );
    // A picture: X's appended media link is not part of the text; the media are compared.
    let pic = x.publish_with_media(X_ID, "Look", &["https://pbs.twimg.com/media/scam.jpg"]);
    until(
        || app.store.seen_post(X_NAME, &pic).unwrap().is_some(),
        "the picture post",
    )
    .await;
    assert_eq!(
        app.store.seen_post(X_NAME, &pic).unwrap().unwrap().text,
        "Look"
    );
    until(
        || {
            x_incidents(&app, Rule::UnapprovedPost)
                .iter()
                .any(|i| i.object == pic || i.members.iter().any(|m| m.object == pic))
        },
        "the picture post paged",
    )
    .await;

    // An approved text with the same words is not paged.
    let (status, _) = app
        .api_post(
            "/api/v1/approvals",
            serde_json::json!({ "account": X_NAME, "text": "Launch day https://example.com/launch" }),
        )
        .await;
    assert_eq!(status, 201);
    let launch = x.publish(X_ID, "Launch day https://example.com/launch");
    // Judged while the rogue posts' burst is still open: a wrongly flagged post would join
    // it rather than open an incident of its own, so the burst's members are read too.
    let s = quiet::settle(&app, X_NAME, 3).await;
    s.assert_not_held(&launch, "an approved post must not page");
    s.assert_not_mentioned("example.com/launch", "an approved post must not page");
    assert_eq!(x_incidents(&app, Rule::UnapprovedPost).len(), 1);
    // Every timeline request asked for what the comparison needs.
    let call = x
        .calls()
        .into_iter()
        .rfind(|c| c.endpoint == XEndpoint::Timeline)
        .unwrap();
    for needle in [
        "since_id=",
        "edit_history_tweet_ids",
        "entities",
        "attachments.media_keys",
    ] {
        assert!(call.query.contains(needle), "{needle} in {}", call.query);
    }
    app.stop().await;
}

#[tokio::test]
async fn an_edit_pages_as_post_edited_on_the_original() {
    let x = fake_x().await;
    let app = spawn_with_x(&x, |_| {}).await;
    let (status, _) = app
        .api_post(
            "/api/v1/approvals",
            serde_json::json!({ "account": X_NAME, "text": "Our Q4 report https://example.com/q4" }),
        )
        .await;
    assert_eq!(status, 201);
    let original = x.publish(X_ID, "Our Q4 report https://example.com/q4");
    let s = quiet::settle(&app, X_NAME, 3).await;
    s.assert_not_held(&original, "approved");
    assert!(s.sent.is_empty(), "approved: {:?}", s.sent);
    let edited = x.edit(&original, "Our Q4 report https://evil.example/q4");
    until(
        || !x_incidents(&app, Rule::PostEdited).is_empty(),
        "post_edited",
    )
    .await;
    let inc = x_incidents(&app, Rule::PostEdited).remove(0);
    assert_eq!(inc.object, original, "the post's identity is its first id");
    let Evidence::PostEdited {
        before, after, url, ..
    } = &inc.evidence
    else {
        panic!("edit evidence")
    };
    assert_eq!(before, "Our Q4 report https://example.com/q4");
    assert_eq!(after, "Our Q4 report https://evil.example/q4");
    assert!(
        url.as_deref().unwrap().ends_with(&edited),
        "links the new version"
    );
    assert!(x_incidents(&app, Rule::UnapprovedPost).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_swapped_target_behind_the_same_tco_link_pages_critical() {
    let x = fake_x().await;
    let app = spawn_with_x(&x, |_| {}).await;
    let wrapper = x.link_wrapper(X_ID).unwrap();
    let users_before = x.count(XEndpoint::Users);
    x.set_link_target(X_ID, "https://examp1e-support.example/login");
    assert_eq!(x.link_wrapper(X_ID).unwrap(), wrapper, "t.co URL unchanged");
    until(
        || !x_incidents(&app, Rule::ProfileChanged).is_empty(),
        "profile drift",
    )
    .await;
    let inc = x_incidents(&app, Rule::ProfileChanged).remove(0);
    assert_eq!(inc.severity, Severity::Critical);
    let Evidence::Profile { changes } = &inc.evidence else {
        panic!("profile evidence")
    };
    assert_eq!(
        changes["url"].before.as_deref(),
        Some("https://example.com")
    );
    assert_eq!(
        changes["url"].after,
        "https://examp1e-support.example/login"
    );
    assert!(x.count(XEndpoint::Users) > users_before);
    app.stop().await;
}

#[tokio::test]
async fn a_handle_change_is_critical() {
    let x = fake_x().await;
    let app = spawn_with_x(&x, |_| {}).await;
    x.set_name(X_ID, "ExampleCorp Support");
    x.set_username(X_ID, "examplecorp_support");
    until(
        || {
            x_incidents(&app, Rule::ProfileChanged).iter().any(|i| {
                matches!(&i.evidence, Evidence::Profile { changes } if changes.contains_key("handle"))
            })
        },
        "handle change",
    )
    .await;
    let inc = x_incidents(&app, Rule::ProfileChanged).remove(0);
    assert_eq!(inc.severity, Severity::Critical);
    let Evidence::Profile { changes } = &inc.evidence else {
        panic!()
    };
    assert_eq!(changes["handle"].after, "examplecorp_support");
    until(|| paged(&app, "examplecorp_support"), "the page").await;
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_token_pages_monitor_blind_and_recovery_resolves_it() {
    let x = fake_x().await;
    let app = spawn_with_x(&x, |_| {}).await;
    x.set_bearer("a-rotated-token");
    until(
        || !x_incidents(&app, Rule::MonitorBlind).is_empty(),
        "monitor.blind",
    )
    .await;
    let inc = x_incidents(&app, Rule::MonitorBlind).remove(0);
    let Evidence::Channel { problem, .. } = &inc.evidence else {
        panic!()
    };
    assert!(problem.contains("token was refused (401)"), "{problem}");
    until(|| paged(&app, "monitor.blind"), "paged").await;
    x.set_bearer(X_BEARER);
    until(
        || app.store.incident(inc.id).unwrap().unwrap().state == State::Resolved,
        "recovery",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn server_errors_back_off_and_recover_without_paging_within_the_grace() {
    let x = fake_x().await;
    let app = spawn_with_x(&x, |c| c.accounts[1].grace = Some(Duration::from_secs(20))).await;
    for _ in 0..3 {
        x.fail_next(XEndpoint::Timeline, Failure::Status(503));
    }
    until(
        || {
            app.health
                .snapshot()
                .get(X_NAME)
                .is_some_and(|h| h.errors >= 3)
        },
        "three failures",
    )
    .await;
    let failed: Vec<_> = x
        .calls()
        .into_iter()
        .filter(|c| c.endpoint == XEndpoint::Timeline && c.status == 503)
        .map(|c| c.at)
        .collect();
    // Backoff: 300 ms, then 600 ms from the 150 ms poll interval.
    assert!(
        failed[2] - failed[1] >= Duration::from_millis(550),
        "{failed:?}"
    );
    wait_x_polls(&app, 2).await;
    let h = app.health.snapshot()[X_NAME].clone();
    assert!(h.failing_since.is_none(), "recovered");
    assert!(x_incidents(&app, Rule::MonitorBlind).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn low_remaining_and_a_429_slow_the_scheduler_which_then_recovers() {
    let x = fake_x().await;
    // Two accounts at 150 ms would ask ~13 requests a second; X allows 6 per 3 s here.
    x.add_user(X_ID_2, "examplecorp_jobs", "ExampleCorp Jobs", "", None);
    let app = spawn_with_x(&x, |c| {
        let mut second = c.accounts[1].clone();
        second.name = "x-jobs".into();
        second.account_id = X_ID_2.into();
        c.accounts.push(second);
    })
    .await;
    let window = Duration::from_secs(3);
    x.set_limit(XEndpoint::Timeline, 6, window);
    let from = x.count(XEndpoint::Timeline);
    // Three windows' worth of polling.
    tokio::time::sleep(window * 3).await;
    let calls: Vec<_> = x
        .calls()
        .into_iter()
        .skip(from)
        .filter(|c| c.endpoint == XEndpoint::Timeline)
        .collect();
    assert_eq!(
        x.over_budget(XEndpoint::Timeline),
        0,
        "the headers kept it within X's limit"
    );
    assert!(
        calls.len() <= 6 * 4 + 1,
        "{} requests in three 3 s windows",
        calls.len()
    );
    assert!(calls.len() >= 6, "still polling: {}", calls.len());
    let budget = app.health.snapshot()[X_NAME].rate_limit.clone().unwrap();
    assert_eq!(budget.limit, Some(6));
    // Both accounts show the app's budget, and the API serves it.
    assert_eq!(
        app.health.snapshot()["x-jobs"]
            .rate_limit
            .as_ref()
            .unwrap()
            .limit,
        Some(6)
    );
    let (_, accounts) = app.api_get("/api/v1/accounts").await;
    let shown = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == X_NAME)
        .unwrap()
        .clone();
    assert_eq!(shown["rate_limit"]["limit"], 6, "{shown}");

    // A 429 stops the endpoint until its reset; then polling resumes.
    x.set_limit(XEndpoint::Timeline, 10_000, Duration::from_secs(900));
    x.fail_next(
        XEndpoint::Timeline,
        Failure::TooManyRequests {
            reset_in: Duration::from_secs(2),
        },
    );
    until(
        || {
            x.calls()
                .iter()
                .any(|c| c.endpoint == XEndpoint::Timeline && c.forced && c.status == 429)
        },
        "the 429",
    )
    .await;
    let limited_at = x
        .calls()
        .into_iter()
        .find(|c| c.forced && c.status == 429)
        .unwrap()
        .at;
    wait_x_polls(&app, 2).await;
    let next = x
        .calls()
        .into_iter()
        .find(|c| c.endpoint == XEndpoint::Timeline && c.at > limited_at)
        .unwrap();
    assert!(
        next.at - limited_at >= Duration::from_secs(2),
        "waited for the reset: {:?}",
        next.at - limited_at
    );
    assert_eq!(next.status, 200, "recovered");
    assert_eq!(x.over_budget(XEndpoint::Timeline), 0);
    app.stop().await;
}

const X_ID_2: &str = "783215";

#[tokio::test]
async fn takedown_deletes_and_reports_each_failure() {
    let x = fake_x().await;
    let http = reqwest::Client::new();
    let account = x_account(&x);
    let id = x.publish(X_ID, "rogue");
    assert_eq!(
        delete_post(&http, &account, &id).await,
        TakedownOutcome::Deleted
    );
    assert!(!x.exists(&id));
    assert_eq!(
        delete_post(&http, &account, &id).await,
        TakedownOutcome::AlreadyGone
    );
    let other = x.publish(X_ID, "another");
    let mut wrong = account.clone();
    wrong.write_token = Some(Secret::new("a-revoked-user-token"));
    assert!(matches!(
        delete_post(&http, &wrong, &other).await,
        TakedownOutcome::Forbidden { .. }
    ));
    // The app's bearer token cannot delete: X answers 403.
    wrong.write_token = Some(Secret::new(X_BEARER));
    let TakedownOutcome::Forbidden { detail } = delete_post(&http, &wrong, &other).await else {
        panic!("forbidden")
    };
    assert!(detail.contains("403"), "{detail}");
    x.fail_next(XEndpoint::Delete, Failure::Status(503));
    assert!(matches!(
        delete_post(&http, &account, &other).await,
        TakedownOutcome::Failed { .. }
    ));
    assert!(x.exists(&other));
    wrong.write_token = None;
    assert!(matches!(
        delete_post(&http, &wrong, &other).await,
        TakedownOutcome::Forbidden { .. }
    ));
    assert_eq!(x.count(XEndpoint::Delete), 5, "no request without a token");
}

#[tokio::test]
async fn a_burst_longer_than_a_page_is_read_through_pagination() {
    let x = fake_x().await;
    let app = spawn_with_x(&x, |c| c.accounts[1].poll_interval = Duration::from_secs(2)).await;
    let ids: Vec<String> = (0..250)
        .map(|i| x.publish(X_ID, &format!("spam {i} https://evil.example/{i}")))
        .collect();
    until(
        || {
            ids.iter()
                .all(|id| app.store.seen_post(X_NAME, id).unwrap().is_some())
        },
        "every post of the burst seen",
    )
    .await;
    let paged_reads = x
        .calls()
        .into_iter()
        .filter(|c| c.endpoint == XEndpoint::Timeline && c.query.contains("pagination_token="))
        .count();
    assert!(paged_reads >= 2, "{paged_reads} pagination requests");
    // The burst is one grouped page, and the cursor moved past all of it.
    assert_eq!(x_incidents(&app, Rule::UnapprovedPost).len(), 1);
    let cursor = || app.store.cursor(&format!("x:{X_NAME}:since")).unwrap();
    until(
        || cursor().as_deref() == ids.last().map(String::as_str),
        "the cursor at the newest post",
    )
    .await;
    app.bot.push_command(CHAT, &responder(), "/status");
    until(
        || {
            app.bot.sent().iter().any(|m| {
                m.text.contains(&format!("{X_NAME} (x): last success"))
                    && m.text.contains("rate limit")
            })
        },
        "/status shows the X budget",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn check_config_prints_the_schedule_of_a_thousand_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "[general]\napi_token = \"t\"\n[telegram]\nbot_token = \"1:b\"\nchat_id = -100\nresponders = [1]\n",
    );
    for i in 0..1000 {
        text.push_str(&format!(
            "[[accounts]]\nname = \"x-{i:04}\"\nplatform = \"x\"\naccount_id = \"{}\"\ntoken = \"env:TOCSIN_X_BEARER_TOKEN\"\npoll_interval = \"15s\"\n",
            1_000_000 + i
        ));
    }
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, text).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env("TOCSIN_X_BEARER_TOKEN", "s3cr3t-x-app-token")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1000 account(s) in one scheduler"),
        "{stdout}"
    );
    assert!(
        stdout.contains("budget 1500/15min, plan spends 1500"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(10 id batch(es) of ≤100), plan spends 300, profiles every 30s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("x-0000 … x-0999 (1000 accounts): every 10m (poll_interval 15s stretched"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("s3cr3t-x-app-token"),
        "the token stays out of the summary"
    );
}

#[tokio::test]
async fn the_take_down_button_deletes_an_x_post() {
    let x = fake_x().await;
    let app = spawn_with_x(&x, |_| {}).await;
    let post = x.publish(X_ID, "Send 1 BTC, get 2 back https://evil.example/btc");
    until(
        || {
            x_incidents(&app, Rule::UnapprovedPost)
                .iter()
                .any(|i| i.object == post && i.page.is_some())
        },
        "the X post's page",
    )
    .await;
    let inc = x_incidents(&app, Rule::UnapprovedPost).remove(0);
    let msg = inc.page.as_ref().unwrap().message_id;
    let markup = serde_json::to_string(&app.bot.message(CHAT, msg).unwrap().reply_markup).unwrap();
    assert!(markup.contains(&format!("takedown:{}", inc.id)), "{markup}");
    app.bot
        .press_button(CHAT, &responder(), msg, &format!("takedown:{}", inc.id));
    until(|| !x.exists(&post), "the post deleted at the fake").await;
    until(
        || {
            app.bot
                .message(CHAT, msg)
                .is_some_and(|m| m.text.contains(&format!("Takedown: {post} deleted")))
        },
        "the page shows the takedown",
    )
    .await;
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert_eq!(inc.state, State::Resolved);
    let deletes: Vec<_> = x
        .calls()
        .into_iter()
        .filter(|c| c.endpoint == XEndpoint::Delete)
        .collect();
    assert_eq!(deletes.len(), 1, "one DELETE /2/tweets/:id");
    assert_eq!(deletes[0].status, 200);
    app.stop().await;
}
