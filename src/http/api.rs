//! `/api/v1`: the operator API that the `tocsin` CLI is a thin client of.
//!
//! Every route but the OpenAPI document needs the bearer token, checked before anything in the
//! request is looked at, so a caller without it learns nothing (not even whether an id exists).
//! A request that does not parse is answered 400 naming the field, parameter or path segment at
//! fault, and counted with the refused tokens: both are what a probing client produces.

use std::{collections::HashMap, sync::atomic::Ordering};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::HttpState;
use crate::{
    detect::{content_from_text, fingerprint},
    model::State as IncidentState,
    store::{ApprovedEntry, RevokeError, StoreError, parse_since},
};

/// An API error: a status and a message that says which field or header is at fault.
pub(super) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    /// The detail goes to the log, not to the client: it may name paths on the server.
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "api request failed in the store");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the state database failed; see the daemon's log".into(),
        )
    }
}

fn authorize(s: &HttpState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = s.api_token.expose().as_bytes();
    if bool::from(given.as_bytes().ct_eq(expected)) {
        return Ok(());
    }
    s.rejected.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        reason = "bad or missing bearer token",
        "api request refused"
    );
    Err(ApiError(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token in Authorization".into(),
    ))
}

/// A 400, counted and logged.
fn bad_request(s: &HttpState, msg: String) -> ApiError {
    s.rejected.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(reason = %msg, "api request refused");
    ApiError(StatusCode::BAD_REQUEST, msg)
}

/// Parses the query string, refusing parameters the route does not know: a misspelt filter
/// (`?acount=`) silently returning everything would mislead the operator.
fn query(
    s: &HttpState,
    raw: Option<String>,
    known: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !known.contains(&k.as_ref()) {
            return Err(bad_request(
                s,
                format!(
                    "query parameter `{k}` is not known here; expected one of: {}",
                    known.join(", ")
                ),
            ));
        }
        out.insert(k.into_owned(), v.into_owned());
    }
    Ok(out)
}

fn path_number(s: &HttpState, name: &str, raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .map_err(|_| bad_request(s, format!("path `{name}`: `{raw}` is not a number")))
}

/// `POST /api/v1/approvals` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalRequest {
    account: String,
    text: String,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

/// `POST /api/v1/approvals` body with `"type": "campaign"`: a planned bulk send.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignRequest {
    #[allow(dead_code)]
    r#type: String,
    sender: String,
    campaign: String,
    #[serde(default)]
    max_recipients: Option<u64>,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

async fn add_campaign(s: &HttpState, body: &[u8]) -> Result<Response, ApiError> {
    let req: CampaignRequest = serde_json::from_slice(body)
        .map_err(|e| bad_request(s, format!("invalid campaign body: {e}")))?;
    let sender = req.sender.trim().to_lowercase();
    if !sender.contains('@') {
        return Err(bad_request(
            s,
            format!("field `sender`: `{}` is not an email address", req.sender),
        ));
    }
    if req.campaign.trim().is_empty() {
        return Err(bad_request(
            s,
            "field `campaign`: must not be empty (`*` covers every campaign)".into(),
        ));
    }
    if let Some(w) = &req.window
        && crate::model::parse_duration(w).is_err()
    {
        return Err(bad_request(
            s,
            format!("field `window`: `{w}` is not a duration like \"24h\""),
        ));
    }
    if req.max_recipients.is_some() && req.window.is_none() {
        return Err(bad_request(
            s,
            "field `window`: required with `max_recipients`".into(),
        ));
    }
    let entry = ApprovedEntry::ApprovedCampaign {
        sender: sender.clone(),
        campaign: req.campaign.trim().to_owned(),
        max_recipients: req.max_recipients,
        window: req.window.map(|w| w.trim().to_owned()),
        by: format!("api:{}", req.by.as_deref().unwrap_or("token")),
    };
    let record = s.store.approve(entry, Utc::now())?;
    s.store.flush().await?;
    tracing::info!(%sender, seq = record.seq, "campaign approved");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "seq": record.seq, "sender": sender, "campaign": req.campaign.trim(), "hash": record.hash })),
    )
        .into_response())
}

