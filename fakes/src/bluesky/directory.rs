//! The fake PLC directory: DID documents and their audit data.

use super::*;

pub(super) fn document(did: &str, r: &Repo) -> Value {
    json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            "https://w3id.org/security/suites/secp256k1-2019/v1"
        ],
        "id": did,
        "alsoKnownAs": [format!("at://{}", r.handle)],
        "verificationMethod": [{
            "id": format!("{did}#atproto"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": r.signing_key,
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": r.pds,
        }]
    })
}

pub(super) async fn plc_document(
    State(shared): State<Arc<Shared>>,
    Path(did): Path<String>,
) -> Response {
    let inner = shared.inner.lock().expect("fake Bluesky lock");
    match inner.repos.get(&did) {
        Some(r) => Json(document(&did, r)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": format!("DID not registered: {did}")})),
        )
            .into_response(),
    }
}

pub(super) async fn plc_data(
    State(shared): State<Arc<Shared>>,
    Path(did): Path<String>,
) -> Response {
    let inner = shared.inner.lock().expect("fake Bluesky lock");
    match inner.repos.get(&did) {
        Some(r) => Json(json!({
            "did": did,
            "verificationMethods": {"atproto": format!("did:key:{}", r.signing_key)},
            "rotationKeys": r.rotation_keys,
            "alsoKnownAs": [format!("at://{}", r.handle)],
            "services": {"atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": r.pds}},
        }))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": format!("DID not registered: {did}")})),
        )
            .into_response(),
    }
}
