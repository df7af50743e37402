//! Bluesky: identity from the DID document, posts and profile from the PDS, push from Jetstream,
//! a dropped stream as `monitor.blind`, and takedown by `deleteRecord`.

use std::{collections::BTreeMap, time::Duration};

use tocsin::{
    App,
    config::{Account, Platform, Secret},
    model::{Action, Evidence, Incident, Resolution, Rule, Severity, State, TakedownOutcome},
    platforms::bluesky::{identity::resolve_identity, takedown::delete_post},
    store::Store,
    watch::Health,
};
use tocsin_fakes::{
    bluesky::{AttackerPds, FakeBluesky, blob},
    loopback_config,
    mastodon::FakeMastodon,
    telegram::FakeBotApi,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::*;

const SKY: &str = "bluesky-main";
const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const HANDLE: &str = "examplecorp.bsky.social";
const APP_PASSWORD: &str = "abcd-efgh-ijkl-mnop";

struct Sky {
    sky: FakeBluesky,
    bot: FakeBotApi,
    store: Store,
    health: Health,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), tocsin::AppError>>,
    state: tempfile::TempDir,
    masto: FakeMastodon,
}

fn account(sky: &FakeBluesky, poll: Duration) -> Account {
    Account {
        name: SKY.into(),
        platform: Platform::Bluesky,
        base_url: sky.url(),
        account_id: HANDLE.into(),
        token: None,
        write_token: Some(Secret::new(APP_PASSWORD)),
        poll_interval: poll,
        grace: Some(Duration::from_secs(1)),
        plc_url: Some(sky.url()),
        jetstream_url: Some(sky.jetstream_url()),
        pds_url: None,
        appview_url: Some(sky.url()),
        // The fakes are plain http on loopback.
        allow_private_endpoints: true,
        trusted_clients: Vec::new(),
    }
}

async fn fake() -> FakeBluesky {
    let sky = FakeBluesky::start().await.unwrap();
    sky.add_account(DID, HANDLE, "ExampleCorp", "Official account.");
    sky.set_app_password(DID, Some(APP_PASSWORD));
    sky.publish(
        DID,
        "An old post from before tocsin https://example.com/old",
    );
    sky
}

/// The daemon watching the Bluesky account only, first poll done and the stream connected.
async fn spawn(poll: Duration) -> Sky {
    let t = start(poll, |_| {}).await;
    until(|| t.connected(), "the stream connected").await;
    t
}

/// The daemon watching the Bluesky account, `tweak`ed, as soon as it runs.
async fn start(poll: Duration, tweak: impl FnOnce(&mut Account)) -> Sky {
    let sky = fake().await;
    let masto = FakeMastodon::start().await.unwrap();
    let bot = FakeBotApi::start(BOT_TOKEN).await.unwrap();
    let mut acct = account(&sky, poll);
    tweak(&mut acct);
    run_on(sky, masto, bot, tempfile::tempdir().unwrap(), acct).await
}

/// Runs the daemon on the fakes and the state in `state` (a restart passes the same).
async fn run_on(
    sky: FakeBluesky,
    masto: FakeMastodon,
    bot: FakeBotApi,
    state: tempfile::TempDir,
    acct: Account,
) -> Sky {
    let text = loopback_config(state.path(), &bot, &masto, ACCOUNT_ID, API_TOKEN, POLL);
    let mut config = tocsin::Config::parse(&text, "loopback").unwrap();
    config.accounts = vec![acct];
    // One page per finding, so each test reads its own.
    config.grouping.window = Duration::ZERO;
    let app = App::build(config).await.unwrap();
    let store = app.store().clone();
    let health = app.health().clone();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run_until(shutdown.clone()));
    Sky {
        sky,
        bot,
        store,
        health,
        shutdown,
        handle,
        state,
        masto,
    }
}

impl Sky {
    fn connected(&self) -> bool {
        self.health
            .snapshot()
            .get(SKY)
            .and_then(|h| h.stream.clone())
            .is_some_and(|s| s.connected)
    }