pub(super) async fn add_approval(
    State(s): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let kind = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
    match kind.as_deref() {
        None => {}
        Some("campaign") => return add_campaign(&s, &body).await,
        Some(other) => {
            return Err(bad_request(
                &s,
                format!("field `type`: `{other}` is not `campaign` (omit it for a post)"),
            ));
        }
    }
    let req: ApprovalRequest = serde_json::from_slice(&body)
        .map_err(|e| bad_request(&s, format!("invalid approval body: {e}")))?;
    if !s.accounts.contains(&req.account) {
        return Err(bad_request(
            &s,
            format!(
                "field `account`: `{}` is not a configured account",
                req.account
            ),
        ));
    }
    if req.text.trim().is_empty() {
        return Err(bad_request(&s, "field `text`: must not be empty".into()));
    }
    let fp = fingerprint(&content_from_text(&req.text));
    let by = format!("api:{}", req.by.as_deref().unwrap_or("token"));
    let entry = ApprovedEntry::ApprovedPost {
        account: req.account.clone(),
        fingerprint: Some(fp.clone()),
        post_id: None,
        expires_at: req.expires_at,
        by,
        note: req.note,
    };
    let record = s.store.approve(entry, Utc::now())?;
    s.store.flush().await?;
    tracing::info!(account = %req.account, seq = record.seq, "post pre-approved");
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "seq": record.seq, "account": req.account, "fingerprint": fp, "hash": record.hash }),
        ),
    )
        .into_response())
}

pub(super) async fn list_approvals(
    State(s): State<HttpState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &headers)?;
    let q = query(&s, raw, &["account"])?;
    let account = q.get("account");
    if let Some(a) = account
        && !s.accounts.contains(a)
    {
        return Err(bad_request(
            &s,
            format!("query parameter `account`: `{a}` is not a configured account"),
        ));
    }
    let records = s.store.log_records()?;
    let revocations = s.store.revocations()?;
    // A revocation names only its target; it belongs to the target's account.
    let account_of: HashMap<u64, String> = records
        .iter()
        .filter_map(|r| r.entry.account().map(|a| (r.seq, a.to_owned())))
        .collect();
    let approvals: Vec<_> = records
        .iter()
        .filter(|r| {
            let owner = match &r.entry {
                ApprovedEntry::Revocation { seq, .. } => account_of.get(seq).map(String::as_str),
                e => e.account(),
            };
            account.is_none_or(|a| owner == Some(a.as_str()))
        })
        .map(|r| {
            let revoked_by = revocations.get(&r.seq);
            json!({
                "seq": r.seq,
                "at": r.at,
                "hash": r.hash,
                "entry": r.entry,
                "revoked": revoked_by.is_some(),
                "revoked_by": revoked_by,
            })
        })
        .collect();
    Ok(Json(json!({ "approvals": approvals })))
}

/// `POST /api/v1/approvals/{seq}/revoke` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    reason: String,
    #[serde(default)]
    by: Option<String>,
}

pub(super) async fn revoke_approval(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Path(seq): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &headers)?;
    let seq = path_number(&s, "seq", &seq)?;
    let req: RevokeRequest = serde_json::from_slice(&body)
        .map_err(|e| bad_request(&s, format!("invalid revoke body: {e}")))?;
    if req.reason.trim().is_empty() {
        return Err(bad_request(
            &s,
            "field `reason`: say why the approval is withdrawn".into(),
        ));
    }
    let by = format!("api:{}", req.by.as_deref().unwrap_or("token"));
    let record = match s.store.revoke(seq, req.reason.trim(), &by, Utc::now()) {
        Ok(r) => r,
        Err(e @ RevokeError::NotFound(_)) => {
            return Err(ApiError(StatusCode::NOT_FOUND, e.to_string()));
        }
        Err(e @ RevokeError::AlreadyRevoked { .. }) => {
            return Err(ApiError(StatusCode::CONFLICT, e.to_string()));
        }
        Err(
            e @ (RevokeError::Baseline(_) | RevokeError::Revocation(_) | RevokeError::Campaign(_)),
        ) => {
            return Err(bad_request(&s, e.to_string()));
        }
        Err(RevokeError::Store(e)) => return Err(e.into()),
    };
    s.store.flush().await?;
    tracing::info!(revoked = seq, seq = record.seq, by, "approval revoked");
    Ok(Json(record))
}

