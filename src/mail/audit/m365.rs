//! Microsoft 365: the Office 365 Management Activity API, content type `Audit.Exchange`.
//!
//! A client-credentials token (`{login}/{tenant}/oauth2/v2.0/token`, scope
//! `https://manage.office.com/.default`) reads the tenant's feed. The subscription is started
//! once per run (starting an enabled one is harmless); each poll lists the content blobs created
//! since the cursor, following `NextPageUri`, and reads each blob's records. Only mailbox and
//! transport configuration operations are emitted: `Audit.Exchange` also carries every mailbox
//! item access, far too many to send through the pipeline for nothing.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

use super::{AuditCursor, CachedToken, poll_loop, status_error};
use crate::{
    config::M365Feed,
    model::{AuditEvent, ObservationKind},
    watch::{SourceContext, SourceError},
};

pub const SCOPE: &str = "https://manage.office.com/.default";
pub const CONTENT_TYPE: &str = "Audit.Exchange";
/// Operations whose parameters can forward, redirect or copy mail.
pub const OPERATIONS: [&str; 6] = [
    "Set-Mailbox",
    "New-InboxRule",
    "Set-InboxRule",
    "New-TransportRule",
    "Set-TransportRule",
    "UpdateInboxRules",
];
/// Content pages followed per poll.
const MAX_PAGES: usize = 200;

#[derive(Deserialize)]
struct Blob {
    #[serde(rename = "contentUri")]
    content_uri: String,
    #[serde(rename = "contentId")]
    content_id: String,
    #[serde(rename = "contentCreated")]
    content_created: String,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "CreationTime")]
    creation_time: String,
    #[serde(rename = "Operation")]
    operation: String,
    #[serde(default, rename = "UserId")]
    user_id: String,
    #[serde(default, rename = "ObjectId")]
    object_id: Option<String>,
    #[serde(default, rename = "Parameters")]
    parameters: Vec<Param>,
}

#[derive(Deserialize)]
struct Param {
    #[serde(rename = "Name")]
    name: String,
    #[serde(default, rename = "Value")]
    value: serde_json::Value,
}

/// The API writes times without a zone (`2024-05-29T12:30:51`), in UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

struct Client {
    feed: M365Feed,
    http: reqwest::Client,
    token: CachedToken,
    subscribed: bool,
}

impl Client {
    fn api(&self, path: &str) -> url::Url {
        let mut url = self.feed.api_url.clone();
        url.set_path(&format!(
            "api/v1.0/{}/activity/feed/{path}",
            self.feed.tenant
        ));
        url
    }

    async fn token(&mut self) -> Result<String, SourceError> {
        let mut url = self.feed.login_url.clone();
        url.set_path(&format!("{}/oauth2/v2.0/token", self.feed.tenant));
        // AADSTS7000215 (bad secret) and friends come back as 400/401.
        let request = self.http.post(url).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", self.feed.client_id.as_str()),
            ("client_secret", self.feed.client_secret.expose()),
            ("scope", SCOPE),
        ]);
        self.token
            .get(request, "the client-credentials token")
            .await
    }

    async fn send(
        &mut self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, SourceError> {
        let token = self.token().await?;
        let resp = req.bearer_auth(token).send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status.as_u16() == 401 {
            self.token.forget();
        }
        let retry = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        Err(status_error(status, what, retry))
    }

    async fn subscribe(&mut self) -> Result<(), SourceError> {
        if self.subscribed {
            return Ok(());
        }
        let mut url = self.api("subscriptions/start");
        url.query_pairs_mut()
            .append_pair("contentType", CONTENT_TYPE);
        let token = self.token().await?;
        let resp = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(&serde_json::json!({}))
            .send()
            .await?;
        let status = resp.status();
        // "The subscription is already enabled" (AF20024) is what a restart gets: success.
        let enabled = status.is_success()
            || (status.as_u16() == 400
                && resp.text().await.unwrap_or_default().contains("AF20024"));
        if !enabled {
            if status.as_u16() == 401 {
                self.token.forget();
            }
            return Err(status_error(status, "subscriptions/start", None));
        }
        self.subscribed = true;
        Ok(())
    }

    /// A URL the API handed us (next page, blob) is followed only on the API's own origin: the
    /// bearer token goes with it.
    fn same_origin(&self, raw: &str) -> Result<url::Url, SourceError> {
        let url = url::Url::parse(raw).map_err(|e| SourceError::Malformed {
            what: "a content URI".into(),
            detail: e.to_string(),
        })?;
        if url.origin() != self.feed.api_url.origin() {
            return Err(SourceError::Malformed {
                what: "a content URI".into(),
                detail: format!("{raw} is not on {}", self.feed.api_url),
            });
        }
        Ok(url)
    }
}

