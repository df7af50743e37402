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

/// Every route the router serves, as (method, path template). The OpenAPI test holds the
/// document to this list, and the token test walks it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/approvals"),
    ("post", "/api/v1/approvals"),
    ("post", "/api/v1/approvals/{seq}/revoke"),
    ("get", "/api/v1/incidents"),
    ("get", "/api/v1/incidents/{id}"),
    ("get", "/api/v1/accounts"),
    ("get", "/api/v1/timeline"),
];

fn approval(list: &serde_json::Value, seq: u64) -> serde_json::Value {
    list["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["seq"] == seq)
        .cloned()
        .unwrap_or_else(|| panic!("entry {seq} not listed in {list}"))
}

#[tokio::test]
async fn approvals_are_listed_and_a_revoked_one_no_longer_suppresses_the_page() {
    let app = spawn_app().await;
    let text = "Our launch is live: https://example.com/launch";
    let (status, added) = app
        .api_post(
            "/api/v1/approvals",
            serde_json::json!({ "account": ACCOUNT, "text": text, "note": "launch" }),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let seq = added["seq"].as_u64().unwrap();

    let (status, list) = app.api_get("/api/v1/approvals").await;
    assert_eq!(status, 200, "{list}");
    let listed = approval(&list, seq);
    assert_eq!(listed["revoked"], false);
    assert_eq!(listed["entry"]["type"], "approved_post");
    assert_eq!(listed["entry"]["note"], "launch");
    assert_eq!(listed["hash"], added["hash"]);
    let baseline_seq = list["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["entry"]["type"] == "baseline")
        .map(|a| a["seq"].as_u64().unwrap())
        .expect("the first poll recorded the profile as baseline");
    let (status, filtered) = app
        .api_get(&format!("/api/v1/approvals?account={ACCOUNT}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(filtered, list, "every entry is about the one account");
    let (status, body) = app.api_get("/api/v1/approvals?account=nope").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("`account`"),
        "{body}"
    );
    let (status, body) = app.api_get("/api/v1/approvals?acount=x").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("`acount`"),
        "{body}"
    );

    let revoke = |seq: String, body: serde_json::Value| {
        let app = &app;
        async move {
            app.api_post(&format!("/api/v1/approvals/{seq}/revoke"), body)
                .await
        }
    };
    let (status, body) = revoke(seq.to_string(), serde_json::json!({ "reason": "  " })).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("field `reason`"),
        "{body}"
    );
    let (status, body) = revoke(seq.to_string(), serde_json::json!({})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("missing field `reason`"),
        "{body}"
    );
    let (status, body) = revoke("x".into(), serde_json::json!({ "reason": "r" })).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("path `seq`"),
        "{body}"
    );
    let (status, body) = revoke("9999".into(), serde_json::json!({ "reason": "r" })).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = revoke(
        baseline_seq.to_string(),
        serde_json::json!({ "reason": "r" }),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("a baseline is changed by approving a new value"),
        "{body}"
    );

    let (status, record) = revoke(
        seq.to_string(),
        serde_json::json!({ "reason": "the launch moved", "by": "carol" }),
    )
    .await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["entry"]["type"], "revocation");
    assert_eq!(record["entry"]["seq"], seq);
    assert_eq!(record["entry"]["reason"], "the launch moved");
    assert_eq!(
        record["entry"]["by"], "api",
        "the token's name, not the body's"
    );
    assert_eq!(
        record["prev"],
        approval(&list, record["seq"].as_u64().unwrap() - 1)["hash"]
    );
    let (status, body) = revoke(seq.to_string(), serde_json::json!({ "reason": "again" })).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("already revoked"),
        "{body}"
    );

    let (_, list) = app.api_get("/api/v1/approvals").await;
    let listed = approval(&list, seq);
    assert_eq!(listed["revoked"], true);
    assert_eq!(listed["revoked_by"], record["seq"]);

    app.publish(text);
    until(
        || !app.bot.sent().is_empty(),
        "the page for the revoked post",
    )
    .await;
    assert!(
        app.bot.sent()[0]
            .text
            .contains("https://example.com/launch"),
        "{}",
        app.bot.sent()[0].text
    );
    let report = app.store.verify_log().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    app.stop().await;
}

#[tokio::test]
async fn incidents_filter_by_state_and_one_shows_its_timeline() {
    let app = spawn_app().await;
    let post = app.publish("giveaway! https://evil.example/claim");
    until(|| !app.bot.sent().is_empty(), "the page").await;
    let id = app.incident_by_object(&post).unwrap().id;

    let ids = |body: &serde_json::Value| -> Vec<u64> {
        body["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_u64().unwrap())
            .collect()
    };
    let (status, all) = app.api_get("/api/v1/incidents").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&all), vec![id]);
    assert_eq!(
        ids(&app.api_get("/api/v1/incidents?state=open").await.1),
        vec![id]
    );
    assert!(ids(&app.api_get("/api/v1/incidents?state=acked").await.1).is_empty());
    let (status, body) = app.api_get("/api/v1/incidents?state=closed").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("`state`"),
        "{body}"
    );

    app.bot
        .push_command(CHAT, &responder(), &format!("/ack {id}"));
    until(
        || app.store.incident(id).unwrap().unwrap().state == tocsin::model::State::Acked,
        "the ack",
    )
    .await;
    assert_eq!(
        ids(&app.api_get("/api/v1/incidents?state=acked").await.1),
        vec![id]
    );
    assert!(ids(&app.api_get("/api/v1/incidents?state=open").await.1).is_empty());
    assert!(ids(&app.api_get("/api/v1/incidents?state=resolved").await.1).is_empty());

    let (status, one) = app.api_get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], id);
    assert_eq!(one["state"], "acked");
    let actions: Vec<&str> = one["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.starts_with(&["opened"]), "{actions:?}");
    assert!(actions.contains(&"acked"), "{actions:?}");
    let (status, body) = app.api_get("/api/v1/incidents/999").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("#999"), "{body}");
    assert_eq!(app.api_get("/api/v1/incidents/abc").await.0, 400);
    app.stop().await;
}

