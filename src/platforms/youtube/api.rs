//! The YouTube Data API v3 as tocsin reads it: `channels.list`, `playlistItems.list` and
//! `videos.list` (developers.google.com/youtube/v3/docs), their errors, and the conversion of a
//! channel and its videos into observations.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::{Deserialize, de::DeserializeOwned};
use url::Url;

use crate::{
    config::Secret,
    model::{Post, PostContent, Profile},
    watch::SourceError,
};

#[derive(Debug, Deserialize)]
pub(super) struct ListResponse<T> {
    #[serde(default = "Vec::new")]
    pub(super) items: Vec<T>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApiChannel {
    pub(super) id: String,
    #[serde(default)]
    pub(super) snippet: ChannelSnippet,
    #[serde(default)]
    pub(super) content_details: ChannelContentDetails,
    #[serde(default)]
    pub(super) branding_settings: BrandingSettings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChannelSnippet {
    #[serde(default)]
    pub(super) title: String,
    #[serde(default)]
    pub(super) description: String,
    /// The channel's handle (`@examplecorp`).
    #[serde(default)]
    pub(super) custom_url: String,
    #[serde(default)]
    pub(super) thumbnails: BTreeMap<String, Thumbnail>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Thumbnail {
    #[serde(default)]
    pub(super) url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChannelContentDetails {
    #[serde(default)]
    pub(super) related_playlists: RelatedPlaylists,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RelatedPlaylists {
    #[serde(default)]
    pub(super) uploads: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct BrandingSettings {
    #[serde(default)]
    pub(super) image: BrandingImage,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BrandingImage {
    #[serde(default)]
    pub(super) banner_external_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApiPlaylistItem {
    pub(super) content_details: PlaylistItemDetails,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlaylistItemDetails {
    pub(super) video_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApiVideo {
    pub(super) id: String,
    pub(super) snippet: VideoSnippet,
    #[serde(default)]
    pub(super) live_streaming_details: Option<LiveStreamingDetails>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VideoSnippet {
    pub(super) published_at: DateTime<Utc>,
    #[serde(default)]
    pub(super) channel_id: String,
    #[serde(default)]
    pub(super) title: String,
    #[serde(default)]
    pub(super) description: String,
    /// `live`, `upcoming` or `none`.
    #[serde(default)]
    pub(super) live_broadcast_content: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LiveStreamingDetails {
    #[serde(default)]
    pub(super) actual_start_time: Option<DateTime<Utc>>,
}

/// Google's error envelope.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorItem>,
    #[serde(default)]
    details: Vec<ErrorItem>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    reason: String,
}

/// A Data API client with the project's key.
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base: Url,
    pub(super) key: Secret,
}

impl Client {
    /// `GET /youtube/v3/{resource}` with `key`.
    pub(super) async fn list<T: DeserializeOwned>(
        &self,
        resource: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, SourceError> {
        let what = format!("{resource}.list");
        let url = self
            .base
            .join(&format!("youtube/v3/{resource}"))
            .map_err(|e| SourceError::Malformed {
                what: what.clone(),
                detail: e.to_string(),
            })?;
        let resp = self
            .http
            .get(url)
            .query(query)
            .query(&[("key", self.key.expose())])
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            return Err(error(status, &body, &what));
        }
        serde_json::from_str::<ListResponse<T>>(&body)
            .map(|l| l.items)
            .map_err(|e| SourceError::Malformed {
                what,
                detail: e.to_string(),
            })
    }
}

/// The refusal a Data API error stands for. A spent quota (403 `quotaExceeded`) is a rate limit
/// until the daily reset, not a refused key; a bad, expired or restricted key (400
/// `API_KEY_INVALID`, 403 `forbidden`/`accessNotConfigured`/`ipRefererBlocked`, 401) is refused.
pub(super) fn error(status: StatusCode, body: &str, what: &str) -> SourceError {
    let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let reasons: Vec<&str> = parsed
        .error
        .errors
        .iter()
        .chain(&parsed.error.details)
        .map(|e| e.reason.as_str())
        .collect();
    let has = |r: &[&str]| reasons.iter().any(|x| r.contains(x));
    if has(&[
        "quotaExceeded",
        "dailyLimitExceeded",
        "rateLimitExceeded",
        "userRateLimitExceeded",
    ]) || status == StatusCode::TOO_MANY_REQUESTS
    {
        return SourceError::RateLimited(until_quota_reset(Utc::now()));
    }
    let bad_key = has(&["API_KEY_INVALID", "keyInvalid", "keyExpired"])
        || parsed.error.message.contains("API key not valid");
    if bad_key || status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return SourceError::Unauthorized {
            status: status.as_u16(),
        };
    }
    SourceError::Status {
        status: status.as_u16(),
        what: what.into(),
    }
}

/// How long until the Data API's daily quota resets: midnight Pacific time, taken as 08:00
/// UTC (midnight standard time; in daylight time the wait ends an hour after the reset).
pub(super) fn until_quota_reset(now: DateTime<Utc>) -> Duration {
    let today = now
        .date_naive()
        .and_hms_opt(8, 0, 0)
        .expect("valid time")
        .and_utc();
    let next = if today > now {
        today
    } else {
        today + chrono::Duration::days(1)
    };
    (next - now).to_std().unwrap_or_default()
}

/// The channel fields a takeover changes, by our field name.
pub(super) fn profile(c: &ApiChannel) -> Profile {
    let avatar = ["high", "medium", "default"]
        .iter()
        .find_map(|k| c.snippet.thumbnails.get(*k))
        .map(|t| t.url.clone())
        .unwrap_or_default();
    let fields = BTreeMap::from([
        ("title".to_owned(), c.snippet.title.clone()),
        ("handle".to_owned(), c.snippet.custom_url.clone()),
        ("description".to_owned(), c.snippet.description.clone()),
        ("avatar".to_owned(), avatar),
        (
            "banner".to_owned(),
            c.branding_settings.image.banner_external_url.clone(),
        ),
    ]);
    Profile { fields }
}

/// Whether the video is (or was) a live broadcast.
pub(super) fn is_live(v: &ApiVideo) -> bool {
    v.snippet.live_broadcast_content == "live"
        || v.live_streaming_details
            .as_ref()
            .is_some_and(|d| d.actual_start_time.is_some())
}

/// What a viewer reads: the title, then the description; a live broadcast says so first, so the
/// page and an approval both name it.
pub(super) fn text(v: &ApiVideo) -> String {
    let mut text = String::new();
    if is_live(v) {
        text.push_str("[live] ");
    } else if v.snippet.live_broadcast_content == "upcoming" {
        text.push_str("[upcoming live] ");
    }
    text.push_str(v.snippet.title.trim());
    let description = v.snippet.description.trim();
    if !description.is_empty() {
        text.push_str("\n\n");
        text.push_str(description);
    }
    text
}

/// The links of plain text, as an approval typed with the same text lists them.
fn links(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| {
            w.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '"', '\''])
                .to_owned()
        })
        .collect()
}

/// When the video went out: a broadcast's actual start, else its publication.
pub(super) fn went_out(v: &ApiVideo) -> DateTime<Utc> {
    v.live_streaming_details
        .as_ref()
        .and_then(|d| d.actual_start_time)
        .unwrap_or(v.snippet.published_at)
}

pub(super) fn post(v: &ApiVideo, history: bool) -> Post {
    let text = text(v);
    Post {
        id: v.id.clone(),
        url: Some(format!("https://www.youtube.com/watch?v={}", v.id)),
        created_at: went_out(v),
        edited_at: None,
        content: PostContent {
            links: links(&text),
            text,
            media: Vec::new(),
        },
        client: None,
        history,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{content_from_text, fingerprint};

    #[test]
    fn a_video_matches_the_approval_typed_with_its_text() {
        let v: ApiVideo = serde_json::from_value(serde_json::json!({
            "id": "dQw4w9WgXcQ",
            "snippet": {
                "publishedAt": "2026-11-30T10:00:00Z",
                "channelId": "UCxxxxxxxxxxxxxxxxxxxxxx",
                "title": "Q4 results",
                "description": "Read more: https://example.com/q4.",
                "liveBroadcastContent": "none"
            }
        }))
        .unwrap();
        let p = post(&v, false);
        let typed = content_from_text("Q4 results\n\nRead more: https://example.com/q4.");
        assert_eq!(fingerprint(&p.content), fingerprint(&typed));
    }

    #[test]
    fn quota_and_bad_keys_are_told_apart() {
        let quota = r#"{"error":{"code":403,"message":"quota","errors":[{"domain":"youtube.quota","reason":"quotaExceeded"}]}}"#;
        assert!(matches!(
            error(StatusCode::FORBIDDEN, quota, "channels.list"),
            SourceError::RateLimited(_)
        ));
        let key = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","errors":[{"reason":"badRequest"}],"details":[{"reason":"API_KEY_INVALID"}]}}"#;
        assert!(matches!(
            error(StatusCode::BAD_REQUEST, key, "channels.list"),
            SourceError::Unauthorized { status: 400 }
        ));
        assert!(matches!(
            error(StatusCode::INTERNAL_SERVER_ERROR, "", "channels.list"),
            SourceError::Status { status: 500, .. }
        ));
    }

    #[test]
    fn the_quota_resets_at_eight_utc() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            until_quota_reset(t("2026-11-30T07:00:00Z")),
            Duration::from_secs(3600)
        );
        assert_eq!(
            until_quota_reset(t("2026-11-30T09:00:00Z")),
            Duration::from_secs(23 * 3600)
        );
    }
}
