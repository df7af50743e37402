//! Channels the bot administers: posts, edits, membership changes pushed as updates.

use super::*;

impl FakeBotApi {
    /// Creates a channel the bot administers, owned by `owner`.
    pub fn add_channel(&self, chat_id: i64, title: &str, owner: &FakeUser) {
        self.lock().channels.insert(
            chat_id,
            FakeChannel {
                title: title.to_owned(),
                description: String::new(),
                username: None,
                photo_unique_id: None,
                pinned_message_id: None,
                admins: vec![(owner.clone(), "creator")],
                bot_admin: true,
            },
        );
    }

    /// Changes what `getChat` shows (title, description, photo, pinned message, username).
    pub fn update_channel(&self, chat_id: i64, f: impl FnOnce(&mut FakeChannel)) {
        let mut inner = self.lock();
        let channel = inner
            .channels
            .get_mut(&chat_id)
            .unwrap_or_else(|| panic!("update_channel: unknown channel {chat_id}"));
        f(channel);
    }

    /// Publishes a post in the channel (dated `date`) and queues its `channel_post` update.
    pub fn push_channel_post_at(&self, chat_id: i64, text: &str, date: DateTime<Utc>) -> i32 {
        let mut inner = self.lock();
        assert!(
            inner.channels.contains_key(&chat_id),
            "unknown channel {chat_id}"
        );
        let message_id = next_message_id(&mut inner, chat_id);
        let stored = Stored {
            from: Value::Null,
            from_bot: false,
            date: date.timestamp(),
            edit_date: None,
            rendered: Rendered {
                text: text.to_owned(),
                entities: url_entities(text),
            },
            inline_markup: None,
            record: SentMessage {
                chat_id,
                message_id,
                text: text.to_owned(),
                rendered_text: text.to_owned(),
                parse_mode: None,
                reply_markup: None,
                disable_notification: false,
                reply_to: None,
                allow_sending_without_reply: false,
                received_at: date,
                received_instant: Instant::now(),
            },
        };
        let message = message_json(&inner, &stored);
        inner.messages.insert((chat_id, message_id), stored);
        self.enqueue(&mut inner, "channel_post", "channel_post", message);
        drop(inner);
        self.shared.updates.notify_waiters();
        message_id
    }

    /// Publishes a post in the channel now.
    pub fn push_channel_post(&self, chat_id: i64, text: &str) -> i32 {
        self.push_channel_post_at(chat_id, text, Utc::now())
    }

    /// Edits a channel post and queues its `edited_channel_post` update.
    pub fn edit_channel_post(&self, chat_id: i64, message_id: i32, text: &str) {
        let mut inner = self.lock();
        let stored = inner
            .messages
            .get_mut(&(chat_id, message_id))
            .unwrap_or_else(|| panic!("edit_channel_post: unknown message {message_id}"));
        stored.rendered = Rendered {
            text: text.to_owned(),
            entities: url_entities(text),
        };
        stored.record.text = text.to_owned();
        stored.edit_date = Some(Utc::now().timestamp());
        let stored = stored.clone();
        let message = message_json(&inner, &stored);
        self.enqueue(
            &mut inner,
            "edited_channel_post",
            "edited_channel_post",
            message,
        );
        drop(inner);
        self.shared.updates.notify_waiters();
    }

    /// Whether a message still exists (not deleted).
    pub fn has_message(&self, chat_id: i64, message_id: i32) -> bool {
        self.lock().messages.contains_key(&(chat_id, message_id))
    }

    /// `by` promotes `user` to `status` (`administrator` or `creator`): the admin list changes
    /// and a `chat_member` update is queued.
    pub fn add_channel_admin(
        &self,
        chat_id: i64,
        by: &FakeUser,
        user: &FakeUser,
        status: &'static str,
    ) {
        let mut inner = self.lock();
        let channel = inner.channels.get_mut(&chat_id).expect("unknown channel");
        channel.admins.push((user.clone(), status));
        let update = member_update(&inner, chat_id, by, user.json(), "member", status);
        self.enqueue(&mut inner, "chat_member", "chat_member", update);
        drop(inner);
        self.shared.updates.notify_waiters();
    }

    /// `by` removes the bot from the channel (`left`) or demotes it (`member`): channel
    /// methods answer 403 from now on and a `my_chat_member` update is queued.
    pub fn remove_bot_from_channel(&self, chat_id: i64, by: &FakeUser, status: &'static str) {
        let mut inner = self.lock();
        inner
            .channels
            .get_mut(&chat_id)
            .expect("unknown channel")
            .bot_admin = false;
        let bot = bot_user(self.shared.bot_id);
        let update = member_update(&inner, chat_id, by, bot, "administrator", status);
        self.enqueue(&mut inner, "my_chat_member", "my_chat_member", update);
        drop(inner);
        self.shared.updates.notify_waiters();
    }
}

/// A `ChatMemberUpdated` as Telegram sends it for a channel.
pub(super) fn member_update(
    inner: &Inner,
    chat_id: i64,
    by: &FakeUser,
    user: Value,
    old: &str,
    new: &str,
) -> Value {
    let member = |status: &str| {
        let mut m = json!({"user": user, "status": status});
        match status {
            "administrator" => {
                m["can_be_edited"] = json!(false);
                m["is_anonymous"] = json!(false);
                for right in [
                    "can_manage_chat",
                    "can_delete_messages",
                    "can_manage_video_chats",
                    "can_restrict_members",
                    "can_promote_members",
                    "can_change_info",
                    "can_invite_users",
                    "can_post_messages",
                    "can_edit_messages",
                ] {
                    m[right] = json!(true);
                }
                m["can_post_stories"] = json!(false);
                m["can_edit_stories"] = json!(false);
                m["can_delete_stories"] = json!(false);
            }
            "creator" => m["is_anonymous"] = json!(false),
            "kicked" => m["until_date"] = json!(0),
            _ => {}
        }
        m
    };
    json!({
        "chat": chat_json(inner, chat_id),
        "from": by.json(),
        "date": Utc::now().timestamp(),
        "old_chat_member": member(old),
        "new_chat_member": member(new),
    })
}
