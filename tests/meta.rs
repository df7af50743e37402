//! Facebook Pages and Instagram professional accounts against the Graph API fake: history is
//! not paged, a rogue post and each profile field change page, a refused token is blind, the
//! Page webhook wakes the poller (handshake, signature before parsing, size limit, redelivery
//! counted once), and takedown.

use std::time::Duration;

use tocsin::{
    config::{Account, Platform, Secret},
    model::{Evidence, Incident, Rule, Severity, State, TakedownOutcome},
    platforms::meta::takedown::{delete_page_post, instagram_by_hand},
};
use tocsin_fakes::meta::{FakeGraph, FakeIgUser, FakePage, sign};

use crate::support::*;

const VERSION: &str = "v21.0";
const PAGE_ID: &str = "104512345678901";
const PAGE_TOKEN: &str = "EAAB-page-token-of-examplecorp";
const PAGE_WRITE: &str = "EAAB-page-token-with-manage-posts";
const PAGE_NAME: &str = "fb-main";
const IG_ID: &str = "17841400000000001";
const IG_TOKEN: &str = "EAAB-instagram-token";
const IG_NAME: &str = "ig-main";
const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
const VERIFY_TOKEN: &str = "tocsin-verify-7f3a";

async fn fake_graph() -> FakeGraph {
    let g = FakeGraph::start(VERSION).await.unwrap();
    g.add_page(
        PAGE_ID,
        FakePage {
            name: "ExampleCorp".into(),
            username: "examplecorp".into(),
            about: "Official Page of ExampleCorp".into(),
            website: "https://example.com".into(),
            picture: "https://scontent.xx.fbcdn.net/v/t39.30808-1/avatar_n.jpg?oh=01&oe=AA".into(),
        },
    );
    g.add_ig_user(
        IG_ID,
        FakeIgUser {
            username: "examplecorp".into(),
            name: "ExampleCorp".into(),
            biography: "Official account".into(),
            website: "https://example.com".into(),
            profile_picture_url: "https://scontent.cdninstagram.com/v/p_n.jpg?oh=01".into(),
        },
    );
    g.grant_read(PAGE_TOKEN, PAGE_ID);
    g.grant_write(PAGE_WRITE, PAGE_ID);
    g.grant_read(IG_TOKEN, IG_ID);
    g.publish(
        PAGE_ID,
        "An old post from before tocsin",
        Some("Meta Business Suite"),
    )
    .await;
    g.publish_media(IG_ID, "An old photo from before tocsin", "IMAGE");
    g
}

fn account(g: &FakeGraph, platform: Platform, poll: Duration) -> Account {
    let (name, id, token) = match platform {
        Platform::FacebookPage => (PAGE_NAME, PAGE_ID, PAGE_TOKEN),
        _ => (IG_NAME, IG_ID, IG_TOKEN),
    };
    Account {
        name: name.into(),
        platform,
        base_url: g.url(),
        account_id: id.into(),
        token: Some(Secret::new(token)),
        write_token: (platform == Platform::FacebookPage).then(|| Secret::new(PAGE_WRITE)),
        poll_interval: poll,
        grace: None,
        plc_url: None,
        jetstream_url: None,
        pds_url: None,
        appview_url: None,
        allow_private_endpoints: false,
        trusted_clients: Vec::new(),
    }
}

/// The daemon watching the Page and the Instagram account, polled every `poll`, both first
/// polls done.
async fn spawn_with_meta(
    g: &FakeGraph,
    poll: Duration,
    tweak: impl FnOnce(&mut tocsin::Config),
) -> TestApp {
    let page = account(g, Platform::FacebookPage, poll);
    let ig = account(g, Platform::Instagram, Duration::from_millis(150));
    let app = spawn_app_with(move |c| {
        c.accounts.push(page);
        c.accounts.push(ig);
        tweak(c);
    })
    .await;
    for name in [PAGE_NAME, IG_NAME] {
        let judged = || {
            app.health
                .snapshot()
                .get(name)
                .map_or(0, |h| h.judged_polls)
        };
        until(|| judged() >= 1, "the first poll judged").await;
    }
    app
}

/// Whether a page, as sent or as edited since, shows `needle`.
fn shown(app: &TestApp, needle: &str) -> bool {
    app.bot.sent().iter().any(|m| m.text.contains(needle))
        || app.bot.edits().iter().any(|m| m.text.contains(needle))
}

