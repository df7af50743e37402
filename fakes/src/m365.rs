//! A loopback Microsoft 365: the Entra ID client-credentials token endpoint and the Office 365
//! Management Activity API (`subscriptions/start`, `subscriptions/content` with `NextPageUri`
//! paging, and the content blobs it points at).

use std::sync::{Arc, Mutex};

use axum::{
    Form, Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The Office 365 Management Activity API's scope for the client-credentials grant.
pub const SCOPE: &str = "https://manage.office.com/.default";
/// The one content type the fake serves: Exchange's admin and mailbox audit records.
pub const CONTENT_TYPE: &str = "Audit.Exchange";

#[derive(Default)]
struct Inner {
    /// Blobs: (contentId, created, records).
    blobs: Vec<(String, DateTime<Utc>, Vec<Value>)>,
    tokens: Vec<String>,
    subscribed: bool,
    subscribe_calls: usize,
    listings: usize,
    blob_reads: Vec<String>,
    page_size: usize,
    fail_with: Option<u16>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    base: String,
    tenant: String,
    client_id: String,
    client_secret: String,
}

#[derive(Clone)]
pub struct FakeM365 {
    url: url::Url,
    shared: Shared,
}

impl FakeM365 {
    pub async fn start(tenant: &str, client_id: &str, secret: &str) -> std::io::Result<FakeM365> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let url = url::Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?;
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                page_size: 1,
                ..Inner::default()
            })),
            base: format!("http://{addr}"),
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: secret.to_owned(),
        };
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route(
                "/api/v1.0/{tenant}/activity/feed/subscriptions/start",
                post(start_subscription),
            )
            .route(
                "/api/v1.0/{tenant}/activity/feed/subscriptions/content",
                get(content),
            )
            .route("/api/v1.0/{tenant}/activity/feed/audit/{id}", get(blob))
            .with_state(shared.clone());
        super::spawn_server(
            listener,
            app,
            tokio::sync::watch::channel(false).1,
            "fake m365",
        );
        Ok(FakeM365 { url, shared })
    }

    /// Both the login and the API base: the paths differ.
    pub fn url(&self) -> url::Url {
        self.url.clone()
    }

    /// Publishes one content blob holding `records` (Audit.Exchange records).
    pub fn publish(&self, records: Vec<Value>) {
        let mut inner = self.shared.inner.lock().unwrap();
        let id = format!(
            "20261124{:06}$20261124{:06}$audit_exchange$Audit_Exchange$na0034",
            inner.blobs.len(),
            inner.blobs.len()
        );
        inner.blobs.push((id, Utc::now(), records));
    }

    /// Blobs listed per content page (default 1, so two blobs take two pages).
    pub fn set_page_size(&self, n: usize) {
        self.shared.inner.lock().unwrap().page_size = n.max(1);
    }

    pub fn fail_with(&self, status: Option<u16>) {
        self.shared.inner.lock().unwrap().fail_with = status;
    }

    pub fn subscribe_calls(&self) -> usize {
        self.shared.inner.lock().unwrap().subscribe_calls
    }

    /// Content pages served.
    pub fn listings(&self) -> usize {
        self.shared.inner.lock().unwrap().listings
    }

    /// Blob ids read, in order.
    pub fn blob_reads(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().blob_reads.clone()
    }
}

/// A record as Exchange audits a cmdlet run.
pub fn exchange_record(
    id: &str,
    operation: &str,
    user: &str,
    object: &str,
    params: &[(&str, &str)],
) -> Value {
    json!({
        "CreationTime": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
        "Id": id,
        "Operation": operation,
        "OrganizationId": "8d4121ed-0008-406d-bff9-0d5bb312183c",
        "RecordType": 1,
        "ResultStatus": "True",
        "UserKey": "1003200280FF7557",
        "UserType": 2,
        "Version": 1,
        "Workload": "Exchange",
        "ClientIP": "203.0.113.9:52385",
        "ObjectId": object,
        "UserId": user,
        "ExternalAccess": false,
        "Parameters": params.iter().map(|(n, v)| json!({ "Name": n, "Value": v })).collect::<Vec<_>>(),
    })
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

fn authorized(s: &Shared, tenant: &str, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let inner = s.inner.lock().unwrap();
    if let Some(code) = inner.fail_with {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(Box::new(error(status, "Forced", "forced failure")));
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if tenant != s.tenant || !inner.tokens.iter().any(|t| t == bearer) {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "AF10001",
            "The permission set is invalid",
        )));
    }
    Ok(())
}

