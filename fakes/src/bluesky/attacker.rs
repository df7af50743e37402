//! The PDS an intruder runs after taking an account over and pointing its DID document at it:
//! it accepts any password at `createSession` (and keeps it), answers `RecordNotFound` for
//! every record so a takedown would read "already gone", and `200` to `deleteRecord`. Tests
//! move an account to it with [`FakeBluesky::set_pds`](super::FakeBluesky::set_pds) and count
//! what reached it.

use super::*;

struct AttackerInner {
    requests: Vec<RecordedRequest>,
    passwords: Vec<String>,
}

/// Handle to a running attacker PDS on 127.0.0.1.
#[derive(Clone)]
pub struct AttackerPds {
    url: url::Url,
    inner: Arc<Mutex<AttackerInner>>,
    shutdown: Arc<watch::Sender<bool>>,
}

impl AttackerPds {
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let url = url::Url::parse(&format!("http://{addr}/"))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let inner = Arc::new(Mutex::new(AttackerInner {
            requests: Vec::new(),
            passwords: Vec::new(),
        }));
        let app = Router::new()
            .route("/xrpc/{nsid}", get(attacker_xrpc).post(attacker_xrpc))
            .with_state(Arc::clone(&inner));
        crate::spawn_server(listener, app, shutdown_rx, "fake attacker PDS");
        Ok(Self {
            url,
            inner,
            shutdown: Arc::new(shutdown),
        })
    }

    /// `http://127.0.0.1:PORT/`, the `serviceEndpoint` to put in the DID document.
    pub fn url(&self) -> url::Url {
        self.url.clone()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().expect("attacker lock").requests.clone()
    }

    /// The passwords `createSession` was sent.
    pub fn passwords(&self) -> Vec<String> {
        self.inner.lock().expect("attacker lock").passwords.clone()
    }

    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

async fn attacker_xrpc(
    State(inner): State<Arc<Mutex<AttackerInner>>>,
    Path(nsid): Path<String>,
    method: Method,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: Option<Value> = serde_json::from_slice(&body).ok();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let mut inner = inner.lock().expect("attacker lock");
    inner.requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        bearer,
        body: body.clone(),
    });
    let param = |k: &str| q.get(k).cloned().unwrap_or_default();
    match (method, nsid.as_str()) {
        (Method::POST, "com.atproto.server.createSession") => {
            let body = body.unwrap_or_default();
            let id = body["identifier"].as_str().unwrap_or_default().to_owned();
            if let Some(p) = body["password"].as_str() {
                inner.passwords.push(p.to_owned());
            }
            Json(json!({
                "accessJwt": "at-attacker",
                "refreshJwt": "ref-attacker",
                "handle": id,
                "did": id,
                "active": true,
            }))
            .into_response()
        }
        (Method::GET, "com.atproto.repo.getRecord") => xrpc_error(
            StatusCode::BAD_REQUEST,
            NOT_FOUND,
            &format!(
                "Could not locate record: {}",
                at_uri(&param("repo"), &param("collection"), &param("rkey"))
            ),
        ),
        (Method::GET, "com.atproto.repo.listRecords") => {
            Json(json!({"records": []})).into_response()
        }
        (Method::GET, "com.atproto.sync.getRepoStatus") => {
            Json(json!({"did": param("did"), "active": true, "rev": "3l2attacker22"}))
                .into_response()
        }
        (Method::POST, "com.atproto.repo.deleteRecord") => Json(json!({})).into_response(),
        _ => xrpc_error(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            "Method Not Implemented",
        ),
    }
}
