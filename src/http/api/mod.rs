//! `/api/v1`: the operator API that the `tocsin` CLI is a thin client of.
//!
//! Every route but the OpenAPI document needs the bearer token, checked before anything in the
//! request is looked at, so a caller without it learns nothing (not even whether an id exists).
//! A request that does not parse is answered 400 naming the field, parameter or path segment at
//! fault, and counted with the refused tokens: both are what a probing client produces.

mod approvals;
mod openapi;

pub(super) use approvals::{add_approval, list_approvals, revoke_approval};

pub use openapi::openapi_document;

pub(super) use openapi::openapi;

use std::{collections::HashMap, sync::atomic::Ordering};

use axum::{
    Json,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::HttpState;
use crate::{
    config::ApiRole,
    model::State as IncidentState,
    store::{StoreError, parse_since},
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

/// Finds the bearer token among the configured ones and checks its role; returns its name,
/// which is what the API records as `by`. Every token is compared (in constant time), so the
/// answer's timing does not tell which one was close.
fn authorize(s: &HttpState, headers: &HeaderMap, needs: ApiRole) -> Result<String, ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mut found = None;
    for t in s.api_tokens.iter() {
        if bool::from(given.as_bytes().ct_eq(t.token.expose().as_bytes())) {
            found = Some(t);
        }
    }
    s.rejected.fetch_add(
        u64::from(found.is_none_or(|t| t.role < needs)),
        Ordering::Relaxed,
    );
    match found {
        Some(t) if t.role >= needs => Ok(t.name.clone()),
        Some(t) => {
            tracing::warn!(token = %t.name, role = t.role.as_str(), needs = needs.as_str(), "api request refused");
            Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "token `{}` has the role {}; this needs {}",
                    t.name,
                    t.role.as_str(),
                    needs.as_str()
                ),
            ))
        }
        None => {
            tracing::warn!(
                reason = "bad or missing bearer token",
                "api request refused"
            );
            Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token in Authorization".into(),
            ))
        }
    }
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

pub(super) async fn list_incidents(
    State(s): State<HttpState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &headers, ApiRole::Read)?;
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
    authorize(&s, &headers, ApiRole::Read)?;
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
    authorize(&s, &headers, ApiRole::Read)?;
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
    authorize(&s, &headers, ApiRole::Read)?;
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