pub(super) async fn list_incidents(
    State(s): State<HttpState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &headers)?;
    let q = query(&s, raw, &["state"])?;
    let state = match q.get("state").map(String::as_str) {
        None => None,
        Some("open") => Some(IncidentState::Open),
        Some("acked") => Some(IncidentState::Acked),
        Some("resolved") => Some(IncidentState::Resolved),
        Some(other) => {
            return Err(bad_request(
                &s,
                format!("query parameter `state`: `{other}` is not one of open, acked, resolved"),
            ));
        }
    };
    let incidents: Vec<_> = s
        .store
        .incidents()?
        .into_iter()
        .filter(|i| state.is_none_or(|st| i.state == st))
        .collect();
    Ok(Json(json!({ "incidents": incidents })))
}

pub(super) async fn get_incident(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &headers)?;
    let id = path_number(&s, "id", &id)?;
    match s.store.incident(id)? {
        Some(incident) => Ok(Json(incident)),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("there is no incident #{id}"),
        )),
    }
}

pub(super) async fn list_accounts(
    State(s): State<HttpState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &headers)?;
    let health = s.health.snapshot();
    let incidents = s.store.incidents()?;
    let accounts: Vec<_> = s
        .watched
        .iter()
        .map(|a| {
            let h = health.get(&a.name).cloned().unwrap_or_default();
            let count = |state| {
                incidents
                    .iter()
                    .filter(|i| i.account == a.name && i.state == state)
                    .count()
            };
            json!({
                "name": a.name,
                "platform": a.platform.as_str(),
                "base_url": a.base_url,
                "last_success": h.last_success,
                "last_error": h.last_error.map(|(at, message)| json!({ "at": at, "message": message })),
                "rate_limit": h.rate_limit,
                "polls": h.polls,
                "errors": h.errors,
                "open_incidents": count(IncidentState::Open),
                "acked_incidents": count(IncidentState::Acked),
            })
        })
        .collect();
    Ok(Json(json!({ "accounts": accounts })))
}

/// The incident timeline chain, oldest first: what `tocsin incidents export` writes out. Served
/// by the daemon (rather than read from the sled file) so that an export needs no downtime.
pub(super) async fn timeline(
    State(s): State<HttpState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &headers)?;
    let q = query(&s, raw, &["since"])?;
    let since = match q.get("since") {
        Some(v) => Some(
            parse_since(v, Utc::now())
                .map_err(|e| bad_request(&s, format!("query parameter `since`: {e}")))?,
        ),
        None => None,
    };
    let events: Vec<_> = s
        .store
        .timeline_records()?
        .into_iter()
        .filter(|r| since.is_none_or(|t| r.at >= t))
        .collect();
    Ok(Json(json!({ "events": events })))
}

/// No token: the document describes the API, it reveals nothing the source does not.
pub(super) async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_document())
}

