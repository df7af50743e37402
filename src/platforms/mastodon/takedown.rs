//! Mastodon takedown: `DELETE /api/v1/statuses/:id` with the account's write token (scope
//! `write:statuses`, issued to the account that owns the status).

use crate::{config::Account, model::TakedownOutcome, platforms::refused_delete};

pub async fn delete_post(
    http: &reqwest::Client,
    account: &Account,
    post_id: &str,
) -> TakedownOutcome {
    let Some(token) = &account.write_token else {
        return TakedownOutcome::Forbidden {
            detail: "no write_token configured".into(),
        };
    };
    if post_id.is_empty() || !post_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return TakedownOutcome::Failed {
            detail: format!("`{post_id}` is not a Mastodon status id"),
        };
    }
    let mut url = account.base_url.clone();
    url.set_path(&format!("/api/v1/statuses/{post_id}"));
    let response = match http.delete(url).bearer_auth(token.expose()).send().await {
        Ok(r) => r,
        Err(e) => {
            return TakedownOutcome::Failed {
                detail: format!("request failed: {e}"),
            };
        }
    };
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    // Mastodon's errors are `{"error": "…"}`.
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or(body);
    match status {
        200..=299 => TakedownOutcome::Deleted,
        _ => refused_delete(status, &detail),
    }
}
