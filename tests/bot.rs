//! Who may act from the chat.

use tocsin::model::State;

use crate::support::*;

async fn app_with_incident() -> (TestApp, u64, i32) {
    let app = spawn_app().await;
    let post = app.publish("send 1 BTC, get 2 back");
    until(|| app.bot.sent().len() == 1, "the page").await;
    let id = app.incident_by_object(&post).unwrap().id;
    let msg = app.bot.sent()[0].message_id;
    (app, id, msg)
}

#[tokio::test]
async fn ack_command_from_a_responder_moves_the_incident_and_edits_the_page() {
    let (app, id, msg) = app_with_incident().await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/ack {id}"));
    until(
        || app.store.incident(id).unwrap().unwrap().state == State::Acked,
        "the ack",
    )
    .await;
    until(
        || {
            app.bot
                .message(CHAT, msg)
                .unwrap()
                .text
                .contains("ACKED by @alice (111)")
        },
        "the page edit",
    )
    .await;
    let page = app.bot.message(CHAT, msg).unwrap();
    let buttons = page.reply_markup.unwrap().to_string();
    assert!(
        !buttons.contains("ack:"),
        "Ack is gone once acked: {buttons}"
    );
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text == format!("Incident #{id} acknowledged by @alice (111)."))
        },
        "the reply",
    )
    .await;
    let s = app.settle(1).await;
    assert_eq!(
        s.pages_with("social.unapproved_post").len(),
        1,
        "edited, not re-sent"
    );
    assert_eq!(s.edits.len(), 1, "one edit for one ack: {:?}", s.edits);
    app.stop().await;
}

#[tokio::test]
async fn outsiders_other_chats_and_forged_buttons_are_refused() {
    let (app, id, msg) = app_with_incident().await;
    app.bot
        .push_command(CHAT, &outsider(), &format!("/ack {id}"));
    app.bot
        .push_command(OTHER_CHAT, &responder(), &format!("/resolve {id}"));
    app.bot
        .press_button(CHAT, &outsider(), msg, &format!("approve:{id}"));
    app.bot
        .press_button(CHAT, &responder(), msg, &format!("delete:{id}"));
    until(|| app.bot.callback_answers().len() == 2, "button answers").await;
    until(|| app.bot.sent().len() == 3, "two refusal replies").await;
    let replies: Vec<_> = app
        .bot
        .sent()
        .into_iter()
        .skip(1)
        .map(|m| (m.chat_id, m.text))
        .collect();
    assert_eq!(
        replies[0],
        (
            CHAT,
            "Refused: user 666 is not an on-call responder.".to_string()
        )
    );
    assert_eq!(
        replies[1],
        (
            OTHER_CHAT,
            "Refused: this is not the on-call chat.".to_string()
        )
    );
    let answers: Vec<_> = app
        .bot
        .callback_answers()
        .into_iter()
        .map(|a| a.text.unwrap_or_default())
        .collect();
    assert_eq!(answers[0], "Refused: user 666 is not an on-call responder.");
    assert_eq!(answers[1], "Refused: this button is not one of tocsin's.");
    // Every press and command handled, everything queued sent: a refused action that went
    // through anyway would show in the store, and its page edit in the chat.
    let s = app.settle(1).await;
    assert_eq!(s.sent.len(), 3, "the page and two replies: {:?}", s.sent);
    assert!(s.edits.is_empty(), "the page is unchanged: {:?}", s.edits);
    let inc = app.store.incident(id).unwrap().unwrap();
    assert_eq!(inc.state, State::Open, "nothing changed");
    assert_eq!(
        inc.timeline.len(),
        2,
        "opened and paged only: {:?}",
        inc.timeline
    );
    app.stop().await;
}

#[tokio::test]
async fn status_incidents_and_help_answer() {
    let (app, id, _) = app_with_incident().await;
    app.bot.push_command(CHAT, &responder(), "/incidents");
    app.bot.push_command(CHAT, &responder(), "/status");
    app.bot.push_command(CHAT, &outsider(), "/help");
    until(|| app.bot.sent().len() == 4, "three replies").await;
    let sent = app.bot.sent();
    assert!(
        sent[1].text.contains(&format!(
            "#{id} CRITICAL social.unapproved_post {ACCOUNT} — open"
        )),
        "{}",
        sent[1].text
    );
    assert!(
        sent[2]
            .text
            .contains(&format!("{ACCOUNT} (mastodon): last success")),
        "{}",
        sent[2].text
    );
    assert!(sent[2].text.contains("rate limit"), "{}", sent[2].text);
    assert!(sent[3].text.contains("/ack N"), "{}", sent[3].text);
    app.stop().await;
}

#[tokio::test]
async fn commands_for_another_bot_and_forwarded_commands_do_nothing() {
    let (app, id, _) = app_with_incident().await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/ack@otherbot {id}"));
    // A responder forwarding what someone else wrote must not run it as the responder.
    app.bot.push_forwarded(
        CHAT,
        &responder(),
        &outsider(),
        &format!("/resolve {id} false-alarm"),
    );
    let s = app.settle(1).await;
    assert_eq!(s.sent.len(), 1, "the page only, no reply: {:?}", s.sent);
    assert!(s.edits.is_empty(), "the page is unchanged: {:?}", s.edits);
    let inc = app.store.incident(id).unwrap().unwrap();
    assert_eq!(inc.state, State::Open, "nothing changed");
    assert_eq!(
        inc.timeline.len(),
        2,
        "opened and paged: {:?}",
        inc.timeline
    );
    assert_eq!(
        app.metric("tocsin_bot_commands_ignored_total{reason=\"other_bot\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.metric("tocsin_bot_commands_ignored_total{reason=\"forwarded\"}")
            .await,
        1.0
    );
    // Addressed to this bot by its own name (learnt with getMe), the same command acts.
    app.bot
        .push_command(CHAT, &responder(), &format!("/ack@tocsin_bot {id}"));
    until(
        || app.store.incident(id).unwrap().unwrap().state == State::Acked,
        "the ack",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_outsider_is_refused_once_however_often_they_try() {
    let (app, id, _) = app_with_incident().await;
    for _ in 0..4 {
        app.bot
            .push_command(CHAT, &outsider(), &format!("/ack {id}"));
    }
    // In a private chat with the bot too: one refusal per user, wherever they write.
    let dm = outsider().id as i64;
    app.bot.push_command(dm, &outsider(), "/incidents");
    let s = app.settle(1).await;
    let refusals: Vec<_> = s
        .sent
        .iter()
        .filter(|m| m.text.starts_with("Refused"))
        .map(|m| (m.chat_id, m.text.as_str()))
        .collect();
    assert_eq!(
        refusals,
        [(CHAT, "Refused: user 666 is not an on-call responder.")],
        "one refusal for five attempts"
    );
    assert_eq!(
        app.metric("tocsin_unauthorized_actions").await,
        5.0,
        "every attempt is still counted"
    );
    let inc = app.store.incident(id).unwrap().unwrap();
    assert_eq!(inc.state, State::Open, "nothing changed");
    // Another outsider is refused in their turn.
    let other = tocsin_fakes::telegram::FakeUser::new(667, "Eve", Some("eve"));
    app.bot.push_command(CHAT, &other, &format!("/ack {id}"));
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text == "Refused: user 667 is not an on-call responder.")
        },
        "the second outsider's refusal",
    )
    .await;
    app.stop().await;
}
