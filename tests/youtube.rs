//! YouTube: the channel's fields and uploads from the Data API, live broadcasts pushed by the
//! WebSub hub (verified before read, redeliveries counted once, forgeries dropped), a refused
//! key as `monitor.blind`, and takedown by `videos.delete`.

use std::time::{Duration, Instant};

use tocsin::{
    config::{Account, Platform, Secret},
    model::{Action, Incident, Rule, Severity, TakedownOutcome},
};
use tocsin_fakes::{
    front::Front,
    youtube::{FakeYouTube, sign, topic},
};

use crate::support::{quiet, *};

const YT: &str = "youtube-main";
const CHANNEL: &str = "UCxExampleCorpOfficial01";
const KEY: &str = "AIzaSy-test-key";
const OAUTH: &str = "ya29.test-owner-token";

fn account(yt: &FakeYouTube, poll: Duration) -> Account {
    Account {
        name: YT.into(),
        platform: Platform::YouTube,
        base_url: yt.url(),
        account_id: CHANNEL.into(),
        token: None,
        write_token: Some(Secret::new(OAUTH)),
        poll_interval: poll,
        grace: Some(Duration::from_secs(1)),
        plc_url: None,
        jetstream_url: None,
        pds_url: None,
        appview_url: None,
        allow_private_endpoints: true,
        trusted_clients: Vec::new(),
    }
}

async fn fake() -> FakeYouTube {
    let yt = FakeYouTube::start(KEY).await.unwrap();
    yt.add_channel(CHANNEL, "ExampleCorp", "@examplecorp", "Official channel.");
    yt.set_oauth_token(CHANNEL, Some(OAUTH));
    yt.upload(
        CHANNEL,
        "Our 2025 keynote",
        "Watch it again https://example.com/keynote",
    )
    .await;
    yt
}

struct Tube {
    app: TestApp,
    yt: FakeYouTube,
    /// The reverse proxy in front of the daemon, where the hub delivers.
    callback: String,
    _front: Front,
}

/// The daemon watching the fake channel (beside the loopback Mastodon account), pushed when
/// `push`, its first poll judged.
async fn spawn(poll: Duration, push: bool) -> Tube {
    spawn_leased(poll, push, Duration::from_secs(5 * 24 * 3600)).await
}

/// [`spawn`], asking the hub for `lease`.
async fn spawn_leased(poll: Duration, push: bool, lease: Duration) -> Tube {
    let t = spawn_at(poll, push, lease, |_| {}).await;
    if push {
        until(
            || !t.yt.subscriptions().is_empty(),
            "the hub verified the subscription",
        )
        .await;
        until(
            || {
                t.app
                    .health
                    .snapshot()
                    .get(YT)
                    .and_then(|h| h.stream.clone())
                    .is_some_and(|s| s.connected)
            },
            "the subscription reported up",
        )
        .await;
    }
    t
}

/// The daemon on the fake, the fake's hub URL changed by `hub` first; its first poll judged.
async fn spawn_at(
    poll: Duration,
    push: bool,
    lease: Duration,
    hub: impl FnOnce(&mut url::Url),
) -> Tube {
    let yt = fake().await;
    let front = Front::start().await.unwrap();
    let public = front.url();
    let acct = account(&yt, poll);
    let mut hub_url = yt.hub_url();
    hub(&mut hub_url);
    let app = spawn_app_with(|c| {
        c.accounts.push(acct);
        c.youtube.api_key = Some(Secret::new(KEY));
        c.youtube.hub_url = hub_url;
        c.youtube.lease = lease;
        // A quota no test polling could spend: the plan leaves the intervals as set.
        c.youtube.daily_quota = 4_000_000_000;
        c.grouping.window = Duration::ZERO;
        if push {
            c.general.public_url = Some(public.clone());
        }
    })
    .await;
    // The webhooks are on the main listener (no hooks_listen).
    front.forward_to(app.api.trim_start_matches("http://").parse().unwrap());
    let judged = || {
        app.health
            .snapshot()
            .get(YT)
            .is_some_and(|h| h.judged_polls >= 1)
    };
    until(judged, "the channel's first poll judged").await;
    Tube {
        app,
        yt,
        callback: format!("{public}hooks/youtube/{YT}"),
        _front: front,
    }
}

impl Tube {
    fn incidents(&self, rule: Rule) -> Vec<Incident> {
        let all = self.app.store.incidents().unwrap();
        all.into_iter().filter(|i| i.rule == rule).collect()
    }

