//! Pages that cannot be missed: bursts fold into one paced page, and silence escalates.

use std::time::Duration;

use tocsin::{
    config::{Escalation, Route, Tier},
    model::{Action, Rule, Severity, State},
};
use tocsin_fakes::mastodon::ProfileUpdate;

use crate::support::*;

#[tokio::test]
async fn a_burst_of_500_rogue_posts_is_one_paced_page_with_exact_counters() {
    let app = spawn_app().await;
    for i in 0..500 {
        app.publish(&format!("scam {i}: send 1 BTC to https://evil.example/{i}"));
    }
    let grouped = || {
        app.store
            .incidents()
            .unwrap()
            .into_iter()
            .filter(|i| i.rule == Rule::UnapprovedPost)
            .collect::<Vec<_>>()
    };
    until(
        || grouped().first().is_some_and(|i| i.members.len() == 500),
        "500 posts grouped",
    )
    .await;
    assert_eq!(grouped().len(), 1, "one incident for the whole burst");
    let inc = grouped().remove(0);
    assert_eq!(inc.findings, 500);
    let msg = app
        .bot
        .sent()
        .into_iter()
        .find(|m| m.reply_markup.is_some())
        .expect("the page")
        .message_id;
    until(
        || {
            app.bot
                .message(CHAT, msg)
                .is_some_and(|m| m.text.contains("Burst: 500 posts, 500 findings"))
        },
        "the final counters on the page",
    )
    .await;
    let page = app.bot.message(CHAT, msg).unwrap();
    assert!(page.text.encode_utf16().count() <= 4096);
    assert!(page.text.contains("Newest: "), "{}", page.text);
    assert_eq!(
        app.bot
            .sent()
            .iter()
            .filter(|m| m.reply_markup.is_some())
            .count(),
        1,
        "edited, never re-sent"
    );

    // Every message the chat got (the page and its edits) respects Telegram's per-chat limits.
    let mut times: Vec<_> = app.bot.sent().iter().map(|m| m.received_instant).collect();
    times.extend(app.bot.edits().iter().map(|e| e.received_instant));
    times.sort();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(950),
            "two messages {gap:?} apart"
        );
    }
    for (i, t) in times.iter().enumerate() {
        let in_minute = times[i..]
            .iter()
            .take_while(|u| **u - *t < Duration::from_secs(60))
            .count();
        assert!(in_minute <= 20, "{in_minute} messages within a minute");
    }

    // Approving the burst approves every post in it, once a second responder confirms (the
    // default quorum on a critical incident).
    let before = app.store.log_len().unwrap();
    app.bot
        .press_button(CHAT, &responder(), msg, &format!("approve:{}", inc.id));
    until(
        || {
            app.store
                .incident(inc.id)
                .unwrap()
                .unwrap()
                .approve_votes()
                .count()
                == 1
        },
        "the first vote",
    )
    .await;
    assert_eq!(
        app.store.log_len().unwrap(),
        before,
        "one press approves nothing"
    );
    app.bot.press_button(
        CHAT,
        &second_responder(),
        msg,
        &format!("approve:{}", inc.id),
    );
    until(
        || app.store.incident(inc.id).unwrap().unwrap().state == State::Resolved,
        "approval",
    )
    .await;
    assert_eq!(app.store.log_len().unwrap() - before, 500);
    app.stop().await;
}

fn policy() -> Escalation {
    Escalation {
        renotify_after: Duration::from_millis(500),
        escalate_after: Some(Duration::from_millis(2500)),
        tiers: vec![
            Tier {
                mentions: vec!["alice".into(), "bob".into()],
                chat_id: None,
            },
            Tier {
                mentions: vec!["carol".into()],
                chat_id: Some(OTHER_CHAT),
            },
        ],
        severity: Default::default(),
    }
}