    fn polls(&self) -> u64 {
        self.health.snapshot().get(SKY).map_or(0, |h| h.polls)
    }

    fn page(&self, needle: &str) -> Option<String> {
        self.bot
            .sent()
            .into_iter()
            .map(|m| m.text)
            .find(|t| t.contains(needle))
    }

    async fn wait_page(&self, needle: &str) -> String {
        until(|| self.page(needle).is_some(), needle).await;
        self.page(needle).unwrap()
    }

    fn incidents(&self, rule: Rule) -> Vec<Incident> {
        let all = self.store.incidents().unwrap();
        all.into_iter().filter(|i| i.rule == rule).collect()
    }

    /// Publishes a rogue post, waits for its page; the incident and the page's message id.
    async fn rogue(&self, text: &str) -> (Incident, i32) {
        let rkey = self.sky.publish(DID, text);
        let found = || {
            self.incidents(Rule::UnapprovedPost)
                .into_iter()
                .find(|i| i.object == rkey && i.page.is_some())
        };
        until(|| found().is_some(), "the rogue post's page").await;
        let inc = found().unwrap();
        let msg = inc.page.as_ref().unwrap().message_id;
        (inc, msg)
    }

    fn incident(&self, id: u64) -> Incident {
        self.store.incident(id).unwrap().unwrap()
    }

    /// Presses Take down on the page and waits for the takedown's answers in the timeline.
    async fn take_down(&self, inc: &Incident, msg: i32) -> Vec<TakedownOutcome> {
        let before = results(&self.incident(inc.id)).len();
        self.bot
            .press_button(CHAT, &responder(), msg, &format!("takedown:{}", inc.id));
        until(
            || results(&self.incident(inc.id)).len() > before,
            "the takedown's answer",
        )
        .await;
        results(&self.incident(inc.id)).split_off(before)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }

    /// Stops the daemon, runs `while_down`, and starts a new one on the same state.
    async fn restart(self, poll: Duration, while_down: impl FnOnce(&FakeBluesky)) -> Sky {
        let Sky {
            sky,
            bot,
            store,
            shutdown,
            handle,
            state,
            masto,
            ..
        } = self;
        shutdown.cancel();
        handle.await.unwrap().unwrap();
        // The state dir is locked while any handle on it lives.
        drop(store);
        while_down(&sky);
        let acct = account(&sky, poll);
        let t = run_on(sky, masto, bot, state, acct).await;
        until(|| t.connected(), "the stream connected again").await;
        t
    }
}

