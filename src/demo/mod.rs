//! `tocsin demo`: the whole story in-process, on loopback, with measured latencies.
//!
//! A fake Mastodon and a fake Bot API listen on 127.0.0.1 ephemeral ports, the real daemon runs
//! on a temporary sled database, and a script plays a takeover: an approved announcement (no
//! page), a rogue giveaway post and a bio/link change (two pages), an outsider pressing a button
//! (refused), then the responder acking the giveaway and taking it down from the chat (the fake
//! Mastodon deletes it, the timeline records it), and approving the bio change; then a fake
//! Microsoft 365 tenant reports the CEO's mailbox forwarded out of the company (a page). Latency is
//! measured from the moment the fake platform changed to the moment the fake Bot API received the
//! page, so it covers polling, detection, the sled commit and delivery.
//!
//! Then the leaky bulk send: an SMTP client plays the company's MTA and journals the first
//! 1,000-recipient batch, every address visible in `To:`, to the journal listener; the page
//! with its counters is timed from the batch's last byte to the fake Bot API's receipt.
//!
//! Last, the YouTube takeover: the channel renamed (polled), a live "giveaway" broadcast started
//! (pushed by the fake WebSub hub to the hooks listener), and one press taking it down with
//! `videos.delete`; each latency from the fake's change to the fake Bot API's receipt.
//!
//! [`run`] is one story told in order, act by act, each step waiting for what the previous one
//! caused: kept as one function (longer than the house's usual file) so that it reads as the
//! script it is.

mod report;
mod youtube;

use report::setup;
use youtube::{youtube_channel, youtube_takeover};

pub use report::{DemoError, Report};

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use tocsin::App;
use tocsin::model::{Incident, Rule, State};
use tocsin_fakes::front::Front;
use tocsin_fakes::loopback_config;
use tocsin_fakes::m365::{FakeM365, exchange_record};
use tocsin_fakes::mailer::FakeMailer;
use tocsin_fakes::mastodon::{FakeMastodon, ProfileUpdate, status_html};
use tocsin_fakes::smtp::{SmtpClient, customers, leaky_message};
use tocsin_fakes::telegram::{FakeBotApi, FakeUser, SentMessage};
use tocsin_fakes::youtube::FakeYouTube;

const CHAT: i64 = tocsin_fakes::ONCALL_CHAT;
const ACCOUNT_ID: &str = "109302";
const TOKEN: &str = "123456:demo-bot-token";
const API_TOKEN: &str = "demo-api-token";
const WRITE_TOKEN: &str = "demo-mastodon-write-token";
const POLL: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(20);
const M365_FEED: &str = "exchange";
const M365_TENANT: &str = "7e1c7c3a-58c2-4a9e-9d1b-2f0ad2c6c0de";
const M365_CLIENT: &str = "0b4e2b6e-1d2f-4a53-9c3c-6a1f4f0b9e11";
const M365_SECRET: &str = "demo-m365-secret";
const YT_ACCOUNT: &str = "youtube-main";
const YT_CHANNEL: &str = "UCxExampleCorpOfficial01";
const YT_KEY: &str = "demo-youtube-api-key";
const YT_OWNER_TOKEN: &str = "demo-youtube-owner-token";

/// A step of the story that `--omit` leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Step {
    /// The social team's pre-approval of the announcement: then the announcement pages.
    Approval,
}

/// Where the daemon's log lines go while the story is told: `TOCSIN_DEMO_LOG`, else
/// `tocsin-demo.log` in the temporary directory.
pub fn log_path() -> std::path::PathBuf {
    std::env::var_os("TOCSIN_DEMO_LOG")
        .map(Into::into)
        .unwrap_or_else(|| std::env::temp_dir().join("tocsin-demo.log"))
}

