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
