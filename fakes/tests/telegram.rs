use std::time::Duration;

use serde_json::{Value, json};
use teloxide::prelude::*;
use teloxide::types::{
    InlineKeyboardButton, InlineKeyboardMarkup, MaybeInaccessibleMessage, MessageEntityKind,
    MessageId, ParseMode, UpdateKind,
};
use teloxide::utils::command::BotCommands;
use teloxide::{ApiError, RequestError};
use tocsin_fakes::telegram::{EditRefusal, Failure, FakeBotApi, FakeUser, PollMode};

const TOKEN: &str = "123456:test-token";
const GROUP: i64 = -1_001_234_567_890;

async fn setup() -> (FakeBotApi, Bot) {
    let fake = FakeBotApi::start(TOKEN).await.expect("start fake");
    let bot = Bot::new(TOKEN).set_api_url(fake.url());
    (fake, bot)
}

fn alice() -> FakeUser {
    FakeUser::new(42, "Alice", Some("alice"))
}

fn keyboard() -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[
        InlineKeyboardButton::callback("Ack", "ack:1"),
        InlineKeyboardButton::callback("Snooze", "snooze:1"),
    ]])
}

fn api_error(result: Result<impl std::fmt::Debug, RequestError>) -> ApiError {
    match result {
        Err(RequestError::Api(error)) => error,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn get_me_parses_as_me() {
    let (fake, bot) = setup().await;
    let me = bot.get_me().await.expect("get_me");
    assert_eq!(me.username(), "tocsin_bot");
    assert!(me.user.is_bot);
    assert_eq!(me.user.id.0, 123456);
    assert_eq!(fake.request_count("getme"), 1);
    assert!(fake.url().as_str().starts_with("http://127.0.0.1:"));
}

#[tokio::test]
async fn wrong_token_is_unauthorized() {
    let fake = FakeBotApi::start(TOKEN).await.unwrap();
    let bot = Bot::new("999:wrong").set_api_url(fake.url());
    assert_eq!(api_error(bot.get_me().await), ApiError::InvalidToken);
    let response = reqwest::get(format!("{}bot999:wrong/getMe", fake.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );
}

#[tokio::test]
async fn send_edit_delete_roundtrip() {
    let (fake, bot) = setup().await;
    let sent = bot
        .send_message(ChatId(GROUP), "🚨 <b>alice</b> posted &amp; left")
        .parse_mode(ParseMode::Html)
        .reply_markup(keyboard())
        .disable_notification(true)
        .await
        .expect("send_message");
    assert_eq!(sent.text(), Some("🚨 alice posted & left"));
    assert!(sent.chat.is_supergroup());
    assert_eq!(sent.reply_markup(), Some(&keyboard()));
    let entities = sent.entities().unwrap();
    assert_eq!(entities[0].kind, MessageEntityKind::Bold);
    assert_eq!((entities[0].offset, entities[0].length), (3, 5));
    assert!(sent.from.as_ref().unwrap().is_bot);

    let records = fake.sent();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].text, "🚨 <b>alice</b> posted &amp; left");
    assert_eq!(records[0].rendered_text, "🚨 alice posted & left");
    assert_eq!(records[0].message_id, sent.id.0);
    assert!(records[0].disable_notification);
    assert_eq!(
        records[0].reply_markup.as_ref().unwrap()["inline_keyboard"][0][0]["callback_data"],
        "ack:1"
    );

    // Identical text and markup: Telegram refuses the no-op edit.
    let same = bot
        .edit_message_text(ChatId(GROUP), sent.id, "🚨 <b>alice</b> posted &amp; left")
        .parse_mode(ParseMode::Html)
        .reply_markup(keyboard())
        .await;
    assert_eq!(api_error(same), ApiError::MessageNotModified);

    let edited = bot
        .edit_message_text(ChatId(GROUP), sent.id, "✅ acknowledged by @alice")
        .await
        .expect("edit");
    assert_eq!(edited.text(), Some("✅ acknowledged by @alice"));
    assert_eq!(
        edited.reply_markup(),
        None,
        "omitting reply_markup removes the keyboard"
    );
    assert!(edited.edit_date().is_some());
    let current = fake.message(GROUP, sent.id.0).unwrap();
    assert_eq!(current.text, "✅ acknowledged by @alice");
    assert_eq!(current.reply_markup, None);
    assert_eq!(fake.edits().len(), 1);

    let markup_edit = bot
        .edit_message_reply_markup(ChatId(GROUP), sent.id)
        .reply_markup(keyboard())
        .await
        .expect("edit markup");
    assert_eq!(markup_edit.reply_markup(), Some(&keyboard()));
    assert!(fake.edits()[1].markup_only);

    let missing = bot
        .edit_message_text(ChatId(GROUP), MessageId(999), "x")
        .await;
    assert_eq!(api_error(missing), ApiError::MessageToEditNotFound);

    bot.delete_message(ChatId(GROUP), sent.id)
        .await
        .expect("delete");
    assert!(fake.message(GROUP, sent.id.0).is_none());
    assert_eq!(fake.deletions().len(), 1);
    let again = bot.delete_message(ChatId(GROUP), sent.id).await;
    assert_eq!(api_error(again), ApiError::MessageToDeleteNotFound);
}

#[tokio::test]
async fn message_ids_are_per_chat_and_private_chats_parse() {
    let (_fake, bot) = setup().await;
    let a = bot.send_message(ChatId(GROUP), "one").await.unwrap();
    let b = bot.send_message(ChatId(GROUP), "two").await.unwrap();
    let c = bot.send_message(ChatId(42), "dm").await.unwrap();
    assert_eq!(b.id.0, a.id.0 + 1);
    assert_eq!(c.id.0, 1);
    assert!(c.chat.is_private());
    let group = bot
        .send_message(ChatId(-4242), "basic group")
        .await
        .unwrap();
    assert!(group.chat.is_group());
}

#[tokio::test]
async fn rejects_what_telegram_rejects() {
    let (fake, bot) = setup().await;
    let bad_html = bot
        .send_message(ChatId(GROUP), "<b>unclosed")
        .parse_mode(ParseMode::Html)
        .await;
    assert!(matches!(
        api_error(bad_html),
        ApiError::CantParseEntities(_)
    ));
    let unescaped = bot
        .send_message(ChatId(GROUP), "a <script> b")
        .parse_mode(ParseMode::Html)
        .await;
    assert!(matches!(
        api_error(unescaped),
        ApiError::CantParseEntities(_)
    ));
    let long_data =
        InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("x", "d".repeat(65))]]);
    let too_long = bot
        .send_message(ChatId(GROUP), "hi")
        .reply_markup(long_data)
        .await;
    assert_eq!(api_error(too_long), ApiError::ButtonDataInvalid);
    let empty = bot.send_message(ChatId(GROUP), "  ").await;
    assert_eq!(api_error(empty), ApiError::MessageTextIsEmpty);
    let huge = bot.send_message(ChatId(GROUP), "x".repeat(4097)).await;
    assert_eq!(api_error(huge), ApiError::MessageIsTooLong);
    assert!(fake.sent().is_empty());
    assert_eq!(fake.request_count("SendMessage"), 5);
}

