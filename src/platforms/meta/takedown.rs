//! Takedown. Facebook Page posts: `DELETE /{version}/{post-id}` with the Page token
//! (`pages_manage_posts`), answered `{"success": true}`. Instagram: the Graph API publishes
//! media but does not delete them (developers.facebook.com/docs/instagram-platform/reference/
//! instagram-media: "This operation is not supported"), so nothing is sent and the answer names
//! the post's permalink for a person to delete it in the app.

use super::api::{ErrorKind, Graph, graph_error};
use crate::{
    config::Account,
    model::TakedownOutcome,
    platforms::{refused_delete, short},
};

/// Graph ids are digits, Page posts `PAGEID_POSTID`.
fn is_graph_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit() || b == b'_')
}

pub async fn delete_page_post(
    http: &reqwest::Client,
    account: &Account,
    version: &str,
    post_id: &str,
) -> TakedownOutcome {
    let Some(token) = &account.write_token else {
        return TakedownOutcome::Forbidden {
            detail: "no write_token configured (the Page token with pages_manage_posts)".into(),
        };
    };
    if !is_graph_id(post_id) {
        return TakedownOutcome::Failed {
            detail: format!("`{post_id}` is not a Page post id"),
        };
    }
    let graph = Graph::new(http.clone(), account, version);
    let url = match graph.url(post_id) {
        Ok(u) => u,
        Err(e) => {
            return TakedownOutcome::Failed {
                detail: e.to_string(),
            };
        }
    };
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
    if (200..300).contains(&status) {
        let confirmed = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["success"].as_bool())
            == Some(true);
        return if confirmed {
            TakedownOutcome::Deleted
        } else {
            TakedownOutcome::Failed {
                detail: format!("{status} without success: {}", short(&body)),
            }
        };
    }
    let error = graph_error(&body).unwrap_or_default();
    let detail = format!("{status}: {}", short(&error.message));
    match error.kind() {
        ErrorKind::NotFound => TakedownOutcome::AlreadyGone,
        ErrorKind::Refused => TakedownOutcome::Forbidden { detail },
        _ => refused_delete(status, &error.message),
    }
}

/// Instagram cannot delete through the API: says so, with the link to delete it by hand.
pub async fn instagram_by_hand(
    http: &reqwest::Client,
    account: &Account,
    version: &str,
    media_id: &str,
) -> TakedownOutcome {
    #[derive(serde::Deserialize)]
    struct Permalink {
        permalink: Option<String>,
    }
    let mut graph = Graph::new(http.clone(), account, version);
    let link = if is_graph_id(media_id) {
        graph
            .get::<Permalink>(media_id, &[("fields", "permalink")])
            .await
            .ok()
            .and_then(|p| p.permalink)
    } else {
        None
    };
    TakedownOutcome::Refused {
        detail: format!(
            "Instagram's API cannot delete posts: delete it in the Instagram app: {}",
            link.unwrap_or_else(|| format!("media {media_id}"))
        ),
    }
}
