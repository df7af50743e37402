//! Takedown from the chat: the `Take down` button and `/takedown N`, each platform answer, the
//! two-person rule, and who may press.

use tocsin::{
    config::Secret,
    model::{Action, Incident, Resolution, State, TakedownOutcome},
};

use crate::support::*;

const WRITE: &str = "masto-write-token";

async fn with_write_token(quorum: u8) -> TestApp {
    let app = spawn_app_with(|c| {
        c.accounts[0].write_token = Some(Secret::new(WRITE));
        c.paging.takedown_quorum = quorum;
    })
    .await;
    app.masto.require_write_token(Some(WRITE.into()));
    app
}

/// Publishes a rogue post and waits for its page; the incident and the page's message id.
async fn rogue(app: &TestApp, text: &str) -> (String, Incident, i32) {
    let post = app.publish(text);
    until(
        || {
            app.incident_by_object(&post)
                .is_some_and(|i| i.page.is_some())
        },
        "the rogue post's page",
    )
    .await;
    let inc = app.incident_by_object(&post).unwrap();
    let msg = inc.page.as_ref().unwrap().message_id;
    let page = app.bot.message(CHAT, msg).unwrap();
    let markup = serde_json::to_string(&page.reply_markup).unwrap();
    assert!(
        markup.contains(&format!("takedown:{}", inc.id)),
        "the page has a Take down button: {markup}"
    );
    (post, inc, msg)
}

fn answered(app: &TestApp, needle: &str) -> bool {
    app.bot
        .callback_answers()
        .iter()
        .any(|a| a.text.as_deref().is_some_and(|t| t.contains(needle)))
        || app.bot.sent().iter().any(|m| m.text.contains(needle))
}