#[tokio::test]
async fn pushed_command_arrives_as_message_update() {
    let (fake, bot) = setup().await;
    let update_id = fake.push_command(GROUP, &alice(), "/ack@tocsin_bot 17");
    let updates = bot.get_updates().await.expect("get_updates");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].id.0 as i32, update_id);
    let UpdateKind::Message(message) = &updates[0].kind else {
        panic!("expected a message, got {:?}", updates[0].kind);
    };
    assert_eq!(message.text(), Some("/ack@tocsin_bot 17"));
    assert_eq!(message.chat.id, ChatId(GROUP));
    assert_eq!(
        message.from.as_ref().unwrap().username.as_deref(),
        Some("alice")
    );
    let entity = &message.entities().unwrap()[0];
    assert_eq!(entity.kind, MessageEntityKind::BotCommand);
    assert_eq!((entity.offset, entity.length), (0, 15));

    #[derive(BotCommands, Debug, PartialEq)]
    #[command(rename_rule = "lowercase")]
    enum Command {
        Ack(String),
    }
    assert_eq!(
        Command::parse(message.text().unwrap(), "tocsin_bot").unwrap(),
        Command::Ack("17".into())
    );

    // Without a higher offset the update is delivered again; with one it is confirmed.
    assert_eq!(bot.get_updates().await.unwrap().len(), 1);
    let after = bot.get_updates().offset(update_id + 1).await.unwrap();
    assert!(after.is_empty());
    assert_eq!(fake.pending_updates(), 0);
}

