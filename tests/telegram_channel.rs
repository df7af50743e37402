//! A watched Telegram channel: posts and edits pushed through the bot's updates, the profile
//! and admin list polled, the bot's removal, and takedown by deleteMessage.

use tocsin::{
    config::{Account, Platform, Secret},
    model::{Action, Evidence, Incident, Resolution, Rule, Severity, State, TakedownOutcome},
};
use tocsin_fakes::telegram::FakeUser;

use crate::support::*;

const CHANNEL: i64 = -1001234500001;
const NAME: &str = "tg-news";

fn owner() -> FakeUser {
    FakeUser::new(900, "Owner", Some("corp_owner"))
}

async fn spawn_channel(write: bool) -> TestApp {
    let masto = tocsin_fakes::mastodon::FakeMastodon::start().await.unwrap();
    masto.add_account(ACCOUNT_ID, "examplecorp", "ExampleCorp", "<p>hi</p>", &[]);
    let bot = tocsin_fakes::telegram::FakeBotApi::start(BOT_TOKEN)
        .await
        .unwrap();
    bot.add_channel(CHANNEL, "ExampleCorp News", &owner());
    bot.update_channel(CHANNEL, |c| {
        c.description = "Official news of ExampleCorp".into();
        c.username = Some("examplecorp".into());
        c.photo_unique_id = Some("AQADlogo".into());
    });
    let url = bot.url();
    let state = tempfile::tempdir().unwrap();
    let app = start_with(masto, bot, state, |c| {
        c.accounts.push(Account {
            name: NAME.into(),
            platform: Platform::TelegramChannel,
            base_url: url,
            account_id: CHANNEL.to_string(),
            token: None,
            write_token: write.then(|| Secret::new(BOT_TOKEN)),
            poll_interval: POLL,
            grace: None,
            plc_url: None,
            jetstream_url: None,
            pds_url: None,
            appview_url: None,
            allow_private_endpoints: false,
            trusted_clients: Vec::new(),
        });
    })
    .await;
    // The first channel poll is the baseline of the profile and of the admins.
    until(
        || {
            app.store
                .baselines(NAME)
                .unwrap()
                .keys()
                .any(|k| k.starts_with("admin:"))
                && app.store.baselines(NAME).unwrap().contains_key("title")
        },
        "the channel baselines",
    )
    .await;
    app
}

fn channel_incident(app: &TestApp, rule: Rule) -> Option<Incident> {
    app.store
        .incidents()
        .unwrap()
        .into_iter()
        .find(|i| i.account == NAME && i.rule == rule)
}