async fn wait_answer(app: &TestApp, needle: &str) {
    until(|| answered(app, needle), needle).await;
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

fn deletes(app: &TestApp) -> usize {
    app.masto
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count()
}

#[tokio::test]
async fn the_button_deletes_the_post_resolves_contained_and_shows_it() {
    let app = with_write_token(1).await;
    let (post, inc, msg) = rogue(&app, "free BTC giveaway at scam.example").await;
    app.bot
        .press_button(CHAT, &responder(), msg, &format!("takedown:{}", inc.id));
    wait_answer(&app, &format!("post {post} deleted")).await;
    assert!(!app.masto.has_status(&post), "the fake no longer has it");
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert_eq!(inc.state, State::Resolved);
    assert_eq!(inc.resolution, Some(Resolution::Contained));
    assert_eq!(results(&inc), vec![TakedownOutcome::Deleted]);
    assert!(inc.timeline.iter().any(|e| matches!(
        &e.action,
        Action::TakedownStarted { posts } if posts == &vec![post.clone()]
    )));
    let request = app
        .masto
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(request.path, format!("/api/v1/statuses/{post}"));
    assert_eq!(request.bearer.as_deref(), Some(WRITE));
    until(
        || {
            app.bot
                .message(CHAT, msg)
                .is_some_and(|m| m.text.contains(&format!("Takedown: {post} deleted")))
        },
        "the page shows the takedown",
    )
    .await;
    assert!(app.store.verify_timeline().unwrap().is_ok());
    app.stop().await;
}

#[tokio::test]
async fn each_platform_answer_is_recorded_404_403_500() {
    let app = with_write_token(1).await;
    // 404: someone removed it first; still contained.
    let (post, inc, _) = rogue(&app, "first rogue post").await;
    app.masto.delete(&post);
    app.bot
        .push_command(CHAT, &responder(), &format!("/takedown {}", inc.id));
    wait_answer(&app, &format!("post {post} already gone")).await;
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert_eq!(results(&inc), vec![TakedownOutcome::AlreadyGone]);
    assert_eq!(inc.resolution, Some(Resolution::Contained));

    // 500 then 403: recorded, not resolved, and a later press tries again.
    let (post, inc, _) = rogue(&app, "second rogue post, other words").await;
    app.masto.fail_next_delete(500);
    app.bot
        .push_command(CHAT, &responder(), &format!("/takedown {}", inc.id));
    wait_answer(&app, &format!("post {post} failed (500")).await;
    app.masto.require_write_token(Some("another-token".into()));
    app.bot
        .push_command(CHAT, &responder(), &format!("/takedown {}", inc.id));
    wait_answer(&app, &format!("post {post} forbidden (403")).await;
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert_ne!(inc.state, State::Resolved);
    let got = results(&inc);
    assert!(matches!(got[0], TakedownOutcome::Failed { .. }), "{got:?}");
    assert!(
        matches!(got[1], TakedownOutcome::Forbidden { .. }),
        "{got:?}"
    );
    assert!(app.masto.has_status(&post));
    app.stop().await;
}

#[tokio::test]
async fn two_person_rule_waits_for_a_second_responder_and_calls_once() {
    let app = with_write_token(2).await;
    let (post, inc, msg) = rogue(&app, "urgent: new wallet address").await;
    let data = format!("takedown:{}", inc.id);
    app.bot.press_button(CHAT, &responder(), msg, &data);
    wait_answer(&app, "recorded (1/2); another responder must confirm").await;
    assert!(app.masto.has_status(&post));
    assert_eq!(deletes(&app), 0);
    until(
        || {
            app.bot.message(CHAT, msg).is_some_and(|m| {
                m.text
                    .contains("Take down: 1/2 — waiting for a second responder (asked: @alice)")
            })
        },
        "the page shows the waiting vote",
    )
    .await;
    app.bot.press_button(CHAT, &responder(), msg, &data);
    wait_answer(&app, "you already asked to take down").await;
    app.bot.press_button(CHAT, &outsider(), msg, &data);
    wait_answer(&app, "Refused: user 666 is not an on-call responder.").await;
    assert_eq!(deletes(&app), 0);

    app.bot.press_button(CHAT, &second_responder(), msg, &data);
    wait_answer(&app, &format!("post {post} deleted")).await;
    assert!(!app.masto.has_status(&post));
    // A late press after the quorum executed does not call the platform again.
    app.bot.press_button(CHAT, &responder(), msg, &data);
    wait_answer(&app, "is already resolved (contained)").await;
    assert_eq!(deletes(&app), 1, "the platform was called once");
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert_eq!(inc.resolved_by.unwrap().id, second_responder().id);
    assert!(inc.timeline.iter().any(|e| matches!(
        e.action,
        Action::TakedownVote {
            votes: 1,
            needed: 2,
            ..
        }
    )));
    app.stop().await;
}

#[tokio::test]
async fn without_a_write_token_nothing_is_called_and_the_chat_is_told() {
    let app = spawn_app().await;
    let (post, inc, msg) = rogue(&app, "rogue post on a read-only deployment").await;
    app.bot
        .press_button(CHAT, &responder(), msg, &format!("takedown:{}", inc.id));
    wait_answer(&app, "has no write_token configured").await;
    assert_eq!(deletes(&app), 0);
    assert!(app.masto.has_status(&post));
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert!(results(&inc).is_empty());
    assert_ne!(inc.state, State::Resolved);
    app.stop().await;
}

#[tokio::test]
async fn a_burst_takes_down_every_member() {
    let app = with_write_token(1).await;
    let (first, inc, _) = rogue(&app, "scam one").await;
    let second = app.publish("scam two");
    let third = app.publish("scam three");
    until(
        || {
            app.store.incident(inc.id).unwrap().is_some_and(|i| {
                i.members.len() == 3
                    && i.page
                        .as_ref()
                        .is_some_and(|p| p.version == Some(i.version()))
            })
        },
        "the burst of three on the page: /takedown acts on what the chat was shown",
    )
    .await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/takedown {}", inc.id));
    wait_answer(&app, "3/3 posts taken down").await;
    for p in [&first, &second, &third] {
        assert!(!app.masto.has_status(p), "{p} deleted");
    }
    assert_eq!(deletes(&app), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_slow_takedown_does_not_hold_up_the_next_command() {
    let app = with_write_token(1).await;
    let (post, inc, msg) = rogue(&app, "free BTC giveaway, slow platform").await;
    app.masto.hold_deletes();
    app.bot
        .press_button(CHAT, &responder(), msg, &format!("takedown:{}", inc.id));
    until(|| deletes(&app) == 1, "the DELETE reached the platform").await;
    // The platform has not answered: the bot still handles what comes next.
    app.bot
        .push_command(CHAT, &responder(), &format!("/ack {}", inc.id));
    wait_answer(&app, &format!("Incident #{} acknowledged", inc.id)).await;
    let now = app.store.incident(inc.id).unwrap().unwrap();
    assert!(
        results(&now).is_empty(),
        "the ack was handled while the takedown was still waiting: {:?}",
        now.timeline
    );
    assert!(app.masto.has_status(&post), "not deleted yet");
    app.masto.release_deletes();
    wait_answer(&app, &format!("post {post} deleted")).await;
    let done = app.store.incident(inc.id).unwrap().unwrap();
    assert_eq!(results(&done), vec![TakedownOutcome::Deleted]);
    assert_eq!(done.resolution, Some(Resolution::Contained));
    assert_eq!(deletes(&app), 1, "called once");
    app.stop().await;
}
