//! X takedown: `DELETE /2/tweets/:id` with the account's OAuth 2.0 user token (`write_token`,
//! scope `tweet.write`). The app's bearer token cannot delete: X only lets the author do that.

use reqwest::StatusCode;
use serde::Deserialize;

use crate::{config::Account, model::TakedownOutcome};

#[derive(Debug, Deserialize)]
struct Deleted {
    data: DeletedData,
}

#[derive(Debug, Deserialize)]
struct DeletedData {
    deleted: bool,
}

/// Deletes one post. `post_id` is the id the page shows: for an edited post, the id of its
/// first version, which deletes the post with its edits.
pub async fn delete_post(
    http: &reqwest::Client,
    account: &Account,
    post_id: &str,
) -> TakedownOutcome {
    let Some(token) = &account.write_token else {
        return TakedownOutcome::Forbidden {
            detail: format!(
                "no accounts[].write_token for {}: tocsin holds no X user token to delete with",
                account.name
            ),
        };
    };
    if post_id.is_empty() || !post_id.chars().all(|c| c.is_ascii_digit()) {
        return TakedownOutcome::Failed {
            detail: format!("`{post_id}` is not an X post id"),
        };
    }
    let url = match account.base_url.join(&format!("2/tweets/{post_id}")) {
        Ok(u) => u,
        Err(e) => {
            return TakedownOutcome::Failed {
                detail: format!("bad base_url: {e}"),
            };
        }
    };
    let resp = match http.delete(url).bearer_auth(token.expose()).send().await {
        Ok(r) => r,
        Err(e) => {
            return TakedownOutcome::Failed {
                detail: format!("DELETE /2/tweets/{post_id}: {e}"),
            };
        }
    };
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    match status {
        s if s.is_success() => match serde_json::from_str::<Deleted>(&body) {
            Ok(d) if d.data.deleted => TakedownOutcome::Deleted,
            _ => TakedownOutcome::Failed {
                detail: format!("X answered {s} without deleting: {}", excerpt(&body)),
            },
        },
        StatusCode::NOT_FOUND => TakedownOutcome::AlreadyGone,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => TakedownOutcome::Forbidden {
            detail: format!(
                "X refused the user token ({}): {}",
                status.as_u16(),
                excerpt(&body)
            ),
        },
        s => TakedownOutcome::Failed {
            detail: format!("X answered {}: {}", s.as_u16(), excerpt(&body)),
        },
    }
}

/// The start of an error body: enough to tell which problem X reported, bounded for the page.
fn excerpt(body: &str) -> String {
    let detail = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("detail")
                .or_else(|| v.pointer("/errors/0/message"))
                .or_else(|| v.pointer("/errors/0/detail"))
                .and_then(|d| d.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| body.to_owned());
    detail.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    /// X's documented answer to `DELETE /2/tweets/:id`
    /// (`tests/fixtures/platforms/x/examples/tweets-delete.json`).
    #[test]
    fn the_documented_delete_answer_reads_as_deleted() {
        let text = include_str!("../../../tests/fixtures/platforms/x/examples/tweets-delete.json");
        let answer: super::Deleted = serde_json::from_str(text).unwrap();
        assert!(answer.data.deleted);
    }
}
