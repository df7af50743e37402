//! `/api/v1/approvals`: approve a post or a campaign ahead of time, list the log, revoke an
//! entry. Every write is an entry of the approved log, signed into its chain.

use std::collections::HashMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, authorize, bad_request, path_number, query};
use crate::{
    config::ApiRole,
    detect::{content_from_text, fingerprint},
    http::HttpState,
    store::{ApprovedEntry, RevokeError},
};

/// The `by` an API write records: the name of the token that authorized it. The body's `by`
/// is only a claim (anyone holding the token can write any name), so it goes to the log.
fn recorded_by(token: &str, claimed: Option<&str>) -> String {
    if let Some(claimed) = claimed.filter(|c| *c != token) {
        tracing::info!(token, claimed, "api write: the body's `by` is not recorded");
    }
    token.to_owned()
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

async fn add_campaign(s: &HttpState, body: &[u8], token: &str) -> Result<Response, ApiError> {
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
        by: recorded_by(token, req.by.as_deref()),
        expires_at: None,
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

pub(in crate::http) async fn add_approval(
    State(s): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let token = authorize(&s, &headers, ApiRole::Approve)?;
    let kind = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
    match kind.as_deref() {
        None => {}
        Some("campaign") => return add_campaign(&s, &body, &token).await,
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
    let by = recorded_by(&token, req.by.as_deref());
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

pub(in crate::http) async fn list_approvals(
    State(s): State<HttpState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &headers, ApiRole::Read)?;
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

pub(in crate::http) async fn revoke_approval(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Path(seq): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let token = authorize(&s, &headers, ApiRole::Approve)?;
    let seq = path_number(&s, "seq", &seq)?;
    let req: RevokeRequest = serde_json::from_slice(&body)
        .map_err(|e| bad_request(&s, format!("invalid revoke body: {e}")))?;
    if req.reason.trim().is_empty() {
        return Err(bad_request(
            &s,
            "field `reason`: say why the approval is withdrawn".into(),
        ));
    }
    let by = recorded_by(&token, req.by.as_deref());
    let record = match s.store.revoke(seq, req.reason.trim(), &by, Utc::now()) {
        Ok(r) => r,
        Err(e @ RevokeError::NotFound(_)) => {
            return Err(ApiError(StatusCode::NOT_FOUND, e.to_string()));
        }
        Err(e @ RevokeError::AlreadyRevoked { .. }) => {
            return Err(ApiError(StatusCode::CONFLICT, e.to_string()));
        }
        Err(
            e @ (RevokeError::Baseline(_)
            | RevokeError::Revocation(_)
            | RevokeError::Campaign(_)
            | RevokeError::TrustedClient(_)),
        ) => {
            return Err(bad_request(&s, e.to_string()));
        }
        Err(RevokeError::Store(e)) => return Err(e.into()),
    };
    s.store.flush().await?;
    tracing::info!(revoked = seq, seq = record.seq, by, "approval revoked");
    Ok(Json(record))
}
