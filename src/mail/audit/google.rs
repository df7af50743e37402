//! Google Workspace: the Admin SDK Reports API (`activities.list`) for the `admin`, `login` and
//! `user_accounts` applications.
//!
//! Authentication is a service account with domain-wide delegation: a JWT (RS256, signed with
//! the key's private key) naming the admin to impersonate (`sub`) and the read-only audit scope
//! is exchanged at the key's `token_uri` for an access token, cached until shortly before it
//! expires. The Reports API lists newest first, so a poll reads every page before emitting
//! anything and then emits oldest first, followed by the cursor.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ring::{
    rand::SystemRandom,
    signature::{RSA_PKCS1_SHA256, RsaKeyPair},
};
use serde::Deserialize;

use super::{AuditCursor, CachedToken, poll_loop, status_error};
use crate::{
    config::GoogleFeed,
    model::{AuditEvent, ObservationKind},
    watch::{SourceContext, SourceError},
};

/// The one scope asked for: read the audit reports, nothing else.
pub const SCOPE: &str = "https://www.googleapis.com/auth/admin.reports.audit.readonly";
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google returns at most 1,000 activities per page.
const PAGE_SIZE: u32 = 1000;
/// Pages read per application and poll, so a runaway `nextPageToken` cannot loop forever.
const MAX_PAGES: usize = 200;

/// Why a service-account key was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a service-account JSON key: {0}")]
    Json(String),
    #[error("`private_key` is not a PEM PKCS#8 RSA key: {0}")]
    Key(String),
    #[error("`token_uri` is not an http(s) URL")]
    TokenUri,
}

/// The parts of the JSON key tocsin uses.
pub struct ServiceAccount {
    pub client_email: String,
    pub token_uri: url::Url,
    pub private_key_id: Option<String>,
    key: RsaKeyPair,
}

#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    token_uri: String,
}

impl ServiceAccount {
    pub fn parse(json: &str) -> Result<ServiceAccount, KeyError> {
        let f: KeyFile = serde_json::from_str(json).map_err(|e| KeyError::Json(e.to_string()))?;
        let der = pem_der(&f.private_key).ok_or_else(|| KeyError::Key("no PEM body".into()))?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| KeyError::Key(e.to_string()))?;
        let token_uri = url::Url::parse(&f.token_uri).map_err(|_| KeyError::TokenUri)?;
        if !matches!(token_uri.scheme(), "http" | "https") {
            return Err(KeyError::TokenUri);
        }
        Ok(ServiceAccount {
            client_email: f.client_email,
            token_uri,
            private_key_id: f.private_key_id,
            key,
        })
    }

    /// The signed assertion for `sub`, valid for an hour from `now`.
    pub fn assertion(&self, sub: &str, now: DateTime<Utc>) -> Result<String, SourceError> {
        let mut header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(kid) = &self.private_key_id {
            header["kid"] = kid.clone().into();
        }
        let iat = now.timestamp();
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": sub,
            "scope": SCOPE,
            "aud": self.token_uri.as_str(),
            "iat": iat,
            "exp": iat + 3600,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| SourceError::Malformed {
                what: "service-account key".into(),
                detail: "signing failed".into(),
            })?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// The DER body of a PEM block (`-----BEGIN PRIVATE KEY-----`).
pub fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    STANDARD.decode(body).ok().filter(|d| !d.is_empty())
}

#[derive(Deserialize)]
struct Activities {
    #[serde(default)]
    items: Vec<Activity>,
    #[serde(default, rename = "nextPageToken")]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Activity {
    id: ActivityId,
    #[serde(default)]
    actor: Actor,
    #[serde(default)]
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct ActivityId {
    time: DateTime<Utc>,
    #[serde(rename = "uniqueQualifier")]
    unique_qualifier: String,
    #[serde(default, rename = "applicationName")]
    application_name: Option<String>,
}

#[derive(Deserialize, Default)]
struct Actor {
    #[serde(default)]
    email: Option<String>,
    #[serde(default, rename = "profileId")]
    profile_id: Option<String>,
}

#[derive(Deserialize)]
struct Event {
    name: String,
    #[serde(default)]
    parameters: Vec<Parameter>,
}

#[derive(Deserialize)]
struct Parameter {
    name: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default, rename = "boolValue")]
    bool_value: Option<bool>,
    #[serde(default, rename = "intValue")]
    int_value: Option<String>,
    #[serde(default, rename = "multiValue")]
    multi_value: Option<Vec<String>>,
}

impl Parameter {
    fn text(&self) -> String {
        if let Some(v) = &self.value {
            return v.clone();
        }
        if let Some(b) = self.bool_value {
            return b.to_string();
        }
        if let Some(i) = &self.int_value {
            return i.clone();
        }
        self.multi_value
            .as_ref()
            .map_or_else(String::new, |m| m.join(", "))
    }
}

/// Parameters naming the user an admin event is about.
const TARGET_PARAMS: [&str; 3] = ["USER_EMAIL", "affected_email_address", "EMAIL"];

struct Client {
    feed: GoogleFeed,
    account: Arc<ServiceAccount>,
    http: reqwest::Client,
    token: CachedToken,
}

