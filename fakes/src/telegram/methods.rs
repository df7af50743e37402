//! The Bot API methods the fake answers, each checking what the real server checks.

use super::*;

// ---------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------

pub(super) fn get_me(shared: &Shared) -> Result<Value, ApiError> {
    let mut me = bot_user(shared.bot_id);
    for (key, value) in [
        ("can_join_groups", true),
        ("can_read_all_group_messages", false),
        ("supports_inline_queries", false),
        ("can_connect_to_business", false),
        // teloxide-core 0.13 requires this field on `Me`.
        ("has_main_web_app", false),
    ] {
        me[key] = json!(value);
    }
    ok(me)
}

pub(super) async fn get_updates(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let offset = params.int("offset")?.unwrap_or(0);
    let limit = params.int("limit")?.unwrap_or(100).clamp(1, 100) as usize;
    let timeout = params
        .int("timeout")?
        .unwrap_or(0)
        .clamp(0, MAX_POLL_TIMEOUT_SECS) as u64;
    let allowed = match params.json("allowed_updates") {
        Ok(Some(Value::Array(items))) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect::<Vec<_>>(),
        ),
        Ok(_) => None,
        Err(()) => {
            return Err(ApiError::bad_request(
                "Bad Request: can't parse allowed updates JSON object",
            ));
        }
    };
    let generation = {
        let mut inner = shared.lock();
        inner.poll_generation += 1;
        if let Some(allowed) = allowed {
            inner.allowed_updates = Some(allowed);
        }
        inner.poll_generation
    };
    // Like Telegram, a newer poll terminates an older one still waiting.
    shared.updates.notify_waiters();
    let immediate = shared.lock().poll_mode == PollMode::Immediate;
    let timeout = if immediate { 0 } else { timeout };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let notified = shared.updates.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut inner = shared.lock();
            if inner.down {
                return ok(json!([]));
            }
            if inner.poll_generation != generation {
                return Err(ApiError::new(409, CONFLICT));
            }
            confirm_updates(&mut inner, offset);
            let ready: Vec<Value> = inner
                .queue
                .iter()
                .take(limit)
                .map(|update| update.json.clone())
                .collect();
            if !ready.is_empty() || tokio::time::Instant::now() >= deadline {
                return ok(Value::Array(ready));
            }
        }
        if *shutdown.borrow() {
            return ok(json!([]));
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return ok(json!([])),
        }
    }
}

/// Drops what the offset confirms and what `allowed_updates` excludes, as Telegram
/// forgets both.
pub(super) fn confirm_updates(inner: &mut Inner, offset: i64) {
    if offset > 0 {
        inner.queue.retain(|update| i64::from(update.id) >= offset);
    } else if offset < 0 {
        let keep = offset.unsigned_abs() as usize;
        while inner.queue.len() > keep {
            inner.queue.pop_front();
        }
    }
    if let Some(allowed) = inner.allowed_updates.clone()
        && !allowed.is_empty()
    {
        inner
            .queue
            .retain(|update| allowed.iter().any(|kind| kind == update.kind));
    }
}

pub(super) fn send_message(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let chat_id = params.chat_id()?;
    let text = params.string("text").unwrap_or_default();
    let parse_mode = params.string("parse_mode").filter(|m| !m.is_empty());
    let rendered = render(&text, parse_mode.as_deref(), params)?;
    let markup = reply_markup(params)?;
    let (reply_to, allow_sending_without_reply) = reply_target(params)?;
    let mut inner = shared.lock();
    if let Some(to) = reply_to
        && !allow_sending_without_reply
        && !inner.messages.contains_key(&(chat_id, to))
    {
        return Err(ApiError::bad_request(
            "Bad Request: message to be replied not found",
        ));
    }
    let message_id = next_message_id(&mut inner, chat_id);
    let now = Utc::now();
    let record = SentMessage {
        chat_id,
        message_id,
        text,
        rendered_text: rendered.text.clone(),
        parse_mode,
        reply_markup: markup.clone(),
        disable_notification: params.flag("disable_notification"),
        reply_to,
        allow_sending_without_reply,
        received_at: now,
        received_instant: Instant::now(),
    };
    let stored = Stored {
        from: bot_user(shared.bot_id),
        from_bot: true,
        date: now.timestamp(),
        edit_date: None,
        rendered,
        inline_markup: inline_markup(markup.as_ref()),
        record: record.clone(),
    };
    let message = message_json(&inner, &stored);
    inner.messages.insert((chat_id, message_id), stored);
    inner.sent.push(record);
    ok(message)
}

