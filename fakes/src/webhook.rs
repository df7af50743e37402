//! A loopback webhook receiver: records every request's headers and body, answers 200 unless
//! told to fail the next one. Also takes the GETs of the heartbeat.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

struct Inner {
    received: Vec<Received>,
    requests: usize,
    failures: VecDeque<u16>,
    /// While true, requests are counted on arrival and answered only once released.
    hold: tokio::sync::watch::Sender<bool>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            received: Vec::new(),
            requests: 0,
            failures: VecDeque::new(),
            hold: tokio::sync::watch::channel(false).0,
        }
    }
}

#[derive(Clone)]
pub struct FakeReceiver {
    url: url::Url,
    inner: Arc<Mutex<Inner>>,
}

impl FakeReceiver {
    pub async fn start() -> std::io::Result<FakeReceiver> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(receive).with_state(inner.clone());
        // Never stopped: the sender is dropped at once, so it serves until the runtime ends.
        super::spawn_server(
            listener,
            app,
            tokio::sync::watch::channel(false).1,
            "fake webhook receiver",
        );
        let url = url::Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?;
        Ok(FakeReceiver { url, inner })
    }

    /// The receiver's URL with `path` (e.g. `hook`).
    pub fn url(&self, path: &str) -> url::Url {
        self.url.join(path).expect("a relative path")
    }

    /// Requests answered 2xx, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Every request, whatever the answer.
    pub fn requests(&self) -> usize {
        self.inner.lock().unwrap().requests
    }

    /// Answers the next request with `status` instead of 200.
    pub fn fail_next(&self, status: u16) {
        self.inner.lock().unwrap().failures.push_back(status);
    }

    /// Holds every request (counted as it arrives, not answered) until [`FakeReceiver::release`]:
    /// a receiver slow to answer.
    pub fn hold(&self) {
        self.inner.lock().unwrap().hold.send_replace(true);
    }

    /// Answers held and later requests.
    pub fn release(&self) {
        self.inner.lock().unwrap().hold.send_replace(false);
    }

    pub async fn wait_until(&self, timeout: Duration, f: impl Fn(&Self) -> bool) -> bool {
        super::wait_until(self, timeout, f).await
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut held = {
        let mut inner = inner.lock().unwrap();
        inner.requests += 1;
        inner.hold.subscribe()
    };
    // The sender lives in `inner`, which outlives this request: the wait ends on release.
    let _ = held.wait_for(|held| !*held).await;
    let mut inner = inner.lock().unwrap();
    if let Some(status) = inner.failures.pop_front() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, "forced failure").into_response();
    }
    inner.received.push(Received {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        at: Instant::now(),
    });
    (StatusCode::OK, "ok").into_response()
}
