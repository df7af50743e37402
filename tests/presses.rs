//! A press acts on what the responder saw: Approve and Take down pressed on a page older than
//! the burst's newest member act only on the members that page showed.

use std::collections::BTreeMap;

use tocsin::{
    config::Secret,
    model::{Action, Incident, Severity, State},
    store::ApprovedEntry,
};

use crate::support::*;

const WRITE: &str = "masto-write-token";

/// The callback data of the button labelled `label` in a message's keyboard.
fn button(markup: &Option<serde_json::Value>, label: &str) -> String {
    let rows = markup.as_ref().expect("a keyboard")["inline_keyboard"]
        .as_array()
        .expect("rows")
        .clone();
    rows.iter()
        .flat_map(|r| r.as_array().cloned().unwrap_or_default())
        .find(|b| b["text"] == label)
        .and_then(|b| b["callback_data"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no {label} button in {markup:?}"))
}

fn answered(app: &TestApp, needle: &str) -> bool {
    app.bot
        .callback_answers()
        .iter()
        .any(|a| a.text.as_deref().is_some_and(|t| t.contains(needle)))
}

fn approved_posts(app: &TestApp) -> Vec<String> {
    app.store
        .log_records()
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.entry {
            ApprovedEntry::ApprovedPost { post_id, .. } => post_id,
            _ => None,
        })
        .collect()
}

/// A rogue post's page as first sent, then a second rogue post joining its burst: the
/// incident, the first page's message id and that page's keyboard as the responder saw it.
async fn burst_after_page(
    app: &TestApp,
) -> (String, String, Incident, i32, Option<serde_json::Value>) {
    let first = app.publish("free BTC giveaway, send 1 get 2");
    until(
        || {
            app.incident_by_object(&first)
                .is_some_and(|i| i.page.is_some())
        },
        "the first post's page",
    )
    .await;
    let msg = app
        .incident_by_object(&first)
        .unwrap()
        .page
        .unwrap()
        .message_id;
    let shown = app
        .bot
        .sent()
        .into_iter()
        .find(|m| m.message_id == msg)
        .unwrap()
        .reply_markup;
    let second = app.publish("second giveaway, double your ETH");
    until(
        || {
            app.incident_by_object(&first).is_some_and(|i| {
                i.members.len() == 2 && i.page.as_ref().unwrap().version == Some(2)
            })
        },
        "the second post in the burst, on the page",
    )
    .await;
    let inc = app.incident_by_object(&first).unwrap();
    assert!(inc.members.iter().any(|m| m.object == second));
    (first, second, inc, msg, shown)
}

/// New messages with buttons sent after the first `before` ones: pages sent again.
fn new_pages(app: &TestApp, before: usize) -> Vec<i32> {
    app.bot.sent()[before..]
        .iter()
        .filter(|m| m.reply_markup.is_some())
        .map(|m| m.message_id)
        .collect()
}

#[tokio::test]
async fn an_approve_press_from_an_older_page_approves_only_what_it_showed() {
    let app = spawn_app_with(|c| {
        c.paging.approve_quorum = BTreeMap::from([(Severity::Critical, 1)]);
    })
    .await;
    let (first, second, inc, msg, shown) = burst_after_page(&app).await;
    let data = button(&shown, "Approve");
    assert_eq!(data, format!("approve:{}:1", inc.id));
    let sent = app.bot.sent().len();

    app.bot.press_button(CHAT, &responder(), msg, &data);
    until(
        || answered(&app, "1 newer posts not included"),
        "the answer naming what was left out",
    )
    .await;
    assert_eq!(approved_posts(&app), vec![first.clone()]);
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert_eq!(inc.state, State::Open, "the newer post is still open");
    assert!(inc.shown(None).members.iter().any(|m| m.object == second));
    assert!(inc.timeline.iter().any(|e| matches!(
        &e.action,
        Action::ApprovedShown { posts, newer: 1 } if posts == &vec![first.clone()]
    )));
    // The current state goes out as a new message, which becomes the incident's page.
    until(|| !new_pages(&app, sent).is_empty(), "the page sent again").await;
    let page = new_pages(&app, sent)[0];
    until(
        || {
            app.store
                .incident(inc.id)
                .unwrap()
                .unwrap()
                .page
                .unwrap()
                .message_id
                == page
        },
        "the new message as the incident's page",
    )
    .await;
    assert!(app.store.verify_timeline().unwrap().is_ok());

    // The new page's Approve covers the rest, and only that is added.
    let data = button(
        &app.bot.message(CHAT, page).unwrap().reply_markup,
        "Approve",
    );
    app.bot.press_button(CHAT, &responder(), page, &data);
    until(
        || app.store.incident(inc.id).unwrap().unwrap().state == State::Resolved,
        "the approval of the rest",
    )
    .await;
    assert_eq!(approved_posts(&app), vec![first, second]);
    assert!(app.store.verify_timeline().unwrap().is_ok());
    app.stop().await;
}

#[tokio::test]
async fn a_quorum_approves_only_what_the_oldest_voters_page_showed() {
    let app = spawn_app_with(|c| {
        c.paging.approve_quorum = BTreeMap::from([(Severity::Critical, 2), (Severity::High, 2)]);
    })
    .await;
    let (first, second, inc, msg, shown) = burst_after_page(&app).await;
    app.bot
        .press_button(CHAT, &responder(), msg, &button(&shown, "Approve"));
    until(|| answered(&app, "recorded (1/2)"), "the first vote").await;
    let current = app.store.incident(inc.id).unwrap().unwrap().page.unwrap();
    let data = button(
        &app.bot
            .message(CHAT, current.message_id)
            .unwrap()
            .reply_markup,
        "Approve",
    );
    assert_eq!(data, format!("approve:{}:2", inc.id));
    app.bot
        .press_button(CHAT, &second_responder(), current.message_id, &data);
    until(
        || answered(&app, "what the page showed is approved by @bob"),
        "the quorum's answer",
    )
    .await;
    assert!(
        app.bot.callback_answers()[1]
            .text
            .as_deref()
            .is_some_and(|t| t.ends_with("1 newer posts not included: see the new page.")),
        "{:?}",
        app.bot.callback_answers()
    );
    assert_eq!(approved_posts(&app), vec![first]);
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert_eq!(inc.state, State::Open);
    assert_eq!(inc.shown(None).members.len(), 1);
    assert_eq!(inc.shown(None).members[0].object, second);
    assert!(app.store.verify_timeline().unwrap().is_ok());
    app.stop().await;
}

#[tokio::test]
async fn a_takedown_press_from_an_older_page_takes_down_only_what_it_showed() {
    let app = spawn_app_with(|c| {
        c.accounts[0].write_token = Some(Secret::new(WRITE));
    })
    .await;
    app.masto.require_write_token(Some(WRITE.into()));
    let (first, second, inc, msg, shown) = burst_after_page(&app).await;
    let data = button(&shown, "Take down");
    assert_eq!(data, format!("takedown:{}:1", inc.id));
    app.bot.press_button(CHAT, &responder(), msg, &data);
    until(
        || answered(&app, "1 newer posts not included"),
        "the answer naming what was left out",
    )
    .await;
    assert!(!app.masto.has_status(&first), "the shown post is deleted");
    assert!(app.masto.has_status(&second), "the newer post is left up");
    let deletes: Vec<_> = app
        .masto
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path)
        .collect();
    assert_eq!(deletes, vec![format!("/api/v1/statuses/{first}")]);
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert_eq!(inc.state, State::Open, "the newer post is still open");
    assert!(app.store.verify_timeline().unwrap().is_ok());
    app.stop().await;
}