#[tokio::test]
async fn pressed_button_arrives_as_callback_query() {
    let (fake, bot) = setup().await;
    let page = bot
        .send_message(ChatId(GROUP), "page")
        .reply_markup(keyboard())
        .await
        .unwrap();
    let query_id = fake.press_button(GROUP, &alice(), page.id.0, "ack:1");
    let updates = bot.get_updates().await.unwrap();
    let UpdateKind::CallbackQuery(query) = &updates[0].kind else {
        panic!("expected a callback query, got {:?}", updates[0].kind);
    };
    assert_eq!(query.id.0, query_id);
    assert_eq!(query.data.as_deref(), Some("ack:1"));
    assert_eq!(query.from.id.0, 42);
    let Some(MaybeInaccessibleMessage::Regular(message)) = &query.message else {
        panic!("expected the page message, got {:?}", query.message);
    };
    assert_eq!(message.id, page.id);
    assert_eq!(message.reply_markup(), Some(&keyboard()));

    bot.answer_callback_query(query.id.clone())
        .text("Acknowledged")
        .show_alert(true)
        .await
        .expect("answer");
    let answers = fake.callback_answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].callback_query_id, query_id);
    assert_eq!(answers[0].text.as_deref(), Some("Acknowledged"));
    assert!(answers[0].show_alert);

    // A second answer, or an unknown id, is refused as Telegram refuses it.
    let twice = bot.answer_callback_query(query.id.clone()).await;
    assert!(
        matches!(api_error(twice), ApiError::Unknown(text) if text.contains("query ID is invalid"))
    );

    // A button under a deleted message arrives with an inaccessible message.
    bot.delete_message(ChatId(GROUP), page.id).await.unwrap();
    let last = updates[0].id.0 as i32;
    fake.press_button(GROUP, &alice(), page.id.0, "ack:1");
    let updates = bot.get_updates().offset(last + 1).await.unwrap();
    let UpdateKind::CallbackQuery(query) = &updates[0].kind else {
        panic!("expected a callback query, got {:?}", updates[0].kind);
    };
    assert!(matches!(
        query.message,
        Some(MaybeInaccessibleMessage::Inaccessible(_))
    ));
}