    fn paged(&self, object: &str) -> Option<Incident> {
        self.app
            .store
            .incidents()
            .unwrap()
            .into_iter()
            .find(|i| i.object == object && i.page.is_some())
    }

    /// The first page or edit that contains `needle`, once there is one.
    async fn page_or_edit(&self, needle: &str, what: &str) -> String {
        let find = || {
            let bot = &self.app.bot;
            bot.sent()
                .into_iter()
                .map(|m| m.text)
                .chain(bot.edits().into_iter().map(|e| e.text))
                .find(|t| t.contains(needle))
        };
        until(|| find().is_some(), what).await;
        find().unwrap()
    }

    async fn settle(&self) -> quiet::Settled {
        quiet::settle(&self.app, YT, 1).await
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

#[tokio::test]
async fn the_first_poll_is_history_and_a_polled_rogue_upload_pages() {
    let t = spawn(POLL, false).await;
    let settled = t.settle().await;
    assert!(
        settled.incidents.iter().all(|i| i.account != YT),
        "the first poll is history: {:?}",
        settled.incidents
    );
    settled.assert_not_mentioned("Our 2025 keynote", "a video from before tocsin");
    // No public_url: nothing was subscribed.
    assert!(t.yt.hub_requests().is_empty());

    let id =
        t.yt.upload(CHANNEL, "Free crypto", "Send 1 BTC to https://scam.example")
            .await;
    until(|| t.paged(&id).is_some(), "the rogue upload's page").await;
    let inc = t.paged(&id).unwrap();
    assert_eq!(inc.rule, Rule::UnapprovedPost);
    assert_eq!(inc.severity, Severity::Critical);
    let calls = t.yt.calls();
    assert!(calls.iter().any(|c| c == "channels.list"));
    assert!(calls.iter().any(|c| c == "playlistItems.list"));
    assert!(calls.iter().any(|c| c == "videos.list"));
    t.app.stop().await;
}

#[tokio::test]
async fn a_pushed_live_giveaway_pages_critical_within_the_push() {
    // A poll a minute: only the push can page within the test.
    let t = spawn(Duration::from_secs(60), true).await;
    let sub = &t.yt.subscriptions()[0];
    assert_eq!(sub.topic, topic(CHANNEL));
    assert_eq!(sub.callback, t.callback);
    assert!(sub.secret.as_deref().is_some_and(|s| s.len() >= 32));

    let started = Instant::now();
    let id =
        t.yt.go_live(
            CHANNEL,
            "ExampleCorp giveaway: double your BTC",
            "Send BTC to bc1qscam and get twice back https://giveaway.example",
        )
        .await;
    let delivery = t.yt.deliveries().last().cloned().unwrap();
    assert_eq!(delivery.status, 204, "a verified delivery is taken");
    until(|| t.paged(&id).is_some(), "the live broadcast's page").await;
    let latency = started.elapsed();
    let inc = t.paged(&id).unwrap();
    assert_eq!(inc.rule, Rule::UnapprovedPost);
    assert_eq!(inc.severity, Severity::Critical);
    let page = t
        .app
        .page_containing("giveaway", "the live broadcast's page")
        .await;
    assert!(page.contains("[live]"), "{page}");
    println!(
        "youtube push → page: {} ms (hub delivery → incident paged)",
        latency.as_millis()
    );
    assert!(latency < Duration::from_secs(30));
    t.app.stop().await;
}

#[tokio::test]
async fn the_subscription_is_renewed_before_the_lease_ends() {
    let t = spawn_leased(Duration::from_secs(60), true, Duration::from_secs(2)).await;
    let sub = t.yt.subscriptions()[0].clone();
    assert_eq!(sub.lease_seconds, 2);
    let renewed = || {
        t.yt.subscriptions()
            .first()
            .is_some_and(|s| s.verifications >= 2)
    };
    until(renewed, "the subscription renewed").await;
    // Renewed within the lease: at four fifths of it.
    let again = t.yt.subscriptions()[0].verified_at;
    assert!(
        again - sub.verified_at < Duration::from_secs(2),
        "{:?}",
        again - sub.verified_at
    );
    // Still pushed after the renewal.
    let id = t.yt.go_live(CHANNEL, "Giveaway after renewal", "x").await;
    until(|| t.paged(&id).is_some(), "the page after renewal").await;
    t.app.stop().await;
}

#[tokio::test]
async fn a_subscription_the_hub_refuses_pages_monitor_blind() {
    // A hub URL the fake does not serve: every subscription request is answered 404.
    let t = spawn_at(POLL, true, Duration::from_secs(3600), |u| {
        u.set_path("/not-the-hub")
    })
    .await;
    let blind = || {
        t.incidents(Rule::MonitorBlind)
            .into_iter()
            .find(|i| i.account == YT && i.page.is_some())
    };
    until(|| blind().is_some(), "monitor.blind for the push").await;
    let page = t.page_or_edit("push stream down", "the blind page").await;
    assert!(page.contains("hub answered 404"), "{page}");
    t.app.stop().await;
}

#[tokio::test]
async fn forged_and_unsigned_pushes_are_dropped_and_a_redelivery_counts_once() {
    let t = spawn(Duration::from_secs(60), true).await;
    let http = reqwest::Client::new();
    // A video the hub would push, delivered by someone who does not have the secret.
    t.yt.set_push(false);
    let id =
        t.yt.upload(CHANNEL, "Forged upload", "not from the hub")
            .await;
    let body = t.yt.feed_for(&id).unwrap();
    let unsigned = http
        .post(&t.callback)
        .header("content-type", "application/atom+xml")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 202, "acknowledged and dropped");
    let forged = http
        .post(&t.callback)
        .header("content-type", "application/atom+xml")
        .header("X-Hub-Signature", sign("guessed-secret", body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 202, "acknowledged and dropped");
    let oversized = http
        .post(&t.callback)
        .header("X-Hub-Signature", sign("guessed-secret", b"x"))
        .body(vec![b'x'; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status().as_u16(), 413);
    let rejected = |reason: &str| {
        format!("tocsin_webhook_rejected_total{{provider=\"youtube\",reason=\"{reason}\"}}")
    };
    assert_eq!(t.app.metric(&rejected("unsigned")).await, 1.0);
    assert_eq!(t.app.metric(&rejected("bad_signature")).await, 1.0);
    assert_eq!(t.app.metric(&rejected("too_large")).await, 1.0);
    // A forged verification (a topic this daemon did not ask for) is not echoed.
    let verify = http
        .get(format!(
            "{}?hub.mode=subscribe&hub.topic={}&hub.challenge=abc&hub.lease_seconds=60",
            t.callback,
            topic("UCxAttackerChannel000001")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status().as_u16(), 404);
    // The push was the only way to see it before the next poll, a minute away.
    let settled = quiet::settle(&t.app, ACCOUNT, 2).await;
    assert!(settled.holding(&id).is_none(), "a forged push was read");

    // The hub delivers the genuine one twice: read and paged once, the second counted.
    t.yt.set_push(true);
    t.yt.push(CHANNEL, &id).await;
    let first = t.yt.deliveries().last().cloned().unwrap();
    t.yt.deliver(&first.callback, first.body.clone(), first.signature.clone())
        .await;
    until(|| t.paged(&id).is_some(), "the genuine push's page").await;
    assert_eq!(
        t.app
            .metric("tocsin_webhook_duplicates_total{provider=\"youtube\"}")
            .await,
        1.0
    );
    let settled = quiet::settle(&t.app, ACCOUNT, 2).await;
    assert_eq!(settled.pages_with("Forged upload").len(), 1);
    t.app.stop().await;
}

/// A change a takeover makes to the channel.
type Change<'a> = &'a dyn Fn(&FakeYouTube, &str);

#[tokio::test]
async fn each_channel_field_change_pages() {
    let t = spawn(POLL, false).await;
    let changes: [(&str, Change, &str); 5] = [
        (
            "title",
            &|y, v| y.set_title(CHANNEL, v),
            "ExampleCorp Official LIVE",
        ),
        (
            "handle",
            &|y, v| y.set_handle(CHANNEL, v),
            "@examplecorp-live",
        ),
        (
            "description",
            &|y, v| y.set_description(CHANNEL, v),
            "Giveaway today only",
        ),
        (
            "avatar",
            &|y, v| y.set_avatar(CHANNEL, v),
            "https://scam.example/tesla-logo.png",
        ),
        (
            "banner",
            &|y, v| y.set_banner(CHANNEL, v),
            "https://scam.example/banner.png",
        ),
    ];
    for (field, change, value) in changes {
        change(&t.yt, value);
        let page = t
            .page_or_edit(value, &format!("the {field} change's page"))
            .await;
        assert!(page.contains(field), "{field}: {page}");
    }
    assert!(
        t.incidents(Rule::ProfileChanged)
            .iter()
            .all(|i| i.account == YT)
    );
    t.app.stop().await;
}

#[tokio::test]
async fn a_refused_key_pages_monitor_blind() {
    let t = spawn(POLL, false).await;
    t.yt.set_api_key("rotated-key");
    until(
        || {
            t.incidents(Rule::MonitorBlind)
                .iter()
                .any(|i| i.account == YT && i.page.is_some())
        },
        "monitor.blind paged",
    )
    .await;
    let page = t
        .app
        .page_containing("monitor.blind", "the blind page")
        .await;
    assert!(page.contains(YT), "{page}");
    t.app.stop().await;
}

#[tokio::test]
async fn one_press_takes_the_live_broadcast_down() {
    let t = spawn(POLL, false).await;
    let id =
        t.yt.go_live(CHANNEL, "Giveaway LIVE", "double your coins")
            .await;
    until(|| t.paged(&id).is_some(), "the live broadcast's page").await;
    let inc = t.paged(&id).unwrap();
    let msg = inc.page.as_ref().unwrap().message_id;
    t.app
        .bot
        .press_button(CHAT, &responder(), msg, &format!("takedown:{}", inc.id));
    let answered = || {
        let inc = t.app.store.incident(inc.id).unwrap().unwrap();
        !results(&inc).is_empty()
    };
    until(answered, "the takedown's answer").await;
    let inc = t.app.store.incident(inc.id).unwrap().unwrap();
    assert_eq!(results(&inc), vec![TakedownOutcome::Deleted]);
    assert!(!t.yt.video_exists(&id), "the video is gone from YouTube");
    assert!(t.yt.calls().iter().any(|c| c == "videos.delete"));

    // Without the owner's token, YouTube refuses and the page says so.
    t.yt.set_oauth_token(CHANNEL, Some("another-token"));
    let id = t.yt.go_live(CHANNEL, "Giveaway LIVE again", "double").await;
    until(|| t.paged(&id).is_some(), "the second broadcast's page").await;
    let inc = t.paged(&id).unwrap();
    let msg = inc.page.as_ref().unwrap().message_id;
    t.app
        .bot
        .press_button(CHAT, &responder(), msg, &format!("takedown:{}", inc.id));
    let answered = || {
        let inc = t.app.store.incident(inc.id).unwrap().unwrap();
        !results(&inc).is_empty()
    };
    until(answered, "the refused takedown's answer").await;
    let inc = t.app.store.incident(inc.id).unwrap().unwrap();
    assert!(
        matches!(&results(&inc)[..], [TakedownOutcome::Forbidden { detail }] if detail.contains("403")),
        "{:?}",
        results(&inc)
    );
    assert!(t.yt.video_exists(&id));
    t.app.stop().await;
}

#[test]
fn check_config_prints_the_quota_schedule_and_the_push() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let text = format!(
        r#"[general]
state_dir = '{state}'
api_token = "t"
public_url = "https://hooks.example.com/tocsin"

[telegram]
bot_token = "1:x"
chat_id = -100
responders = [1]

[youtube]
api_key = "k"

[[accounts]]
name = "yt-a"
platform = "youtube"
account_id = "UC_x5XG1OV2P6uZZ5FSM9Ttw"
poll_interval = "5s"
write_token = "owner"

[[accounts]]
name = "yt-b"
platform = "youtube"
account_id = "UCBR8-60-B28hp2BmDPdntcQ"
poll_interval = "10m"
"#,
        state = dir.path().join("state").display()
    );
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    assert!(stdout.contains("youtube quota 10000 units/day"), "{stdout}");
    // 3,000 polls a day: 144 for the channel polled every 10 minutes, the rest for the other.
    assert!(
        stdout.contains("youtube poll  yt-a every 30s 253ms (stretched to fit the quota)"),
        "{stdout}"
    );
    assert!(stdout.contains("youtube poll  yt-b every 10m"), "{stdout}");
    assert!(
        stdout.contains("https://hooks.example.com/tocsin/hooks/youtube/<account>"),
        "{stdout}"
    );
    assert!(stdout.contains("takedown on (videos.delete"), "{stdout}");

    // A handle where the channel id belongs is refused with the key.
    let bad = std::fs::read_to_string(&path)
        .unwrap()
        .replace("UCBR8-60-B28hp2BmDPdntcQ", "@examplecorp");
    std::fs::write(&path, bad).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("accounts[1].account_id"), "{stderr}");
}