/// With the webhook: the app secret, the verify token, and the public URL on loopback.
fn with_push(c: &mut tocsin::Config) {
    c.meta.app_secret = Some(Secret::new(APP_SECRET));
    c.meta.verify_token = Some(Secret::new(VERIFY_TOKEN));
    c.general.public_url = Some("http://127.0.0.1:1/".parse().unwrap());
}

fn incidents(app: &TestApp, account: &str, rule: Rule) -> Vec<Incident> {
    app.store
        .incidents()
        .unwrap()
        .into_iter()
        .filter(|i| i.account == account && i.rule == rule)
        .collect()
}

fn holds(inc: &Incident, post: &str) -> bool {
    inc.object == post || inc.members.iter().any(|m| m.object == post)
}

#[tokio::test]
async fn page_history_is_quiet_and_a_rogue_post_pages_naming_its_app() {
    let g = fake_graph().await;
    let app = spawn_with_meta(&g, Duration::from_millis(150), |_| {}).await;
    let history = quiet::settle(&app, PAGE_NAME, 1).await;
    assert!(
        history.incidents.is_empty() && history.sent.is_empty(),
        "history is not paged: {:?}",
        history.sent
    );
    // A visitor's post on the Page's feed is not the Page speaking.
    let visitor = g
        .visitor_post(PAGE_ID, "999", "Visitor asks https://visitor.example")
        .await;
    let rogue = g
        .publish(
            PAGE_ID,
            "Free crypto for our fans https://evil.example/claim",
            Some("Buffer"),
        )
        .await;
    let text = app
        .page_containing("https://evil.example/claim", "the rogue Page post paged")
        .await;
    assert!(text.contains(PAGE_NAME), "{text}");
    let inc = incidents(&app, PAGE_NAME, Rule::UnapprovedPost).remove(0);
    assert_eq!(inc.severity, Severity::Critical);
    assert_eq!(inc.object, rogue);
    let Evidence::Post {
        links, client, url, ..
    } = &inc.evidence
    else {
        panic!("post evidence")
    };
    assert_eq!(links, &vec!["https://evil.example/claim".to_owned()]);
    assert_eq!(client.as_deref(), Some("Buffer"), "Graph's `application`");
    assert!(
        url.as_deref()
            .unwrap()
            .starts_with("https://www.facebook.com/")
    );
    // A link attachment's unshimmed target is one of the post's links.
    let attached = g
        .publish_link(PAGE_ID, "Read this", "https://evil.example/attached")
        .await;
    until(
        || {
            incidents(&app, PAGE_NAME, Rule::UnapprovedPost)
                .iter()
                .any(|i| holds(i, &attached))
        },
        "the link post",
    )
    .await;
    // An approved text whose link shows as a preview card is the approved post.
    let (status, _) = app
        .api_post(
            "/api/v1/approvals",
            serde_json::json!({ "account": PAGE_NAME, "text": "Launch day https://example.com/launch" }),
        )
        .await;
    assert_eq!(status, 201);
    let launch = g
        .publish_link(
            PAGE_ID,
            "Launch day https://example.com/launch",
            "https://example.com/launch",
        )
        .await;
    let s = quiet::settle(&app, PAGE_NAME, 2).await;
    s.assert_not_held(&launch, "an approved post with its link card must not page");
    s.assert_not_mentioned("example.com/launch", "an approved post must not page");
    s.assert_not_held(&visitor, "a visitor's post is not the Page's");
    s.assert_not_mentioned("visitor.example", "a visitor's post is not paged");
    // Every request named the pinned version and asked for the publishing app.
    let feed = g
        .calls()
        .into_iter()
        .rfind(|c| c.path.ends_with("/feed"))
        .unwrap();
    assert_eq!(feed.path, format!("/{VERSION}/{PAGE_ID}/feed"));
    assert!(feed.query.contains("application"), "{}", feed.query);
    app.stop().await;
}

