use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tocsin_fakes::mastodon::{Failure, FakeMastodon, ProfileUpdate, status_html};

async fn setup() -> (FakeMastodon, reqwest::Client) {
    let fake = FakeMastodon::start().await.expect("start fake");
    fake.add_account(
        "1",
        "alice",
        "Alice",
        "<p>On call.</p>",
        &[("Pager", "<a href=\"https://example.com\">example</a>")],
    );
    (fake, reqwest::Client::new())
}

async fn get(client: &reqwest::Client, fake: &FakeMastodon, path: &str) -> (u16, HeaderMap, Value) {
    let response = client
        .get(format!("{}{}", fake.url(), path.trim_start_matches('/')))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.expect("json body");
    (status, headers, body)
}

fn ids(body: &Value) -> Vec<String> {
    body.as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("string id").to_owned())
        .collect()
}

fn link(headers: &HeaderMap) -> String {
    headers
        .get("link")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Extracts the URL for `rel` from a Link header.
fn rel(headers: &HeaderMap, rel: &str) -> Option<String> {
    link(headers).split(", ").find_map(|part| {
        let (url, params) = part.split_once(">; ")?;
        (params == format!("rel=\"{rel}\"")).then(|| url.trim_start_matches('<').to_owned())
    })
}

#[tokio::test]
async fn account_entity_shape() {
    let (fake, client) = setup().await;
    fake.publish("1", &status_html("first"));
    let (status, headers, account) = get(&client, &fake, "/api/v1/accounts/1").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    let base = fake.url().as_str().trim_end_matches('/').to_owned();
    for key in [
        "id",
        "username",
        "acct",
        "display_name",
        "locked",
        "bot",
        "discoverable",
        "group",
        "created_at",
        "note",
        "url",
        "avatar",
        "avatar_static",
        "header",
        "header_static",
        "followers_count",
        "following_count",
        "statuses_count",
        "last_status_at",
        "emojis",
        "fields",
    ] {
        assert!(account.get(key).is_some(), "missing {key}");
    }
    assert_eq!(account["id"], "1");
    assert_eq!(account["acct"], "alice");
    assert_eq!(account["url"], format!("{base}/@alice"));
    assert_eq!(account["note"], "<p>On call.</p>");
    assert_eq!(account["statuses_count"], 1);
    assert_eq!(
        account["last_status_at"],
        Utc::now().format("%Y-%m-%d").to_string()
    );
    assert!(
        account["created_at"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00.000Z")
    );
    assert_eq!(
        account["fields"],
        json!([{"name": "Pager", "value": "<a href=\"https://example.com\">example</a>", "verified_at": null}])
    );
    assert!(
        account.get("moved").is_none(),
        "Mastodon omits moved unless moved"
    );

    let (status, _, missing) = get(&client, &fake, "/api/v1/accounts/999").await;
    assert_eq!(
        (status, missing),
        (404, json!({"error": "Record not found"}))
    );
    let (status, _, found) = get(&client, &fake, "/api/v1/accounts/lookup?acct=@alice").await;
    assert_eq!((status, found["id"].clone()), (200, json!("1")));
}

#[tokio::test]
async fn status_entity_shape() {
    let (fake, client) = setup().await;
    let id = fake.publish_with(
        "1",
        &status_html("alert #tocsin https://example.com"),
        &["LEHV6nWB2yk8"],
        Some("tocsin-test"),
    );
    let (_, _, body) = get(&client, &fake, "/api/v1/accounts/1/statuses").await;
    let status = &body[0];
    for key in [
        "id",
        "created_at",
        "in_reply_to_id",
        "in_reply_to_account_id",
        "sensitive",
        "spoiler_text",
        "visibility",
        "language",
        "uri",
        "url",
        "replies_count",
        "reblogs_count",
        "favourites_count",
        "edited_at",
        "content",
        "reblog",
        "application",
        "account",
        "media_attachments",
        "mentions",
        "tags",
        "emojis",
        "card",
        "poll",
    ] {
        assert!(status.get(key).is_some(), "missing {key}");
    }
    assert_eq!(status["id"], id.as_str());
    let created = status["created_at"].as_str().unwrap();
    assert_eq!(created.len(), "2026-11-24T20:15:00.000Z".len());
    assert!(created.ends_with('Z'));
    DateTime::parse_from_rfc3339(created).unwrap();
    assert_eq!(status["edited_at"], Value::Null);
    assert_eq!(status["reblog"], Value::Null);
    assert_eq!(
        status["application"],
        json!({"name": "tocsin-test", "website": null})
    );
    assert_eq!(status["account"]["id"], "1");
    assert_eq!(status["media_attachments"][0]["blurhash"], "LEHV6nWB2yk8");
    assert_eq!(status["media_attachments"][0]["type"], "image");
    assert!(
        status["media_attachments"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(status["tags"][0]["name"], "tocsin");
    assert!(
        status["content"]
            .as_str()
            .unwrap()
            .contains("translate=\"no\"")
    );

    let plain = fake.publish("1", "<p>plain</p>");
    assert!(
        fake.status_json(&plain)
            .unwrap()
            .get("application")
            .is_none()
    );
}

#[tokio::test]
async fn paging_follows_mastodon_semantics() {
    let (fake, client) = setup().await;
    let s: Vec<String> = (1..=5)
        .map(|n| fake.publish("1", &format!("<p>{n}</p>")))
        .collect();
    let numeric: Vec<u64> = s.iter().map(|id| id.parse().unwrap()).collect();
    assert!(
        numeric.windows(2).all(|w| w[0] < w[1]),
        "ids increase: {s:?}"
    );
    let newest_first = |idx: &[usize]| idx.iter().map(|&i| s[i].clone()).collect::<Vec<_>>();

    // A short page: no next link (Mastodon emits it only for full pages), a prev link.
    let (_, headers, body) = get(&client, &fake, "/api/v1/accounts/1/statuses").await;
    assert_eq!(ids(&body), newest_first(&[4, 3, 2, 1, 0]));
    assert_eq!(rel(&headers, "next"), None);
    assert!(
        rel(&headers, "prev")
            .unwrap()
            .ends_with(&format!("/api/v1/accounts/1/statuses?min_id={}", s[4]))
    );

    // Full pages link onwards, carrying the filters.
    let (_, headers, body) = get(
        &client,
        &fake,
        "/api/v1/accounts/1/statuses?limit=2&exclude_replies=true",
    )
    .await;
    assert_eq!(ids(&body), newest_first(&[4, 3]));
    let next = rel(&headers, "next").unwrap();
    assert!(
        next.contains(&format!("exclude_replies=true&limit=2&max_id={}", s[3])),
        "{next}"
    );
    let page2: Value = client
        .get(&next)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&page2), newest_first(&[2, 1]));

    // since_id: the newest statuses above the bound; min_id: the ones right above it.
    let (_, _, body) = get(
        &client,
        &fake,
        &format!("/api/v1/accounts/1/statuses?since_id={}&limit=2", s[1]),
    )
    .await;
    assert_eq!(ids(&body), newest_first(&[4, 3]));
    let (_, headers, body) = get(
        &client,
        &fake,
        &format!("/api/v1/accounts/1/statuses?min_id={}&limit=2", s[1]),
    )
    .await;
    assert_eq!(ids(&body), newest_first(&[3, 2]));
    assert!(
        rel(&headers, "prev")
            .unwrap()
            .ends_with(&format!("limit=2&min_id={}", s[3]))
    );
    let (_, _, body) = get(
        &client,
        &fake,
        &format!(
            "/api/v1/accounts/1/statuses?max_id={}&since_id={}",
            s[3], s[0]
        ),
    )
    .await;
    assert_eq!(ids(&body), newest_first(&[2, 1]));
    let (_, _, body) = get(
        &client,
        &fake,
        &format!(
            "/api/v1/accounts/1/statuses?min_id={}&max_id={}",
            s[0], s[3]
        ),
    )
    .await;
    assert_eq!(ids(&body), newest_first(&[2, 1]));

    // Caught up: empty page, no Link header at all.
    let (status, headers, body) = get(
        &client,
        &fake,
        &format!("/api/v1/accounts/1/statuses?min_id={}", s[4]),
    )
    .await;
    assert_eq!((status, body), (200, json!([])));
    assert!(headers.get("link").is_none());

    // limit is capped at 40.
    for n in 0..45 {
        fake.publish("1", &format!("<p>bulk {n}</p>"));
    }
    let (_, _, body) = get(&client, &fake, "/api/v1/accounts/1/statuses?limit=100").await;
    assert_eq!(body.as_array().unwrap().len(), 40);
    let (_, _, body) = get(&client, &fake, "/api/v1/accounts/1/statuses").await;
    assert_eq!(body.as_array().unwrap().len(), 20);
    let (status, _, _) = get(&client, &fake, "/api/v1/accounts/2/statuses").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn filters_replies_boosts_media_and_tags() {
    let (fake, client) = setup().await;
    fake.add_account("2", "bob", "Bob", "", &[]);
    let bobs = fake.publish("2", "<p>bob</p>");
    let own = fake.publish("1", &status_html("thread start #Incident"));
    let self_reply = fake.publish_reply("1", &own, "<p>self reply</p>");
    let reply = fake.publish_reply("1", &bobs, "<p>reply to bob</p>");
    let boost = fake.reblog("1", &bobs);
    let media = fake.publish_with("1", "<p>pic</p>", &["L00000fQfQfQfQfQfQfQfQfQfQfQ"], None);

    let q = |query: &str| format!("/api/v1/accounts/1/statuses?{query}");
    let (_, _, all) = get(&client, &fake, &q("")).await;
    assert_eq!(
        ids(&all),
        vec![
            media.clone(),
            boost.clone(),
            reply.clone(),
            self_reply.clone(),
            own.clone()
        ]
    );
    let (_, _, body) = get(&client, &fake, &q("exclude_replies=true")).await;
    assert_eq!(
        ids(&body),
        vec![
            media.clone(),
            boost.clone(),
            self_reply.clone(),
            own.clone()
        ]
    );
    let (_, _, body) = get(&client, &fake, &q("exclude_reblogs=1")).await;
    assert!(!ids(&body).contains(&boost));
    let (_, _, body) = get(&client, &fake, &q("exclude_reblogs=false")).await;
    assert!(ids(&body).contains(&boost));
    let (_, _, body) = get(&client, &fake, &q("only_media=true")).await;
    assert_eq!(ids(&body), vec![media.clone()]);
    let (_, _, body) = get(&client, &fake, &q("tagged=incident")).await;
    assert_eq!(ids(&body), vec![own.clone()]);

    let boosted = &all[1];
    assert_eq!(boosted["content"], "");
    assert_eq!(boosted["reblog"]["id"], bobs.as_str());
    assert_eq!(boosted["reblog"]["account"]["username"], "bob");
    assert_eq!(all[2]["in_reply_to_account_id"], "2");

    // Deleting the original takes its boosts with it.
    fake.delete(&bobs);
    let (_, _, body) = get(&client, &fake, &q("")).await;
    assert!(!ids(&body).contains(&boost));
}

#[tokio::test]
async fn edits_deletes_and_profile_updates() {
    let (fake, client) = setup().await;
    let id = fake.publish("1", "<p>v1</p>");
    let published = fake.changed_at(&id).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    fake.edit(&id, "<p>v2</p>");
    assert!(fake.changed_at(&id).unwrap() > published);
    let (_, _, body) = get(&client, &fake, &format!("/api/v1/statuses/{id}")).await;
    assert_eq!(body["content"], "<p>v2</p>");
    DateTime::parse_from_rfc3339(body["edited_at"].as_str().unwrap()).unwrap();

    let deleted: Value = client
        .delete(format!("{}api/v1/statuses/{id}", fake.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["id"], id.as_str());
    assert_eq!(deleted["text"], "v2");
    assert!(deleted.get("content").is_none());
    let (status, _, _) = get(&client, &fake, &format!("/api/v1/statuses/{id}")).await;
    assert_eq!(status, 404);
    let again = client
        .delete(format!("{}api/v1/statuses/{id}", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    let before = fake.changed_at("1").unwrap();
    fake.add_account("3", "carol", "Carol", "", &[]);
    fake.update_profile(
        "1",
        ProfileUpdate {
            display_name: Some("Alice (away)".into()),
            fields: Some(vec![("Status".into(), "away".into())]),
            bot: Some(true),
            moved_to: Some(Some("carol".into())),
            ..ProfileUpdate::default()
        },
    );
    assert!(fake.changed_at("1").unwrap() > before);
    let (_, _, account) = get(&client, &fake, "/api/v1/accounts/1").await;
    assert_eq!(account["display_name"], "Alice (away)");
    assert_eq!(account["bot"], true);
    assert_eq!(account["fields"][0]["name"], "Status");
    assert_eq!(account["moved"]["id"], "3");
    assert!(account["moved"].get("moved").is_none());
    fake.update_profile(
        "1",
        ProfileUpdate {
            moved_to: Some(Some("dave@elsewhere.example".into())),
            ..Default::default()
        },
    );
    let (_, _, account) = get(&client, &fake, "/api/v1/accounts/1").await;
    assert_eq!(account["moved"]["acct"], "dave@elsewhere.example");
    fake.update_profile(
        "1",
        ProfileUpdate {
            moved_to: Some(None),
            ..Default::default()
        },
    );
    let (_, _, account) = get(&client, &fake, "/api/v1/accounts/1").await;
    assert!(account.get("moved").is_none());
}

#[tokio::test]
async fn rate_limit_headers_and_429() {
    let (fake, client) = setup().await;
    let (_, headers, _) = get(&client, &fake, "/api/v1/accounts/1").await;
    assert_eq!(headers["x-ratelimit-limit"], "300");
    assert_eq!(headers["x-ratelimit-remaining"], "299");
    let reset =
        DateTime::parse_from_rfc3339(headers["x-ratelimit-reset"].to_str().unwrap()).unwrap();
    let ahead = reset.with_timezone(&Utc) - Utc::now();
    assert!(ahead > chrono::Duration::seconds(290) && ahead <= chrono::Duration::seconds(300));

    fake.set_rate_limit(3, Duration::from_millis(800));
    let started = Instant::now();
    for expected in ["2", "1", "0"] {
        let (status, headers, _) = get(&client, &fake, "/api/v1/accounts/1").await;
        assert_eq!(
            (status, headers["x-ratelimit-remaining"].to_str().unwrap()),
            (200, expected)
        );
    }
    let (status, headers, body) = get(&client, &fake, "/api/v1/accounts/404").await;
    assert_eq!((status, body), (429, json!({"error": "Too many requests"})));
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    assert_eq!(headers["x-ratelimit-limit"], "3");
    let reset =
        DateTime::parse_from_rfc3339(headers["x-ratelimit-reset"].to_str().unwrap()).unwrap();
    assert!(reset.with_timezone(&Utc) > Utc::now());

    tokio::time::sleep(Duration::from_millis(850).saturating_sub(started.elapsed())).await;
    let (status, headers, _) = get(&client, &fake, "/api/v1/accounts/1").await;
    assert_eq!(
        (status, headers["x-ratelimit-remaining"].to_str().unwrap()),
        (200, "2")
    );
}

#[tokio::test]
async fn bearer_token_requirement() {
    let (fake, client) = setup().await;
    fake.require_token(Some("s3cret".into()));
    let url = format!("{}api/v1/accounts/1", fake.url());
    let none = client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers().get("www-authenticate").is_some());
    assert!(none.headers().get("x-ratelimit-remaining").is_some());
    assert_eq!(
        none.json::<Value>().await.unwrap(),
        json!({"error": "The access token is invalid"})
    );
    let wrong = client.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client.get(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(right.status(), 200);
    let requests = fake.requests();
    assert_eq!(requests.last().unwrap().bearer.as_deref(), Some("s3cret"));

    let id = fake.publish("1", "<p>x</p>");
    let unauth = client
        .delete(format!("{}api/v1/statuses/{id}", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
    assert!(fake.status_json(&id).is_some());
    fake.require_token(None);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn forced_failures() {
    let (fake, client) = setup().await;
    let url = format!("{}api/v1/accounts/1/statuses", fake.url());
    fake.fail_next(Failure::Status(503));
    fake.fail_next(Failure::TooManyRequests { reset_in_secs: 60 });
    fake.fail_next(Failure::TruncatedJson);
    fake.fail_next(Failure::Hang(Duration::from_millis(300)));
    fake.fail_next(Failure::Hang(Duration::from_secs(5)));

    let unavailable = client.get(&url).send().await.unwrap();
    assert_eq!(unavailable.status(), 503);
    assert_eq!(
        unavailable.json::<Value>().await.unwrap(),
        json!({"error": "Service Unavailable"})
    );

    let limited = client.get(&url).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    let reset =
        DateTime::parse_from_rfc3339(limited.headers()["x-ratelimit-reset"].to_str().unwrap())
            .unwrap();
    let ahead = reset.with_timezone(&Utc) - Utc::now();
    assert!(ahead > chrono::Duration::seconds(55) && ahead <= chrono::Duration::seconds(60));

    let truncated = client.get(&url).send().await.unwrap();
    assert_eq!(truncated.status(), 200);
    assert!(truncated.json::<Value>().await.is_err());

    let started = Instant::now();
    let slow = client.get(&url).send().await.unwrap();
    assert_eq!(slow.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let timed_out = client
        .get(&url)
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(timed_out.unwrap_err().is_timeout());

    let (status, _, _) = get(&client, &fake, "/api/v1/accounts/1/statuses").await;
    assert_eq!(status, 200);
    assert_eq!(fake.request_count("/api/v1/accounts/1/statuses"), 6);
    assert_eq!(fake.request_count("/api/v1/accounts"), 6);
    fake.shutdown();
}

#[tokio::test]
async fn shutdown_refuses_new_connections() {
    let fake = FakeMastodon::start().await.unwrap();
    fake.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let result = reqwest::Client::new()
        .get(format!("{}api/v1/accounts/1", fake.url()))
        .send()
        .await;
    assert!(result.unwrap_err().is_connect());
}