/// The OpenAPI 3.1 description of every route, written by hand: the handlers parse their input
/// themselves (to name the field at fault), so there are no typed extractors to derive it from.
pub fn openapi_document() -> serde_json::Value {
    let error = json!({ "$ref": "#/components/responses/Error" });
    let unauthorized = json!({ "$ref": "#/components/responses/Unauthorized" });
    let bearer = json!([{ "bearer": [] }]);
    let json_body = |schema: serde_json::Value| json!({ "content": { "application/json": { "schema": schema } } });
    let ok = |description: &str, schema: serde_json::Value| {
        let mut r = json_body(schema);
        r["description"] = json!(description);
        r
    };
    let seq_param = json!({
        "name": "seq", "in": "path", "required": true,
        "description": "the approved log entry to revoke",
        "schema": { "type": "integer", "minimum": 0 }
    });
    let id_param = json!({
        "name": "id", "in": "path", "required": true,
        "schema": { "type": "integer", "minimum": 1 }
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tocsin",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Operator API of tocsin: pre-approve posts, revoke approvals, read incidents and the watched accounts' health. Every /api/v1 route except this document needs `Authorization: Bearer <general.api_token>`."
        },
        "paths": {
            "/healthz": { "get": {
                "summary": "The process answers",
                "responses": { "200": ok("alive", json!({ "type": "object", "properties": { "status": { "const": "ok" } } })) }
            }},
            "/readyz": { "get": {
                "summary": "tocsin is watching and paging: store, Telegram, every source, the page queue",
                "responses": {
                    "200": ok("ready", json!({ "$ref": "#/components/schemas/Readiness" })),
                    "503": ok("not ready; `checks` names what is wrong", json!({ "$ref": "#/components/schemas/Readiness" }))
                }
            }},
            "/metrics": { "get": {
                "summary": "Prometheus metrics",
                "responses": { "200": {
                    "description": "metrics in the Prometheus/OpenMetrics text format",
                    "content": { "text/plain": { "schema": { "type": "string" } } }
                }}
            }},
            "/api/v1/openapi.json": { "get": {
                "summary": "This document",
                "responses": { "200": ok("the OpenAPI 3.1 document", json!({ "type": "object" })) }
            }},
            "/api/v1/approvals": {
                "get": {
                    "summary": "The approved log, oldest first",
                    "security": bearer,
                    "parameters": [{
                        "name": "account", "in": "query", "required": false,
                        "description": "only entries about this configured account",
                        "schema": { "type": "string" }
                    }],
                    "responses": {
                        "200": ok("the entries", json!({
                            "type": "object",
                            "properties": { "approvals": { "type": "array", "items": { "$ref": "#/components/schemas/Approval" } } }
                        })),
                        "400": error, "401": unauthorized
                    }
                },
                "post": {
                    "summary": "Pre-approve a post before it is published, or (type campaign) a planned bulk send",
                    "security": bearer,
                    "requestBody": {
                        "required": true,
                        "content": { "application/json": { "schema": { "oneOf": [{
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["account", "text"],
                            "properties": {
                                "account": { "type": "string", "description": "a configured account's name" },
                                "text": { "type": "string", "minLength": 1, "description": "the post's text with its links" },
                                "expires_at": { "type": "string", "format": "date-time" },
                                "note": { "type": "string" },
                                "by": { "type": "string", "description": "who approves; recorded as api:<by>" }
                            }
                        }, {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["type", "sender", "campaign"],
                            "description": "an approved campaign: the sender may reach up to max_recipients envelope recipients per window without email.unapproved_bulk paging",
                            "properties": {
                                "type": { "type": "string", "enum": ["campaign"] },
                                "sender": { "type": "string", "description": "the envelope sender (MAIL FROM)" },
                                "campaign": { "type": "string", "minLength": 1, "description": "X-Campaign-Id, List-Id or tag; * for every campaign of the sender" },
                                "max_recipients": { "type": "integer", "minimum": 0, "description": "absent: no cap" },
                                "window": { "type": "string", "description": "a duration such as 24h; required with max_recipients" },
                                "by": { "type": "string" }
                            }
                        }]}}}
                    },
                    "responses": {
                        "201": ok("recorded", json!({
                            "type": "object",
                            "properties": {
                                "seq": { "type": "integer" },
                                "account": { "type": "string" },
                                "fingerprint": { "type": "string" },
                                "sender": { "type": "string" },
                                "campaign": { "type": "string" },
                                "hash": { "type": "string" }
                            }
                        })),
                        "400": error, "401": unauthorized,
                        "413": { "description": "the body is over 64 KiB" }
                    }
                }
            },
            "/api/v1/approvals/{seq}/revoke": { "post": {
                "summary": "Withdraw an approved post; appends a revocation entry to the log",
                "security": bearer,
                "parameters": [seq_param],
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["reason"],
                        "properties": {
                            "reason": { "type": "string", "minLength": 1 },
                            "by": { "type": "string" }
                        }
                    }}}
                },
                "responses": {
                    "200": ok("the revocation as recorded", json!({ "$ref": "#/components/schemas/LogRecord" })),
                    "400": { "description": "missing or empty `reason`, or the entry is a baseline or a revocation (a baseline is changed by approving a new value)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                    "401": unauthorized,
                    "404": error,
                    "409": { "description": "already revoked", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
                }
            }},
            "/api/v1/incidents": { "get": {
                "summary": "Incidents, oldest first",
                "security": bearer,
                "parameters": [{
                    "name": "state", "in": "query", "required": false,
                    "schema": { "type": "string", "enum": ["open", "acked", "resolved"] }
                }],
                "responses": {
                    "200": ok("the incidents", json!({
                        "type": "object",
                        "properties": { "incidents": { "type": "array", "items": { "$ref": "#/components/schemas/Incident" } } }
                    })),
                    "400": error, "401": unauthorized
                }
            }},
            "/api/v1/incidents/{id}": { "get": {
                "summary": "One incident with its timeline",
                "security": bearer,
                "parameters": [id_param],
                "responses": {
                    "200": ok("the incident", json!({ "$ref": "#/components/schemas/Incident" })),
                    "400": error, "401": unauthorized, "404": error
                }
            }},
            "/api/v1/timeline": { "get": {
                "summary": "The hash-chained incident timeline, oldest first (tocsin incidents export)",
                "security": bearer,
                "parameters": [{
                    "name": "since", "in": "query", "required": false,
                    "description": "only events at or after this time: RFC 3339, or a duration back from now such as 24h",
                    "schema": { "type": "string" }
                }],
                "responses": {
                    "200": ok("the events", json!({
                        "type": "object",
                        "properties": { "events": { "type": "array", "items": { "$ref": "#/components/schemas/TimelineRecord" } } }
                    })),
                    "400": error, "401": unauthorized
                }
            }},
            "/api/v1/accounts": { "get": {
                "summary": "Each configured account with its source's health and incident counts",
                "security": bearer,
                "responses": {
                    "200": ok("the accounts", json!({
                        "type": "object",
                        "properties": { "accounts": { "type": "array", "items": { "$ref": "#/components/schemas/Account" } } }
                    })),
                    "401": unauthorized
                }
            }}
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "general.api_token" }
            },
            "responses": {
                "Error": { "description": "refused; `error` names the field, parameter or entry at fault", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "Unauthorized": { "description": "missing or wrong bearer token", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": { "error": { "type": "string" } }
                },
                "Readiness": {
                    "type": "object", "required": ["ready", "checks"],
                    "properties": {
                        "ready": { "type": "boolean" },
                        "checks": { "type": "object", "additionalProperties": { "type": "string", "description": "`ok` or what is wrong" } }
                    }
                },
                "Entry": {
                    "type": "object", "required": ["type"],
                    "description": "an approved log entry; `type` is approved_post, baseline, revocation or approved_campaign",
                    "properties": {
                        "type": { "type": "string", "enum": ["approved_post", "baseline", "revocation", "approved_campaign"] },
                        "account": { "type": "string" },
                        "fingerprint": { "type": "string" },
                        "post_id": { "type": "string" },
                        "expires_at": { "type": "string", "format": "date-time" },
                        "note": { "type": "string" },
                        "field": { "type": "string" },
                        "value_digest": { "type": "string" },
                        "seq": { "type": "integer", "description": "revocation: the entry it withdraws" },
                        "reason": { "type": "string" },
                        "sender": { "type": "string", "description": "approved_campaign: the envelope sender" },
                        "campaign": { "type": "string" },
                        "max_recipients": { "type": "integer" },
                        "window": { "type": "string" },
                        "by": { "type": "string" }
                    }
                },
                "LogRecord": {
                    "type": "object", "required": ["seq", "at", "prev", "hash", "entry"],
                    "properties": {
                        "seq": { "type": "integer" },
                        "at": { "type": "string", "format": "date-time" },
                        "prev": { "type": "string", "description": "hash of the previous entry" },
                        "hash": { "type": "string" },
                        "entry": { "$ref": "#/components/schemas/Entry" }
                    }
                },
                "Approval": {
                    "type": "object", "required": ["seq", "at", "hash", "entry", "revoked"],
                    "properties": {
                        "seq": { "type": "integer" },
                        "at": { "type": "string", "format": "date-time" },
                        "hash": { "type": "string" },
                        "entry": { "$ref": "#/components/schemas/Entry" },
                        "revoked": { "type": "boolean" },
                        "revoked_by": { "type": ["integer", "null"], "description": "seq of the revocation" }
                    }
                },
                "Incident": {
                    "type": "object",
                    "required": ["id", "rule", "severity", "account", "object", "state", "timeline"],
                    "properties": {
                        "id": { "type": "integer" },
                        "rule": { "type": "string" },
                        "severity": { "type": "string" },
                        "account": { "type": "string" },
                        "object": { "type": "string" },
                        "state": { "type": "string", "enum": ["open", "acked", "resolved"] },
                        "resolution": { "type": ["string", "null"] },
                        "evidence": { "type": "object" },
                        "votes": { "type": "array", "description": "approval votes while a quorum is not reached", "items": {
                            "type": "object",
                            "properties": {
                                "action": { "type": "string", "enum": ["approve"] },
                                "who": { "type": "object" },
                                "at": { "type": "string", "format": "date-time" },
                                "needed": { "type": "integer" }
                            }
                        }},
                        "opened_at": { "type": "string", "format": "date-time" },
                        "updated_at": { "type": "string", "format": "date-time" },
                        "timeline": { "type": "array", "items": {
                            "type": "object",
                            "properties": {
                                "at": { "type": "string", "format": "date-time" },
                                "who": { "type": "string" },
                                "action": { "type": "string" }
                            }
                        }}
                    }
                },
                "TimelineRecord": {
                    "type": "object", "required": ["seq", "at", "prev", "hash", "account", "who", "action"],
                    "description": "one event of the timeline chain; the action's own fields (resolution, votes, until…) sit beside `action`",
                    "properties": {
                        "seq": { "type": "integer" },
                        "at": { "type": "string", "format": "date-time" },
                        "prev": { "type": "string", "description": "hash of the previous event" },
                        "hash": { "type": "string" },
                        "incident": { "type": "integer", "description": "absent for account-level events (mutes)" },
                        "account": { "type": "string" },
                        "who": { "type": "string" },
                        "action": { "type": "string", "enum": ["opened", "updated", "paged", "acked", "approved", "resolved", "reminded", "approval_vote", "muted", "unmuted"] }
                    }
                },
                "Account": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" },
                        "platform": { "type": "string" },
                        "base_url": { "type": "string" },
                        "last_success": { "type": ["string", "null"], "format": "date-time" },
                        "last_error": {
                            "type": ["object", "null"],
                            "properties": { "at": { "type": "string", "format": "date-time" }, "message": { "type": "string" } }
                        },
                        "rate_limit": {
                            "type": ["object", "null"],
                            "properties": {
                                "limit": { "type": ["integer", "null"] },
                                "remaining": { "type": "integer" },
                                "reset": { "type": ["string", "null"], "format": "date-time" }
                            }
                        },
                        "polls": { "type": "integer" },
                        "errors": { "type": "integer" },
                        "open_incidents": { "type": "integer" },
                        "acked_incidents": { "type": "integer" }
                    }
                }
            }
        }
    })
}