#[tokio::test]
async fn each_page_field_change_pages() {
    let g = fake_graph().await;
    let app = spawn_with_meta(&g, Duration::from_millis(150), |_| {}).await;
    // The CDN re-signs picture URLs: the same picture under a new signature is no change.
    g.set_page_field(
        PAGE_ID,
        "picture",
        "https://scontent.xx.fbcdn.net/v/t39.30808-1/avatar_n.jpg?oh=02&oe=BB",
    )
    .await;
    let s = quiet::settle(&app, PAGE_NAME, 2).await;
    assert!(s.incidents.is_empty(), "re-signed picture: {:?}", s.sent);
    let changes = [
        ("name", "ExampleCorp Giveaway", "display_name"),
        ("username", "examplecorp.giveaway", "handle"),
        ("about", "Claim your prize", "note"),
        ("website", "https://evil.example", "url"),
        (
            "picture",
            "https://scontent.xx.fbcdn.net/v/t39.30808-1/scam_n.jpg?oh=03",
            "avatar",
        ),
    ];
    for (field, value, ours) in changes {
        g.set_page_field(PAGE_ID, field, value).await;
        until(
            || {
                incidents(&app, PAGE_NAME, Rule::ProfileChanged)
                    .iter()
                    .any(|i| matches!(&i.evidence, Evidence::Profile { changes } if changes.contains_key(ours)))
            },
            field,
        )
        .await;
    }
    let inc = incidents(&app, PAGE_NAME, Rule::ProfileChanged).remove(0);
    assert_eq!(inc.severity, Severity::Critical, "the handle and website");
    let Evidence::Profile { changes } = &inc.evidence else {
        panic!()
    };
    assert_eq!(changes["handle"].after, "examplecorp.giveaway");
    assert_eq!(
        changes["avatar"].after,
        "https://scontent.xx.fbcdn.net/v/t39.30808-1/scam_n.jpg"
    );
    until(|| shown(&app, "examplecorp.giveaway"), "the handle paged").await;
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_page_token_pages_monitor_blind() {
    let g = fake_graph().await;
    let app = spawn_with_meta(&g, Duration::from_millis(150), |_| {}).await;
    g.revoke(PAGE_TOKEN);
    until(
        || !incidents(&app, PAGE_NAME, Rule::MonitorBlind).is_empty(),
        "monitor.blind",
    )
    .await;
    let inc = incidents(&app, PAGE_NAME, Rule::MonitorBlind).remove(0);
    let Evidence::Channel { problem, .. } = &inc.evidence else {
        panic!()
    };
    assert!(problem.contains("token was refused"), "{problem}");
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains("monitor.blind") && m.text.contains(PAGE_NAME))
        },
        "paged",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn instagram_history_rogue_media_profile_and_revoked_token() {
    let g = fake_graph().await;
    let app = spawn_with_meta(&g, Duration::from_millis(150), |_| {}).await;
    let history = quiet::settle(&app, IG_NAME, 1).await;
    assert!(history.incidents.is_empty() && history.sent.is_empty());
    let rogue = g.publish_media(IG_ID, "Giveaway! DM us https://evil.example/ig", "VIDEO");
    let text = app
        .page_containing("https://evil.example/ig", "the rogue media paged")
        .await;
    assert!(text.contains(IG_NAME), "{text}");
    let inc = incidents(&app, IG_NAME, Rule::UnapprovedPost).remove(0);
    assert_eq!(inc.object, rogue);
    let Evidence::Post { url, media, .. } = &inc.evidence else {
        panic!()
    };
    assert_eq!(*media, 1);
    assert!(
        url.as_deref()
            .unwrap()
            .starts_with("https://www.instagram.com/p/")
    );
    for (field, value, ours) in [
        ("username", "examplecorp_prizes", "handle"),
        ("name", "ExampleCorp Prizes", "display_name"),
        ("biography", "Claim now", "note"),
        ("website", "https://evil.example", "url"),
        (
            "profile_picture_url",
            "https://scontent.cdninstagram.com/v/scam.jpg?oh=9",
            "avatar",
        ),
    ] {
        g.set_ig_field(IG_ID, field, value);
        until(
            || {
                incidents(&app, IG_NAME, Rule::ProfileChanged)
                    .iter()
                    .any(|i| matches!(&i.evidence, Evidence::Profile { changes } if changes.contains_key(ours)))
            },
            field,
        )
        .await;
    }
    g.revoke(IG_TOKEN);
    until(
        || !incidents(&app, IG_NAME, Rule::MonitorBlind).is_empty(),
        "instagram monitor.blind",
    )
    .await;
    app.stop().await;
}

