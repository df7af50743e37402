//! Who a Bluesky account is: its DID (from a handle or configured), its DID document from the
//! PLC directory or `did:web`, and from it the PDS that serves its repo and its signing key.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use super::api::{malformed, retry_after, xrpc_get};
use crate::{config::Account, platforms::check_data_endpoint_resolved, watch::SourceError};

/// Who the account is, per its DID document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub did: String,
    /// From `alsoKnownAs` (`at://HANDLE`); empty when there is none.
    pub handle: String,
    /// The `#atproto_pds` service endpoint.
    pub pds: Url,
    /// The `#atproto` verification method's `publicKeyMultibase`.
    pub signing_key: String,
    /// did:plc only: who may rewrite the identity.
    pub rotation_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct DidDocument {
    pub(super) id: String,
    #[serde(default, rename = "alsoKnownAs")]
    pub(super) also_known_as: Vec<String>,
    #[serde(default, rename = "verificationMethod")]
    pub(super) verification_method: Vec<VerificationMethod>,
    #[serde(default)]
    pub(super) service: Vec<Service>,
}

#[derive(Debug, Deserialize)]
pub(super) struct VerificationMethod {
    pub(super) id: String,
    #[serde(default, rename = "publicKeyMultibase")]
    pub(super) public_key_multibase: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Service {
    pub(super) id: String,
    #[serde(rename = "serviceEndpoint")]
    pub(super) service_endpoint: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct PlcData {
    #[serde(default, rename = "rotationKeys")]
    pub(super) rotation_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ResolvedHandle {
    pub(super) did: String,
}

/// The DID of `account_id`: itself when it is one, else the handle resolved at `base_url`.
pub async fn resolve_did(
    http: &reqwest::Client,
    base: &Url,
    account_id: &str,
) -> Result<String, SourceError> {
    let id = account_id.trim();
    if id.starts_with("did:") {
        return Ok(id.to_owned());
    }
    let nsid = "com.atproto.identity.resolveHandle";
    let resolved: Option<ResolvedHandle> =
        xrpc_get(http, base, nsid, &[("handle", id)], &mut None).await?;
    match resolved {
        Some(r) if r.did.starts_with("did:") => Ok(r.did),
        Some(r) => Err(malformed(nsid, format!("`{}` is not a DID", r.did))),
        None => Err(SourceError::Status {
            status: 400,
            what: format!("{nsid}: handle `{id}` not found"),
        }),
    }
}

/// Where a DID's document lives: the PLC directory, or the did:web host's well-known path.
pub fn did_document_url(plc: &Url, did: &str) -> Result<Url, SourceError> {
    if let Some(rest) = did.strip_prefix("did:web:") {
        // did:web:host%3Aport:path → https://host:port/path/did.json (no path: /.well-known).
        let mut parts = rest.split(':');
        let host = parts.next().unwrap_or_default().replace("%3A", ":");
        let path: Vec<&str> = parts.collect();
        let url = if path.is_empty() {
            format!("https://{host}/.well-known/did.json")
        } else {
            format!("https://{host}/{}/did.json", path.join("/"))
        };
        return Url::parse(&url).map_err(|e| malformed(did, e));
    }
    if !did.starts_with("did:plc:") {
        return Err(malformed(did, "only did:plc and did:web are supported"));
    }
    plc.join(&format!("./{did}")).map_err(|e| malformed(did, e))
}

pub(super) async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: Url,
    what: &str,
) -> Result<T, SourceError> {
    let resp = http.get(url).send().await?;
    let status = resp.status();
    if !status.is_success() {
        return Err(match status {
            StatusCode::TOO_MANY_REQUESTS => SourceError::RateLimited(
                retry_after(resp.headers()).unwrap_or(Duration::from_secs(60)),
            ),
            _ => SourceError::Status {
                status: status.as_u16(),
                what: what.into(),
            },
        });
    }
    resp.json().await.map_err(|e| malformed(what, e))
}

/// Resolves the DID document (and, for did:plc, the rotation keys) from the account's PLC
/// directory, or from the did:web host, which is data and must pass
/// [`check_data_endpoint_resolved`].
/// The PDS it names is returned unchecked: the caller reports it (a move is a profile drift)
/// and checks it before calling it.
pub async fn resolve_identity(
    http: &reqwest::Client,
    account: &Account,
    did: &str,
) -> Result<Identity, SourceError> {
    let plc = &account.plc_url();
    let url = did_document_url(plc, did)?;
    if did.starts_with("did:web:") {
        check_data_endpoint_resolved(account, &url)
            .await
            .map_err(|e| SourceError::Refused {
                what: format!("the did:web document of {did}"),
                detail: e.to_string(),
            })?;
    }
    let what = format!("DID document of {did}");
    let doc: DidDocument = get_json(http, url.clone(), &what).await?;
    if doc.id != did {
        return Err(malformed(&what, format!("document is for {}", doc.id)));
    }
    let endpoint = doc
        .service
        .iter()
        .find(|s| s.id == "#atproto_pds" || s.id == format!("{did}#atproto_pds"))
        .map(|s| s.service_endpoint.clone())
        .ok_or_else(|| malformed(&what, "no #atproto_pds service"))?;
    let pds = Url::parse(&endpoint).map_err(|e| malformed(&what, e))?;
    let handle = doc
        .also_known_as
        .iter()
        .find_map(|a| a.strip_prefix("at://"))
        .unwrap_or_default()
        .to_owned();
    let signing_key = doc
        .verification_method
        .iter()
        .find(|m| m.id == "#atproto" || m.id == format!("{did}#atproto"))
        .map(|m| m.public_key_multibase.clone())
        .unwrap_or_default();
    let rotation_keys = if did.starts_with("did:plc:") {
        let data_url = plc
            .join(&format!("./{did}/data"))
            .map_err(|e| malformed(did, e))?;
        let data: PlcData = get_json(http, data_url, &format!("PLC data of {did}")).await?;
        data.rotation_keys
    } else {
        Vec::new()
    };
    Ok(Identity {
        did: did.to_owned(),
        handle,
        pds,
        signing_key,
        rotation_keys,
    })
}