/// Findings of `rule` since the start, as `/metrics` counts them (every poll's, including
/// those folded into an open or resolved incident).
async fn findings(app: &TestApp, rule: Rule) -> f64 {
    let text = reqwest::get(format!("{}/metrics", app.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("tocsin_findings_total{{rule=\"{}\"}} ", rule.as_str());
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn wait_incident(app: &TestApp, rule: Rule) -> Incident {
    until(
        || channel_incident(app, rule).is_some_and(|i| i.page.is_some()),
        rule.as_str(),
    )
    .await;
    channel_incident(app, rule).unwrap()
}

#[tokio::test]
async fn a_rogue_channel_post_pages_and_its_edit_pages_again() {
    let app = spawn_channel(false).await;
    let msg = app
        .bot
        .push_channel_post(CHANNEL, "Claim your airdrop at https://scam.example now");
    let inc = wait_incident(&app, Rule::UnapprovedPost).await;
    assert_eq!(inc.object, msg.to_string());
    assert_eq!(inc.severity, Severity::Critical);
    let Evidence::Post {
        text, links, url, ..
    } = &inc.evidence
    else {
        panic!("{:?}", inc.evidence)
    };
    assert!(text.contains("Claim your airdrop"));
    assert_eq!(links, &vec!["https://scam.example".to_string()]);
    assert_eq!(
        url.as_deref(),
        Some(&*format!("https://t.me/examplecorp/{msg}"))
    );
    let changed = inc.changed_at.unwrap();
    assert!(
        (chrono::Utc::now() - changed).num_seconds() < 30,
        "created_at is the post's date"
    );
    let page = app.bot.message(CHAT, inc.page.unwrap().message_id).unwrap();
    assert!(
        page.text.contains("social.unapproved_post"),
        "{}",
        page.text
    );
    assert!(page.text.contains(&format!("Account: {NAME}")));

    app.bot
        .edit_channel_post(CHANNEL, msg, "Claim your airdrop at https://scam2.example");
    let edit = wait_incident(&app, Rule::PostEdited).await;
    let Evidence::PostEdited { after, .. } = &edit.evidence else {
        panic!()
    };
    assert!(after.contains("scam2.example"));
    app.stop().await;
}

#[tokio::test]
async fn a_title_change_and_a_new_admin_page() {
    let app = spawn_channel(false).await;
    app.bot
        .update_channel(CHANNEL, |c| c.title = "ExampleCorp Giveaways".into());
    let inc = wait_incident(&app, Rule::ProfileChanged).await;
    let Evidence::Profile { changes } = &inc.evidence else {
        panic!()
    };
    assert_eq!(changes["title"].after, "ExampleCorp Giveaways");
    assert_eq!(changes["title"].before.as_deref(), Some("ExampleCorp News"));

    let intruder = FakeUser::new(4444, "Intruder", Some("new_admin"));
    app.bot
        .add_channel_admin(CHANNEL, &owner(), &intruder, "administrator");
    let inc = wait_incident(&app, Rule::AdminChanged).await;
    assert_eq!(inc.severity, Severity::Critical);
    let Evidence::Profile { changes } = &inc.evidence else {
        panic!()
    };
    let change = &changes["admin:4444"];
    assert_eq!(change.before, None);
    assert!(
        change.after.starts_with("administrator @new_admin"),
        "{}",
        change.after
    );
    // Approving (two responders: the incident is critical) makes the new list the baseline:
    // no page on the next polls.
    app.bot
        .push_command(CHAT, &responder(), &format!("/approve {}", inc.id));
    until(
        || {
            app.store
                .incident(inc.id)
                .unwrap()
                .unwrap()
                .approve_votes()
                .count()
                == 1
        },
        "the first vote",
    )
    .await;
    app.bot
        .push_command(CHAT, &second_responder(), &format!("/approve {}", inc.id));
    until(
        || app.store.incident(inc.id).unwrap().unwrap().state == State::Resolved,
        "approved",
    )
    .await;
    // The channel's own polls, judged: not the other account's. One first, so that a poll
    // judged against the list of before the approval is counted before `found` is read.
    quiet::settle(&app, NAME, 1).await;
    let found = findings(&app, Rule::AdminChanged).await;
    let s = quiet::settle(&app, NAME, 3).await;
    let admin_incidents = s
        .incidents
        .iter()
        .filter(|i| i.rule == Rule::AdminChanged)
        .count();
    assert_eq!(admin_incidents, 1);
    // Not merely folded into the resolved incident as "already judged": not found at all.
    assert_eq!(
        findings(&app, Rule::AdminChanged).await,
        found,
        "the approved admin list was found again"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_bot_removed_from_the_channel_pages_critical_and_blind() {
    let app = spawn_channel(false).await;
    let mallory = FakeUser::new(5555, "Mallory", Some("mallory"));
    app.bot.remove_bot_from_channel(CHANNEL, &mallory, "left");
    let inc = wait_incident(&app, Rule::AdminChanged).await;
    assert_eq!(inc.severity, Severity::Critical);
    let Evidence::Profile { changes } = &inc.evidence else {
        panic!()
    };
    let bot_id = app.bot.bot_id().to_string();
    let change = &changes[&format!("admin:{bot_id}")];
    assert!(change.after.contains("@mallory"), "{}", change.after);
    let blind = wait_incident(&app, Rule::MonitorBlind).await;
    let Evidence::Channel { problem, .. } = &blind.evidence else {
        panic!()
    };
    assert!(
        problem.contains("removed") || problem.contains("403"),
        "{problem}"
    );
    app.stop().await;
}

#[tokio::test]
async fn takedown_deletes_the_channel_post_or_says_it_is_too_old() {
    let app = spawn_channel(true).await;
    let msg = app.bot.push_channel_post(CHANNEL, "send 1 BTC get 2 back");
    let inc = wait_incident(&app, Rule::UnapprovedPost).await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/takedown {}", inc.id));
    until(
        || app.store.incident(inc.id).unwrap().unwrap().resolution == Some(Resolution::Contained),
        "contained",
    )
    .await;
    assert!(!app.bot.has_message(CHANNEL, msg));
    assert_eq!(app.bot.request_count("deleteMessage"), 1);

    // Posted 49 hours ago (a delayed update): Telegram would refuse, so nothing is called.
    let old = chrono::Utc::now() - chrono::Duration::hours(49);
    let msg = app
        .bot
        .push_channel_post_at(CHANNEL, "an old scam finally noticed", old);
    until(
        || {
            app.incident_by_object(&msg.to_string())
                .is_some_and(|i| i.page.is_some())
        },
        "the old post's incident",
    )
    .await;
    let inc = app.incident_by_object(&msg.to_string()).unwrap();
    app.bot
        .push_command(CHAT, &responder(), &format!("/takedown {}", inc.id));
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains(&format!("post {msg} too old")))
        },
        "the too-old answer",
    )
    .await;
    assert_eq!(app.bot.request_count("deleteMessage"), 1, "not called");
    assert!(app.bot.has_message(CHANNEL, msg));
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert!(inc.timeline.iter().any(|e| matches!(
        &e.action,
        Action::TakedownResult {
            outcome: TakedownOutcome::TooOld { .. },
            ..
        }
    )));
    app.stop().await;
}