async fn token(
    State(s): State<Shared>,
    Path(tenant): Path<String>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> Response {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if tenant != s.tenant
        || field("grant_type") != "client_credentials"
        || field("client_id") != s.client_id
        || field("client_secret") != s.client_secret
        || field("scope") != SCOPE
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided." })),
        )
            .into_response();
    }
    let mut inner = s.inner.lock().unwrap();
    let t = format!("eyJ0eXAi.fake-{}", inner.tokens.len() + 1);
    inner.tokens.push(t.clone());
    Json(json!({ "token_type": "Bearer", "expires_in": 3599, "access_token": t })).into_response()
}

async fn start_subscription(
    State(s): State<Shared>,
    Path(tenant): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&s, &tenant, &headers) {
        return *r;
    }
    if q.get("contentType").map(String::as_str) != Some(CONTENT_TYPE) {
        return error(StatusCode::BAD_REQUEST, "AF20010", "contentType");
    }
    let mut inner = s.inner.lock().unwrap();
    inner.subscribe_calls += 1;
    if inner.subscribed {
        return error(
            StatusCode::BAD_REQUEST,
            "AF20024",
            "The subscription is already enabled. No property change.",
        );
    }
    inner.subscribed = true;
    Json(json!({ "contentType": CONTENT_TYPE, "status": "enabled", "webhook": null }))
        .into_response()
}

async fn content(
    State(s): State<Shared>,
    Path(tenant): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&s, &tenant, &headers) {
        return *r;
    }
    let mut inner = s.inner.lock().unwrap();
    if !inner.subscribed {
        return error(
            StatusCode::BAD_REQUEST,
            "AF20022",
            "No subscription found for the specified content type",
        );
    }
    let parse = |k: &str| {
        q.get(k).and_then(|t| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(|n| n.and_utc())
        })
    };
    let (Some(start), Some(end)) = (parse("startTime"), parse("endTime")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "AF20055",
            "startTime and endTime must both be present",
        );
    };
    let offset: usize = q.get("nextPage").and_then(|n| n.parse().ok()).unwrap_or(0);
    // Times are second-resolution: a blob created within this second counts as before `end`.
    let end = end + chrono::Duration::seconds(1);
    let matching: Vec<Value> = inner
        .blobs
        .iter()
        .filter(|(_, t, _)| *t >= start && *t < end)
        .map(|(id, t, _)| {
            json!({
                "contentType": CONTENT_TYPE,
                "contentId": id,
                "contentUri": format!("{}/api/v1.0/{}/activity/feed/audit/{id}", s.base, s.tenant),
                "contentCreated": t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                "contentExpiration": (*t + chrono::Duration::days(7)).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            })
        })
        .collect();
    let size = inner.page_size;
    inner.listings += 1;
    let page: Vec<Value> = matching.iter().skip(offset).take(size).cloned().collect();
    let mut resp = Json(Value::Array(page)).into_response();
    if offset + size < matching.len() {
        let mut next = url::Url::parse(&format!(
            "{}/api/v1.0/{}/activity/feed/subscriptions/content",
            s.base, s.tenant
        ))
        .expect("fake URL");
        next.query_pairs_mut()
            .append_pair("contentType", CONTENT_TYPE)
            .append_pair("startTime", q.get("startTime").map_or("", String::as_str))
            .append_pair("endTime", q.get("endTime").map_or("", String::as_str))
            .append_pair("nextPage", &(offset + size).to_string());
        if let Ok(v) = next.as_str().parse() {
            resp.headers_mut().insert("NextPageUri", v);
        }
    }
    resp
}

async fn blob(
    State(s): State<Shared>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&s, &tenant, &headers) {
        return *r;
    }
    let mut inner = s.inner.lock().unwrap();
    let Some(records) = inner
        .blobs
        .iter()
        .find(|(b, _, _)| *b == id)
        .map(|(_, _, r)| r.clone())
    else {
        return error(
            StatusCode::NOT_FOUND,
            "AF20051",
            "Content requested with the key does not exist",
        );
    };
    inner.blob_reads.push(id);
    Json(Value::Array(records)).into_response()
}