/// Plays the story. A step that did not happen is a failed check in the report, which is
/// printed whatever happened (so a stall shows how far the story got).
pub async fn run(omit: Option<Step>) -> Report {
    let mut report = Report {
        log: log_path(),
        lines: vec![],
        latencies: vec![],
        incidents: vec![],
        final_pages: vec![],
        checks: vec![],
    };
    if let Err(e) = story(omit, &mut report).await {
        report.check(&format!("the story went to its end ({e})"), false);
    }
    report
}

async fn story(omit: Option<Step>, report: &mut Report) -> Result<(), DemoError> {
    let started = Instant::now();
    let say = |report: &mut Report, line: String| {
        report
            .lines
            .push(format!("{:>7.3}s  {line}", started.elapsed().as_secs_f64()));
    };

    let masto = FakeMastodon::start()
        .await
        .map_err(setup("starting the fake Mastodon"))?;
    masto.add_account(
        ACCOUNT_ID,
        "examplecorp",
        "ExampleCorp",
        "<p>Official account of ExampleCorp.</p>",
        &[("Website", "<a href=\"https://example.com\" rel=\"me nofollow noopener noreferrer\" target=\"_blank\">example.com</a>")],
    );
    masto.publish(ACCOUNT_ID, &status_html("Welcome to our official account!"));
    let bot_api = FakeBotApi::start(TOKEN)
        .await
        .map_err(setup("starting the fake Bot API"))?;
    let state = tempfile::tempdir().map_err(setup("creating a temporary state dir"))?;
    say(
        report,
        format!(
            "fake Mastodon on {}, fake Bot API on {}, state in {}",
            masto.url(),
            bot_api.url(),
            state.path().display()
        ),
    );

    let m365 = FakeM365::start(M365_TENANT, M365_CLIENT, M365_SECRET)
        .await
        .map_err(setup("starting the fake Microsoft 365"))?;
    let mailer = FakeMailer::start()
        .await
        .map_err(setup("starting the fake mailer"))?;
    let mut config = tocsin::Config::parse(
        &loopback_config(state.path(), &bot_api, &masto, ACCOUNT_ID, API_TOKEN, POLL),
        "demo",
    )?;
    config.email = Some(tocsin::config::Email {
        m365: vec![tocsin::config::M365Feed {
            name: M365_FEED.into(),
            tenant: M365_TENANT.into(),
            client_id: M365_CLIENT.into(),
            client_secret: tocsin::config::Secret::new(M365_SECRET),
            login_url: m365.url(),
            api_url: m365.url(),
            poll_interval: POLL,
            internal_domains: vec!["example.com".into()],
            grace: None,
        }],
        internal_domains: vec!["exchange.example".into()],
        journal: Some(tocsin::config::Journal {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Default::default()
        }),
        // The mailer's admin endpoint: one press on the leak's page pauses the bulk send.
        kill_switch: Some(tocsin::config::KillSwitch {
            method: "POST".into(),
            url: mailer.pause_url(),
            headers: Default::default(),
            body: Some(r#"{"paused":true,"reason":"tocsin"}"#.into()),
            secret: Some(tocsin::config::Secret::new("demo-mailer-secret")),
            secret_header: None,
            timeout: Duration::from_secs(5),
            auto_pause: false,
        }),
        ..tocsin::config::Email::default()
    });
    // The takedown credential: the fake Mastodon only lets this token delete.
    config.accounts[0].write_token = Some(tocsin::config::Secret::new(WRITE_TOKEN));
    masto.require_write_token(Some(WRITE_TOKEN.into()));
    let (yt, front) = youtube_channel(&mut config).await?;
    let app = App::build(config).await?;
    front.forward_to(app.http_addr());
    let journal = app
        .journal_addr()
        .ok_or_else(|| DemoError::Stalled("the journal listener is not bound".into()))?;
    let api = format!("http://{}", app.http_addr());
    let health = app.health().clone();
    let store = app.store().clone();
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(app.run_until(shutdown.clone()));
    say(
        report,
        format!(
            "tocsin running: HTTP on {api}, polling every {}ms",
            POLL.as_millis()
        ),
    );

    // The first poll records history and the profile baseline, and pages nothing.
    let deadline = Instant::now() + WAIT;
    while health
        .snapshot()
        .get("mastodon-main")
        .is_none_or(|h| h.polls < 2)
    {
        if Instant::now() > deadline {
            return Err(DemoError::Stalled("the first polls never completed".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    say(
        report,
        "first poll done: 1 old post recorded as history, profile baselined".into(),
    );
    wait_for(
        || {
            health
                .snapshot()
                .get(YT_ACCOUNT)
                .is_some_and(|h| h.judged_polls >= 1)
                && !yt.subscriptions().is_empty()
        },
        "the YouTube channel's first poll and its WebSub subscription",
    )
    .await?;
    say(
        report,
        format!(
            "YouTube channel {YT_CHANNEL}: first poll is history, feed subscribed at the hub {}",
            yt.hub_url()
        ),
    );

    // The social team pre-approves the announcement, then it is published.
    let announcement = "Our Q4 update is out: https://example.com/q4";
    if omit == Some(Step::Approval) {
        say(report, "(the pre-approval is left out)".into());
    } else {
        let resp = reqwest::Client::new()
            .post(format!("{api}/api/v1/approvals"))
            .bearer_auth(API_TOKEN)
            .json(&serde_json::json!({ "account": "mastodon-main", "text": announcement, "by": "social-team" }))
            .send()
            .await?;
        report.check(
            "approval API answers 201",
            resp.status() == reqwest::StatusCode::CREATED,
        );
        say(
            report,
            format!("POST /api/v1/approvals → {}", resp.status()),
        );
    }
    masto.publish(ACCOUNT_ID, &status_html(announcement));
    say(report, format!("published approved post: {announcement:?}"));
    let polls = health.snapshot()["mastodon-main"].polls;
    wait_for(
        || health.snapshot()["mastodon-main"].polls >= polls + 2,
        "two polls after the announcement",
    )
    .await?;
    report.check(
        "approved post: no incident, no page",
        store.incidents()?.is_empty() && bot_api.sent().is_empty(),
    );
    say(
        report,
        format!("two polls later: {} page(s) sent", bot_api.sent().len()),
    );

    // The takeover: a rogue post, then the bio and website link changed.
    let rogue = masto.publish(ACCOUNT_ID, &status_html("🎉 giveaway! send 1 BTC to bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh and get 2 back: https://examp1e-giveaway.example/claim"));
    let rogue_at = Instant::now();
    say(report, format!("ROGUE post {rogue} published"));
    let (rogue_incident, page1) = page_of(&store, &bot_api, Rule::UnapprovedPost, |i| {
        i.object == rogue
    })
    .await?;
    let rogue_latency = page1.received_instant.duration_since(rogue_at);
    report
        .latencies
        .push(("rogue post → page".into(), rogue_latency));
    say(
        report,
        format!(
            "PAGE 1 (message {}) after {} ms",
            page1.message_id,
            rogue_latency.as_millis()
        ),
    );

    masto.update_profile(
        ACCOUNT_ID,
        ProfileUpdate {
            note: Some("<p>Official ExampleCorp giveaway account. Claim your BTC now!</p>".into()),
            fields: Some(vec![(
                "Website".into(),
                "<a href=\"https://examp1e-giveaway.example\">examp1e-giveaway.example</a>".into(),
            )]),
            ..ProfileUpdate::default()
        },
    );
    let profile_at = Instant::now();
    say(report, "PROFILE changed: bio and website link".into());
    let (profile_incident, page2) = page_of(&store, &bot_api, Rule::ProfileChanged, |i| {
        i.object == "profile"
    })
    .await?;
    let profile_latency = page2.received_instant.duration_since(profile_at);
    report
        .latencies
        .push(("bio/link change → page".into(), profile_latency));
    say(
        report,
        format!(
            "PAGE 2 (message {}) after {} ms",
            page2.message_id,
            profile_latency.as_millis()
        ),
    );
    report.check(
        "both pages carry buttons",
        page1.reply_markup.is_some() && page2.reply_markup.is_some(),
    );

    // An outsider in the chat presses Approve on the rogue post: refused.
    let outsider = FakeUser {
        id: 666,
        first_name: "Mallory".into(),
        username: Some("mallory".into()),
    };
    let responder = FakeUser {
        id: 111,
        first_name: "Alice".into(),
        username: Some("alice_oncall".into()),
    };
    bot_api.press_button(
        CHAT,
        &outsider,
        page1.message_id,
        &format!("approve:{rogue_incident}"),
    );
    wait_for(|| bot_api.callback_answers().len() == 1, "the refusal").await?;
    let refusal = bot_api.callback_answers()[0]
        .text
        .clone()
        .unwrap_or_default();
    say(
        report,
        format!("outsider @mallory pressed Approve on #{rogue_incident}: {refusal:?}"),
    );
    report.check("outsider refused", refusal.starts_with("Refused"));

    // The responder acks the giveaway and approves the profile change (say it was a campaign).
    bot_api.press_button(
        CHAT,
        &responder,
        page1.message_id,
        &format!("ack:{rogue_incident}"),
    );
    wait_for(
        || store_state(&store, rogue_incident) == Some(State::Acked),
        "the ack",
    )
    .await?;
    say(
        report,
        format!("@alice_oncall pressed Ack on #{rogue_incident}"),
    );
    // …and takes the giveaway down from the chat.
    bot_api.press_button(
        CHAT,
        &responder,
        page1.message_id,
        &format!("takedown:{rogue_incident}"),
    );
    wait_for(
        || store_state(&store, rogue_incident) == Some(State::Resolved),
        "the takedown",
    )
    .await?;
    let taken_down = !masto.has_status(&rogue);
    let timeline_says = store.incident(rogue_incident)?.is_some_and(|i| {
        i.timeline.iter().any(|e| {
            matches!(
                &e.action,
                tocsin::model::Action::TakedownResult {
                    outcome: tocsin::model::TakedownOutcome::Deleted,
                    ..
                }
            )
        })
    });
    report.check("the rogue post is deleted on Mastodon", taken_down);
    report.check("the timeline records the takedown", timeline_says);
    say(
        report,
        format!(
            "@alice_oncall pressed Take down on #{rogue_incident}: fake Mastodon has post {rogue}: {}; timeline: takedown_result deleted = {timeline_says}; resolved (contained)",
            !taken_down
        ),
    );
    bot_api.press_button(
        CHAT,
        &responder,
        page2.message_id,
        &format!("approve:{profile_incident}"),
    );
    wait_for(
        || store_state(&store, profile_incident) == Some(State::Resolved),
        "the approval",
    )
    .await?;
    say(
        report,
        format!("@alice_oncall pressed Approve on #{profile_incident}"),
    );
    wait_for(
        || {
            let edited = |id| {
                bot_api
                    .message(CHAT, id)
                    .is_some_and(|m| m.text.contains("ACKED") || m.text.contains("RESOLVED"))
            };
            edited(page1.message_id) && edited(page2.message_id)
        },
        "the pages edited in place",
    )
    .await?;
    say(report, "both pages edited in place".into());

    // The approved bio is the new baseline: more polls, no new page.
    let polls = health.snapshot()["mastodon-main"].polls;
    wait_for(
        || health.snapshot()["mastodon-main"].polls >= polls + 2,
        "two polls after the approval",
    )
    .await?;
    // Pages are the messages of their own; the resolutions of critical incidents are announced
    // in replies to them.
    let pages = |bot_api: &FakeBotApi| {
        bot_api
            .sent()
            .iter()
            .filter(|m| m.reply_to.is_none())
            .count()
    };
    let announced = |bot_api: &FakeBotApi| {
        bot_api
            .sent()
            .iter()
            .filter(|m| m.reply_to.is_some() && m.text.contains("resolved"))
            .count()
    };
    let both_announced = wait_for(|| announced(&bot_api) == 2, "the resolutions announced")
        .await
        .is_ok();
    report.check("exactly two pages sent", pages(&bot_api) == 2);
    report.check("both resolutions announced in the chat", both_announced);
    say(
        report,
        format!(
            "two polls later: still {} pages, {} resolutions announced",
            pages(&bot_api),
            announced(&bot_api)
        ),
    );

    // Meanwhile in the mail tenant: the intruder forwards the CEO's mailbox out of the company.
    m365.publish(vec![exchange_record(
        "d7cf7b7d-d471-4509-91d4-08db60408a69",
        "Set-Mailbox",
        "it-admin@example.com",
        "ceo@example.com",
        &[
            ("Identity", "ceo@example.com"),
            (
                "ForwardingSmtpAddress",
                "smtp:collect@examp1e-giveaway.example",
            ),
            ("DeliverToMailboxAndForward", "True"),
        ],
    )]);
    let forward_at = Instant::now();
    say(
        report,
        "MICROSOFT 365: Set-Mailbox forwards ceo@example.com out of the company".into(),
    );
    let (_, page3) = page_of(&store, &bot_api, Rule::RiskySetting, |_| true).await?;
    let forward_latency = page3.received_instant.duration_since(forward_at);
    report
        .latencies
        .push(("mailbox forwarding → page".into(), forward_latency));
    say(
        report,
        format!(
            "PAGE 3 (message {}) after {} ms",
            page3.message_id,
            forward_latency.as_millis()
        ),
    );
    report.check(
        "the forwarding's page says forwarding out of domain",
        page3.text.contains("forwarding out of domain"),
    );
    let polls = health.snapshot()[M365_FEED].polls;
    wait_for(
        || health.snapshot()[M365_FEED].polls >= polls + 2,
        "two audit polls after the forwarding",
    )
    .await?;
    report.check("the forwarding paged once", pages(&bot_api) == 3);

    // The leaky bulk send: the mailer, sped up, puts 1,000 customers in one visible To: header.
    let mut smtp = SmtpClient::connect(journal)
        .await
        .map_err(setup("connecting to the journal listener"))?;
    say(
        report,
        format!("MTA connected to the journal listener on {journal}"),
    );
    let customers_1 = customers(1, 1000, 40);
    let sender = "statements@exchange.example";
    let batch = leaky_message(
        sender,
        &customers_1,
        "Your monthly statement",
        "batch-1@exchange.example",
    );
    let batch_at = Instant::now();
    let reply = smtp
        .send(sender, &customers_1, &batch)
        .await
        .map_err(setup("journaling the first batch"))?;
    report.check("journal listener answers 250", reply.code == 250);
    say(
        report,
        format!(
            "LEAKY batch 1 journaled: 1,000 recipients, all visible in To: → {} {}",
            reply.code,
            reply.text.trim()
        ),
    );
    let (leak_incident, page4) =
        page_of(&store, &bot_api, Rule::ExposedRecipients, |_| true).await?;
    let leak_latency = page4.received_instant.duration_since(batch_at);
    report
        .latencies
        .push(("leaky batch sent → page".into(), leak_latency));
    say(
        report,
        format!(
            "PAGE 4 (message {}) after {} ms: {}",
            page4.message_id,
            leak_latency.as_millis(),
            page4
                .text
                .lines()
                .find(|l| l.starts_with("Messages:"))
                .unwrap_or("")
        ),
    );
    report.check(
        "leak page counts 1,000 exposed addresses over 40 domains",
        page4
            .text
            .contains("Messages: 1 · exposed addresses: 1000 · domains: 40"),
    );
    report.check(
        "no customer address in clear on the page",
        !page4.text.contains("customer1x"),
    );
    report.check(
        "leak page offers Pause mailer",
        page4
            .reply_markup
            .as_ref()
            .is_some_and(|m| m.to_string().contains("Pause mailer")),
    );
    // Containment: the responder pauses the mailer before the second batch goes out.
    let press_at = Instant::now();
    bot_api.press_button(
        CHAT,
        &responder,
        page4.message_id,
        &format!("pause:{leak_incident}"),
    );
    wait_for(|| mailer.paused(), "the mailer paused").await?;
    let paused_after = press_at.elapsed();
    let pause = mailer.pauses().remove(0);
    say(
        report,
        format!(
            "@alice_oncall pressed Pause mailer on #{leak_incident}: the mailer got {} {} {} ms after the press",
            pause.method,
            pause.path,
            paused_after.as_millis()
        ),
    );
    report.check(
        "the mailer was paused with its secret",
        pause.header("authorization") == Some("Bearer demo-mailer-secret"),
    );
    // The mailer's answer is recorded after it arrives.
    wait_for(
        || {
            store
                .incident(leak_incident)
                .ok()
                .flatten()
                .is_some_and(|i| {
                    i.timeline
                        .iter()
                        .any(|e| matches!(e.action, tocsin::model::Action::MailerCalled { .. }))
                })
        },
        "the mailer's answer in the leak's timeline",
    )
    .await?;
    let shows_paused = || {
        bot_api
            .message(CHAT, page4.message_id)
            .is_some_and(|m| m.text.contains("Mailer: PAUSED"))
    };
    wait_for(shows_paused, "the leak's page showing the mailer paused").await?;
    let _ = smtp.quit().await;

    let (page5, page6) = youtube_takeover(&yt, &store, &bot_api, &responder, report, &say).await?;

    shutdown.cancel();
    daemon.await??;
    let verify = store.verify_log()?;
    report.check("approved log verifies", verify.is_ok());
    say(
        report,
        format!(
            "approved log: {} entries, chain ok = {}",
            verify.entries,
            verify.is_ok()
        ),
    );
    let timeline = store.verify_timeline()?;
    report.check("incident timeline chain verifies", timeline.is_ok());
    say(
        report,
        format!(
            "incident timeline: {} chained events, chain ok = {}",
            timeline.entries,
            timeline.is_ok()
        ),
    );
    report.incidents = store.incidents()?;
    for id in [
        page1.message_id,
        page2.message_id,
        page3.message_id,
        page4.message_id,
        page5.message_id,
        page6.message_id,
    ] {
        if let Some(m) = bot_api.message(CHAT, id) {
            report.final_pages.push(m.text);
        }
    }
    masto.shutdown();
    bot_api.shutdown();
    Ok(())
}

fn store_state(store: &tocsin::store::Store, id: u64) -> Option<State> {
    store.incident(id).ok().flatten().map(|i| i.state)
}

/// Waits for the page of the incident of `rule` that `f` picks: the incident as the store
/// holds it, with the message its page points to, which must name the rule. Pages are told
/// apart by what they are about, never by the order they arrived in.
async fn page_of(
    store: &tocsin::store::Store,
    bot_api: &FakeBotApi,
    rule: Rule,
    f: impl Fn(&Incident) -> bool,
) -> Result<(u64, SentMessage), DemoError> {
    let deadline = Instant::now() + WAIT;
    loop {
        let paged = store.incidents()?.into_iter().find_map(|i| {
            let page = i.page.as_ref()?;
            (i.rule == rule && f(&i)).then_some((i.id, page.message_id))
        });
        if let Some((id, message_id)) = paged
            && let Some(m) = bot_api
                .sent()
                .into_iter()
                .find(|m| m.message_id == message_id)
        {
            if !m.text.contains(rule.as_str()) {
                return Err(DemoError::Stalled(format!(
                    "the page of #{id} does not name {rule}: {:?}",
                    m.text
                )));
            }
            return Ok((id, m));
        }
        if Instant::now() > deadline {
            return Err(DemoError::Stalled(format!(
                "timed out after {WAIT:?} waiting for the page of a {rule} incident"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_for(f: impl Fn() -> bool, what: &str) -> Result<(), DemoError> {
    let deadline = Instant::now() + WAIT;
    while !f() {
        if Instant::now() > deadline {
            return Err(DemoError::Stalled(format!(
                "timed out after {WAIT:?} waiting for {what}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
