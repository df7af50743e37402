//! Bluesky takedown: an app-password session on the account's PDS, then `deleteRecord`.
//!
//! The app password goes only to the pinned PDS: `accounts[].pds_url`, else the `pds` of the
//! approved profile baseline. The DID document is read at press time and must still name that
//! PDS: an account taken over at the platform and moved to the intruder's PDS would otherwise
//! hand them the password and let them answer "not found" for a post that stays up. A PDS
//! learned from data (the baseline) must also pass [`check_data_endpoint_resolved`].
//!
//! The record is looked up first because `deleteRecord` succeeds on a record that is not there:
//! without the check a post someone else removed would read "deleted". A PDS's "not found" is
//! confirmed with the AppView (`app.bsky.feed.getPosts` at `accounts[].appview_url`), the view
//! readers see, before it counts as gone: otherwise the outcome is "unconfirmed".

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::{
    api::{POST, PostViews, XrpcError, describe, xrpc_get, xrpc_url},
    identity::{resolve_did, resolve_identity},
};
use crate::{
    config::Account,
    model::TakedownOutcome,
    platforms::{check_data_endpoint, check_data_endpoint_resolved},
    watch::SourceError,
};

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

fn refused(detail: impl Into<String>) -> TakedownOutcome {
    TakedownOutcome::Refused {
        detail: detail.into(),
    }
}

/// The PDS the app password may go to: `accounts[].pds_url`, else the approved baseline's.
fn pinned_pds(account: &Account, baseline: &BTreeMap<String, String>) -> Result<Url, String> {
    if let Some(url) = &account.pds_url {
        return Ok(url.clone());
    }
    let Some(value) = baseline.get("pds").filter(|v| !v.is_empty()) else {
        return Err(format!(
            "no approved PDS for {} yet (no baseline; set accounts[].pds_url)",
            account.name
        ));
    };
    let url = Url::parse(value).map_err(|e| format!("the approved PDS `{value}` ({e})"))?;
    check_data_endpoint(account, &url).map_err(|e| format!("the approved PDS {e}"))?;
    Ok(url)
}

/// Two spellings of one endpoint (`https://h/` and `https://h`) are the same PDS.
fn same_endpoint(a: &Url, b: &Url) -> bool {
    a.as_str().trim_end_matches('/') == b.as_str().trim_end_matches('/')
}

/// Deletes the post `post_id` (its record key) from the account's repository, on the pinned
/// PDS only. `baseline` is the account's approved profile baseline.
pub async fn delete_post(
    http: &reqwest::Client,
    account: &Account,
    post_id: &str,
    baseline: &BTreeMap<String, String>,
) -> TakedownOutcome {
    let Some(password) = &account.write_token else {
        return failed(format!(
            "no write_token (app password) configured for {}",
            account.name
        ));
    };
    let pds = match pinned_pds(account, baseline) {
        Ok(pds) => pds,
        Err(why) => return refused(why),
    };
    let did = match resolve_did(http, &account.base_url, &account.account_id).await {
        Ok(did) => did,
        Err(e) => return from_source(e),
    };
    let identity = match resolve_identity(http, account, &did).await {
        Ok(i) => i,
        Err(e) => return from_source(e),
    };
    if !same_endpoint(&identity.pds, &pds) {
        return refused(format!(
            "the DID document now names the PDS {}, not the approved {pds}: possibly taken over; \
             approve the move or delete it by hand",
            identity.pds
        ));
    }
    if account.pds_url.is_none()
        && let Err(e) = check_data_endpoint_resolved(account, &pds).await
    {
        return refused(format!("the approved PDS {e}"));
    }
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
                return confirm_gone(http, account, &did, post_id).await;
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

/// The PDS says the post is not there: asks the AppView whether readers still see it.
async fn confirm_gone(
    http: &reqwest::Client,
    account: &Account,
    did: &str,
    post_id: &str,
) -> TakedownOutcome {
    let uri = format!("at://{did}/{POST}/{post_id}");
    let appview = account.appview_url();
    let nsid = "app.bsky.feed.getPosts";
    let views: Result<Option<PostViews>, SourceError> =
        xrpc_get(http, &appview, nsid, &[("uris", uri.as_str())], &mut None).await;
    let unconfirmed = |why: String| TakedownOutcome::Unconfirmed {
        detail: format!("the PDS answered RecordNotFound but {why}"),
    };
    match views {
        Ok(Some(v)) if v.posts.iter().any(|p| p.uri == uri) => {
            unconfirmed(format!("the AppView {appview} still shows it"))
        }
        Ok(Some(_)) => TakedownOutcome::AlreadyGone,
        Ok(None) => unconfirmed(format!("the AppView {appview} did not answer {nsid}")),
        Err(e) => unconfirmed(format!("the AppView {appview} could not confirm it ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(pds_url: Option<&str>) -> Account {
        let mut a: Account = toml::from_str(
            r#"
name = "sky"
platform = "bluesky"
base_url = "https://bsky.social"
account_id = "example.bsky.social"
"#,
        )
        .unwrap();
        a.pds_url = pds_url.map(|u| Url::parse(u).unwrap());
        a
    }

    #[test]
    fn the_pds_is_pinned_by_configuration_then_by_the_approved_baseline() {
        let baseline = BTreeMap::from([(
            "pds".to_owned(),
            "https://morel.us-east.host.bsky.network".to_owned(),
        )]);
        let pinned = pinned_pds(&account(None), &baseline).unwrap();
        assert!(same_endpoint(
            &pinned,
            &Url::parse("https://morel.us-east.host.bsky.network/").unwrap()
        ));
        let configured = account(Some("https://pds.example.com"));
        assert_eq!(
            pinned_pds(&configured, &baseline).unwrap().as_str(),
            "https://pds.example.com/"
        );
        let none = pinned_pds(&account(None), &BTreeMap::new()).unwrap_err();
        assert!(none.contains("no approved PDS"), "{none}");
        let private = BTreeMap::from([("pds".to_owned(), "https://10.0.0.7".to_owned())]);
        let refused = pinned_pds(&account(None), &private).unwrap_err();
        assert!(refused.contains("not on a public host"), "{refused}");
    }
}
