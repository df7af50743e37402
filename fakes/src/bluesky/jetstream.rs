//! The fake Jetstream: a WebSocket of the watched DIDs' commits, identity and account events.

use super::*;

/// `wantedDids`/`wantedCollections` repeat, so the query is read as pairs.
pub(super) async fn subscribe(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let list = |k: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let dids = list("wantedDids");
    let collections = list("wantedCollections");
    let cursor: Option<i64> = pairs
        .iter()
        .find(|(n, _)| n == "cursor")
        .and_then(|(_, v)| v.parse().ok());
    {
        let mut inner = shared.inner.lock().expect("fake Bluesky lock");
        if !inner.stream_up {
            return (StatusCode::SERVICE_UNAVAILABLE, "jetstream unavailable").into_response();
        }
        inner.connects += 1;
        inner.subscribe_cursors.push(cursor);
    }
    ws.on_upgrade(move |socket| serve_stream(shared, socket, dids, collections, cursor))
}

pub(super) fn wanted(event: &Value, dids: &[String], collections: &[String]) -> bool {
    let did = event["did"].as_str().unwrap_or_default();
    if !dids.is_empty() && !dids.iter().any(|d| d == did) {
        return false;
    }
    // Identity and account events pass whatever the collections.
    match event["commit"]["collection"].as_str() {
        Some(c) => collections.is_empty() || collections.iter().any(|w| w == c),
        None => true,
    }
}

pub(super) async fn serve_stream(
    shared: Arc<Shared>,
    mut socket: WebSocket,
    dids: Vec<String>,
    collections: Vec<String>,
    cursor: Option<i64>,
) {
    let mut live = shared.events.subscribe();
    let mut cut = shared.cut.subscribe();
    cut.borrow_and_update();
    let backlog: Vec<(i64, Value)> = {
        let mut inner = shared.inner.lock().expect("fake Bluesky lock");
        inner.open_streams += 1;
        match cursor {
            Some(c) => inner
                .events
                .iter()
                .filter(|(t, _)| *t >= c)
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    };
    let mut last = 0;
    let mut ok = true;
    for (t, event) in backlog {
        last = t;
        if wanted(&event, &dids, &collections)
            && socket
                .send(Message::Text(event.to_string().into()))
                .await
                .is_err()
        {
            ok = false;
            break;
        }
    }
    while ok {
        ok = tokio::select! {
            _ = cut.changed() => false,
            e = live.recv() => match e {
                Ok((t, event)) if t > last => {
                    last = t;
                    !wanted(&event, &dids, &collections)
                        || socket.send(Message::Text(event.to_string().into())).await.is_ok()
                }
                Ok(_) => true,
                // A subscriber too slow for the buffer is cut, as Jetstream does.
                Err(_) => false,
            },
            m = socket.recv() => !matches!(m, Some(Ok(Message::Close(_))) | None | Some(Err(_))),
        };
    }
    shared.inner.lock().expect("fake Bluesky lock").open_streams -= 1;
    // Dropped without a close frame: what a lost connection looks like to the client.
    drop(socket);
}