#[tokio::test]
async fn reminders_repeat_until_ack_and_escalate_to_the_next_tier() {
    let app = spawn_app_with(|c| c.escalation = Some(policy())).await;
    let post = app.publish("send 1 BTC, get 2 back");
    until(|| app.bot.sent().len() == 1, "the page").await;
    let reminders = || {
        app.bot
            .sent()
            .into_iter()
            .filter(|m| m.text.starts_with("⏰ Reminder"))
            .collect::<Vec<_>>()
    };
    until(|| !reminders().is_empty(), "the first reminder").await;
    let first = &reminders()[0];
    assert_eq!(first.chat_id, CHAT);
    assert!(first.text.contains("Tier 1: @alice @bob"), "{}", first.text);
    until(
        || {
            reminders()
                .iter()
                .any(|m| m.text.contains("Tier 2: @carol") && m.chat_id == CHAT)
        },
        "tier 2",
    )
    .await;
    until(
        || reminders().iter().any(|m| m.chat_id == OTHER_CHAT),
        "tier 2's own chat",
    )
    .await;

    let id = app.incident_by_object(&post).unwrap().id;
    app.bot
        .push_command(CHAT, &responder(), &format!("/ack {id}"));
    until(
        || app.store.incident(id).unwrap().unwrap().state == State::Acked,
        "the ack",
    )
    .await;
    let acked_at = app
        .store
        .incident(id)
        .unwrap()
        .unwrap()
        .timeline
        .iter()
        .find(|e| e.action == Action::Acked)
        .unwrap()
        .at;
    // Every reminder queued before the ack has gone out or was dropped once the ack landed.
    app.settle(1).await;
    let after_ack = reminders().len();
    // Later than any reminder would be due, everything queued is sent again: none more.
    let due = chrono::Duration::from_std(policy().renotify_after * 3).unwrap();
    until(
        || chrono::Utc::now() > acked_at + due,
        "past the next reminder's time",
    )
    .await;
    app.settle(1).await;
    assert_eq!(reminders().len(), after_ack, "no reminder after the ack");
    let inc = app.store.incident(id).unwrap().unwrap();
    assert!(
        inc.timeline
            .iter()
            .filter(|e| matches!(e.action, Action::Reminded { .. }))
            .all(|e| e.at <= acked_at),
        "none queued after the ack: {:?}",
        inc.timeline
    );
    let reminded = inc
        .timeline
        .iter()
        .filter(|e| matches!(e.action, Action::Reminded { .. }))
        .count();
    assert_eq!(reminded as u32, inc.reminders);
    assert!(inc.reminders >= 3, "{} reminders", inc.reminders);
    assert_eq!(inc.tier, 1, "reached the second tier");
    app.stop().await;
}

/// README, escalation: "Timings can differ per severity. The schedule is derived from the
/// incident's stored fields, so a restart neither loses nor repeats it."
#[tokio::test]
async fn reminders_follow_their_severitys_timing_and_a_restart_neither_loses_nor_repeats_them() {
    let every = Duration::from_millis(1500);
    let escalation = move |c: &mut tocsin::Config| {
        let mut e = policy();
        // High incidents: no reminder within the test; critical ones: every 1.5 s.
        e.renotify_after = Duration::from_secs(600);
        e.escalate_after = None;
        e.severity.insert(
            Severity::Critical,
            Route {
                renotify_after: Some(every),
                escalate_after: None,
            },
        );
        c.escalation = Some(e);
    };
    let app = spawn_app_with(escalation).await;
    let post = app.publish("send 1 BTC, get 2 back");
    app.masto.update_profile(
        ACCOUNT_ID,
        ProfileUpdate {
            note: Some("<p>Claim your BTC now</p>".into()),
            ..Default::default()
        },
    );
    until(
        || {
            app.incident_by_object(&post)
                .is_some_and(|i| i.reminders >= 1)
        },
        "the critical incident's first reminder",
    )
    .await;
    let id = app.incident_by_object(&post).unwrap().id;
    let (masto, bot, state) = app.stop().await;
    // Down for longer than two intervals: one reminder is due at the restart, not three.
    tokio::time::sleep(every * 2 + Duration::from_millis(500)).await;
    let app = start_with(masto, bot, state, escalation).await;
    until(
        || app.store.incident(id).unwrap().unwrap().reminders >= 3,
        "reminders after the restart",
    )
    .await;
    let inc = app.store.incident(id).unwrap().unwrap();
    let times: Vec<_> = inc
        .timeline
        .iter()
        .filter(|e| matches!(e.action, Action::Reminded { .. }))
        .map(|e| e.at)
        .collect();
    for pair in times.windows(2) {
        let gap = (pair[1] - pair[0]).to_std().unwrap();
        assert!(
            gap >= every - Duration::from_millis(100),
            "reminders {gap:?} apart, under the 1.5 s interval: {times:?}"
        );
    }
    let profile = app.incident_by_object("profile").unwrap();
    assert_eq!(profile.severity, Severity::High);
    assert_eq!(
        profile.reminders, 0,
        "the high incident follows its own timing"
    );
    app.stop().await;
}
