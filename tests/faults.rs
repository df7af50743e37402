//! Fault injection: the Bot API breaking in every way it can (resets before and after doing the
//! work, hangs past the client timeout, flood control) and a platform API storming (5xx,
//! truncated JSON, 429 with a reset, a hang). Pages are never lost, keep their order, and are
//! sent at most once more than needed; a source backs off, goes blind past its grace, and
//! recovers on its own.
//!
//! Killing the process mid-burst is `crash.rs`; a full or read-only disk is `disk.rs`.

use std::time::{Duration, Instant};

use tocsin::model::{Rule, State};
use tocsin_fakes::{mastodon::Failure as PlatformFailure, telegram::Failure};

use crate::support::*;

#[tokio::test]
async fn bot_api_resets_hangs_and_flood_control_lose_no_page_and_keep_order() {
    let app = spawn_app_with(|c| {
        c.grouping.window = Duration::ZERO;
        c.telegram.request_timeout = Duration::from_millis(500);
    })
    .await;
    for failure in [
        Failure::Reset,
        Failure::Hang(Duration::from_secs(3)),
        Failure::RetryAfter(1),
        Failure::ResetAfterAccept,
        Failure::Reset,
    ] {
        app.bot.fail_next("sendMessage", failure);
    }
    let markers = ["fault-a", "fault-b", "fault-c"];
    for (k, m) in markers.iter().enumerate() {
        app.publish(&format!("{m}: send 1 BTC"));
        until(
            || app.store.incidents().unwrap().len() > k,
            "the incident recorded",
        )
        .await;
    }
    let sent_with = |m: &str| {
        app.bot
            .sent()
            .iter()
            .filter(|s| s.reply_markup.is_some() && s.text.contains(m))
            .count()
    };
    until(
        || markers.iter().all(|m| sent_with(m) >= 1),
        "every page despite the failures",
    )
    .await;
    until(
        || app.store.outbox_depth().unwrap().0 == 0,
        "the queue drained",
    )
    .await;
    let firsts: Vec<usize> = markers
        .iter()
        .map(|m| {
            app.bot
                .sent()
                .iter()
                .position(|s| s.text.contains(m))
                .unwrap()
        })
        .collect();
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "pages in the order their incidents opened: {firsts:?}"
    );
    let duplicates: usize = markers.iter().map(|m| sent_with(m) - 1).sum();
    assert_eq!(
        duplicates, 1,
        "exactly the send whose answer was lost after Telegram accepted it is repeated"
    );
    assert!(
        app.bot.request_count("sendMessage") >= 3 + 5,
        "every forced failure was met"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_platform_storm_backs_off_goes_blind_and_recovers_with_nothing_missed() {
    let app = spawn_app_with(|c| {
        c.accounts[0].grace = Some(Duration::from_secs(1));
        c.general.source_timeout = Duration::from_millis(400);
    })
    .await;
    app.wait_polls(1).await;
    let storm = Instant::now();
    for failure in [
        PlatformFailure::Status(503),
        PlatformFailure::TruncatedJson,
        PlatformFailure::TooManyRequests { reset_in_secs: 1 },
        PlatformFailure::Hang(Duration::from_secs(3)),
        PlatformFailure::Status(502),
    ] {
        app.masto.fail_next(failure);
    }
    app.publish("storm: send 1 BTC");
    let blind = || {
        app.store
            .incidents()
            .unwrap()
            .into_iter()
            .find(|i| i.rule == Rule::MonitorBlind)
    };
    until(|| blind().is_some(), "monitor.blind past the grace").await;
    until(
        || blind().unwrap().state == State::Resolved,
        "recovery resolves it",
    )
    .await;
    let recovered = storm.elapsed();
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains("storm: send 1 BTC"))
        },
        "the post published during the storm paged after it",
    )
    .await;
    // Five failures at a 150 ms interval would clear in well under a second without backing
    // off; doubling waits plus the 429's reset take seconds.
    assert!(
        recovered > Duration::from_secs(2),
        "recovered after {recovered:?}: the source did not back off"
    );
    let problem = match blind().unwrap().evidence {
        tocsin::model::Evidence::Channel { problem, .. } => problem,
        other => panic!("evidence {other:?}"),
    };
    assert!(!problem.is_empty());
    app.stop().await;
}
