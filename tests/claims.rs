//! What the README promises that no other file tests: each test names the sentence it holds
//! the product to.

use std::time::Duration;

use tocsin::{
    Config,
    config::{PagerDutyChannel, Secret},
};
use tocsin_fakes::pagerduty::FakePagerDuty;

use crate::support::*;

const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

fn with_pagerduty(pd: &FakePagerDuty) -> impl FnOnce(&mut Config) {
    let url = pd.url();
    move |c: &mut Config| {
        c.channels.pagerduty.push(PagerDutyChannel {
            name: "ops".into(),
            routing_key: Secret::new(ROUTING_KEY),
            api_url: url,
            severities: None,
        })
    }
}

/// README, PagerDuty: "429 and 5xx are retried with backoff (honouring `Retry-After`)". The
/// first backoff is a second: a retry three seconds later is the header's doing.
#[tokio::test]
async fn pagerduty_retry_after_is_waited_out_before_the_retry() {
    let pd = FakePagerDuty::start().await.unwrap();
    pd.fail_next_retry_after(429, 3);
    let app = spawn_app_with(with_pagerduty(&pd)).await;
    app.publish("giveaway! send 1 BTC https://evil.example/claim");
    until(|| !pd.events().is_empty(), "the trigger, after the 429").await;
    let arrivals = pd.arrivals();
    assert_eq!(arrivals.len(), 2, "one refused, one accepted");
    let waited = arrivals[1].duration_since(arrivals[0]);
    assert!(
        waited >= Duration::from_secs(3),
        "retried after {waited:?}, before the 3 s Retry-After"
    );
    assert!(waited < Duration::from_secs(5), "retried after {waited:?}");
    app.stop().await;
}

/// README, Mastodon: "`X-RateLimit-*` headers are honoured": at zero remaining the next poll
/// waits for the window's reset instead of earning a 429, and polling resumes after it.
#[tokio::test]
async fn mastodon_at_zero_remaining_waits_for_the_reset_without_a_429() {
    let app = spawn_app().await;
    // A new window of two requests, reset 3 s from now: the next poll spends it.
    let before = app.masto.requests().len();
    app.masto.set_rate_limit(2, Duration::from_secs(3));
    let window_start = std::time::Instant::now();
    until(
        || app.masto.requests().len() >= before + 2,
        "the window's two requests",
    )
    .await;
    let post = app.publish("giveaway! send 1 BTC https://evil.example/claim");
    until(
        || app.incident_by_object(&post).is_some(),
        "the rogue post judged after the reset",
    )
    .await;
    let judged_after = window_start.elapsed();
    assert_eq!(
        app.masto.over_limit(),
        0,
        "a request was sent over the limit"
    );
    assert!(
        judged_after >= Duration::from_secs(3),
        "judged {judged_after:?} after the window opened: the limit was not waited for"
    );
    assert!(judged_after < Duration::from_secs(6), "{judged_after:?}");
    app.wait_polls(2).await;
    assert_eq!(
        app.masto.over_limit(),
        0,
        "a request was sent over the limit"
    );
    app.stop().await;
}
