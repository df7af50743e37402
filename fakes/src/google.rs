//! A loopback Google: the OAuth token endpoint of a service account (JWT bearer grant, the
//! assertion's RS256 signature checked with the key's public half) and the Admin SDK Reports
//! API's `activities.list` (newest first, `startTime`, `maxResults`, `pageToken`).

use std::sync::{Arc, Mutex};

use axum::{
    Form, Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::{Value, json};

/// The read-only Reports API scope the delegated token must carry.
pub const SCOPE: &str = "https://www.googleapis.com/auth/admin.reports.audit.readonly";
/// RFC 7523's grant type: a signed JWT exchanged for an access token.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(Default)]
struct Inner {
    /// (application, activity JSON).
    activities: Vec<(String, Value)>,
    tokens: Vec<String>,
    /// Assertions refused, with why.
    refused: Vec<String>,
    /// Reports requests answered, with their page token.
    pages: Vec<(String, Option<String>)>,
    /// Answer every Reports request with this status.
    fail_with: Option<u16>,
    page_size: usize,
    subjects: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    public_key: Arc<Vec<u8>>,
    client_email: String,
    token_url: String,
}

#[derive(Clone)]
pub struct FakeGoogle {
    url: url::Url,
    shared: Shared,
}

impl FakeGoogle {
    /// `public_key`: the service account's RSA public key (PKCS#1 DER), as ring gives it.
    pub async fn start(public_key: Vec<u8>, client_email: &str) -> std::io::Result<FakeGoogle> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let url = url::Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?;
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                page_size: 1000,
                ..Inner::default()
            })),
            public_key: Arc::new(public_key),
            client_email: client_email.to_owned(),
            token_url: format!("{url}token"),
        };
        let app = Router::new()
            .route("/token", post(token))
            .route(
                "/admin/reports/v1/activity/users/all/applications/{app}",
                get(activities),
            )
            .with_state(shared.clone());
        super::spawn_server(
            listener,
            app,
            tokio::sync::watch::channel(false).1,
            "fake google",
        );
        Ok(FakeGoogle { url, shared })
    }

    pub fn url(&self) -> url::Url {
        self.url.clone()
    }

    /// The `token_uri` to write in the service-account key.
    pub fn token_url(&self) -> String {
        self.shared.token_url.clone()
    }

    /// Adds one activity of `app` (`items[]` shape) at `time`.
    pub fn push(
        &self,
        app: &str,
        time: DateTime<Utc>,
        actor: &str,
        event: &str,
        parameters: Value,
    ) {
        let mut inner = self.shared.inner.lock().unwrap();
        let n = inner.activities.len();
        let activity = json!({
            "kind": "admin#reports#activity",
            "id": {
                "time": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "uniqueQualifier": format!("{}", 7_000_000_000_000_000_000u64 + n as u64),
                "applicationName": app,
                "customerId": "C03az79cb",
            },
            "actor": { "email": actor, "profileId": format!("1{n:020}") },
            "ipAddress": "203.0.113.7",
            "events": [{ "type": "fake", "name": event, "parameters": parameters }],
        });
        inner.activities.push((app.to_owned(), activity));
    }

    pub fn set_page_size(&self, n: usize) {
        self.shared.inner.lock().unwrap().page_size = n.max(1);
    }

    /// Answers every Reports request with `status` (None: serve again).
    pub fn fail_with(&self, status: Option<u16>) {
        self.shared.inner.lock().unwrap().fail_with = status;
    }

    pub fn tokens_issued(&self) -> usize {
        self.shared.inner.lock().unwrap().tokens.len()
    }

    pub fn refused_assertions(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().refused.clone()
    }

    /// The `sub` of every accepted assertion.
    pub fn subjects(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().subjects.clone()
    }

    /// Every Reports request answered: (application, pageToken).
    pub fn pages(&self) -> Vec<(String, Option<String>)> {
        self.shared.inner.lock().unwrap().pages.clone()
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// Checks the assertion as Google does: RS256 signature by the key, issuer, audience, scope,
/// lifetime at most an hour.
fn check_assertion(s: &Shared, jwt: &str) -> Result<String, String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, sig] = parts.as_slice() else {
        return Err("not a JWT".into());
    };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|e| e.to_string());
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {}", header["alg"]));
    }
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, s.public_key.as_slice())
        .verify(format!("{h}.{c}").as_bytes(), &decode(sig)?)
        .map_err(|_| "Invalid JWT Signature.".to_owned())?;
    let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|e| e.to_string())?;
    if claims["iss"] != s.client_email.as_str() {
        return Err(format!("iss {}", claims["iss"]));
    }
    if claims["aud"] != s.token_url.as_str() {
        return Err(format!("aud {}", claims["aud"]));
    }
    if claims["scope"].as_str() != Some(SCOPE) {
        return Err(format!("scope {}", claims["scope"]));
    }
    let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
    let now = Utc::now().timestamp();
    match (iat, exp) {
        (Some(iat), Some(exp)) if exp > now && exp - iat <= 3600 && iat <= now + 60 => {}
        _ => return Err("Invalid JWT: token lifetime".into()),
    }
    claims["sub"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no sub".into())
}

async fn token(
    State(s): State<Shared>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> Response {
    if form.get("grant_type").map(String::as_str) != Some(GRANT_TYPE) {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant");
    }
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    match check_assertion(&s, &assertion) {
        Err(why) => {
            s.inner.lock().unwrap().refused.push(why.clone());
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &why)
        }
        Ok(sub) => {
            let mut inner = s.inner.lock().unwrap();
            let t = format!("ya29.fake-{}", inner.tokens.len() + 1);
            inner.tokens.push(t.clone());
            inner.subjects.push(sub);
            Json(json!({ "access_token": t, "expires_in": 3599, "token_type": "Bearer" }))
                .into_response()
        }
    }
}

async fn activities(
    State(s): State<Shared>,
    Path(app): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut inner = s.inner.lock().unwrap();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let google_error = |status: StatusCode, message: &str| {
        (
            status,
            Json(json!({ "error": { "code": status.as_u16(), "message": message } })),
        )
            .into_response()
    };
    if let Some(code) = inner.fail_with {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return google_error(status, "forced failure");
    }
    if !inner.tokens.iter().any(|t| t == bearer) {
        return google_error(StatusCode::UNAUTHORIZED, "Invalid Credentials");
    }
    let Some(start) = q
        .get("startTime")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    else {
        return google_error(StatusCode::BAD_REQUEST, "startTime required");
    };
    let max = q
        .get("maxResults")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(1000)
        .min(inner.page_size);
    let offset: usize = match q.get("pageToken") {
        None => 0,
        Some(t) => match t.strip_prefix("page-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return google_error(StatusCode::BAD_REQUEST, "Invalid pageToken"),
        },
    };
    let mut matching: Vec<&Value> = inner
        .activities
        .iter()
        .filter(|(a, v)| {
            *a == app
                && v["id"]["time"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t >= start)
        })
        .map(|(_, v)| v)
        .collect();
    // Newest first, as the API lists.
    matching.reverse();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(max)
        .cloned()
        .cloned()
        .collect();
    let mut body = json!({ "kind": "admin#reports#activities", "items": page });
    if offset + max < matching.len() {
        body["nextPageToken"] = json!(format!("page-{}", offset + max));
    }
    inner.pages.push((app, q.get("pageToken").cloned()));
    Json(body).into_response()
}
