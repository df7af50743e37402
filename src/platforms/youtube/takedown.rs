//! YouTube takedown: `DELETE /youtube/v3/videos?id=…` (`videos.delete`, 50 quota units) with
//! the channel owner's OAuth 2.0 access token (`accounts[].write_token`, scope
//! `https://www.googleapis.com/auth/youtube.force-ssl`). YouTube answers 204 once the video
//! (a live broadcast included) is deleted.

use crate::{config::Account, model::TakedownOutcome, platforms::refused_delete};

pub async fn delete_video(
    http: &reqwest::Client,
    account: &Account,
    video_id: &str,
) -> TakedownOutcome {
    let Some(token) = &account.write_token else {
        return TakedownOutcome::Forbidden {
            detail: "no write_token (the channel owner's OAuth token) configured".into(),
        };
    };
    if video_id.is_empty()
        || video_id.len() > 64
        || !video_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return TakedownOutcome::Failed {
            detail: format!("`{video_id}` is not a YouTube video id"),
        };
    }
    let mut url = account.base_url.clone();
    url.set_path("/youtube/v3/videos");
    url.set_query(None);
    url.query_pairs_mut().append_pair("id", video_id);
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
    // Google's errors are `{"error": {"message": "…", "errors": [{"reason": "…"}]}}`.
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let e = &v["error"];
            let reason = e["errors"][0]["reason"].as_str().unwrap_or_default();
            e["message"]
                .as_str()
                .map(|m| format!("{reason}: {m}").trim_start_matches(": ").to_owned())
        })
        .unwrap_or(body);
    match status {
        200..=299 => TakedownOutcome::Deleted,
        _ => refused_delete(status, &detail),
    }
}
