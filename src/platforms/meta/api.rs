//! Meta's Graph API as tocsin reads it, for Facebook Pages and Instagram professional accounts:
//! the wire types, a client pinned to one API version that reads Meta's usage headers, and the
//! conversion of Page posts, Instagram media and both profiles into observations.
//!
//! Shapes are Meta's reference pages (developers.facebook.com/docs/graph-api/reference/page,
//! …/page/feed, …/post; developers.facebook.com/docs/instagram-platform/reference/ig-user,
//! …/ig-user/media, …/instagram-media) and its error and rate-limit guides
//! (…/graph-api/guides/error-handling, …/graph-api/overview/rate-limiting).

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use url::Url;

use crate::{
    config::{Account, Secret},
    detect::content_from_text,
    model::{Post, Profile},
    watch::{RateBudget, SourceError},
};

/// The Page fields read on every poll.
pub(super) const PAGE_FIELDS: &str = "id,name,username,about,website,picture{url}";
/// The Page post fields read on every poll; `application` names the publishing app.
pub(super) const POST_FIELDS: &str = "id,message,created_time,permalink_url,from{id,name},application{id,name},attachments{media_type,unshimmed_url,target{id}}";
/// The Instagram account fields read on every poll.
pub(super) const IG_USER_FIELDS: &str = "id,username,name,biography,website,profile_picture_url";
/// The Instagram media fields read on every poll.
pub(super) const IG_MEDIA_FIELDS: &str = "id,caption,media_type,permalink,timestamp";

