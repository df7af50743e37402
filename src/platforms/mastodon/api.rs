//! The Mastodon REST API v1 as tocsin reads it: the wire types, a client that reads the
//! rate-limit headers, and the conversion of statuses and accounts into observations.

use std::{cmp::Ordering, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::{Response, StatusCode, header::HeaderMap};
use serde::Deserialize;
use url::Url;

use crate::{
    model::{Post, PostContent, Profile, digest},
    watch::{RateBudget, SourceError},
};

#[derive(Debug, Deserialize)]
pub(super) struct ApiAccount {
    pub(super) id: String,
    #[serde(default)]
    pub(super) acct: String,
    #[serde(default)]
    pub(super) display_name: String,
    #[serde(default)]
    pub(super) note: String,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) avatar: String,
    #[serde(default)]
    pub(super) header: String,
    #[serde(default)]
    pub(super) locked: bool,
    #[serde(default)]
    pub(super) bot: bool,
    #[serde(default)]
    pub(super) fields: Vec<ApiField>,
    #[serde(default)]
    pub(super) moved: Option<Box<ApiAccount>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ApiField {
    pub(super) name: String,
    pub(super) value: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct ApiStatus {
    pub(super) id: String,
    pub(super) created_at: DateTime<Utc>,
    #[serde(default)]
    pub(super) edited_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(super) content: String,
    #[serde(default)]
    pub(super) spoiler_text: String,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) uri: Option<String>,
    #[serde(default)]
    pub(super) reblog: Option<Box<ApiStatus>>,
    #[serde(default)]
    pub(super) application: Option<ApiApplication>,
    #[serde(default)]
    pub(super) media_attachments: Vec<ApiMedia>,
    #[serde(default)]
    pub(super) poll: Option<ApiPoll>,
    /// Who posted it: the user stream also carries the home timeline (followed accounts).
    #[serde(default)]
    pub(super) account: Option<ApiStatusAccount>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ApiStatusAccount {
    pub(super) id: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct ApiApplication {
    pub(super) name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct ApiMedia {
    #[serde(rename = "type", default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) remote_url: Option<String>,
    #[serde(default)]
    pub(super) blurhash: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ApiPoll {
    #[serde(default)]
    pub(super) options: Vec<ApiPollOption>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ApiPollOption {
    pub(super) title: String,
}

/// A client for one account on one server.
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base: Url,
    pub(super) account_id: String,
    pub(super) token: Option<crate::config::Secret>,
    pub(super) budget: Option<RateBudget>,
}

impl Client {
    pub(super) async fn get<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, SourceError> {
        let url = self.base.join(path).map_err(|e| SourceError::Malformed {
            what: path.into(),
            detail: e.to_string(),
        })?;
        let mut req = self.http.get(url).query(query);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        let resp = req.send().await?;
        self.budget = rate_budget(resp.headers()).or(self.budget.take());
        check(resp, path)
            .await?
            .json::<T>()
            .await
            .map_err(|e| SourceError::Malformed {
                what: path.into(),
                detail: e.to_string(),
            })
    }
}

pub(super) async fn check(resp: Response, what: &str) -> Result<Response, SourceError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    match status {
        StatusCode::TOO_MANY_REQUESTS => {
            let wait = retry_after(resp.headers()).unwrap_or(Duration::from_secs(60));
            Err(SourceError::RateLimited(wait))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(SourceError::Unauthorized {
            status: status.as_u16(),
        }),
        _ => Err(SourceError::Status {
            status: status.as_u16(),
            what: what.into(),
        }),
    }
}

pub(super) fn rate_budget(h: &HeaderMap) -> Option<RateBudget> {
    crate::watch::rate_budget(h, "x-ratelimit-", |v| {
        DateTime::parse_from_rfc3339(v)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

pub(super) fn retry_after(h: &HeaderMap) -> Option<Duration> {
    crate::watch::retry_after(h, rate_budget(h).as_ref())
}

/// Mastodon ids are decimal strings of growing length; compare them as numbers.
pub(super) fn cmp_id(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

pub(super) fn profile(a: &ApiAccount) -> Profile {
    let mut fields = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: String| {
        fields.insert(k.to_owned(), v);
    };
    put("handle", a.acct.clone());
    put("display_name", a.display_name.clone());
    put("note", html_to_content(&a.note).text);
    put("url", a.url.clone().unwrap_or_default());
    put("avatar", a.avatar.clone());
    put("header", a.header.clone());
    put("locked", a.locked.to_string());
    put("bot", a.bot.to_string());
    put(
        "moved",
        a.moved.as_ref().map(|m| m.acct.clone()).unwrap_or_default(),
    );
    for f in &a.fields {
        put(&format!("field:{}", f.name), html_to_content(&f.value).text);
    }
    Profile { fields }
}

pub(super) fn post(s: &ApiStatus, history: bool) -> Post {
    // A boost puts someone else's words on the account: judge those words.
    let shown = s.reblog.as_deref().unwrap_or(s);
    let mut content = html_to_content(&shown.content);
    if !shown.spoiler_text.is_empty() {
        content.text = format!("{}\n{}", shown.spoiler_text, content.text);
    }
    if let Some(poll) = &shown.poll {
        for option in &poll.options {
            content.text.push_str("\n• ");
            content.text.push_str(&option.title);
        }
    }
    if let Some(original) = s
        .reblog
        .as_deref()
        .and_then(|r| r.url.clone().or(r.uri.clone()))
    {
        content.text = format!("boost of {original}\n{}", content.text);
        content.links.push(original);
    }
    content.media = shown
        .media_attachments
        .iter()
        .map(|m| match &m.blurhash {
            Some(hash) => format!("{}:blurhash:{hash}", m.kind),
            None => format!(
                "{}:url:{}",
                m.kind,
                digest(
                    m.remote_url
                        .as_deref()
                        .or(m.url.as_deref())
                        .unwrap_or_default()
                )
            ),
        })
        .collect();
    Post {
        id: s.id.clone(),
        url: s.url.clone().or(s.uri.clone()),
        created_at: s.created_at,
        edited_at: s.edited_at,
        content,
        client: shown.application.as_ref().map(|a| a.name.clone()),
        history,
    }
}

/// Turns Mastodon's status HTML into the text a reader sees with every link written as its
/// target, plus the set of link targets. Mentions and hashtags keep their visible text: they
/// point inside the platform, and their href differs between servers.
pub fn html_to_content(html: &str) -> PostContent {
    let mut text = String::new();
    let mut links = Vec::new();
    // The open anchor: its href if it is an outside link, and its visible text so far.
    let mut anchor: Option<(Option<String>, String)> = None;
    let mut rest = html;
    while !rest.is_empty() {
        let (chunk, tag) = match rest.find('<') {
            Some(0) => {
                let end = rest.find('>').map_or(rest.len(), |i| i + 1);
                let tag = &rest[..end];
                rest = &rest[end..];
                ("", Some(tag))
            }
            Some(i) => {
                let chunk = &rest[..i];
                rest = &rest[i..];
                (chunk, None)
            }
            None => {
                let chunk = rest;
                rest = "";
                (chunk, None)
            }
        };
        let decoded = decode_entities(chunk);
        match &mut anchor {
            Some((_, inner)) => inner.push_str(&decoded),
            None => text.push_str(&decoded),
        }
        let Some(tag) = tag else { continue };
        let name = tag_name(tag);
        match name.as_str() {
            "br" => text.push('\n'),
            "/p" => text.push_str("\n\n"),
            "a" => {
                let class = attr(tag, "class").unwrap_or_default();
                let internal = class
                    .split_whitespace()
                    .any(|c| c == "mention" || c == "hashtag");
                let href = if internal {
                    None
                } else {
                    attr(tag, "href").map(|h| decode_entities(&h))
                };
                // An anchor opened inside one left open closes it first, as a browser does:
                // the words of the first one stay in the text instead of being dropped.
                close_anchor(anchor.take(), &mut text, &mut links);
                anchor = Some((href, String::new()));
            }
            "/a" => close_anchor(anchor.take(), &mut text, &mut links),
            _ => {}
        }
    }
    close_anchor(anchor, &mut text, &mut links);
    PostContent {
        text: text.trim().to_owned(),
        links,
        media: Vec::new(),
    }
}

/// Writes a closed anchor into the text: an outside link as its target (and recorded as a
/// link), a mention or hashtag as its visible words.
fn close_anchor(
    anchor: Option<(Option<String>, String)>,
    text: &mut String,
    links: &mut Vec<String>,
) {
    match anchor {
        Some((Some(href), _)) => {
            text.push_str(&href);
            links.push(href);
        }
        Some((None, inner)) => text.push_str(&inner),
        None => {}
    }
}

pub(super) fn tag_name(tag: &str) -> String {
    tag.trim_start_matches('<')
        .trim_end_matches('>')
        .trim_end_matches('/')
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

pub(super) fn attr(tag: &str, name: &str) -> Option<String> {
    for quote in ['"', '\''] {
        let needle = format!(" {name}={quote}");
        if let Some(start) = tag.find(&needle) {
            let value = &tag[start + needle.len()..];
            return value.find(quote).map(|end| value[..end].to_owned());
        }
    }
    None
}

pub(super) fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
