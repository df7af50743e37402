//! Bluesky takedown: an app-password session on the account's PDS, then `deleteRecord`.
//!
//! The PDS is found the way the source finds it (DID document), so a takedown follows a moved
//! account. The record is looked up first because `deleteRecord` succeeds on a record that is not
//! there: without the check a post someone else removed would read "deleted".

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{
    api::{POST, XrpcError, describe, xrpc_url},
    identity::{resolve_did, resolve_identity},
};
use crate::{config::Account, model::TakedownOutcome, watch::SourceError};

#[derive(Debug, Deserialize)]
struct Session {
    #[serde(rename = "accessJwt")]
    access_jwt: String,
}

fn failed(detail: impl Into<String>) -> TakedownOutcome {
    TakedownOutcome::Failed {
        detail: detail.into(),
    }
}

fn from_source(e: SourceError) -> TakedownOutcome {
    match e {
        SourceError::Unauthorized { status } => TakedownOutcome::Forbidden {
            detail: format!("the PDS refused us ({status})"),
        },
        e => failed(e.to_string()),
    }
}

async fn body(resp: reqwest::Response) -> XrpcError {
    resp.json().await.unwrap_or_default()
}

/// Deletes the post `post_id` (its record key) from the account's repository.
pub async fn delete_post(
    http: &reqwest::Client,
    account: &Account,
    post_id: &str,
) -> TakedownOutcome {
    let Some(password) = &account.write_token else {
        return failed(format!(
            "no write_token (app password) configured for {}",
            account.name
        ));
    };
    let did = match resolve_did(http, &account.base_url, &account.account_id).await {
        Ok(did) => did,
        Err(e) => return from_source(e),
    };
    let identity = match resolve_identity(http, &account.plc_url(), &did).await {
        Ok(i) => i,
        Err(e) => return from_source(e),
    };
    let pds = identity.pds;
    let url = |nsid: &str| xrpc_url(&pds, nsid);

    let nsid = "com.atproto.server.createSession";
    let Ok(session_url) = url(nsid) else {
        return failed(format!("bad PDS endpoint {pds}"));
    };
    let resp = http
        .post(session_url)
        .json(&json!({ "identifier": did, "password": password.expose() }))
        .send()
        .await;
    let session: Session = match resp {
        Err(e) => return failed(format!("{nsid}: {e}")),
        Ok(r) if r.status().is_success() => match r.json().await {
            Ok(s) => s,
            Err(e) => return failed(format!("{nsid}: unreadable answer ({e})")),
        },
        Ok(r) => {
            let status = r.status();
            let what = describe(nsid, &body(r).await);
            return match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => TakedownOutcome::Forbidden {
                    detail: format!("{what}: the app password was refused ({status})"),
                },
                _ => failed(format!("{what} answered {status}")),
            };
        }
    };

    let nsid = "com.atproto.repo.getRecord";
    let Ok(get_url) = url(nsid) else {
        return failed(format!("bad PDS endpoint {pds}"));
    };
    let resp = http
        .get(get_url)
        .query(&[
            ("repo", did.as_str()),
            ("collection", POST),
            ("rkey", post_id),
        ])
        .send()
        .await;
    match resp {
        Err(e) => return failed(format!("{nsid}: {e}")),
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            let status = r.status();
            let b = body(r).await;
            if b.error == "RecordNotFound" || status == StatusCode::NOT_FOUND {
                return TakedownOutcome::AlreadyGone;
            }
            return failed(format!("{} answered {status}", describe(nsid, &b)));
        }
    }

    let nsid = "com.atproto.repo.deleteRecord";
    let Ok(delete_url) = url(nsid) else {
        return failed(format!("bad PDS endpoint {pds}"));
    };
    let resp = http
        .post(delete_url)
        .bearer_auth(&session.access_jwt)
        .json(&json!({ "repo": did, "collection": POST, "rkey": post_id }))
        .send()
        .await;
    match resp {
        Err(e) => failed(format!("{nsid}: {e}")),
        Ok(r) if r.status().is_success() => TakedownOutcome::Deleted,
        Ok(r) => {
            let status = r.status();
            let what = describe(nsid, &body(r).await);
            match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => TakedownOutcome::Forbidden {
                    detail: format!("{what} ({status})"),
                },
                _ => failed(format!("{what} answered {status}")),
            }
        }
    }
}
