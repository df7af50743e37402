//! The approvals API refuses what it should, with the reason.

use crate::support::*;

async fn post_raw(app: &TestApp, token: Option<&str>, body: &str) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/approvals", app.api))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn approvals_need_the_token_and_a_valid_body() {
    let app = spawn_app().await;
    let good = format!(r#"{{"account":"{ACCOUNT}","text":"hello"}}"#);
    assert_eq!(post_raw(&app, None, &good).await.0, 401);
    assert_eq!(post_raw(&app, Some("wrong"), &good).await.0, 401);

    let (status, body) = post_raw(
        &app,
        Some(API_TOKEN),
        r#"{"account":"nope","text":"hello"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("field `account`"), "{body}");
    let (status, body) = post_raw(
        &app,
        Some(API_TOKEN),
        &format!(r#"{{"account":"{ACCOUNT}"}}"#),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("missing field `text`"), "{body}");
    let (status, body) = post_raw(
        &app,
        Some(API_TOKEN),
        &format!(r#"{{"account":"{ACCOUNT}","text":"x","txet":1}}"#),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("unknown field `txet`"), "{body}");
    let huge = format!(
        r#"{{"account":"{ACCOUNT}","text":"{}"}}"#,
        "a".repeat(100_000)
    );
    assert_eq!(post_raw(&app, Some(API_TOKEN), &huge).await.0, 413);
    assert_eq!(
        app.store.log_len().unwrap() - baseline_entries(&app),
        0,
        "nothing was recorded"
    );

    let (status, body) = post_raw(&app, Some(API_TOKEN), &good).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.store.log_len().unwrap() - baseline_entries(&app), 1);

    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/incidents", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let health = reqwest::get(format!("{}/healthz", app.api)).await.unwrap();
    assert_eq!(health.status(), 200);
    app.stop().await;
}

fn baseline_entries(app: &TestApp) -> u64 {
    app.store.baselines(ACCOUNT).unwrap().len() as u64
}
