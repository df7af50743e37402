//! What pages and what does not.

use tocsin::model::{Evidence, Rule, State};
use tocsin_fakes::mastodon::{ProfileUpdate, status_html};

use crate::support::*;

#[tokio::test]
async fn history_is_not_paged_and_unapproved_post_pages_once_with_buttons() {
    let app = spawn_app().await;
    let history = app.settle(1).await;
    assert!(
        history.incidents.is_empty() && history.sent.is_empty(),
        "posts from before the first poll must not page"
    );
    history.assert_not_mentioned("An old post from before tocsin", "history is not paged");

    let id = app.publish("giveaway! send 1 BTC to bc1qexample https://evil.example/claim");
    until(|| !app.bot.sent().is_empty(), "the page").await;
    let s = app.settle(3).await;
    let sent = s.sent.clone();
    assert_eq!(
        sent.len(),
        1,
        "one page for one rogue post, however many polls see it"
    );
    assert!(
        s.edits.is_empty(),
        "nothing changed, nothing edited: {:?}",
        s.edits
    );
    let page = &sent[0];
    assert_eq!(page.chat_id, CHAT);
    assert!(
        page.text.contains("CRITICAL") && page.text.contains("social.unapproved_post"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("https://evil.example/claim"),
        "the link target is shown: {}",
        page.text
    );
    let inc = app.incident_by_object(&id).expect("incident");
    let buttons = page.reply_markup.as_ref().expect("buttons").to_string();
    for data in [
        format!("ack:{}", inc.id),
        format!("approve:{}", inc.id),
        format!("resolve:{}", inc.id),
    ] {
        assert!(
            buttons.contains(&data),
            "button {data} missing in {buttons}"
        );
    }
    assert!(
        inc.page.is_some(),
        "the delivery is recorded on the incident"
    );
    app.stop().await;
}

#[tokio::test]
async fn pre_approved_post_does_not_page_but_a_swapped_link_does() {
    let app = spawn_app().await;
    let text = "Our Q4 update is out: https://example.com/q4";
    assert_eq!(app.approve_text(text).await.status(), 201);
    let approved = app.publish(text);
    let s = app.settle(2).await;
    s.assert_not_held(&approved, "an approved post must not page");
    s.assert_not_mentioned("example.com/q4", "an approved post must not page");
    assert!(s.sent.is_empty(), "an approved post must not page");

    let swapped = app.publish("Our Q4 update is out: https://examp1e.example/q4");
    until(
        || app.bot.sent().len() == 1,
        "the page for the swapped link",
    )
    .await;
    let page = &app.bot.sent()[0];
    assert!(
        page.text.contains("social.unapproved_post")
            && page.text.contains("https://examp1e.example/q4")
            && page.text.contains(&format!("Post {swapped}")),
        "the page names the post and its link: {}",
        page.text
    );
    let s = app.settle(2).await;
    s.assert_not_held(&approved, "the approved post stays out of the incident");
    let members: Vec<_> = s
        .holding(&swapped)
        .expect("the swapped post's incident")
        .members
        .iter()
        .map(|m| m.object.clone())
        .collect();
    assert_eq!(members, vec![swapped], "only the swapped post is in it");
    app.stop().await;
}

#[tokio::test]
async fn edit_of_a_known_post_pages() {
    let app = spawn_app().await;
    let text = "Maintenance tonight at 22:00 UTC";
    assert_eq!(app.approve_text(text).await.status(), 201);
    let id = app.publish(text);
    let s = app.settle(2).await;
    s.assert_not_held(&id, "an approved post must not page");
    assert!(s.sent.is_empty(), "{:?}", s.sent);

    app.masto.edit(
        &id,
        &status_html("Maintenance tonight. Verify your wallet at https://evil.example"),
    );
    until(|| app.bot.sent().len() == 1, "the edit page").await;
    let inc = app.incident_by_object(&id).unwrap();
    assert_eq!(inc.rule, Rule::PostEdited);
    let Evidence::PostEdited { before, after, .. } = &inc.evidence else {
        panic!("edit evidence")
    };
    assert_eq!(before, text);
    assert!(after.contains("https://evil.example"));
    assert!(
        app.bot.sent()[0]
            .text
            .contains("Before: “Maintenance tonight at 22:00 UTC”")
    );
    app.stop().await;
}

#[tokio::test]
async fn bio_change_pages_and_approve_makes_it_the_baseline() {
    let app = spawn_app().await;
    let new_bio = "<p>Now with a new bio</p>";
    app.masto.update_profile(
        ACCOUNT_ID,
        ProfileUpdate {
            note: Some(new_bio.into()),
            ..Default::default()
        },
    );
    until(|| app.bot.sent().len() == 1, "the profile page").await;
    let page = app.bot.sent()[0].clone();
    assert!(
        page.text
            .contains("note: “Official account.” → “Now with a new bio”"),
        "{}",
        page.text
    );
    let inc = app.incident_by_object("profile").unwrap();

    app.bot.press_button(
        CHAT,
        &responder(),
        page.message_id,
        &format!("approve:{}", inc.id),
    );
    until(
        || app.store.incident(inc.id).unwrap().unwrap().state == State::Resolved,
        "approval",
    )
    .await;
    assert_eq!(
        app.store.baseline(ACCOUNT, "note").unwrap().unwrap().value,
        "Now with a new bio"
    );
    until(
        || {
            app.bot
                .message(CHAT, page.message_id)
                .unwrap()
                .text
                .contains("RESOLVED (approved) by @alice (111)")
        },
        "page edit",
    )
    .await;
    let s = app.settle(3).await;
    assert_eq!(s.sent.len(), 1, "an approved bio must not page again");
    assert_eq!(s.incidents.len(), 1, "no other incident: {:?}", s.incidents);
    assert!(
        s.edits
            .last()
            .is_some_and(|e| e.text.contains("RESOLVED (approved)")),
        "the last edit is the approval: {:?}",
        s.edits.last()
    );
    assert!(app.store.verify_log().unwrap().is_ok());
    app.stop().await;
}
