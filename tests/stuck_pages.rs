//! Pages that cannot get stuck: a Bot API that answers oddly, refuses an edit for good, refuses
//! a text, keeps failing one page, sends presses tocsin cannot parse, or answers `getUpdates`
//! at once. Each is met as README's "Paging that cannot be missed" says, and no incident's
//! trouble holds another's page.
//!
//! The delay figures are printed (`--nocapture`): `cargo test --test integration stuck_pages:: --
//! --nocapture`.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tocsin::{
    Config,
    config::{PagerDutyChannel, Secret, WebhookChannel},
    incidents::{ActionError, Incidents},
    model::{Action, Incident, Rule, Severity, State},
    notify::per_incident::ATTEMPTS,
};
use tocsin_fakes::{
    mastodon::ProfileUpdate,
    pagerduty::FakePagerDuty,
    telegram::{EditRefusal, Failure, PollMode, SentMessage},
    webhook::FakeReceiver,
};
use tokio::sync::Notify;

use crate::support::*;

fn with_webhook(hook: &FakeReceiver) -> impl FnOnce(&mut Config) + use<> {
    let url = hook.url("fallback");
    move |c: &mut Config| {
        c.channels.webhook.push(WebhookChannel {
            name: "soc".into(),
            url,
            secret: Secret::new("fallback-webhook-secret"),
            severities: None,
        })
    }
}

/// Incident pages (messages with buttons) the chat got that contain `needle`.
fn pages_with(app: &TestApp, needle: &str) -> Vec<SentMessage> {
    app.bot
        .sent()
        .into_iter()
        .filter(|m| m.reply_markup.is_some() && m.text.contains(needle))
        .collect()
}

/// The incident once its page is recorded.
async fn paged(app: &TestApp, object: &str) -> Incident {
    until(
        || {
            app.incident_by_object(object)
                .is_some_and(|i| i.page.is_some())
        },
        "the page recorded",
    )
    .await;
    app.incident_by_object(object).unwrap()
}

fn bio(app: &TestApp, html: &str) {
    app.masto.update_profile(
        ACCOUNT_ID,
        ProfileUpdate {
            note: Some(html.into()),
            ..Default::default()
        },
    );
}

fn website(app: &TestApp, url: &str) {
    app.masto.update_profile(
        ACCOUNT_ID,
        ProfileUpdate {
            url: Some(url.into()),
            ..Default::default()
        },
    );
}

/// How long after `committed` the chat got `page`, and how many other page requests reached
/// the chat in between: the pacing slots it waited for.
fn delay(app: &TestApp, committed: DateTime<Utc>, page: &SentMessage) -> (Duration, usize) {
    arrival(app, committed, page.received_at, &page.text)
}

/// [`delay`] of a request that reached the chat at `at` with `text`.
fn arrival(
    app: &TestApp,
    committed: DateTime<Utc>,
    at: DateTime<Utc>,
    text: &str,
) -> (Duration, usize) {
    let others = app
        .bot
        .calls()
        .into_iter()
        .filter(|c| {
            ["sendMessage", "editMessageText"]
                .iter()
                .any(|m| c.method.eq_ignore_ascii_case(m))
                && c.received_at > committed
                && c.received_at < at
                && c.params["text"].as_str() != Some(text)
        })
        .count();
    let d = (at - committed).to_std().unwrap_or_default();
    (d, others)
}