/// The message a send replies to: `reply_parameters` (Bot API 7.0) or the older
/// `reply_to_message_id` and `allow_sending_without_reply`.
fn reply_target(params: &Params) -> Result<(Option<i32>, bool), ApiError> {
    let invalid = || ApiError::bad_request("Bad Request: can't parse reply parameters JSON object");
    if let Some(p) = params.json("reply_parameters").map_err(|()| invalid())? {
        let id = p
            .get("message_id")
            .and_then(Value::as_i64)
            .ok_or_else(invalid)?;
        let allow = p
            .get("allow_sending_without_reply")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        return Ok((i32::try_from(id).ok(), allow));
    }
    let id = params.int("reply_to_message_id")?;
    Ok((
        id.and_then(|id| i32::try_from(id).ok()),
        params.flag("allow_sending_without_reply"),
    ))
}

pub(super) fn edit_message(
    shared: &Shared,
    params: &Params,
    markup_only: bool,
) -> Result<Value, ApiError> {
    if params.string("inline_message_id").is_some() {
        return Err(ApiError::bad_request(
            "Bad Request: inline messages are not supported by the fake Bot API",
        ));
    }
    let chat_id = params.chat_id()?;
    let message_id = params.message_id()?;
    let markup = reply_markup(params)?;
    let new_text = if markup_only {
        None
    } else {
        let text = params.string("text").unwrap_or_default();
        let parse_mode = params.string("parse_mode").filter(|m| !m.is_empty());
        let rendered = render(&text, parse_mode.as_deref(), params)?;
        Some((text, parse_mode, rendered))
    };
    let mut inner = shared.lock();
    let Some(current) = inner.messages.get(&(chat_id, message_id)).cloned() else {
        return Err(ApiError::bad_request(
            "Bad Request: message to edit not found",
        ));
    };
    if !current.from_bot {
        return Err(ApiError::bad_request(
            "Bad Request: message can't be edited",
        ));
    }
    let new_inline = inline_markup(markup.as_ref());
    let mut updated = current.clone();
    if let Some((text, parse_mode, rendered)) = new_text {
        updated.record.text = text;
        updated.record.parse_mode = parse_mode;
        updated.record.rendered_text = rendered.text.clone();
        updated.rendered = rendered;
    }
    // Telegram drops the keyboard when an edit omits reply_markup.
    updated.inline_markup = new_inline;
    updated.record.reply_markup = markup.clone();
    if updated.rendered == current.rendered && updated.inline_markup == current.inline_markup {
        return Err(ApiError::bad_request(NOT_MODIFIED));
    }
    let now = Utc::now();
    updated.edit_date = Some(now.timestamp());
    let message = message_json(&inner, &updated);
    inner.edits.push(EditedMessage {
        chat_id,
        message_id,
        text: updated.record.text.clone(),
        reply_markup: markup,
        markup_only,
        received_at: now,
        received_instant: Instant::now(),
    });
    inner.messages.insert((chat_id, message_id), updated);
    ok(message)
}

pub(super) fn answer_callback_query(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let Some(query_id) = params.string("callback_query_id") else {
        return Err(ApiError::bad_request("Bad Request: query_id is empty"));
    };
    let mut inner = shared.lock();
    match inner.open_queries.get_mut(&query_id) {
        Some(answered) if !*answered => *answered = true,
        _ => return Err(ApiError::bad_request(QUERY_INVALID)),
    }
    inner.answers.push(CallbackAnswer {
        callback_query_id: query_id,
        text: params.string("text"),
        show_alert: params.flag("show_alert"),
        received_at: Utc::now(),
        received_instant: Instant::now(),
    });
    ok(json!(true))
}

pub(super) fn delete_message(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let chat_id = params.chat_id()?;
    let message_id = params.message_id()?;
    let mut inner = shared.lock();
    if let Some(channel) = inner.channels.get(&chat_id) {
        if !channel.bot_admin {
            return Err(ApiError::new(403, NOT_A_MEMBER));
        }
        if let Some(m) = inner.messages.get(&(chat_id, message_id))
            && Utc::now().timestamp() - m.date >= 48 * 3600
        {
            return Err(ApiError::bad_request(
                "Bad Request: message can't be deleted",
            ));
        }
    }
    if inner.messages.remove(&(chat_id, message_id)).is_none() {
        return Err(ApiError::bad_request(
            "Bad Request: message to delete not found",
        ));
    }
    inner.deletions.push(DeletedMessage {
        chat_id,
        message_id,
        received_at: Utc::now(),
        received_instant: Instant::now(),
    });
    ok(json!(true))
}