#[tokio::test]
async fn accounts_report_each_source_and_its_incidents() {
    let app = spawn_app().await;
    let post = app.publish("not ours https://evil.example/x");
    until(|| app.incident_by_object(&post).is_some(), "the incident").await;
    let (status, body) = app.api_get("/api/v1/accounts").await;
    assert_eq!(status, 200, "{body}");
    let accounts = body["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{body}");
    let a = &accounts[0];
    assert_eq!(a["name"], ACCOUNT);
    assert_eq!(a["platform"], "mastodon");
    assert_eq!(a["base_url"], app.masto.url().as_str());
    assert!(a["polls"].as_u64().unwrap() >= 2, "{a}");
    assert_eq!(a["errors"], 0);
    assert!(a["last_success"].is_string(), "{a}");
    assert!(a["last_error"].is_null(), "{a}");
    assert_eq!(a["open_incidents"], 1);
    assert_eq!(a["acked_incidents"], 0);
    app.stop().await;
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let app = spawn_app().await;
    // No token: the document is public.
    let resp = reqwest::get(format!("{}/api/v1/openapi.json", app.api))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in ROUTES {
        let op = &paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} missing from the document"))[*method];
        assert!(op.is_object(), "{method} {path} missing from the document");
        assert!(
            op["responses"].is_object(),
            "{method} {path} has no responses"
        );
        let protected = path.starts_with("/api/v1/") && *path != "/api/v1/openapi.json";
        assert_eq!(
            op["security"] == serde_json::json!([{ "bearer": [] }]),
            protected,
            "{method} {path}: bearer security"
        );
        if protected {
            assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
        }
        if *method == "post" {
            assert!(
                op["requestBody"].is_object(),
                "{method} {path}: request body"
            );
        }
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "the document lists only served routes"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc, tocsin::http::openapi_document());
    app.stop().await;
}

#[tokio::test]
async fn every_api_route_needs_the_token() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    for (method, path) in ROUTES {
        if !path.starts_with("/api/v1/") || *path == "/api/v1/openapi.json" {
            continue;
        }
        let url = format!(
            "{}{}",
            app.api,
            path.replace("{seq}", "0").replace("{id}", "1")
        );
        for token in [None, Some("wrong"), Some("")] {
            let mut req = match *method {
                "get" => client.get(&url),
                _ => client
                    .post(&url)
                    .json(&serde_json::json!({ "reason": "r" })),
            };
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let status = req.send().await.unwrap().status();
            assert_eq!(status, 401, "{method} {path} with token {token:?}");
        }
    }
    assert_eq!(
        app.store.revocations().unwrap().len(),
        0,
        "nothing was revoked"
    );
    app.stop().await;
}

#[tokio::test]
async fn api_tokens_have_roles_and_an_approval_is_recorded_under_the_tokens_name() {
    use tocsin::config::{ApiRole, ApiToken, Secret};
    let token = |name: &str, role| ApiToken {
        name: name.into(),
        token: Secret::new(format!("{name}-token-secret")),
        role,
    };
    let app = spawn_app_with(|c| {
        c.general.api_tokens = vec![
            token("dashboard", ApiRole::Read),
            token("release-ci", ApiRole::Approve),
        ];
    })
    .await;
    // The body names someone else: only the token's name is recorded.
    let body = format!(r#"{{"account":"{ACCOUNT}","text":"launch day","by":"@alice"}}"#);
    let (status, text) = post_raw(&app, Some("dashboard-token-secret"), &body).await;
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("token `dashboard` has the role read"),
        "{text}"
    );
    let (status, text) = post_raw(&app, Some("release-ci-token-secret"), &body).await;
    assert_eq!(status, 201, "{text}");
    let seq = serde_json::from_str::<serde_json::Value>(&text).unwrap()["seq"]
        .as_u64()
        .unwrap();

    // Reading is what `read` may do.
    let list: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/approvals", app.api))
        .bearer_auth("dashboard-token-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = list["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["seq"] == seq)
        .unwrap_or_else(|| panic!("seq {seq} listed: {list}"));
    assert_eq!(entry["entry"]["by"], "release-ci", "{entry}");
    let (status, _) = post_raw(&app, Some(API_TOKEN), &body.replace("launch", "sale")).await;
    assert_eq!(status, 201, "the single api_token is still an admin");
    app.stop().await;
}