#[tokio::test]
async fn a_button_without_a_version_acts_only_on_the_page_it_was_pressed_on() {
    let app = spawn_app_with(|c| {
        c.paging.approve_quorum = BTreeMap::from([(Severity::Critical, 1)]);
    })
    .await;
    let (first, _second, inc, msg, _shown) = burst_after_page(&app).await;
    let sent = app.bot.sent().len();
    // Pressed on a message that is not the incident's page: what it showed is not known.
    app.bot.press_button(
        CHAT,
        &responder(),
        msg + 1000,
        &format!("approve:{}", inc.id),
    );
    until(
        || answered(&app, "this button is from an older page"),
        "the refusal",
    )
    .await;
    until(|| !new_pages(&app, sent).is_empty(), "the page sent again").await;
    assert!(approved_posts(&app).is_empty());
    assert_eq!(
        app.store.incident(inc.id).unwrap().unwrap().state,
        State::Open
    );
    // Pressed on the page itself: the version that message shows.
    let page = new_pages(&app, sent)[0];
    until(
        || {
            app.store
                .incident(inc.id)
                .unwrap()
                .unwrap()
                .page
                .unwrap()
                .message_id
                == page
        },
        "the new page recorded",
    )
    .await;
    app.bot
        .press_button(CHAT, &responder(), page, &format!("approve:{}", inc.id));
    until(
        || app.store.incident(inc.id).unwrap().unwrap().state == State::Resolved,
        "the approval",
    )
    .await;
    assert_eq!(approved_posts(&app).len(), 2);
    assert!(approved_posts(&app).contains(&first));
    app.stop().await;
}
