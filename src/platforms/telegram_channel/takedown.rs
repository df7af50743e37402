//! Telegram channel takedown: `deleteMessage` by the bot, an admin of the channel with the
//! "delete messages" right. Telegram only lets messages younger than 48 hours be deleted; an
//! older post is answered as too old without asking, so the responder knows at once to delete
//! it by hand from an owner's app.

use chrono::{DateTime, Utc};
use teloxide::{
    ApiError, RequestError,
    prelude::*,
    types::{ChatId, MessageId},
};

use crate::{config::Account, model::TakedownOutcome, platforms::short};

/// Telegram's deletion window.
pub const DELETE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(48);

pub async fn delete_post(
    http: &reqwest::Client,
    account: &Account,
    post_id: &str,
    posted_at: Option<DateTime<Utc>>,
) -> TakedownOutcome {
    let Some(token) = &account.write_token else {
        return TakedownOutcome::Forbidden {
            detail: "no write_token (the bot token) configured".into(),
        };
    };
    if let Some(at) = posted_at
        && Utc::now() - at >= DELETE_WINDOW
    {
        return TakedownOutcome::TooOld {
            detail: format!(
                "posted {}; Telegram lets bots delete messages for 48 hours only",
                at.format("%Y-%m-%d %H:%M UTC")
            ),
        };
    }
    let (Ok(chat), Ok(message)) = (
        account.account_id.trim().parse::<i64>(),
        post_id.parse::<i32>(),
    ) else {
        return TakedownOutcome::Failed {
            detail: format!(
                "`{post_id}` in chat `{}` is not a message id",
                account.account_id
            ),
        };
    };
    let bot = Bot::with_client(token.expose(), http.clone()).set_api_url(account.base_url.clone());
    match bot.delete_message(ChatId(chat), MessageId(message)).await {
        Ok(_) => TakedownOutcome::Deleted,
        Err(RequestError::Api(e)) => classify(&e),
        Err(e) => TakedownOutcome::Failed {
            detail: short(&super::api::redact_token(&e.to_string(), token.expose())),
        },
    }
}

fn classify(e: &ApiError) -> TakedownOutcome {
    let detail = short(&e.to_string());
    match e {
        ApiError::MessageToDeleteNotFound | ApiError::MessageIdInvalid => {
            TakedownOutcome::AlreadyGone
        }
        // Telegram gives the same words for "older than 48 hours" and "no right to delete
        // others' posts"; the window is checked above when the post's time is known, so this
        // is the rights problem unless the text says otherwise.
        ApiError::MessageCantBeDeleted => TakedownOutcome::Forbidden {
            detail: format!("{detail}: older than 48 h, or the bot lacks the delete right"),
        },
        ApiError::BotKicked
        | ApiError::BotKickedFromChannel
        | ApiError::BotKickedFromSupergroup
        | ApiError::ChatNotFound
        | ApiError::InvalidToken
        | ApiError::NotEnoughRightsToPostMessages => TakedownOutcome::Forbidden { detail },
        ApiError::Unknown(text) if text.contains("too old") || text.contains("48") => {
            TakedownOutcome::TooOld { detail }
        }
        ApiError::Unknown(text) if text.starts_with("Forbidden") || text.contains("rights") => {
            TakedownOutcome::Forbidden { detail }
        }
        _ => TakedownOutcome::Failed { detail },
    }
}