/// Watches one tenant until shutdown.
pub async fn run(feed: M365Feed, ctx: SourceContext) {
    let name = feed.name.clone();
    let interval = feed.poll_interval;
    let key = format!("m365:{}:content", feed.name);
    let client = tokio::sync::Mutex::new(Client {
        feed,
        http: ctx.http.clone(),
        token: CachedToken::default(),
        subscribed: false,
    });
    let cursor = tokio::sync::Mutex::new(AuditCursor::load(&ctx, &key));
    poll_loop(&name, interval, &ctx, || async {
        let mut client = client.lock().await;
        let mut cursor = cursor.lock().await;
        poll(&mut client, &ctx, &key, &mut cursor).await
    })
    .await;
}

/// One poll: new blobs since the cursor, each blob's records, then the cursor.
async fn poll(
    client: &mut Client,
    ctx: &SourceContext,
    key: &str,
    cursor: &mut AuditCursor,
) -> Result<bool, SourceError> {
    client.subscribe().await?;
    let now = Utc::now();
    // The API accepts at most 24 hours per listing.
    let start = cursor.start(now).max(now - chrono::Duration::hours(24));
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let mut url = client.api("subscriptions/content");
    url.query_pairs_mut()
        .append_pair("contentType", CONTENT_TYPE)
        .append_pair("startTime", &fmt(start))
        .append_pair("endTime", &fmt(now));
    let mut blobs: Vec<Blob> = Vec::new();
    let mut next = Some(url);
    for _ in 0..MAX_PAGES {
        let Some(url) = next.take() else { break };
        let req = client.http.get(url);
        let resp = client.send(req, "subscriptions/content").await?;
        let next_uri = resp
            .headers()
            .get("NextPageUri")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let page: Vec<Blob> = resp.json().await.map_err(|e| SourceError::Malformed {
            what: "the content listing".into(),
            detail: e.to_string(),
        })?;
        blobs.extend(page);
        next = match next_uri {
            Some(u) if !u.is_empty() => Some(client.same_origin(&u)?),
            _ => None,
        };
    }
    let mut fresh: Vec<(Blob, DateTime<Utc>)> = blobs
        .into_iter()
        .filter(|b| !cursor.seen(&b.content_id))
        .filter_map(|b| parse_time(&b.content_created).map(|t| (b, t)))
        .collect();
    fresh.sort_by_key(|a| a.1);
    let feed = client.feed.name.clone();
    for (blob, _) in &fresh {
        let url = client.same_origin(&blob.content_uri)?;
        let req = client.http.get(url);
        let resp = client.send(req, "a content blob").await?;
        let records: Vec<serde_json::Value> =
            resp.json().await.map_err(|e| SourceError::Malformed {
                what: format!("content blob {}", blob.content_id),
                detail: e.to_string(),
            })?;
        let mut events: Vec<AuditEvent> = records
            .into_iter()
            // Records of other shapes (item access, sign-ins) are skipped, not errors.
            .filter_map(|r| serde_json::from_value::<Record>(r).ok())
            .filter(|r| OPERATIONS.contains(&r.operation.as_str()))
            .filter_map(|r| to_event(r, &client.feed))
            .collect();
        events.sort_by_key(|a| a.at);
        for e in events {
            if !ctx.emit(&feed, ObservationKind::Audit(e)).await {
                return Ok(false);
            }
        }
    }
    if !fresh.is_empty() {
        cursor.advance(fresh.iter().map(|(b, t)| (b.content_id.clone(), *t)));
        if !cursor.checkpoint(ctx, &feed, key).await {
            return Ok(false);
        }
    }
    Ok(true)
}

fn to_event(r: Record, feed: &M365Feed) -> Option<AuditEvent> {
    let at = parse_time(&r.creation_time)?;
    let details: Vec<(String, String)> = r
        .parameters
        .into_iter()
        .map(|p| {
            let v = match p.value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (p.name, v)
        })
        .collect();
    let target = details
        .iter()
        .find(|(n, _)| n == "Identity" || n == "Mailbox")
        .map(|(_, v)| v.clone())
        .or(r.object_id)
        .unwrap_or_else(|| r.user_id.clone());
    Some(AuditEvent {
        feed: "m365".into(),
        id: r.id,
        at,
        actor: r.user_id,
        action: r.operation,
        target,
        details,
        internal_domains: feed.internal_domains.clone(),
    })
}
