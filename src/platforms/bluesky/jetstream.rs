//! Bluesky push: Jetstream, a WebSocket of the account's repo commits, identity and account
//! events, filtered to the account's DID. The poller keeps running beside it as a backstop.

use std::{sync::Arc, time::Duration};

use chrono::{TimeZone, Utc};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::{
    api::{POST, PROFILE, post, profile_fields, status_text},
    identity::resolve_identity,
    state::Watch,
};
use crate::model::ObservationKind;

/// Reconnect waits: short, because every second down is a second of polling latency.
pub(super) const STREAM_BACKOFF_MIN: Duration = Duration::from_millis(250);
pub(super) const STREAM_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How far back a reconnect resumes, so an event in flight at the drop is not lost.
pub(super) const CURSOR_REWIND_US: i64 = 2_000_000;
/// A silent connection is pinged this often so a dead peer is noticed.
pub(super) const PING_EVERY: Duration = Duration::from_secs(20);

/// One Jetstream event, as the service sends it.
#[derive(Debug, Deserialize)]
pub struct JetstreamEvent {
    pub did: String,
    pub time_us: i64,
    pub kind: String,
    #[serde(default)]
    pub commit: Option<JetstreamCommit>,
    #[serde(default)]
    pub identity: Option<JetstreamIdentity>,
    #[serde(default)]
    pub account: Option<JetstreamAccount>,
}

#[derive(Debug, Deserialize)]
pub struct JetstreamCommit {
    pub operation: String,
    pub collection: String,
    pub rkey: String,
    #[serde(default)]
    pub record: Option<Value>,
    #[serde(default)]
    pub cid: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct JetstreamIdentity {
    #[serde(default)]
    pub handle: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct JetstreamAccount {
    pub active: bool,
    #[serde(default)]
    pub status: Option<String>,
}

/// The subscribe URL for this account, resuming from `cursor` when there is one.
pub fn subscribe_url(base: &Url, did: &str, cursor: Option<i64>) -> Url {
    let mut url = base.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("wantedDids", did);
        q.append_pair("wantedCollections", POST);
        q.append_pair("wantedCollections", PROFILE);
        if let Some(c) = cursor {
            q.append_pair("cursor", &(c - CURSOR_REWIND_US).max(0).to_string());
        }
    }
    url
}

pub(super) fn tls_connector() -> Option<tokio_tungstenite::Connector> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Some(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}

/// Keeps the Jetstream connection up until shutdown, turning events into observations.
pub(super) async fn stream(watch: Arc<Watch>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let name = watch.name().to_owned();
    let health = watch.ctx.health.clone();
    let base = watch.account.jetstream_url();
    let connector = tls_connector();
    let mut wait = STREAM_BACKOFF_MIN;
    health.stream_down(&name, "connecting".into());
    loop {
        let cursor = watch.state.lock().await.stream_cursor;
        let url = subscribe_url(&base, &watch.did, cursor);
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            None,
            true,
            connector.clone(),
        );
        let connected = tokio::select! {
            _ = watch.ctx.shutdown.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(10), connect) => r,
        };
        match connected {
            Ok(Ok((mut ws, _))) => {
                tracing::info!(account = %name, "jetstream connected");
                health.stream_up(&name);
                // Connected from "now": a drop before the first event still resumes from here.
                watch
                    .state
                    .lock()
                    .await
                    .stream_cursor
                    .get_or_insert_with(|| Utc::now().timestamp_micros());
                wait = STREAM_BACKOFF_MIN;
                let mut ping = tokio::time::interval(PING_EVERY);
                ping.tick().await;
                let why = loop {
                    let msg = tokio::select! {
                        _ = watch.ctx.shutdown.cancelled() => {
                            let _ = ws.close(None).await;
                            return;
                        }
                        _ = ping.tick() => {
                            if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                                break e.to_string();
                            }
                            continue;
                        }
                        m = ws.next() => m,
                    };
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            health.stream_event(&name);
                            match serde_json::from_str::<JetstreamEvent>(text.as_str()) {
                                Ok(event) => {
                                    if !handle(&watch, event).await {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(account = %name, error = %e, "unreadable jetstream event")
                                }
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            break frame.map_or_else(
                                || "closed by the server".to_owned(),
                                |f| format!("closed by the server ({})", f.reason),
                            );
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break e.to_string(),
                        None => break "connection ended".to_owned(),
                    }
                };
                tracing::warn!(account = %name, reason = %why, "jetstream disconnected");
                health.stream_down(&name, why);
            }
            Ok(Err(e)) => {
                tracing::warn!(account = %name, error = %e, "jetstream connect failed");
                health.stream_down(&name, e.to_string());
            }
            Err(_) => health.stream_down(&name, "connect timed out after 10s".into()),
        }
        if !watch.ctx.sleep(wait).await {
            return;
        }
        wait = (wait * 2).min(STREAM_BACKOFF_MAX);
    }
}

/// Turns one event into observations. False when the pipeline is gone.
pub(super) async fn handle(watch: &Watch, event: JetstreamEvent) -> bool {
    if event.did != watch.did {
        return true;
    }
    let at = Utc
        .timestamp_micros(event.time_us)
        .single()
        .unwrap_or_else(Utc::now);
    let mut state = watch.state.lock().await;
    let alive = match (
        event.kind.as_str(),
        &event.commit,
        &event.identity,
        &event.account,
    ) {
        ("commit", Some(c), _, _) if c.collection == POST => {
            match (c.operation.as_str(), &c.record) {
                ("create" | "update", Some(record)) => {
                    let edited = (c.operation == "update").then_some(at);
                    let p = post(&watch.did, &c.rkey, record, state.history(&c.rkey), edited);
                    watch.ctx.emit(watch.name(), ObservationKind::Post(p)).await
                }
                ("delete", _) => {
                    let deleted = ObservationKind::PostDeleted {
                        post_id: c.rkey.clone(),
                        deleted_at: at,
                    };
                    watch.ctx.emit(watch.name(), deleted).await
                }
                _ => true,
            }
        }
        ("commit", Some(c), _, _) if c.collection == PROFILE && c.rkey == "self" => {
            let record = (c.operation != "delete")
                .then_some(c.record.as_ref())
                .flatten();
            state.record = profile_fields(record, c.cid.as_deref());
            watch.emit_profile(&state).await
        }
        ("identity", _, Some(id), _) => {
            // The event says something changed; the DID document says what.
            match resolve_identity(&watch.ctx.http, &watch.account, &watch.did).await {
                Ok(identity) => state.set_identity(&identity),
                Err(e) => {
                    tracing::warn!(account = %watch.name(), error = %e, "cannot resolve the DID after an identity event");
                    if let Some(handle) = &id.handle {
                        state.identity.insert("handle".into(), handle.clone());
                    }
                }
            }
            watch.emit_profile(&state).await
        }
        ("account", _, _, Some(a)) => {
            state.status = status_text(a.active, a.status.as_deref());
            watch.emit_profile(&state).await
        }
        _ => true,
    };
    if !alive {
        return false;
    }
    state.stream_cursor = Some(event.time_us);
    drop(state);
    watch
        .checkpoint(&watch.stream_key, event.time_us.to_string())
        .await
}