impl Client {
    async fn token(&mut self) -> Result<String, SourceError> {
        let assertion = self.account.assertion(&self.feed.admin, Utc::now())?;
        let request = self.http.post(self.account.token_uri.clone()).form(&[
            ("grant_type", GRANT_TYPE),
            ("assertion", assertion.as_str()),
        ]);
        self.token.get(request, "the service-account token").await
    }

    async fn page(
        &mut self,
        app: &str,
        start: DateTime<Utc>,
        page_token: Option<&str>,
    ) -> Result<Activities, SourceError> {
        let token = self.token().await?;
        let mut url = self.feed.api_url.clone();
        url.set_path(&format!(
            "admin/reports/v1/activity/users/all/applications/{app}"
        ));
        {
            let mut q = url.query_pairs_mut();
            q.append_pair(
                "startTime",
                &start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            );
            q.append_pair("maxResults", &PAGE_SIZE.to_string());
            if let Some(p) = page_token {
                q.append_pair("pageToken", p);
            }
        }
        let resp = self.http.get(url).bearer_auth(token).send().await?;
        let status = resp.status();
        if !status.is_success() {
            if matches!(status.as_u16(), 401) {
                // A revoked token is refused before its expiry: ask for a fresh one next time.
                self.token.forget();
            }
            let retry = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            return Err(status_error(
                status,
                &format!("the {app} activities"),
                retry,
            ));
        }
        resp.json().await.map_err(|e| SourceError::Malformed {
            what: format!("the {app} activities"),
            detail: e.to_string(),
        })
    }
}

/// Watches one Workspace tenant until shutdown.
pub async fn run(feed: GoogleFeed, ctx: SourceContext) {
    let account = match ServiceAccount::parse(feed.service_account.expose()) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            // Validated at start; a `file:` key replaced meanwhile lands here.
            tracing::error!(feed = %feed.name, error = %e, "service-account key unusable");
            ctx.health.failure(&feed.name, e.to_string(), true, None);
            return;
        }
    };
    let name = feed.name.clone();
    let interval = feed.poll_interval;
    let client = tokio::sync::Mutex::new(Client {
        feed: feed.clone(),
        account,
        http: ctx.http.clone(),
        token: CachedToken::default(),
    });
    let cursors: Vec<(String, String)> = feed
        .applications
        .iter()
        .map(|app| (app.clone(), format!("google:{}:{app}", feed.name)))
        .collect();
    let state = tokio::sync::Mutex::new(
        cursors
            .iter()
            .map(|(_, key)| AuditCursor::load(&ctx, key))
            .collect::<Vec<_>>(),
    );
    poll_loop(&name, interval, &ctx, || async {
        let mut client = client.lock().await;
        let mut state = state.lock().await;
        for ((app, key), cursor) in cursors.iter().zip(state.iter_mut()) {
            if !poll_app(&mut client, &ctx, app, key, cursor).await? {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await;
}

/// Reads one application's new events. Ok(false) when the pipeline is closed.
async fn poll_app(
    client: &mut Client,
    ctx: &SourceContext,
    app: &str,
    key: &str,
    cursor: &mut AuditCursor,
) -> Result<bool, SourceError> {
    let start = cursor.start(Utc::now());
    let mut items = Vec::new();
    let mut page_token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client.page(app, start, page_token.as_deref()).await?;
        items.extend(page.items);
        match page.next_page_token.filter(|t| !t.is_empty()) {
            Some(t) => page_token = Some(t),
            None => break,
        }
    }
    let mut events: Vec<AuditEvent> = items
        .iter()
        .flat_map(|a| to_events(a, app, &client.feed))
        .filter(|e| !cursor.seen(&e.id))
        .collect();
    events.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
    let feed = client.feed.name.clone();
    for e in &events {
        if !ctx.emit(&feed, ObservationKind::Audit(e.clone())).await {
            return Ok(false);
        }
    }
    if !events.is_empty() {
        cursor.advance(events.iter().map(|e| (e.id.clone(), e.at)));
        if !cursor.checkpoint(ctx, &feed, key).await {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One audit event per event of an activity: an activity can carry several (a setting change
/// and the role it came with), each judged on its own.
fn to_events(a: &Activity, app: &str, feed: &GoogleFeed) -> Vec<AuditEvent> {
    let actor = a
        .actor
        .email
        .clone()
        .or_else(|| a.actor.profile_id.clone())
        .unwrap_or_default();
    let app = a.id.application_name.as_deref().unwrap_or(app);
    a.events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let details: Vec<(String, String)> = e
                .parameters
                .iter()
                .map(|p| (p.name.clone(), p.text()))
                .collect();
            let target = details
                .iter()
                .find(|(n, _)| TARGET_PARAMS.contains(&n.as_str()))
                .map_or_else(|| actor.clone(), |(_, v)| v.clone());
            AuditEvent {
                feed: "google".into(),
                id: format!(
                    "{app}:{}:{}:{i}",
                    a.id.time.timestamp_micros(),
                    a.id.unique_qualifier
                ),
                at: a.id.time,
                actor: actor.clone(),
                action: e.name.clone(),
                target,
                details,
                internal_domains: feed.internal_domains.clone(),
            }
        })
        .collect()
}