/// The event → page time of a pushed post: from the webhook delivery leaving the fake to the
/// page reaching the Bot API fake, with a poll interval of an hour so only the push can explain
/// the page.
#[tokio::test]
async fn a_pushed_page_post_pages_without_waiting_for_the_poll() {
    let g = fake_graph().await;
    let app = spawn_with_meta(&g, Duration::from_secs(3600), with_push).await;
    let callback = format!("{}/hooks/meta", app.api);
    // A wrong verify token gets no challenge back, and is counted.
    assert_eq!(g.subscribe(&callback, "guessed", APP_SECRET).await, 403);
    assert_eq!(
        app.metric(r#"tocsin_webhook_rejected_total{provider="meta",reason="verify_token"}"#)
            .await,
        1.0
    );
    assert_eq!(g.subscribe(&callback, VERIFY_TOKEN, APP_SECRET).await, 200);

    let mut figures = Vec::new();
    for n in 0..5 {
        let needle = format!("https://evil.example/pushed/{n}");
        g.publish(PAGE_ID, &format!("Claim now {needle}"), None)
            .await;
        let delivery = g.deliveries().last().cloned().unwrap();
        assert_eq!(delivery.status, 200);
        // The first post opens the incident's page; later ones of the burst edit it in place.
        let shown = || {
            let sent = app
                .bot
                .sent()
                .into_iter()
                .filter(|m| m.text.contains(&needle));
            let edited = app
                .bot
                .edits()
                .into_iter()
                .filter(|m| m.text.contains(&needle));
            sent.map(|m| m.received_instant)
                .chain(edited.map(|m| m.received_instant))
                .min()
        };
        until(|| shown().is_some(), "the pushed post paged").await;
        figures.push(shown().unwrap() - delivery.sent_at);
        // The chat's pacing keeps Bot API requests a second apart: spacing the posts past it
        // measures the push, not the pacer.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    figures.sort();
    println!(
        "facebook_page push → page over {} posts: min {:?}, median {:?}, max {:?}",
        figures.len(),
        figures[0],
        figures[figures.len() / 2],
        figures[figures.len() - 1]
    );
    assert!(
        figures[figures.len() - 1] < Duration::from_secs(3600),
        "pushed, not polled"
    );
    app.stop().await;
}

#[tokio::test]
async fn forged_unsigned_oversized_and_redelivered_pushes() {
    let g = fake_graph().await;
    let app = spawn_with_meta(&g, Duration::from_secs(3600), with_push).await;
    let callback = format!("{}/hooks/meta", app.api);
    assert_eq!(g.subscribe(&callback, VERIFY_TOKEN, APP_SECRET).await, 200);
    let metric = |reason: &str| {
        format!(r#"tocsin_webhook_rejected_total{{provider="meta",reason="{reason}"}}"#)
    };
    let body = serde_json::json!({
        "object": "page",
        "entry": [{ "id": PAGE_ID, "time": 1, "changes": [{ "field": "feed",
            "value": { "item": "status", "verb": "add", "post_id": format!("{PAGE_ID}_1"), "message": "forged" } }] }],
    })
    .to_string();
    let polls = |g: &FakeGraph| {
        g.calls()
            .iter()
            .filter(|c| c.path.ends_with("/feed"))
            .count()
    };
    let before = polls(&g);
    // Unsigned: refused before the body is read.
    assert_eq!(g.send(&callback, body.clone(), None).await, 401);
    // Signed with another key.
    let forged = sign("not-the-app-secret", body.as_bytes());
    assert_eq!(g.send(&callback, body.clone(), Some(forged)).await, 401);
    // Signed, but the body changed after signing.
    let good = sign(APP_SECRET, body.as_bytes());
    let tampered = body.replace("forged", "FORGED");
    assert_eq!(g.send(&callback, tampered, Some(good)).await, 401);
    // Over `[meta] max_body`.
    let huge = "x".repeat(2 * 1024 * 1024);
    let huge_sig = sign(APP_SECRET, huge.as_bytes());
    assert_eq!(g.send(&callback, huge, Some(huge_sig)).await, 413);
    // Signed, not JSON.
    let junk = "not json".to_owned();
    let junk_sig = sign(APP_SECRET, junk.as_bytes());
    assert_eq!(g.send(&callback, junk, Some(junk_sig)).await, 400);
    assert_eq!(app.metric(&metric("unsigned")).await, 1.0);
    assert_eq!(app.metric(&metric("signature")).await, 2.0);
    assert_eq!(app.metric(&metric("too_large")).await, 1.0);
    assert_eq!(app.metric(&metric("malformed")).await, 1.0);
    assert_eq!(polls(&g), before, "nothing refused woke the poller");

    // A real post, then Meta's redelivery of the same change: taken once, counted once.
    let rogue = g
        .publish(PAGE_ID, "Claim https://evil.example/r", None)
        .await;
    until(
        || app.incident_by_object(&rogue).is_some(),
        "the pushed post",
    )
    .await;
    assert_eq!(g.redeliver_last().await, 200);
    assert_eq!(g.redeliver_last().await, 200);
    assert_eq!(
        app.metric(r#"tocsin_webhook_duplicates_total{provider="meta"}"#)
            .await,
        2.0,
        "each redelivery counted once"
    );
    assert_eq!(
        app.metric(r#"tocsin_webhook_summaries_total{provider="meta"}"#)
            .await,
        1.0,
        "the change itself taken once"
    );
    // A change that says nothing new wakes one more poll: the post is still paged once.
    let judged = || app.health.snapshot()[PAGE_NAME].judged_polls;
    let before = judged();
    g.set_page_field(PAGE_ID, "about", "Official Page of ExampleCorp")
        .await;
    until(|| judged() > before, "the woken poll judged").await;
    let sent: Vec<_> = app
        .bot
        .sent()
        .into_iter()
        .filter(|m| m.text.contains("https://evil.example/r"))
        .collect();
    assert_eq!(sent.len(), 1, "one page for the post");
    app.stop().await;
}

#[tokio::test]
async fn takedown_deletes_a_page_post_and_instagram_says_to_delete_by_hand() {
    let g = fake_graph().await;
    let http = reqwest::Client::new();
    let page = account(&g, Platform::FacebookPage, Duration::from_secs(1));
    let rogue = g.publish(PAGE_ID, "Claim https://evil.example", None).await;
    // The read-only token may not delete.
    let mut read_only = page.clone();
    read_only.write_token = Some(Secret::new(PAGE_TOKEN));
    assert!(matches!(
        delete_page_post(&http, &read_only, VERSION, &rogue).await,
        TakedownOutcome::Forbidden { .. }
    ));
    assert!(g.has_post(&rogue));
    assert_eq!(
        delete_page_post(&http, &page, VERSION, &rogue).await,
        TakedownOutcome::Deleted
    );
    assert!(!g.has_post(&rogue));
    assert_eq!(
        delete_page_post(&http, &page, VERSION, &rogue).await,
        TakedownOutcome::AlreadyGone
    );
    let mut no_write = page.clone();
    no_write.write_token = None;
    assert!(matches!(
        delete_page_post(&http, &no_write, VERSION, &rogue).await,
        TakedownOutcome::Forbidden { .. }
    ));
    assert!(matches!(
        delete_page_post(&http, &page, VERSION, "../me").await,
        TakedownOutcome::Failed { .. }
    ));
    let ig = account(&g, Platform::Instagram, Duration::from_secs(1));
    let media = g.publish_media(IG_ID, "Giveaway", "IMAGE");
    let TakedownOutcome::Refused { detail } = instagram_by_hand(&http, &ig, VERSION, &media).await
    else {
        panic!("Instagram cannot delete through the API")
    };
    assert!(
        detail.contains(&format!("https://www.instagram.com/p/C{media}/")),
        "{detail}"
    );
    assert!(
        g.calls()
            .iter()
            .all(|c| c.method != "DELETE" || c.path.contains(PAGE_ID)),
        "nothing deleted on Instagram"
    );
}

#[tokio::test]
async fn the_page_takedown_button_deletes_the_rogue_post() {
    let g = fake_graph().await;
    let app = spawn_with_meta(&g, Duration::from_millis(150), |_| {}).await;
    let rogue = g
        .publish(PAGE_ID, "Claim https://evil.example/button", None)
        .await;
    until(
        || {
            app.incident_by_object(&rogue)
                .is_some_and(|i| i.page.is_some())
        },
        "paged",
    )
    .await;
    let inc = app.incident_by_object(&rogue).unwrap();
    let msg = inc.page.as_ref().unwrap().message_id;
    app.bot.press_button(
        tocsin_fakes::ONCALL_CHAT,
        &responder(),
        msg,
        &format!("takedown:{}", inc.id),
    );
    until(|| !g.has_post(&rogue), "deleted on the Page").await;
    until(
        || app.store.incident(inc.id).unwrap().unwrap().state == State::Resolved,
        "contained",
    )
    .await;
    app.stop().await;
}

/// With `general.hooks_listen`, Meta's webhook is served there, beside the provider webhooks,
/// and not on the private listener.
#[tokio::test]
async fn with_hooks_listen_the_page_webhook_is_served_there_alone() {
    let g = fake_graph().await;
    let masto = tocsin_fakes::mastodon::FakeMastodon::start().await.unwrap();
    masto.add_account(ACCOUNT_ID, "examplecorp", "ExampleCorp", "", &[]);
    let bot = tocsin_fakes::telegram::FakeBotApi::start(BOT_TOKEN)
        .await
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut config = config(state.path(), &bot, &masto);
    config.general.hooks_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    config.accounts.push(account(
        &g,
        Platform::FacebookPage,
        Duration::from_secs(3600),
    ));
    with_push(&mut config);
    let app = tocsin::App::build(config).await.unwrap();
    let (main, hooks) = (app.http_addr(), app.hooks_addr());
    assert_ne!(main, hooks);
    let health = app.health().clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(app.run_until(shutdown.clone()));
    let judged = || {
        health
            .snapshot()
            .get(PAGE_NAME)
            .map_or(0, |h| h.judged_polls)
    };
    until(|| judged() >= 1, "the first poll judged").await;
    let on_main = format!("http://{main}/hooks/meta");
    assert_eq!(g.subscribe(&on_main, VERIFY_TOKEN, APP_SECRET).await, 404);
    let on_hooks = format!("http://{hooks}/hooks/meta");
    assert_eq!(g.subscribe(&on_hooks, VERIFY_TOKEN, APP_SECRET).await, 200);
    g.publish(PAGE_ID, "Claim https://evil.example/apart", None)
        .await;
    until(
        || {
            bot.sent()
                .iter()
                .any(|m| m.text.contains("https://evil.example/apart"))
        },
        "the post pushed through the hooks listener paged",
    )
    .await;
    shutdown.cancel();
    handle.await.unwrap().unwrap();
}

/// Meta's usage headers slow the polls: at 95 % of the Page's limit the 150 ms interval is
/// stretched four times, and it comes back once the usage falls.
#[tokio::test]
async fn a_page_near_its_rate_limit_is_polled_less_often() {
    let g = fake_graph().await;
    let app = spawn_with_meta(&g, Duration::from_millis(150), |_| {}).await;
    let feed_calls = |g: &FakeGraph| -> Vec<std::time::Instant> {
        g.calls()
            .into_iter()
            .filter(|c| c.path.ends_with(&format!("{PAGE_ID}/feed")))
            .map(|c| c.at)
            .collect()
    };
    g.set_usage(95);
    // The answer that reports 95 % is the first of the slow spacing.
    let from = feed_calls(&g).len() + 1;
    until(|| feed_calls(&g).len() >= from + 3, "three slowed polls").await;
    let calls = feed_calls(&g);
    for pair in calls[from..].windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(600),
            "polls {:?} apart at 95 %",
            pair[1] - pair[0]
        );
    }
    let h = app.health.snapshot()[PAGE_NAME].clone();
    assert_eq!(h.rate_limit.unwrap().remaining, 5);
    g.set_usage(10);
    let judged = app.health.snapshot()[PAGE_NAME].judged_polls;
    until(
        || app.health.snapshot()[PAGE_NAME].judged_polls >= judged + 4,
        "polls at the interval again",
    )
    .await;
    app.stop().await;
}

/// Graph writes whole seconds: media of the same second as the newest one the first poll read
/// is still new, and pages.
#[tokio::test]
async fn media_of_the_first_polls_last_second_still_pages() {
    let g = fake_graph().await;
    let app = spawn_with_meta(&g, Duration::from_millis(150), |_| {}).await;
    let same = g.publish_media_same_second(IG_ID, "Same second https://evil.example/s", "IMAGE");
    until(
        || app.incident_by_object(&same).is_some(),
        "the same-second media paged",
    )
    .await;
    app.stop().await;
}