#[tokio::test]
async fn a_page_whose_edits_are_refused_holds_no_other_page_and_ends_as_a_dead_letter() {
    let hook = FakeReceiver::start().await.unwrap();
    let app = spawn_app_with(with_webhook(&hook)).await;
    let first = app.publish("giveaway! send 1 BTC");
    let a = paged(&app, &first).await;
    let msg = a.page.as_ref().unwrap().message_id;
    // Telegram refuses every edit of that one message, for a reason of its own.
    app.bot.fail_edits_of(
        CHAT,
        msg,
        Failure::Status(400, "Bad Request: REPLY_MARKUP_INVALID".into()),
    );
    app.publish("giveaway! send 2 BTC");
    until(
        || app.bot.request_count("editMessageText") >= 1,
        "the first refused edit",
    )
    .await;

    // Another incident meanwhile: its page goes at the next pacing slot.
    bio(&app, "<p>Send your coins here</p>");
    until(
        || !pages_with(&app, "social.profile_changed").is_empty(),
        "the other incident's page",
    )
    .await;
    let b = app.incident_by_object("profile").unwrap();
    let page = pages_with(&app, "social.profile_changed").remove(0);
    let (took, others) = delay(&app, b.opened_at, &page);
    eprintln!(
        "second incident's page {} ms after it was committed, {others} request(s) of the failing page in between",
        took.as_millis()
    );
    assert!(
        others <= 1,
        "the page waited for at most one pacing slot, not for the failing page: {others}"
    );
    assert!(
        app.store
            .incident(a.id)
            .unwrap()
            .unwrap()
            .page
            .unwrap()
            .rendered
            == a.page.as_ref().unwrap().rendered,
        "the first page is still failing when the second arrives"
    );

    // Later, with the failing page's next try seconds away (its lane backs off 4 s after the
    // third refusal), the other incident's update goes before that try, not after it.
    until(
        || app.bot.request_count("editMessageText") >= 3,
        "the third refused edit",
    )
    .await;
    bio(&app, "<p>Send your coins elsewhere</p>");
    let edited = || {
        app.bot
            .edits()
            .into_iter()
            .find(|e| e.message_id == page.message_id && e.text.contains("elsewhere"))
    };
    until(|| edited().is_some(), "the other incident's edit").await;
    let edit = edited().unwrap();
    let changed = app.incident_by_object("profile").unwrap().updated_at;
    let (took, others) = arrival(&app, changed, edit.received_at, &edit.text);
    eprintln!(
        "its edit {} ms after it was committed, {others} request(s) of the failing page in between",
        took.as_millis()
    );
    assert_eq!(
        others, 0,
        "the edit did not wait for the failing page's next try"
    );

    // The failing page is retried with backoff, then given up: a dead letter in its
    // timeline, counted, and paged to the fallback; never again in anyone's way.
    until(
        || {
            app.store
                .incident(a.id)
                .unwrap()
                .unwrap()
                .timeline
                .iter()
                .any(|e| {
                    matches!(&e.action, Action::DeadLettered { channel, attempts, .. }
                    if channel == "telegram" && *attempts == ATTEMPTS)
                })
        },
        "the dead letter",
    )
    .await;
    let tries = app
        .bot
        .calls()
        .into_iter()
        .filter(|c| {
            c.method.eq_ignore_ascii_case("editMessageText") && c.params["message_id"] == msg
        })
        .count();
    assert_eq!(tries, ATTEMPTS as usize, "bounded retries");
    assert_eq!(app.metric("tocsin_page_dead_letters_total").await, 1.0);
    until(
        || {
            hook.received().iter().any(|r| {
                let doc = r.json();
                doc["id"] == a.id
                    && doc["timeline"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|e| e["action"] == "dead_lettered"))
            })
        },
        "the fallback paged with the dead letter",
    )
    .await;
    let s = app.settle(2).await;
    assert!(
        s.incidents.iter().all(|i| i.rule != Rule::TelegramDown),
        "one page refused is not Telegram down"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_page_whose_edits_fail_with_5xx_does_not_delay_the_next_incident() {
    let app = spawn_app().await;
    let first = app.publish("giveaway! send 1 BTC");
    let a = paged(&app, &first).await;
    let msg = a.page.as_ref().unwrap().message_id;
    app.bot.fail_edits_of(
        CHAT,
        msg,
        Failure::Status(500, "Internal Server Error".into()),
    );
    app.publish("giveaway! send 2 BTC");
    // teloxide pauses 10 s inside a request answered 5xx: wait for that first failure, so the
    // chat counts as failing when the next page comes.
    let failures = "tocsin_page_failures_total{reason=\"transient\"}";
    let deadline = std::time::Instant::now() + WAIT;
    while app.metric(failures).await < 1.0 {
        assert!(std::time::Instant::now() < deadline, "no failed edit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bio(&app, "<p>Send your coins here</p>");
    until(
        || !pages_with(&app, "social.profile_changed").is_empty(),
        "the other incident's page",
    )
    .await;
    let b = app.incident_by_object("profile").unwrap();
    let page = pages_with(&app, "social.profile_changed").remove(0);
    let (took, others) = delay(&app, b.opened_at, &page);
    eprintln!(
        "with 5xx edits: second incident's page {} ms after it was committed, {others} request(s) in between",
        took.as_millis()
    );
    assert!(others <= 1, "{others} requests before it");
    assert!(
        app.store
            .outbox_entries("telegram")
            .unwrap()
            .iter()
            .any(|(_, e)| e.incident_id == a.id),
        "the failing page is still queued, retried on its own"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_success_without_the_documented_result_is_delivered_and_counted() {
    let app = spawn_app().await;
    let first = app.publish("giveaway! send 1 BTC");
    let a = paged(&app, &first).await;
    let msg = a.page.as_ref().unwrap().message_id;
    // An emulator's answer to an edit it applied: {"ok":true,"result":null}.
    app.bot.fail_next("editMessageText", Failure::NullResult);
    app.publish("giveaway! send 2 BTC");
    let s = app.settle(2).await;
    assert_eq!(
        app.bot.request_count("editMessageText"),
        1,
        "applied once, never re-sent"
    );
    assert!(
        app.bot
            .message(CHAT, msg)
            .unwrap()
            .text
            .contains("Burst: 2 posts"),
        "the edit was applied"
    );
    assert_eq!(
        app.metric("tocsin_page_unexpected_answers_total{method=\"editMessageText\"}")
            .await,
        1.0
    );
    assert!(s.incidents.iter().all(|i| i.rule != Rule::TelegramDown));
    let (status, body) = app.api_get("/readyz").await;
    assert_eq!(body["checks"]["telegram"], "ok", "{status} {body}");

    // A send answered the same way: delivered, but nobody said where the message is, so the
    // next update sends the page anew instead of editing an unknown message.
    app.bot.fail_next("sendMessage", Failure::NullResult);
    bio(&app, "<p>First new bio</p>");
    until(
        || {
            app.incident_by_object("profile")
                .is_some_and(|i| i.page.is_some())
        },
        "the profile page recorded",
    )
    .await;
    let b = app.incident_by_object("profile").unwrap();
    assert_eq!(b.page.as_ref().unwrap().message_id, 0, "unknown message id");
    assert_eq!(
        app.metric("tocsin_page_unexpected_answers_total{method=\"sendMessage\"}")
            .await,
        1.0
    );
    bio(&app, "<p>Second new bio</p>");
    until(
        || {
            app.incident_by_object("profile")
                .is_some_and(|i| i.page.as_ref().is_some_and(|p| p.message_id != 0))
        },
        "the page sent anew",
    )
    .await;
    let b = app.incident_by_object("profile").unwrap();
    assert!(
        app.bot
            .message(CHAT, b.page.unwrap().message_id)
            .unwrap()
            .text
            .contains("Second new bio")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_edit_refused_for_good_sends_the_current_state_as_the_new_page() {
    let app = spawn_app().await;
    let first = app.publish("scam 0: send 1 BTC");
    let mut page = paged(&app, &first).await.page.unwrap().message_id;
    let id = app.incident_by_object(&first).unwrap().id;
    // A responder deleted the page: the Bot API itself answers "message to edit not found".
    let deleted = reqwest::Client::new()
        .post(format!("{}bot{}/deleteMessage", app.bot.url(), BOT_TOKEN))
        .json(&serde_json::json!({"chat_id": CHAT, "message_id": page}))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    let refusals = [
        None,
        Some(EditRefusal::CantBeEdited),
        Some(EditRefusal::IdInvalid),
        Some(EditRefusal::NotAuthor),
    ];
    for (k, refusal) in refusals.iter().enumerate() {
        if let Some(r) = refusal {
            app.bot.fail_edits_of(CHAT, page, Failure::EditRefused(*r));
        }
        let n = k + 1;
        app.publish(&format!("scam {n}: send 1 BTC"));
        let burst = format!("Burst: {} posts", n + 1);
        until(
            || pages_with(&app, &burst).len() == 1,
            "the page sent again with the current state",
        )
        .await;
        let new = pages_with(&app, &burst).remove(0).message_id;
        assert_ne!(new, page);
        until(
            || {
                app.store
                    .incident(id)
                    .unwrap()
                    .unwrap()
                    .page
                    .is_some_and(|p| p.message_id == new)
            },
            "the new message is the incident's page",
        )
        .await;
        page = new;
    }
    let inc = app.store.incident(id).unwrap().unwrap();
    let reasons: Vec<&str> = inc
        .timeline
        .iter()
        .filter_map(|e| match &e.action {
            Action::Repaged { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].contains("message to edit not found"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("can't be edited"), "{reasons:?}");
    assert!(reasons[2].contains("MESSAGE_ID_INVALID"), "{reasons:?}");
    // And the page is edited in place again from then on.
    app.bot.clear_failures();
    app.publish("scam 5: send 1 BTC");
    until(
        || {
            app.bot
                .message(CHAT, page)
                .is_some_and(|m| m.text.contains("Burst: 6 posts"))
        },
        "the new page edited",
    )
    .await;
    let s = app.settle(2).await;
    assert_eq!(
        s.pages_with("social.unapproved_post").len(),
        5,
        "one page and four resends"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_text_refused_for_its_content_goes_out_as_plain_text() {
    let app = spawn_app().await;
    app.bot.fail_next("sendMessage", Failure::EntityError);
    let first = app.publish("send 1 BTC \u{202e}moc.live\u{202c} now");
    let a = paged(&app, &first).await;
    assert_eq!(
        app.bot.request_count("sendMessage"),
        2,
        "refused, then plain"
    );
    let page = app.bot.message(CHAT, a.page.unwrap().message_id).unwrap();
    assert!(page.text.contains("send 1 BTC"), "{}", page.text);
    assert!(
        !page.text.contains('\u{202e}'),
        "direction marks removed: {:?}",
        page.text
    );
    assert!(page.text.len() <= 4096, "cut to the limit in bytes");
    assert!(page.reply_markup.is_some(), "the buttons stay");

    app.bot.fail_next("editMessageText", Failure::TooLong);
    app.publish("send 2 BTC");
    until(
        || {
            app.bot
                .message(CHAT, page.message_id)
                .is_some_and(|m| m.text.contains("Burst: 2 posts"))
        },
        "the plain-text edit",
    )
    .await;
    assert_eq!(app.bot.request_count("editMessageText"), 2);
    let s = app.settle(2).await;
    assert_eq!(s.pages_with("social.unapproved_post").len(), 1);
    assert_eq!(app.metric("tocsin_page_dead_letters_total").await, 0.0);
    app.stop().await;
}

#[tokio::test]
async fn a_press_tocsin_cannot_parse_is_counted_logged_and_answered() {
    let app = spawn_app().await;
    let post = app.publish("giveaway! send 1 BTC");
    let inc = paged(&app, &post).await;
    let msg = inc.page.unwrap().message_id;
    let query = app.bot.press_button_without_chat_instance(
        CHAT,
        &responder(),
        msg,
        &format!("ack:{}", inc.id),
    );
    until(
        || {
            app.bot
                .callback_answers()
                .iter()
                .any(|a| a.callback_query_id == query)
        },
        "the answer to the press",
    )
    .await;
    let answer = app
        .bot
        .callback_answers()
        .into_iter()
        .find(|a| a.callback_query_id == query)
        .unwrap();
    let text = answer.text.unwrap_or_default();
    assert!(
        text.contains("could not read this press") && text.contains(&format!("/ack {}", inc.id)),
        "{text}"
    );
    assert_eq!(
        app.metric("tocsin_bot_updates_unparsed_total{kind=\"callback_query\"}")
            .await,
        1.0
    );
    let s = app.settle(1).await;
    let now = s.incidents.iter().find(|i| i.id == inc.id).unwrap();
    assert_eq!(now.state, State::Open, "an unread press does nothing");
    assert!(!now.timeline.iter().any(|e| e.action == Action::Acked));
    app.stop().await;
}

#[tokio::test]
async fn get_updates_answered_at_once_is_polled_at_most_twice_a_second() {
    let app = spawn_app().await;
    app.bot.set_poll_mode(PollMode::Immediate);
    let from = Utc::now() + chrono::Duration::milliseconds(500);
    let window = chrono::Duration::seconds(3);
    until(|| Utc::now() > from + window, "the measured window").await;
    let calls = app
        .bot
        .call_times("getUpdates")
        .into_iter()
        .filter(|t| *t >= from && *t < from + window)
        .count();
    let rate = calls as f64 / window.num_milliseconds() as f64 * 1000.0;
    eprintln!(
        "getUpdates against a server that answers at once: {calls} calls in 3 s ({rate:.2}/s)"
    );
    // Starts at least 500 ms apart: at most 7 within a 3 s window.
    assert!(calls <= 7, "{calls} calls in 3 s");
    assert!(calls >= 2, "still polling: {calls}");
    // Still responsive: a command is handled.
    app.bot.push_command(CHAT, &responder(), "/status");
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains("mastodon-main"))
        },
        "the reply",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_severity_rise_rings_with_a_new_message_and_growth_at_the_same_severity_is_an_edit() {
    let pd = FakePagerDuty::start().await.unwrap();
    let url = pd.url();
    let app = spawn_app_with(move |c| {
        c.channels.pagerduty.push(PagerDutyChannel {
            name: "critical".into(),
            routing_key: Secret::new("0123456789abcdef0123456789abcdef"),
            api_url: url,
            severities: Some(vec![Severity::Critical]),
        })
    })
    .await;
    bio(&app, "<p>Under new management</p>");
    let inc = paged(&app, "profile").await;
    assert_eq!(inc.severity, Severity::High);
    let page = inc.page.as_ref().unwrap().message_id;
    // Acked: a takeover joining it must still wake someone.
    app.bot
        .push_command(CHAT, &responder(), &format!("/ack {}", inc.id));
    until(
        || app.store.incident(inc.id).unwrap().unwrap().state == State::Acked,
        "the ack",
    )
    .await;
    let before = app.settle(1).await;
    assert!(pd.events().is_empty(), "high is not for this fallback");

    website(&app, "https://evil.example/claim");
    let rings = |app: &TestApp| {
        app.bot
            .sent()
            .into_iter()
            .filter(|m| m.text.starts_with("🔺"))
            .collect::<Vec<_>>()
    };
    until(|| !rings(&app).is_empty(), "the ring").await;
    let ring = rings(&app).remove(0);
    assert_eq!(ring.reply_to, Some(page), "replies to the page");
    assert!(
        ring.allow_sending_without_reply,
        "sent even if the page is gone"
    );
    assert!(
        ring.text.contains("rose from HIGH to CRITICAL"),
        "{}",
        ring.text
    );
    assert!(!ring.disable_notification, "it rings");
    until(
        || {
            app.bot
                .message(CHAT, page)
                .is_some_and(|m| m.text.contains("CRITICAL") && m.text.contains("evil.example"))
        },
        "the page edited to the new severity",
    )
    .await;
    until(
        || {
            pd.events()
                .iter()
                .any(|e| e["event_action"] == "trigger" && e["payload"]["severity"] == "critical")
        },
        "the fallback gets the new severity",
    )
    .await;
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert!(inc.timeline.iter().any(|e| e.action
        == Action::Rang {
            from: Severity::High,
            to: Severity::Critical,
            rule: Rule::ProfileChanged,
        }));

    // More of the same at the same severity: the page is edited, no phone rings again.
    website(&app, "https://evil.example/other");
    until(
        || {
            app.bot
                .message(CHAT, page)
                .is_some_and(|m| m.text.contains("evil.example/other"))
        },
        "the page edited",
    )
    .await;
    let after = app.settle(2).await;
    assert_eq!(rings(&app).len(), 1, "one ring for one rise");
    assert_eq!(
        after.sent.len(),
        before.sent.len() + 1,
        "the ring is the only new message"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_page_asked_anew_goes_out_as_a_new_message_that_becomes_the_page() {
    let app = spawn_app().await;
    let first = app.publish("giveaway! send 1 BTC");
    let a = paged(&app, &first).await;
    let old = a.page.as_ref().unwrap().message_id;
    // What a stale press will call: the worker takes it from the queue like any page.
    let incidents = Incidents::new(app.store.clone(), Arc::new(Notify::new()));
    incidents.repost_page(a.id).await.unwrap();
    until(
        || {
            app.store
                .incident(a.id)
                .unwrap()
                .unwrap()
                .page
                .is_some_and(|p| p.message_id != old)
        },
        "the new message recorded as the page",
    )
    .await;
    let inc = app.store.incident(a.id).unwrap().unwrap();
    let new = inc.page.as_ref().unwrap().message_id;
    let sent = app.bot.message(CHAT, new).unwrap();
    assert!(
        sent.reply_markup.is_some() && sent.text.contains("send 1 BTC"),
        "the current state, with its buttons: {}",
        sent.text
    );
    assert!(
        inc.timeline
            .iter()
            .any(|e| matches!(&e.action, Action::Repaged { .. })),
        "the timeline says so"
    );
    // From then on the new message is the one edited; the old one is left as it was.
    app.publish("giveaway! send 2 BTC");
    until(
        || {
            app.bot
                .message(CHAT, new)
                .is_some_and(|m| m.text.contains("Burst: 2 posts"))
        },
        "the new page edited",
    )
    .await;
    assert!(
        !app.bot
            .message(CHAT, old)
            .unwrap()
            .text
            .contains("Burst: 2 posts"),
        "the old message is not edited"
    );
    assert!(matches!(
        incidents.repost_page(a.id + 100).await,
        Err(ActionError::NotFound(_))
    ));
    app.stop().await;
}
