//! X's documented example responses, fed to the parsers the poller uses:
//! `tests/fixtures/platforms/x/examples/` (sources in `tests/fixtures/platforms/SOURCE.md`).

use std::collections::HashMap;

use super::api::{TimelinePage, UsersPage, post, profile};

#[test]
fn the_documented_users_lookup_with_a_missing_user_reads_as_one_profile_and_one_error() {
    let text = include_str!(
        "../../../tests/fixtures/platforms/x/examples/users-lookup-partial-error.json"
    );
    let page: UsersPage = serde_json::from_str(text).expect("the documented lookup parses");
    assert_eq!(page.data.len(), 1);
    assert_eq!(page.data[0].id, "2244994945");
    let p = profile(&page.data[0]).fields;
    assert_eq!(p["handle"], "XDevelopers");
    assert_eq!(page.errors.len(), 1);
    assert_eq!(page.errors[0].resource_id.as_deref(), Some("1234567890"));
    assert_eq!(page.errors[0].title, "Not Found Error");
}

#[test]
fn the_documented_timeline_page_reads_as_posts() {
    let text = include_str!("../../../tests/fixtures/platforms/x/examples/timeline-page.json");
    let page: TimelinePage = serde_json::from_str(text).expect("the documented page parses");
    assert_eq!(page.data.len(), 5);
    assert_eq!(
        page.meta.next_token.as_deref(),
        Some("7140dibdnow9c7btw421dyz6jism75z99gyxd8egarsc4")
    );
    let posts: Vec<_> = page
        .data
        .iter()
        .map(|t| post(t, &HashMap::new(), false))
        .collect();
    // No `edit_history_tweet_ids` on a 2022 page: the post is its own first version.
    assert_eq!(posts[0].id, "1524796546306478083");
    assert_eq!(posts[0].edited_at, None);
    assert_eq!(
        posts[0].created_at.to_rfc3339(),
        "2022-05-12T17:00:00+00:00"
    );
    assert!(
        posts[0].content.text.starts_with("Today marks the launch"),
        "{:?}",
        posts[0].content.text
    );
    assert!(posts.iter().all(|p| p.content.media.is_empty()));
}