#[tokio::test]
async fn long_poll_wakes_on_push() {
    let (fake, bot) = setup().await;
    let pusher = fake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        pusher.push_command(GROUP, &alice(), "/status");
    });
    let started = std::time::Instant::now();
    let updates = bot.get_updates().timeout(10).await.unwrap();
    assert_eq!(updates.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));

    let started = std::time::Instant::now();
    let offset = updates[0].id.0 as i32 + 1;
    let empty = bot.get_updates().offset(offset).timeout(1).await.unwrap();
    assert!(empty.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn allowed_updates_filters_kinds() {
    let (fake, bot) = setup().await;
    fake.push_command(GROUP, &alice(), "hello");
    fake.press_button(GROUP, &alice(), 1, "x");
    let updates = bot
        .get_updates()
        .allowed_updates([teloxide::types::AllowedUpdate::CallbackQuery])
        .await
        .unwrap();
    assert_eq!(updates.len(), 1);
    assert!(matches!(updates[0].kind, UpdateKind::CallbackQuery(_)));
    let call = fake
        .calls()
        .into_iter()
        .find(|c| c.method == "GetUpdates")
        .unwrap();
    assert_eq!(call.params["allowed_updates"], json!(["callback_query"]));
}

#[tokio::test]
async fn forced_failures_surface_as_teloxide_errors() {
    let (fake, bot) = setup().await;
    fake.fail_next("sendmessage", Failure::RetryAfter(3));
    fake.fail_next(
        "SENDMESSAGE",
        Failure::Status(400, "Bad Request: chat not found".into()),
    );
    match bot.send_message(ChatId(GROUP), "x").await {
        Err(RequestError::RetryAfter(seconds)) => assert_eq!(seconds.seconds(), 3),
        other => panic!("expected RetryAfter, got {other:?}"),
    }
    assert_eq!(
        api_error(bot.send_message(ChatId(GROUP), "x").await),
        ApiError::ChatNotFound
    );
    bot.send_message(ChatId(GROUP), "x")
        .await
        .expect("queue drained");
    assert_eq!(fake.request_count("sendMessage"), 3);
    assert_eq!(fake.sent().len(), 1);
}

#[tokio::test]
async fn raw_wire_format() {
    let fake = FakeBotApi::start(TOKEN).await.unwrap();
    let client = reqwest::Client::new();
    let base = format!("{}bot{TOKEN}", fake.url());

    fake.fail_next("getMe", Failure::RetryAfter(7));
    let retry = client.post(format!("{base}/getMe")).send().await.unwrap();
    assert_eq!(retry.status(), 429);
    assert_eq!(
        retry.json::<Value>().await.unwrap(),
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}})
    );

    let unknown = client
        .post(format!("{base}/frobnicate"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.unwrap(),
        json!({"ok": false, "error_code": 404, "description": "Not Found"})
    );

    // Form bodies and query strings carry the same parameters as JSON.
    let form: Value = client
        .post(format!("{base}/sendmessage"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("chat_id=-100123&text=hello%20form&reply_markup=%7B%22inline_keyboard%22%3A%5B%5B%7B%22text%22%3A%22A%22%2C%22callback_data%22%3A%22a%22%7D%5D%5D%7D")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(form["ok"], true);
    assert_eq!(form["result"]["text"], "hello form");
    assert_eq!(
        form["result"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
        "a"
    );
    let query: Value = client
        .get(format!("{base}/SENDMESSAGE?chat_id=7&text=via%20query"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        query["result"]["chat"],
        json!({"id": 7, "type": "private", "first_name": "User"})
    );
    assert_eq!(fake.sent().len(), 2);

    fake.fail_next("getMe", Failure::Hang(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    let hung = client.post(format!("{base}/getMe")).send().await.unwrap();
    assert_eq!(hung.status(), 500);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(fake.request_count("getme"), 2);
}

#[tokio::test]
async fn newer_poll_terminates_older_one() {
    let (fake, bot) = setup().await;
    let older = tokio::spawn({
        let bot = bot.clone();
        async move { bot.get_updates().timeout(10).await }
    });
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.request_count("getupdates")
            == 1)
            .await
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let newer = bot.get_updates().timeout(0).await.unwrap();
    assert!(newer.is_empty());
    let older = older.await.unwrap();
    assert_eq!(api_error(older), ApiError::TerminatedByOtherGetUpdates);
}

#[tokio::test]
async fn teloxide_dispatcher_runs_against_the_fake() {
    let (fake, bot) = setup().await;
    let handler = Update::filter_message().endpoint(|bot: Bot, msg: Message| async move {
        if let Some(text) = msg.text() {
            bot.send_message(msg.chat.id, format!("echo: {text}"))
                .await?;
        }
        respond(())
    });
    let mut dispatcher = Dispatcher::builder(bot, handler).build();
    let token = dispatcher.shutdown_token();
    let running = tokio::spawn(async move { dispatcher.dispatch().await });

    fake.push_command(GROUP, &alice(), "/status");
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| !f.sent().is_empty())
            .await
    );
    assert_eq!(fake.sent()[0].text, "echo: /status");
    assert!(fake.request_count("getWebhookInfo") >= 1);
    assert!(fake.request_count("getMe") >= 1);

    // Stop the dispatcher; its in-flight long poll is cut short by shutting the fake.
    if let Ok(stopping) = token.shutdown() {
        fake.shutdown();
        tokio::time::timeout(Duration::from_secs(15), stopping)
            .await
            .expect("dispatcher stops");
    }
    running.await.unwrap();
}

#[tokio::test]
async fn shutdown_refuses_new_connections() {
    let (fake, bot) = setup().await;
    bot.get_me().await.unwrap();
    fake.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = Bot::new(TOKEN).set_api_url(fake.url());
    assert!(matches!(
        fresh.get_me().await,
        Err(RequestError::Network(_))
    ));
}

#[tokio::test]
async fn a_null_result_carries_the_request_out_and_fails_teloxide_parsing() {
    let (fake, bot) = setup().await;
    let sent = bot.send_message(ChatId(GROUP), "before").await.unwrap();
    fake.fail_next("editMessageText", Failure::NullResult);
    let edited = bot.edit_message_text(ChatId(GROUP), sent.id, "after").await;
    match edited {
        Err(RequestError::InvalidJson { raw, .. }) => {
            assert_eq!(&*raw, r#"{"ok":true,"result":null}"#)
        }
        other => panic!("expected an unparsable success, got {other:?}"),
    }
    assert_eq!(fake.message(GROUP, sent.id.0).unwrap().text, "after");
}

#[tokio::test]
async fn edit_refusals_answer_as_the_bot_api_does_for_one_message_only() {
    let (fake, bot) = setup().await;
    let a = bot.send_message(ChatId(GROUP), "a").await.unwrap();
    let b = bot.send_message(ChatId(GROUP), "b").await.unwrap();
    for (refusal, expected) in [
        (EditRefusal::NotFound, ApiError::MessageToEditNotFound),
        (EditRefusal::CantBeEdited, ApiError::MessageCantBeEdited),
        (EditRefusal::IdInvalid, ApiError::MessageIdInvalid),
        (EditRefusal::NotAuthor, ApiError::MessageCantBeEdited),
    ] {
        fake.fail_edits_of(GROUP, a.id.0, Failure::EditRefused(refusal));
        let r = bot.edit_message_text(ChatId(GROUP), a.id, "a2").await;
        assert_eq!(api_error(r), expected);
        // Another message of the chat is editable all along.
        let text = format!("b {refusal:?}");
        bot.edit_message_text(ChatId(GROUP), b.id, text)
            .await
            .unwrap();
    }
    fake.clear_failures();
    bot.edit_message_text(ChatId(GROUP), a.id, "a3")
        .await
        .unwrap();
}

#[tokio::test]
async fn content_refusals_and_standing_failures() {
    let (fake, bot) = setup().await;
    fake.fail_next("sendMessage", Failure::EntityError);
    let r = bot.send_message(ChatId(GROUP), "x").await;
    assert!(matches!(api_error(r), ApiError::CantParseEntities(_)));
    fake.fail_always("SendMessage", Failure::TooLong);
    for _ in 0..2 {
        let r = bot.send_message(ChatId(GROUP), "x").await;
        assert_eq!(api_error(r), ApiError::MessageIsTooLong);
    }
    fake.clear_failures();
    bot.send_message(ChatId(GROUP), "x").await.unwrap();
}

#[tokio::test]
async fn an_immediate_get_updates_ignores_its_timeout() {
    let (fake, bot) = setup().await;
    fake.set_poll_mode(PollMode::Immediate);
    let started = std::time::Instant::now();
    let updates = bot.get_updates().timeout(5).await.unwrap();
    assert!(updates.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.call_times("getupdates").len(), 1);
}

#[tokio::test]
async fn a_press_without_chat_instance_is_unparsed_by_teloxide_yet_answerable() {
    let (fake, bot) = setup().await;
    let msg = bot
        .send_message(ChatId(GROUP), "page")
        .reply_markup(keyboard())
        .await
        .unwrap();
    let query = fake.press_button_without_chat_instance(GROUP, &alice(), msg.id.0, "ack:1");
    let updates = bot.get_updates().timeout(1).await.unwrap();
    let UpdateKind::Error(raw) = &updates[0].kind else {
        panic!("teloxide parsed it: {:?}", updates[0].kind)
    };
    assert_eq!(raw["callback_query"]["id"], query.as_str());
    assert!(raw["callback_query"].get("chat_instance").is_none());
    bot.answer_callback_query(teloxide::types::CallbackQueryId(query.clone()))
        .text("could not read this press")
        .await
        .unwrap();
    assert_eq!(fake.callback_answers()[0].callback_query_id, query);
}

#[tokio::test]
async fn replies_are_recorded_and_a_missing_target_needs_allow_sending_without_reply() {
    let (fake, bot) = setup().await;
    let page = bot.send_message(ChatId(GROUP), "page").await.unwrap();
    let reply = teloxide::types::ReplyParameters::new(page.id).allow_sending_without_reply();
    bot.send_message(ChatId(GROUP), "ring")
        .reply_parameters(reply)
        .await
        .unwrap();
    let ring = fake.sent().pop().unwrap();
    assert_eq!(ring.reply_to, Some(page.id.0));
    assert!(ring.allow_sending_without_reply);
    let gone = teloxide::types::ReplyParameters::new(MessageId(999));
    let r = bot
        .send_message(ChatId(GROUP), "to nothing")
        .reply_parameters(gone.clone())
        .await;
    assert!(matches!(r, Err(RequestError::Api(_))), "{r:?}");
    bot.send_message(ChatId(GROUP), "to nothing")
        .reply_parameters(gone.allow_sending_without_reply())
        .await
        .unwrap();
}

#[tokio::test]
async fn down_breaks_every_request_and_keeps_the_port() {
    let (fake, bot) = setup().await;
    fake.set_down(true);
    assert!(matches!(
        bot.send_message(ChatId(GROUP), "x").await,
        Err(RequestError::Network(_))
    ));
    assert!(fake.sent().is_empty(), "nothing done");
    fake.set_down(false);
    bot.send_message(ChatId(GROUP), "x").await.unwrap();
    assert_eq!(fake.sent().len(), 1);
}
