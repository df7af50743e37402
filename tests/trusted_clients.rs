//! `accounts[].trusted_clients`: posts published by the company's own tools are approved by
//! the tool (an approved-log entry, no page); any other client pages and the page names it;
//! the list itself lives in the approved log, and changing it pages.

use tocsin::{
    model::Rule,
    store::{ApprovedEntry, Store},
};
use tocsin_fakes::mastodon::status_html;

use crate::support::*;

const TRUSTED_PAGE: &str = "trusted clients";

fn trust(clients: &[&str]) -> impl FnOnce(&mut tocsin::Config) {
    let clients: Vec<String> = clients.iter().map(|c| c.to_string()).collect();
    move |c: &mut tocsin::Config| c.accounts[0].trusted_clients = clients
}

fn trusted_entries(store: &Store) -> Vec<(String, bool, String)> {
    store
        .log_records()
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.entry {
            ApprovedEntry::TrustedClient {
                client,
                withdrawn,
                by,
                ..
            } => Some((client, withdrawn, by)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_trusted_client_post_is_approved_by_it_and_another_client_pages_naming_it() {
    let app = spawn_app_with(trust(&["Buffer"])).await;

    let scheduled = app.masto.publish_with(
        ACCOUNT_ID,
        &status_html("Our Q3 report is out"),
        &[],
        Some("Buffer"),
    );
    let from_web = app.masto.publish_with(
        ACCOUNT_ID,
        &status_html("Free crypto for everyone"),
        &[],
        Some("Web"),
    );
    let page = app
        .page_containing("Free crypto", "the page of the post from Web")
        .await;
    assert!(page.contains("Posted from: Web"), "{page}");
    // A name that only looks like the tool's is another client (it joins the open burst).
    let lookalike = app.masto.publish_with(
        ACCOUNT_ID,
        &status_html("Send 1 BTC, get 2 back"),
        &[],
        Some("buffer"),
    );

    let settled = app.settle(2).await;
    settled.assert_not_held(&scheduled, "a post from a trusted client");
    assert!(settled.holding(&from_web).is_some());
    assert!(settled.holding(&lookalike).is_some());
    settled.assert_not_mentioned("Q3 report", "a post from a trusted client");

    let approved_by_buffer = app.store.log_records().unwrap().into_iter().any(|r| {
        matches!(r.entry, ApprovedEntry::ApprovedPost { ref post_id, ref by, .. }
                if post_id.as_deref() == Some(scheduled.as_str()) && by == "Buffer")
    });
    assert!(
        approved_by_buffer,
        "the trusted post is in the approved log, approved by its client"
    );
    app.stop().await;
}

#[tokio::test]
async fn changing_the_trusted_list_is_chained_and_paged() {
    // The first list is a change too: from none to Buffer.
    let app = spawn_app_with(trust(&["Buffer"])).await;
    let page = app
        .page_containing(TRUSTED_PAGE, "the page of the first list")
        .await;
    assert!(page.contains("Buffer"), "{page}");
    assert_eq!(
        trusted_entries(&app.store),
        vec![("Buffer".into(), false, "configuration".into())]
    );
    let inc = app.incident_by_object("trusted_clients").unwrap();
    assert_eq!(inc.rule, Rule::TrustedClientsChanged);
    let (masto, bot, state) = app.stop().await;

    // Someone with the config file adds a client: a new entry and a new page.
    let app = start_with(masto, bot, state, trust(&["Buffer", "Evil Scheduler"])).await;
    let settled = app.settle(2).await;
    let told = settled.mentions("added Evil Scheduler");
    assert!(!told.is_empty(), "the added client is paged");
    let told = settled.mentions(TRUSTED_PAGE).len();
    assert_eq!(trusted_entries(&app.store).len(), 2);
    let (masto, bot, state) = app.stop().await;

    // The same list again: nothing to record, nothing to page.
    let app = start_with(masto, bot, state, trust(&["Buffer", "Evil Scheduler"])).await;
    let settled = app.settle(2).await;
    assert_eq!(settled.mentions(TRUSTED_PAGE).len(), told);
    assert_eq!(trusted_entries(&app.store).len(), 2);
    let (masto, bot, state) = app.stop().await;

    // Emptied: both withdrawn, and a post from Buffer pages again.
    let app = start_with(masto, bot, state, trust(&[])).await;
    let entries = trusted_entries(&app.store);
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert!(entries[2..].iter().all(|(_, withdrawn, _)| *withdrawn));
    app.masto.publish_with(
        ACCOUNT_ID,
        &status_html("Scheduled but no longer trusted"),
        &[],
        Some("Buffer"),
    );
    app.page_containing("no longer trusted", "a post from a withdrawn client")
        .await;
    assert!(
        app.store.verify_log().unwrap().is_ok(),
        "the approved log verifies"
    );
    assert!(
        app.store.verify_timeline().unwrap().is_ok(),
        "the timeline verifies"
    );
    app.stop().await;
}