fn results(inc: &Incident) -> Vec<TakedownOutcome> {
    inc.timeline
        .iter()
        .filter_map(|e| match &e.action {
            Action::TakedownResult { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .collect()
}

/// The approved baseline's PDS: the fake's.
fn pinned(sky: &FakeBluesky) -> BTreeMap<String, String> {
    BTreeMap::from([("pds".to_owned(), sky.url().to_string())])
}

/// Polls are an hour apart here: whatever pages came by push.
const PUSH_ONLY: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn rogue_post_and_edit_page_by_push() {
    let app = spawn(PUSH_ONLY).await;
    assert!(app.bot.sent().is_empty(), "history does not page");
    let polls = app.polls();

    let rkey = app.sky.publish(
        DID,
        "Free tokens! Claim at https://evil.example/claim/now-before-it-ends",
    );
    let page = app.wait_page("social.unapproved_post").await;
    assert!(page.contains("CRITICAL"), "{page}");
    // The link facet is expanded to its target, not the shortened text the app shows.
    assert!(
        page.contains("https://evil.example/claim/now-before-it-ends"),
        "{page}"
    );
    assert!(
        page.contains(&format!("https://bsky.app/profile/{DID}/post/{rkey}")),
        "{page}"
    );
    assert_eq!(app.polls(), polls, "paged by push, not by a poll");

    app.sky.edit(DID, &rkey, "Nothing to see here");
    let page = app.wait_page("social.post_edited").await;
    assert!(page.contains("Nothing to see here"), "{page}");
    let inc = &app.incidents(Rule::PostEdited)[0];
    assert_eq!(inc.object, rkey);
    app.stop().await;
}

#[tokio::test]
async fn profile_drift_handle_change_and_account_status_by_push() {
    let app = spawn(PUSH_ONLY).await;
    app.sky.update_profile(DID, |p| {
        p["displayName"] = "ExampleCorp Giveaways".into();
        p["avatar"] = blob("bafkreinewavatar");
    });
    let page = app.wait_page("display_name").await;
    assert!(page.contains("HIGH"), "a name and avatar are high: {page}");
    assert!(page.contains("ExampleCorp Giveaways"), "{page}");
    assert!(page.contains("bafkreinewavatar"), "{page}");
    let inc = &app.incidents(Rule::ProfileChanged)[0];
    let Evidence::Profile { changes } = &inc.evidence else {
        panic!("profile evidence")
    };
    assert!(changes.contains_key("record_cid"), "{changes:?}");

    // Approve it so the next drift is a new incident.
    app.bot
        .push_command(CHAT, &responder(), &format!("/approve {}", inc.id));
    until(
        || app.store.incident(inc.id).unwrap().unwrap().state == State::Resolved,
        "approved",
    )
    .await;

    app.sky.set_handle(DID, "examplecorp-support.bsky.social");
    until(
        || {
            app.incidents(Rule::ProfileChanged)
                .iter()
                .any(|i| i.severity == Severity::Critical)
        },
        "the handle change",
    )
    .await;
    let page = app.wait_page("examplecorp-support.bsky.social").await;
    assert!(page.contains("CRITICAL"), "{page}");
    assert!(page.contains(&format!("handle: “{HANDLE}”")), "{page}");

    app.sky.set_status(DID, false, Some("deactivated"));
    until(
        || {
            app.bot
                .edits()
                .iter()
                .any(|e| e.text.contains("account_status: “active” → “deactivated”"))
        },
        "the account event on the page",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn pds_move_and_a_silent_key_rotation_page_as_critical() {
    let app = spawn(Duration::from_millis(200)).await;
    let other = FakeBluesky::start().await.unwrap();
    other.add_account(DID, HANDLE, "ExampleCorp", "Official account.");
    app.sky.set_pds(DID, &other.url());
    let page = app.wait_page("pds:").await;
    assert!(page.contains("CRITICAL"), "{page}");
    assert!(page.contains(other.url().as_str()), "{page}");
    // The poller follows the move: the new PDS is read.
    until(
        || other.request_count("com.atproto.repo.listRecords") > 0,
        "polling the new PDS",
    )
    .await;

    // No identity event for this one: only the poll's read of the PLC data can see it.
    app.sky
        .set_rotation_keys(DID, &["did:key:zQ3shattacker"], false);
    until(
        || {
            let edits = app.bot.edits();
            edits
                .iter()
                .any(|e| e.text.contains("did:key:zQ3shattacker"))
                || app.page("did:key:zQ3shattacker").is_some()
        },
        "the rotation key change",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_dropped_stream_pages_monitor_blind_the_poll_still_sees_and_recovery_resolves() {
    let app = spawn(Duration::from_millis(200)).await;
    let connects = app.sky.stream_connects();
    app.sky.drop_stream();
    until(|| !app.connected(), "the drop noticed").await;

    // While the stream is down the poller is the backstop.
    app.sky.publish(DID, "Posted while the stream was down");
    let page = app.wait_page("Posted while the stream was down").await;
    assert!(page.contains("social.unapproved_post"), "{page}");

    let page = app.wait_page("monitor.blind").await;
    assert!(page.contains("push stream down"), "{page}");
    let blind = app.incidents(Rule::MonitorBlind);
    assert_eq!(blind.len(), 1);
    assert_eq!(blind[0].state, State::Open);
    app.bot.push_command(CHAT, &responder(), "/status");
    let status = app.wait_page("push stream DOWN").await;
    assert!(
        status.contains("jetstream") || status.contains("503"),
        "{status}"
    );

    app.sky.restore_stream();
    until(
        || app.store.incident(blind[0].id).unwrap().unwrap().state == State::Resolved,
        "monitor.blind resolved",
    )
    .await;
    assert!(app.sky.stream_connects() > connects, "reconnected");
    assert_eq!(app.incidents(Rule::MonitorBlind).len(), 1, "one incident");

    // Push works again after the reconnect, and the replayed backlog paged nothing twice.
    app.sky.publish(DID, "After the reconnect");
    app.wait_page("After the reconnect").await;
    let pages = app
        .bot
        .sent()
        .into_iter()
        .filter(|m| m.text.contains("Posted while the stream was down"))
        .count();
    assert_eq!(pages, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_reconnect_resumes_from_the_cursor_and_replays_what_was_missed() {
    let app = spawn(PUSH_ONLY).await;
    let polls = app.polls();
    app.sky.drop_stream();
    until(|| !app.connected(), "the drop noticed").await;
    app.sky.publish(DID, "Published while nobody listened");
    app.sky.restore_stream();
    let page = app.wait_page("Published while nobody listened").await;
    assert!(page.contains("social.unapproved_post"), "{page}");
    assert_eq!(
        app.polls(),
        polls,
        "replayed by Jetstream from the cursor, not polled"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_restart_resumes_jetstream_from_the_stored_cursor() {
    let app = spawn(PUSH_ONLY).await;
    assert_eq!(
        app.sky.subscribe_cursors(),
        vec![None],
        "a first start reads live"
    );
    app.sky.publish(DID, "Streamed before the restart");
    app.wait_page("Streamed before the restart").await;
    let app = app
        .restart(PUSH_ONLY, |sky| {
            sky.publish(DID, "Published while tocsin was stopped");
        })
        .await;
    let cursors = app.sky.subscribe_cursors();
    assert_eq!(cursors.len(), 2, "{cursors:?}");
    assert!(
        cursors[1].is_some(),
        "the restarted daemon resumed from its stored cursor: {cursors:?}"
    );
    let page = app.wait_page("Published while tocsin was stopped").await;
    assert!(page.contains("social.unapproved_post"), "{page}");
    app.stop().await;
}

#[tokio::test]
async fn takedown_deletes_reports_already_gone_and_a_refused_app_password() {
    let sky = fake().await;
    let http = reqwest::Client::new();
    let acct = account(&sky, POLL);
    let baseline = pinned(&sky);
    let rkey = sky.publish(DID, "rogue");

    assert_eq!(
        delete_post(&http, &acct, &rkey, &baseline).await,
        TakedownOutcome::Deleted
    );
    assert!(!sky.has_post(DID, &rkey));
    let delete = sky
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("com.atproto.repo.deleteRecord"))
        .unwrap();
    assert!(delete.bearer.is_some(), "with the session's access token");
    assert_eq!(delete.body.unwrap()["collection"], "app.bsky.feed.post");

    assert_eq!(
        delete_post(&http, &acct, &rkey, &baseline).await,
        TakedownOutcome::AlreadyGone
    );

    let other = sky.publish(DID, "another rogue");
    sky.set_app_password(DID, None);
    let outcome = delete_post(&http, &acct, &other, &baseline).await;
    assert!(
        matches!(&outcome, TakedownOutcome::Forbidden { detail } if detail.contains("app password")),
        "{outcome:?}"
    );
    assert!(sky.has_post(DID, &other));

    let mut no_password = acct.clone();
    no_password.write_token = None;
    assert!(matches!(
        delete_post(&http, &no_password, &other, &baseline).await,
        TakedownOutcome::Failed { .. }
    ));
}

#[tokio::test]
async fn a_pds_move_then_take_down_sends_nothing_to_the_new_pds_and_stays_open() {
    let app = spawn(PUSH_ONLY).await;
    let (inc, msg) = app.rogue("Free tokens at https://evil.example/claim").await;
    // Taken over at the platform: the DID document now names the intruder's PDS, which
    // collects passwords and answers RecordNotFound for everything.
    let attacker = AttackerPds::start().await.unwrap();
    app.sky.set_pds(DID, &attacker.url());
    let drift = app.wait_page("pds:").await;
    assert!(drift.contains(attacker.url().as_str()), "{drift}");

    let outcomes = app.take_down(&inc, msg).await;
    assert!(
        matches!(&outcomes[..], [TakedownOutcome::Refused { detail }]
            if detail.contains(attacker.url().as_str()) && detail.contains("approved")),
        "{outcomes:?}"
    );
    assert!(attacker.passwords().is_empty(), "the app password leaked");
    assert_eq!(
        attacker.requests().len(),
        0,
        "nothing is sent to the new PDS: {:?}",
        attacker.requests()
    );
    let now = app.incident(inc.id);
    assert_ne!(now.state, State::Resolved, "not contained: {now:?}");
    assert!(app.sky.has_post(DID, &inc.object), "the post is still up");
    // The reason is on the page.
    until(
        || {
            app.bot
                .message(CHAT, msg)
                .is_some_and(|m| m.text.contains("refused"))
        },
        "the refusal on the page",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn record_not_found_is_gone_only_once_the_appview_agrees() {
    let app = spawn(PUSH_ONLY).await;
    let (inc, msg) = app.rogue("Claim your airdrop https://evil.example/a").await;
    // The PDS says the record is not there; readers still see the post.
    app.sky.hide_from_pds(DID, &inc.object);
    let outcomes = app.take_down(&inc, msg).await;
    assert!(
        matches!(&outcomes[..], [TakedownOutcome::Unconfirmed { detail }]
            if detail.contains("still shows it")),
        "{outcomes:?}"
    );
    assert_ne!(app.incident(inc.id).state, State::Resolved);
    assert!(app.sky.request_count("app.bsky.feed.getPosts") >= 1);

    // Once the AppView no longer has it, the same answer from the PDS is confirmed.
    app.sky.appview_catch_up(DID);
    let outcomes = app.take_down(&inc, msg).await;
    assert_eq!(outcomes, vec![TakedownOutcome::AlreadyGone]);
    let now = app.incident(inc.id);
    assert_eq!(now.state, State::Resolved);
    assert_eq!(now.resolution, Some(Resolution::Contained));
    app.stop().await;
}

#[tokio::test]
async fn a_private_or_plain_http_pds_is_refused_without_allow_private_endpoints() {
    let app = start(Duration::from_millis(200), |a| {
        a.allow_private_endpoints = false;
    })
    .await;
    // The DID document names http://127.0.0.1:PORT: neither https nor public.
    let page = app.wait_page("monitor.blind").await;
    assert!(page.contains("is not https"), "{page}");
    for nsid in [
        "com.atproto.sync.getRepoStatus",
        "com.atproto.repo.getRecord",
        "com.atproto.repo.listRecords",
    ] {
        assert_eq!(app.sky.request_count(nsid), 0, "{nsid} was called");
    }
    let strict = {
        let mut a = account(&app.sky, POLL);
        a.allow_private_endpoints = false;
        a
    };
    let http = reqwest::Client::new();
    // A takedown pinned to that PDS refuses it too, before any request.
    let rkey = app.sky.publish(DID, "rogue");
    let outcome = delete_post(&http, &strict, &rkey, &pinned(&app.sky)).await;
    assert!(
        matches!(&outcome, TakedownOutcome::Refused { detail } if detail.contains("is not https")),
        "{outcome:?}"
    );
    assert_eq!(app.sky.request_count("com.atproto.server.createSession"), 0);
    // A did:web host is data too: a loopback one is not fetched.
    let err = resolve_identity(&http, &strict, "did:web:127.0.0.1%3A9")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not on a public host"), "{err}");
    app.stop().await;
}
