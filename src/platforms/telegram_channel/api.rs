//! The Bot API as the channel watcher reads it: messages and chats into observations, and the
//! few methods it polls, read as plain JSON.

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;
use teloxide::types::MessageEntityKind;

use crate::{
    config::Secret,
    model::{Post, PostContent, Profile},
    watch::SourceError,
};

/// A channel post as detect compares it: text (or caption) with its link targets, media by
/// Telegram's stable `file_unique_id`.
/// `text` (an error of a Bot API call) with the bot token taken out. The token is part of every
/// request URL (`…/bot<TOKEN>/method`) and teloxide hides it from network errors only when the
/// API URL has no path prefix, so every Bot API error that becomes text (logs, `/readyz`,
/// pages, fallback evidence) goes through this, whatever `telegram.api_url` is.
pub fn redact_token(text: &str, token: &str) -> String {
    if token.is_empty() {
        return text.to_owned();
    }
    text.replace(token, "<bot token>")
        .replace(&token.replace(':', "%3A"), "<bot token>")
}

pub fn post_from(m: &teloxide::types::Message) -> Post {
    let text = m.text().or(m.caption()).unwrap_or_default().to_owned();
    let mut links = Vec::new();
    let mut full = text.clone();
    for e in m
        .parse_entities()
        .or_else(|| m.parse_caption_entities())
        .unwrap_or_default()
    {
        match e.kind() {
            MessageEntityKind::Url => links.push(e.text().to_owned()),
            // A text link shows one thing and points elsewhere: the target is what counts.
            MessageEntityKind::TextLink { url } => {
                links.push(url.to_string());
                full.push(' ');
                full.push_str(url.as_str());
            }
            _ => {}
        }
    }
    let mut media = Vec::new();
    if let Some(p) = m.photo().and_then(|p| p.last()) {
        media.push(format!("tg:{}", p.file.unique_id));
    }
    if let Some(d) = m.document() {
        media.push(format!("tg:{}", d.file.unique_id));
    }
    if let Some(v) = m.video() {
        media.push(format!("tg:{}", v.file.unique_id));
    }
    let url = m
        .chat
        .username()
        .map(|u| format!("https://t.me/{u}/{}", m.id.0));
    Post {
        id: m.id.0.to_string(),
        url,
        created_at: m.date,
        edited_at: m.edit_date().copied(),
        content: PostContent {
            text: full,
            links,
            media,
        },
        client: m.author_signature().map(|s| format!("signed by {s}")),
        history: false,
    }
}

pub fn profile_from(chat: &Value) -> Profile {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut fields = BTreeMap::new();
    fields.insert("title".to_owned(), s(&chat["title"]));
    fields.insert("description".to_owned(), s(&chat["description"]));
    // The public t.me name: whoever changes it moves the audience's links.
    fields.insert("handle".to_owned(), s(&chat["username"]));
    fields.insert("photo".to_owned(), s(&chat["photo"]["big_file_unique_id"]));
    let pinned = &chat["pinned_message"];
    let pinned = if pinned.is_object() {
        let text = pinned["text"].as_str().or(pinned["caption"].as_str());
        format!("#{}: {}", pinned["message_id"], text.unwrap_or("(no text)"))
    } else {
        String::new()
    };
    fields.insert("pinned".to_owned(), pinned);
    Profile { fields }
}

/// The admin list by user id: role, name and the rights that matter for a takeover.
pub fn admins_from(list: &Value) -> Result<Profile, SourceError> {
    let items = list.as_array().ok_or_else(|| SourceError::Malformed {
        what: "getChatAdministrators".into(),
        detail: "result is not an array".into(),
    })?;
    let mut fields = BTreeMap::new();
    for m in items {
        let user = &m["user"];
        let Some(id) = user["id"].as_i64() else {
            return Err(SourceError::Malformed {
                what: "getChatAdministrators".into(),
                detail: "a member without user.id".into(),
            });
        };
        let name = match user["username"].as_str() {
            Some(u) => format!("@{u}"),
            None => user["first_name"].as_str().unwrap_or_default().to_owned(),
        };
        let role = m["status"].as_str().unwrap_or("unknown");
        let rights: Vec<&str> = m
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| k.starts_with("can_") && v.as_bool() == Some(true))
            .map(|(k, _)| k.as_str())
            .collect();
        let mut value = format!("{role} {name}");
        if !rights.is_empty() {
            value += &format!(" [{}]", rights.join(","));
        }
        fields.insert(id.to_string(), value);
    }
    Ok(Profile { fields })
}

/// A failed call; `refused`: the bot cannot see the channel (kicked, not a member, chat gone)
/// until someone acts, so the source is blind at once.
pub(super) struct CallError {
    pub(super) error: SourceError,
    pub(super) refused: bool,
}

/// The few Bot API methods the source polls, read as plain JSON: only a handful of fields matter
/// and a schema change elsewhere in the answer must not blind the source.
pub(super) struct Api {
    pub(super) http: reqwest::Client,
    pub(super) base: url::Url,
    pub(super) token: Secret,
    pub(super) chat: String,
}

impl Api {
    pub(super) async fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        self.call_inner(method, params)
            .await
            .map_err(|(error, refused)| CallError { error, refused })
    }

    async fn call_inner(&self, method: &str, params: Value) -> Result<Value, (SourceError, bool)> {
        let url = format!(
            "{}/bot{}/{method}",
            self.base.as_str().trim_end_matches('/'),
            self.token.expose()
        );
        let response = self
            .http
            .post(url)
            .json(&params)
            .send()
            .await
            .map_err(|e| (SourceError::Http(e.without_url()), false))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.map_err(|e| {
            let error = SourceError::Malformed {
                what: method.into(),
                detail: e.without_url().to_string(),
            };
            (error, false)
        })?;
        if body["ok"].as_bool() == Some(true) {
            return Ok(body["result"].clone());
        }
        let description = redact_token(
            body["description"].as_str().unwrap_or_default(),
            self.token.expose(),
        );
        if let Some(s) = body["parameters"]["retry_after"].as_u64() {
            return Err((SourceError::RateLimited(Duration::from_secs(s)), false));
        }
        // Kicked, not a member, chat gone: the bot cannot see the channel until someone acts.
        let refused = matches!(status, 401 | 403)
            || description.contains("chat not found")
            || description.contains("not a member");
        let error = SourceError::Status {
            status,
            what: format!("{method}: {description}"),
        };
        Err((error, refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_redacted_wherever_the_url_puts_it() {
        let token = "123456:AAH-secret_token-0123456789abcdefghij";
        let text = format!(
            "error sending request for url (http://127.0.0.1:1/tg/bot{token}/SendMessage); \
             http://proxy/tg/bot{}/GetUpdates",
            token.replace(':', "%3A")
        );
        let out = redact_token(&text, token);
        assert!(!out.contains("AAH-secret"), "{out}");
        assert!(out.contains("/tg/bot<bot token>/SendMessage"), "{out}");
    }
}
