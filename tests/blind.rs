//! A source that cannot see its account pages `monitor.blind`, once, and resolves on recovery.

use std::time::Duration;

use tocsin::model::{Incident, Resolution, Rule, Severity, State};
use tocsin_fakes::mastodon::Failure;

use crate::support::*;

fn blind(app: &TestApp) -> Vec<Incident> {
    let all = app.store.incidents().unwrap();
    all.into_iter()
        .filter(|i| i.rule == Rule::MonitorBlind)
        .collect()
}

#[tokio::test]
async fn a_refused_token_pages_monitor_blind_and_recovery_resolves_it() {
    let app = spawn_app().await;
    app.masto.require_token(Some("someone-elses-token".into()));
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains("monitor.blind"))
        },
        "the page",
    )
    .await;
    let inc = blind(&app).remove(0);
    assert_eq!(
        (inc.severity, inc.state, inc.account.as_str()),
        (Severity::High, State::Open, ACCOUNT)
    );
    let page = app
        .bot
        .sent()
        .into_iter()
        .find(|m| m.text.contains("monitor.blind"))
        .unwrap();
    assert!(
        page.text
            .contains("mastodon source: the token was refused (401)"),
        "{}",
        page.text
    );

    app.masto.require_token(None);
    until(
        || app.store.incident(inc.id).unwrap().unwrap().state == State::Resolved,
        "recovery",
    )
    .await;
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert_eq!(inc.resolution, Some(Resolution::Contained));
    assert_eq!(inc.resolved_by.unwrap().name, "tocsin");
    until(
        || {
            app.bot
                .message(CHAT, page.message_id)
                .is_some_and(|m| m.text.contains("RESOLVED (contained) by tocsin"))
        },
        "the page edited",
    )
    .await;
    assert_eq!(blind(&app).len(), 1, "one incident for the outage");
    app.stop().await;
}

#[tokio::test]
async fn failures_past_the_grace_page_monitor_blind_once() {
    let app = spawn_app_with(|c| c.accounts[0].grace = Some(Duration::from_millis(800))).await;
    for _ in 0..4 {
        app.masto.fail_next(Failure::Status(502));
    }
    until(|| !blind(&app).is_empty(), "monitor.blind after the grace").await;
    let inc = blind(&app).remove(0);
    let tocsin::model::Evidence::Channel { problem, .. } = &inc.evidence else {
        panic!("evidence")
    };
    assert!(
        problem.starts_with("the platform answered 502"),
        "{problem}"
    );
    until(
        || app.store.incident(inc.id).unwrap().unwrap().state == State::Resolved,
        "recovery",
    )
    .await;
    app.wait_polls(2).await;
    assert_eq!(blind(&app).len(), 1, "not reopened after recovery");
    app.stop().await;
}

#[tokio::test]
async fn resolving_a_still_blind_source_waits_for_a_second_responder() {
    let app = spawn_app().await;
    app.masto.require_token(Some("someone-elses-token".into()));
    until(|| !blind(&app).is_empty(), "monitor.blind").await;
    let inc = blind(&app).remove(0);
    assert_eq!(
        inc.severity,
        Severity::High,
        "not critical: the rule is the source's"
    );

    app.bot
        .push_command(CHAT, &responder(), &format!("/resolve {}", inc.id));
    let vote = format!(
        "Resolution of incident #{} as contained by @alice (111) recorded (1/2) (its source is still blind)",
        inc.id
    );
    until(
        || app.bot.sent().iter().any(|m| m.text.contains(&vote)),
        "the vote's answer",
    )
    .await;
    assert_eq!(
        app.store.incident(inc.id).unwrap().unwrap().state,
        State::Open,
        "one responder does not close a blind source"
    );
    app.bot
        .push_command(CHAT, &second_responder(), &format!("/resolve {}", inc.id));
    until(
        || app.store.incident(inc.id).unwrap().unwrap().state == State::Resolved,
        "the second responder's resolution",
    )
    .await;
    let inc = app.store.incident(inc.id).unwrap().unwrap();
    assert_eq!(inc.resolved_by.unwrap().id, second_responder().id);
    assert!(app.store.verify_timeline().unwrap().is_ok());
    app.stop().await;
}