pub(super) fn reply_markup(params: &Params) -> Result<Option<Value>, ApiError> {
    let markup = params.json("reply_markup").map_err(|()| {
        ApiError::bad_request("Bad Request: can't parse reply keyboard markup JSON object")
    })?;
    let Some(markup) = markup else {
        return Ok(None);
    };
    if !markup.is_object() {
        return Err(ApiError::bad_request(
            "Bad Request: can't parse reply keyboard markup JSON object",
        ));
    }
    if let Some(rows) = markup.get("inline_keyboard") {
        let Some(rows) = rows.as_array() else {
            return Err(ApiError::bad_request(
                "Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays",
            ));
        };
        for row in rows {
            let Some(buttons) = row.as_array() else {
                return Err(ApiError::bad_request(
                    "Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays",
                ));
            };
            for button in buttons {
                if button.get("text").and_then(Value::as_str).is_none() {
                    return Err(ApiError::bad_request(
                        "Bad Request: can't find field \"text\"",
                    ));
                }
                if let Some(data) = button.get("callback_data") {
                    let len = data.as_str().map_or(0, str::len);
                    if len == 0 || len > MAX_CALLBACK_DATA_BYTES {
                        return Err(ApiError::bad_request("Bad Request: BUTTON_DATA_INVALID"));
                    }
                }
            }
        }
    }
    Ok(Some(markup))
}

/// Only inline keyboards are echoed on the Message, and an empty one means "none".
pub(super) fn inline_markup(markup: Option<&Value>) -> Option<Value> {
    let markup = markup?;
    let rows = markup.get("inline_keyboard")?.as_array()?;
    if rows
        .iter()
        .all(|row| row.as_array().is_none_or(Vec::is_empty))
    {
        return None;
    }
    Some(json!({"inline_keyboard": rows}))
}

pub(super) fn channel_of<'a>(
    inner: &'a Inner,
    params: &Params,
) -> Result<&'a FakeChannel, ApiError> {
    let chat_id = params.chat_id()?;
    let channel = inner
        .channels
        .get(&chat_id)
        .ok_or_else(|| ApiError::bad_request("Bad Request: chat not found"))?;
    if !channel.bot_admin {
        return Err(ApiError::new(403, NOT_A_MEMBER));
    }
    Ok(channel)
}

pub(super) fn get_chat(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let inner = shared.lock();
    let chat_id = params.chat_id()?;
    let c = channel_of(&inner, params)?;
    let mut chat = chat_json(&inner, chat_id);
    chat["description"] = json!(c.description);
    chat["accent_color_id"] = json!(0);
    chat["max_reaction_count"] = json!(11);
    if let Some(p) = &c.photo_unique_id {
        chat["photo"] = json!({
            "small_file_id": format!("s-{p}"),
            "small_file_unique_id": format!("{p}-s"),
            "big_file_id": format!("b-{p}"),
            "big_file_unique_id": p,
        });
    }
    if let Some(id) = c.pinned_message_id
        && let Some(stored) = inner.messages.get(&(chat_id, id))
    {
        chat["pinned_message"] = message_json(&inner, stored);
    }
    ok(chat)
}

pub(super) fn get_chat_administrators(shared: &Shared, params: &Params) -> Result<Value, ApiError> {
    let inner = shared.lock();
    let c = channel_of(&inner, params)?;
    let mut list = vec![json!({
        "user": bot_user(shared.bot_id),
        "status": "administrator",
        "can_be_edited": false,
        "is_anonymous": false,
        "can_manage_chat": true,
        "can_delete_messages": true,
        "can_post_messages": true,
        "can_edit_messages": true,
        "can_promote_members": false,
        "can_change_info": false,
        "can_invite_users": false,
        "can_restrict_members": false,
        "can_manage_video_chats": false,
    })];
    for (user, status) in &c.admins {
        let mut m = json!({"user": user.json(), "status": status, "is_anonymous": false});
        if *status == "administrator" {
            for right in ["can_manage_chat", "can_post_messages", "can_edit_messages"] {
                m[right] = json!(true);
            }
            m["can_be_edited"] = json!(false);
            m["can_delete_messages"] = json!(false);
            m["can_promote_members"] = json!(false);
        }
        list.push(m);
    }
    ok(Value::Array(list))
}