/// A Graph list: `data` and its cursors.
#[derive(Debug, Deserialize)]
pub(super) struct List<T> {
    #[serde(default = "Vec::new")]
    pub(super) data: Vec<T>,
    #[serde(default)]
    pub(super) paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Paging {
    #[serde(default)]
    pub(super) cursors: Option<Cursors>,
    /// Present when there is an older page.
    #[serde(default)]
    pub(super) next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Cursors {
    #[serde(default)]
    pub(super) after: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct PageFields {
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) username: Option<String>,
    #[serde(default)]
    pub(super) about: Option<String>,
    #[serde(default)]
    pub(super) website: Option<String>,
    #[serde(default)]
    pub(super) picture: Option<PictureEdge>,
}

/// `picture{url}` answers `{"data": {"url": …}}`.
#[derive(Debug, Deserialize)]
pub(super) struct PictureEdge {
    pub(super) data: Picture,
}

#[derive(Debug, Deserialize)]
pub(super) struct Picture {
    #[serde(default)]
    pub(super) url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct PagePost {
    pub(super) id: String,
    #[serde(default)]
    pub(super) message: Option<String>,
    #[serde(deserialize_with = "graph_time")]
    pub(super) created_time: DateTime<Utc>,
    #[serde(default)]
    pub(super) permalink_url: Option<String>,
    #[serde(default)]
    pub(super) from: Option<Named>,
    #[serde(default)]
    pub(super) application: Option<Named>,
    #[serde(default)]
    pub(super) attachments: Option<List<Attachment>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Named {
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Attachment {
    #[serde(default)]
    pub(super) media_type: Option<String>,
    /// The link target without Facebook's `l.facebook.com` redirect.
    #[serde(default)]
    pub(super) unshimmed_url: Option<String>,
    #[serde(default)]
    pub(super) target: Option<Target>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Target {
    #[serde(default)]
    pub(super) id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct IgUser {
    pub(super) id: String,
    #[serde(default)]
    pub(super) username: String,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) biography: Option<String>,
    #[serde(default)]
    pub(super) website: Option<String>,
    #[serde(default)]
    pub(super) profile_picture_url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct IgMedia {
    pub(super) id: String,
    #[serde(default)]
    pub(super) caption: Option<String>,
    #[serde(default)]
    pub(super) media_type: Option<String>,
    #[serde(default)]
    pub(super) permalink: Option<String>,
    #[serde(deserialize_with = "graph_time")]
    pub(super) timestamp: DateTime<Utc>,
}

/// Graph writes times as `2019-01-29T21:37:02+0000`: an offset without a colon, which RFC 3339
/// (and chrono's default) refuses.
fn graph_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(d)?;
    DateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%z")
        .or_else(|_| DateTime::parse_from_rfc3339(&s))
        .map(|t| t.with_timezone(&Utc))
        .map_err(serde::de::Error::custom)
}

/// Graph's error body.
#[derive(Debug, Default, Deserialize)]
pub(super) struct GraphError {
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) code: i64,
    #[serde(default)]
    pub(super) error_subcode: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: GraphError,
}

/// Reads `{"error": {…}}`, whatever the HTTP status (Graph answers 400 to a bad token).
pub(super) fn graph_error(body: &str) -> Option<GraphError> {
    serde_json::from_str::<ErrorBody>(body)
        .ok()
        .map(|b| b.error)
}

/// What a Graph error means to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorKind {
    /// The token is expired, revoked or lacks a permission: no retry fixes it.
    Refused,
    /// A rate limit: app (4), user (17), Page (32), custom (613) or business use case (80001+).
    Throttled,
    /// The object does not exist (100 with subcode 33) or is gone.
    NotFound,
    Other,
}

impl GraphError {
    pub(super) fn kind(&self) -> ErrorKind {
        match self.code {
            // 190 invalid or expired token, 102 session, 10 and 200-299 permissions.
            190 | 102 | 10 | 200..=299 => ErrorKind::Refused,
            4 | 17 | 32 | 613 | 80001..=80014 => ErrorKind::Throttled,
            100 if self.error_subcode == Some(33) => ErrorKind::NotFound,
            _ => ErrorKind::Other,
        }
    }
}

/// How much of its rate limit an app, Page or business has spent, from Meta's usage headers
/// (`X-App-Usage`, `X-Page-Usage`, `X-Business-Use-Case-Usage`): the largest of `call_count`,
/// `total_cputime` and `total_time`, in percent, and the minutes until a throttled caller may
/// call again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Usage {
    pub(super) percent: u64,
    pub(super) regain_minutes: u64,
}

pub(super) fn usage(h: &HeaderMap) -> Option<Usage> {
    let mut seen = false;
    let mut out = Usage::default();
    let mut take = |v: &serde_json::Value| {
        for key in ["call_count", "total_cputime", "total_time"] {
            if let Some(n) = v.get(key).and_then(serde_json::Value::as_u64) {
                seen = true;
                out.percent = out.percent.max(n);
            }
        }
        if let Some(n) = v
            .get("estimated_time_to_regain_access")
            .and_then(serde_json::Value::as_u64)
        {
            out.regain_minutes = out.regain_minutes.max(n);
        }
    };
    for name in ["x-app-usage", "x-page-usage", "x-ad-account-usage"] {
        if let Some(v) = crate::watch::header(h, name)
            .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        {
            take(&v);
        }
    }
    // `{"<business id>": [{"type": "pages", "call_count": …, …}]}`
    if let Some(serde_json::Value::Object(by_business)) =
        crate::watch::header(h, "x-business-use-case-usage")
            .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
    {
        for entries in by_business.values() {
            for entry in entries.as_array().into_iter().flatten() {
                take(entry);
            }
        }
    }
    seen.then_some(out)
}

impl Usage {
    /// The usage as the health report's budget: 100 calls' worth, `remaining` unspent.
    pub(super) fn budget(self) -> RateBudget {
        RateBudget {
            limit: Some(100),
            remaining: 100u64.saturating_sub(self.percent),
            reset: None,
        }
    }

    /// The wait before the next poll: the interval while under three quarters of the limit,
    /// stretched as the usage nears it, and Meta's own estimate once it is reached.
    pub(super) fn next_wait(self, interval: Duration) -> Duration {
        match self.percent {
            0..75 => interval,
            75..90 => interval * 2,
            90..100 => interval * 4,
            _ => Duration::from_secs(60 * self.regain_minutes.max(5)).max(interval),
        }
    }
}

/// A Graph API client for one account, pinned to `[meta] graph_version`.
pub(super) struct Graph {
    pub(super) http: reqwest::Client,
    pub(super) base: Url,
    pub(super) version: String,
    pub(super) token: Option<Secret>,
    pub(super) usage: Option<Usage>,
}

impl Graph {
    pub(super) fn new(http: reqwest::Client, account: &Account, version: &str) -> Self {
        Graph {
            http,
            base: account.base_url.clone(),
            version: version.to_owned(),
            token: account.token.clone(),
            usage: None,
        }
    }

    /// `/{version}/{path}` on the configured server.
    pub(super) fn url(&self, path: &str) -> Result<Url, SourceError> {
        self.base
            .join(&format!("/{}/{path}", self.version))
            .map_err(|e| SourceError::Malformed {
                what: path.into(),
                detail: e.to_string(),
            })
    }

    /// A GET with the token as a bearer header (never in the query, where URLs in error texts
    /// and proxies' logs would carry it).
    pub(super) async fn get<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, SourceError> {
        let mut req = self.http.get(self.url(path)?).query(query);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        let resp = req.send().await?;
        if let Some(u) = usage(resp.headers()) {
            self.usage = Some(u);
        }
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            let error = graph_error(&body).unwrap_or_default();
            return Err(match error.kind() {
                ErrorKind::Refused => SourceError::Unauthorized {
                    status: status.as_u16(),
                },
                ErrorKind::Throttled => {
                    SourceError::RateLimited(self.usage.map_or(Duration::from_secs(300), |u| {
                        Duration::from_secs(60 * u.regain_minutes.max(5))
                    }))
                }
                _ if status.as_u16() == 401 || status.as_u16() == 403 => {
                    SourceError::Unauthorized {
                        status: status.as_u16(),
                    }
                }
                _ => SourceError::Status {
                    status: status.as_u16(),
                    what: format!("{path}: {}", super::super::short(&error.message)),
                },
            });
        }
        serde_json::from_str(&body).map_err(|e| SourceError::Malformed {
            what: path.into(),
            detail: e.to_string(),
        })
    }
}

/// A picture URL without its query: Meta's CDN signs picture URLs with parameters that rotate
/// (`oh=`, `oe=`), while the path names the image.
pub(super) fn picture_identity(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// A Page's fields under the names every platform's profile uses.
pub(super) fn page_profile(p: &PageFields) -> Profile {
    let mut fields = BTreeMap::new();
    fields.insert("display_name".into(), p.name.clone());
    fields.insert("handle".into(), p.username.clone().unwrap_or_default());
    fields.insert("note".into(), p.about.clone().unwrap_or_default());
    fields.insert("url".into(), p.website.clone().unwrap_or_default());
    fields.insert(
        "avatar".into(),
        p.picture
            .as_ref()
            .and_then(|e| e.data.url.as_deref())
            .map(picture_identity)
            .unwrap_or_default(),
    );
    Profile { fields }
}

/// An Instagram account's fields under the same names.
pub(super) fn ig_profile(u: &IgUser) -> Profile {
    let mut fields = BTreeMap::new();
    fields.insert("handle".into(), u.username.clone());
    fields.insert("display_name".into(), u.name.clone().unwrap_or_default());
    fields.insert("note".into(), u.biography.clone().unwrap_or_default());
    fields.insert("url".into(), u.website.clone().unwrap_or_default());
    fields.insert(
        "avatar".into(),
        u.profile_picture_url
            .as_deref()
            .map(picture_identity)
            .unwrap_or_default(),
    );
    Profile { fields }
}

/// A Page post: its message with the links typed in it, plus each attachment's link target
/// (unshimmed) and, for photos and videos, its kind and object. The publishing app is the post's client.
pub(super) fn page_post(p: &PagePost, history: bool) -> Post {
    let mut content = content_from_text(p.message.as_deref().unwrap_or_default());
    for a in p.attachments.iter().flat_map(|l| &l.data) {
        if let Some(link) = &a.unshimmed_url
            && !content.links.contains(link)
        {
            content.links.push(link.clone());
        }
        // A link's preview is the link, already counted: a post that shows its URL's card is
        // the same post as the approved text with that URL.
        let kind = a.media_type.as_deref().unwrap_or("attachment");
        if kind != "link" {
            let target = a.target.as_ref().and_then(|t| t.id.as_deref());
            content
                .media
                .push(format!("{kind}:{}", target.unwrap_or_default()));
        }
    }
    Post {
        id: p.id.clone(),
        url: p.permalink_url.clone(),
        created_at: p.created_time,
        edited_at: None,
        content,
        client: p.application.as_ref().map(|a| a.name.clone()),
        history,
    }
}

/// An Instagram media object: its caption, and its kind as the media (the CDN URL rotates).
pub(super) fn ig_post(m: &IgMedia, history: bool) -> Post {
    let mut content = content_from_text(m.caption.as_deref().unwrap_or_default());
    content.media = vec![format!(
        "{}:{}",
        m.media_type.as_deref().unwrap_or("MEDIA"),
        m.id
    )];
    Post {
        id: m.id.clone(),
        url: m.permalink.clone(),
        created_at: m.timestamp,
        edited_at: None,
        content,
        client: None,
        history,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn graph_times_have_no_colon_in_the_offset() {
        let p: IgMedia = serde_json::from_str(
            r#"{"id":"17895695668004550","timestamp":"2017-08-31T18:10:00+0000"}"#,
        )
        .unwrap();
        assert_eq!(p.timestamp.to_rfc3339(), "2017-08-31T18:10:00+00:00");
    }

    #[test]
    fn errors_are_told_apart_by_code() {
        let e = |body: &str| graph_error(body).unwrap().kind();
        assert_eq!(
            e(
                r#"{"error":{"message":"Error validating access token","type":"OAuthException","code":190,"error_subcode":460,"fbtrace_id":"A"}}"#
            ),
            ErrorKind::Refused
        );
        assert_eq!(
            e(r#"{"error":{"message":"(#32) Page request limit reached","code":32}}"#),
            ErrorKind::Throttled
        );
        assert_eq!(
            e(r#"{"error":{"message":"Unsupported get request.","code":100,"error_subcode":33}}"#),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn usage_headers_stretch_the_interval() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-business-use-case-usage",
            HeaderValue::from_static(
                r#"{"112233":[{"type":"pages","call_count":80,"total_cputime":10,"total_time":12,"estimated_time_to_regain_access":0}]}"#,
            ),
        );
        h.insert(
            "x-app-usage",
            HeaderValue::from_static(r#"{"call_count":5,"total_time":3,"total_cputime":2}"#),
        );
        let u = usage(&h).unwrap();
        assert_eq!(u.percent, 80);
        let i = Duration::from_secs(30);
        assert_eq!(u.next_wait(i), Duration::from_secs(60));
        let full = Usage {
            percent: 100,
            regain_minutes: 12,
        };
        assert_eq!(full.next_wait(i), Duration::from_secs(720));
        assert_eq!(usage(&HeaderMap::new()), None);
    }

    #[test]
    fn picture_urls_are_compared_without_their_signature() {
        assert_eq!(
            picture_identity("https://scontent.xx.fbcdn.net/v/t39.30808-1/1_n.jpg?oh=ab&oe=CD"),
            "https://scontent.xx.fbcdn.net/v/t39.30808-1/1_n.jpg"
        );
    }
}
