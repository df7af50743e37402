//! The fake X's webhooks as X documents them: the CRC answer it accepts, loopback-only URLs,
//! and signed deliveries of a subscribed user's posts in the Activity API's envelope.

use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::HeaderMap,
    routing::get,
};
use serde_json::{Value, json};
use tocsin_fakes::x::{FakeX, signature};

const BEARER: &str = "app-bearer";
const SECRET: &str = "consumer-secret";

type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A webhook answering the CRC under `key`, recording each delivery (body, signature).
async fn webhook(key: &'static str) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/hooks/x",
            get(
                move |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    Json(json!({ "response_token": signature(key, q["crc_token"].as_bytes()) }))
                },
            )
            .post(
                |State(seen): State<Seen>, headers: HeaderMap, body: Bytes| async move {
                    let sig = headers
                        .get("x-twitter-webhooks-signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    seen.lock()
                        .unwrap()
                        .push((String::from_utf8_lossy(&body).into_owned(), sig));
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/x", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[test]
fn the_signature_is_base64_hmac_sha256_as_x_documents() {
    // `printf token | openssl dgst -sha256 -hmac secret -binary | base64`
    assert_eq!(
        signature("secret", b"token"),
        "sha256=6UERDj0r/oJiHw4+FDRzDXMF0QbF9oyHFl0LJ6RhGko="
    );
}

#[tokio::test]
async fn registration_needs_the_crc_answer_and_a_loopback_url() {
    let x = FakeX::start(BEARER).await.unwrap();
    x.set_consumer_secret(SECRET);
    let (wrong, _) = webhook("another-secret").await;
    let (status, body) = x.register_webhook(&wrong).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("CrcValidationFailed")
    );
    let (status, _) = x
        .register_webhook("https://hooks.example.com/hooks/x")
        .await;
    assert_eq!(status, 400, "only loopback URLs");
    let (right, _) = webhook(SECRET).await;
    let (status, body) = x.register_webhook(&right).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["valid"], true);
    assert_eq!(body["data"]["url"], right.as_str());
}

#[tokio::test]
async fn a_subscribed_users_post_is_delivered_signed() {
    let x = FakeX::start(BEARER).await.unwrap();
    x.set_consumer_secret(SECRET);
    x.add_user("42", "examplecorp", "ExampleCorp", "", None);
    let (url, seen) = webhook(SECRET).await;
    let (_, body) = x.register_webhook(&url).await;
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let resp = reqwest::Client::new()
        .post(x.url().join("2/activity/subscriptions").unwrap())
        .bearer_auth(BEARER)
        .json(&json!({"event_type": "post.create", "filter": {"user_id": "42"}, "webhook_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let post = x.publish("42", "Hello https://example.com/a");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no delivery");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (body, sig) = seen.lock().unwrap()[0].clone();
    assert_eq!(sig.unwrap(), signature(SECRET, body.as_bytes()));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["event_type"], "post.create");
    assert_eq!(v["data"]["filter"]["user_id"], "42");
    assert_eq!(v["data"]["payload"]["id"], post.as_str());
    assert_eq!(
        v["data"]["payload"]["entities"]["urls"][0]["expanded_url"],
        "https://example.com/a"
    );
}
