use super::{deliveries::*, *};

#[test]
fn the_crc_answer_is_xs_documented_hmac_and_never_signs_a_body() {
    // HMAC-SHA256("secret", "token") in base64, as `openssl dgst -sha256 -hmac secret
    // -binary | base64` prints it.
    assert_eq!(
        sign("secret", b"token"),
        "sha256=6UERDj0r/oJiHw4+FDRzDXMF0QbF9oyHFl0LJ6RhGko="
    );
    let body = br#"{"for_user_id":"1"}"#;
    assert!(verify("secret", body, &sign("secret", body)));
    assert!(!verify("other", body, &sign("secret", body)));
    assert!(!verify("secret", body, "sha256=AAAA"));
    assert!(!is_crc_token(std::str::from_utf8(body).unwrap()));
    assert!(is_crc_token("Zm9vYmFy-_+/="));
}

#[test]
fn an_activity_post_without_its_text_is_left_to_the_poll() {
    let event = |payload: serde_json::Value| {
        serde_json::from_value::<ActivityDelivery>(json!({"data": {
            "event_uuid": "1", "filter": {"user_id": "783214"}, "event_type": "post.create",
            "payload": payload}}))
        .unwrap()
        .data
    };
    assert!(
        activity(event(json!({"id": "1800000000000000009"})))
            .unwrap()
            .is_empty()
    );
    let by_other = json!({"id": "1800000000000000009", "text": "hi", "author_id": "5"});
    assert!(activity(event(by_other)).unwrap().is_empty());
    let own = json!({"id": "1800000000000000009", "text": "hi", "author_id": "783214"});
    let changes = activity(event(own)).unwrap();
    assert_eq!(changes[0].1.key(), "1800000000000000009:create");
}

/// X's own example deliveries (`tests/fixtures/platforms/x/examples/`, sources in
/// `tests/fixtures/platforms/SOURCE.md`), through the parser a verified body goes to.
fn documented(name: &str) -> Vec<(String, Change)> {
    let path = format!(
        "{}/tests/fixtures/platforms/x/examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse(&body).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn the_documented_activity_post_create_reads_as_the_authors_post() {
    let changes = documented("activity-post-create.json");
    assert_eq!(changes.len(), 1);
    let (user, Change::Created(t, media)) = &changes[0] else {
        panic!("a post: {changes:?}")
    };
    // The payload's `author_id` is the filtered user: the post is the account's own.
    assert_eq!(user, "1111111111111111111");
    assert_eq!(t.id, "2080761390344937796");
    assert_eq!(
        t.edit_history_tweet_ids,
        vec!["2080761390344937796".to_owned()]
    );
    let p = post(t, media, false);
    assert_eq!(p.id, "2080761390344937796");
    assert_eq!(p.content.text, "Hello from the Activity API");
    assert_eq!(p.created_at.to_rfc3339(), "2026-07-24T21:05:48+00:00");
    assert_eq!(p.edited_at, None);
    assert!(p.content.links.is_empty() && p.content.media.is_empty());
}

#[test]
fn the_documented_activity_post_delete_reads_as_the_deletion_of_the_authors_post() {
    // Its `includes.users[]` wrap each user in `{"data": …}`, unlike post.create's: the
    // parser reads neither.
    let changes = documented("activity-post-delete.json");
    assert_eq!(changes.len(), 1);
    let (user, Change::Deleted { post_id, .. }) = &changes[0] else {
        panic!("a deletion: {changes:?}")
    };
    assert_eq!(user, "1111111111111111111");
    assert_eq!(post_id, "2080761269309813134");
    assert_eq!(changes[0].1.key(), "2080761269309813134:delete");
}

#[test]
fn the_documented_account_activity_deliveries_read_as_a_post_and_a_deletion() {
    let created = documented("account-activity-tweet-create-longform.json");
    assert_eq!(created.len(), 1);
    let (user, Change::Created(t, media)) = &created[0] else {
        panic!("a post: {created:?}")
    };
    assert_eq!(user, "1603419180975409153");
    let p = post(t, media, false);
    assert_eq!(p.id, "1924465506158878979");
    // A longform post: the whole text from `extended_tweet`, not the truncated `text`.
    assert!(
        p.content.text.starts_with("The Antikythera Mechanism")
            && p.content
                .text
                .ends_with("off the Greek island of Antikythera..."),
        "{:?}",
        p.content.text
    );
    assert!(!p.content.text.contains("https://t.co/"));
    assert_eq!(p.created_at.to_rfc3339(), "2025-05-19T14:01:46+00:00");

    let deleted = documented("account-activity-tweet-delete.json");
    assert_eq!(deleted.len(), 1);
    let (user, Change::Deleted { post_id, at }) = &deleted[0] else {
        panic!("a deletion: {deleted:?}")
    };
    assert_eq!(user, "930524282358325248");
    assert_eq!(post_id, "1045405559317569537");
    assert_eq!(at.timestamp_millis(), 1432228155593);
}

#[test]
fn a_v1_tweet_reads_as_the_v2_post_the_poller_sees() {
    let d: AccountActivityDelivery = serde_json::from_value(json!({
        "for_user_id": "783214",
        "tweet_create_events": [{
            "id_str": "1800000000000000009",
            "created_at": "Wed Oct 10 20:19:24 +0000 2018",
            "text": "Look https://t.co/A https://t.co/P",
            "source": "<a href=\"https://x.com\" rel=\"nofollow\">Twitter Web App</a>",
            "user": {"id_str": "783214"},
            "entities": {"urls": [{"url": "https://t.co/A", "expanded_url": "https://evil.example/x"}],
                "media": [{"id_str": "3_9", "url": "https://t.co/P", "type": "photo",
                    "media_url_https": "https://pbs.twimg.com/media/a.jpg"}]}
        }, {
            "id_str": "1800000000000000010", "text": "@examplecorp hi",
            "user": {"id_str": "5"}
        }],
        "tweet_delete_events": [{"status": {"id": "1800000000000000001", "user_id": "783214"},
            "timestamp_ms": "1539202764000"}]
    }))
    .unwrap();
    let changes = account_activity(d);
    assert_eq!(changes.len(), 2, "the mention by another user is dropped");
    let Change::Created(t, media) = &changes[0].1 else {
        panic!("a post")
    };
    let p = post(t, media, false);
    assert_eq!(p.content.text, "Look https://evil.example/x");
    assert_eq!(p.content.links, vec!["https://evil.example/x".to_owned()]);
    assert_eq!(p.content.media.len(), 1);
    assert!(p.content.media[0].starts_with("photo:url:"));
    assert_eq!(p.client.as_deref(), Some("Twitter Web App"));
    assert_eq!(p.created_at.timestamp(), 1539202764);
    assert_eq!(changes[1].1.key(), "1800000000000000001:delete");
}
