//! Paging that cannot be missed: mutes, approval quorum, and the tamper-evident timeline.

use std::{collections::BTreeMap, process::Command};

use tocsin::{
    config::Paging,
    model::{Action, Rule, Severity, State},
};

use crate::support::*;

/// Pages are the messages with buttons; replies to commands have none.
fn pages(app: &TestApp) -> usize {
    app.bot
        .sent()
        .iter()
        .filter(|m| m.reply_markup.is_some())
        .count()
}

fn replied(app: &TestApp, needle: &str) -> bool {
    app.bot.sent().iter().any(|m| m.text.contains(needle))
}

async fn wait_reply(app: &TestApp, needle: &str) {
    until(|| replied(app, needle), needle).await;
}

/// Makes a rogue post mutable (it is not by default), for the tests of what a mute holds.
fn mutable_posts(c: &mut tocsin::config::Config) {
    c.paging.unmutable = vec![];
}

#[tokio::test]
async fn a_muted_account_records_the_rogue_post_and_pages_it_when_the_mute_expires() {
    let app = spawn_app_with(mutable_posts).await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/mute {ACCOUNT} 3s"));
    wait_reply(&app, &format!("{ACCOUNT} muted by @alice (111) until")).await;
    let mute = app.store.mutes().unwrap().remove(0);
    let post = app.publish("free BTC giveaway, send 1 get 2");
    until(|| app.incident_by_object(&post).is_some(), "the incident").await;
    let checked_at = chrono::Utc::now();
    assert_eq!(pages(&app), 0, "recorded, not paged, while muted");
    assert_eq!(app.store.outbox_depth().unwrap().0, 0);
    assert!(checked_at < mute.until, "the check ran inside the mute");
    app.bot.push_command(CHAT, &responder(), "/status");
    wait_reply(&app, &format!("Muted: {ACCOUNT} until")).await;

    until(|| pages(&app) == 1, "the held page after expiry").await;
    assert!(chrono::Utc::now() >= mute.until);
    until(
        || app.incident_by_object(&post).unwrap().page.is_some(),
        "the page recorded",
    )
    .await;
    assert!(app.store.verify_timeline().unwrap().is_ok());
    app.stop().await;
}

#[tokio::test]
async fn an_unmutable_rule_pages_through_a_mute() {
    let app = spawn_app_with(|c| {
        c.paging = Paging {
            unmutable: vec![Rule::UnapprovedPost],
            ..Paging::default()
        }
    })
    .await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/mute {ACCOUNT} 1h"));
    wait_reply(&app, "muted by @alice").await;
    app.publish("free BTC giveaway, send 1 get 2");
    until(|| pages(&app) == 1, "the page despite the mute").await;
    app.stop().await;
}

#[tokio::test]
async fn one_responder_muting_for_a_week_does_not_hold_a_rogue_post_page() {
    // The default configuration: two responders, nothing configured under [paging].
    let app = spawn_app().await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/mute {ACCOUNT} 7d"));
    wait_reply(&app, "needs a second responder").await;
    assert!(
        app.store.mutes().unwrap().is_empty(),
        "one press mutes nothing"
    );
    // The same responder asking again is still one responder.
    app.bot
        .push_command(CHAT, &responder(), &format!("/mute {ACCOUNT} 7d"));
    until(
        || {
            app.bot
                .sent()
                .iter()
                .filter(|m| m.text.contains("needs a second responder"))
                .count()
                == 2
        },
        "the second refusal",
    )
    .await;
    assert!(app.store.mutes().unwrap().is_empty());
    let post = app.publish("free BTC giveaway, send 1 get 2");
    until(|| pages(&app) == 1, "the rogue post paged").await;
    assert!(app.incident_by_object(&post).is_some());

    // A second, different responder confirms: the account is muted (for the shorter of the two
    // requests), yet a rogue post is unmutable by default and still pages.
    app.bot
        .push_command(CHAT, &second_responder(), &format!("/mute {ACCOUNT} 2d"));
    wait_reply(&app, &format!("{ACCOUNT} muted by @bob (222) until")).await;
    let mute = app.store.mutes().unwrap().remove(0);
    let days = (mute.until - mute.at).num_hours();
    assert_eq!(days, 48, "the shorter request is granted");
    let second = app.publish("free ETH giveaway, send 1 get 2");
    // It joins the first post's burst: its page is updated, not held.
    let joined = || {
        app.store
            .incidents()
            .unwrap()
            .into_iter()
            .find(|i| i.object == second || i.members.iter().any(|m| m.object == second))
    };
    until(|| joined().is_some(), "the second post recorded").await;
    until(
        || app.store.outbox_depth().unwrap().0 == 0,
        "the page update sent",
    )
    .await;
    assert!(app.store.held().unwrap().is_empty(), "nothing held");
    assert!(joined().unwrap().page.is_some());
    app.stop().await;
}

#[tokio::test]
async fn mute_is_for_responders_and_known_accounts_and_unmute_sends_held_pages() {
    let app = spawn_app_with(mutable_posts).await;
    app.bot
        .push_command(CHAT, &outsider(), &format!("/mute {ACCOUNT} 1h"));
    wait_reply(&app, "Refused: user 666 is not an on-call responder.").await;
    app.bot
        .push_command(CHAT, &responder(), "/mute mastodon-typo 1h");
    wait_reply(
        &app,
        "Refused: there is no account `mastodon-typo`; known accounts: mastodon-main.",
    )
    .await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/mute {ACCOUNT} 8d"));
    wait_reply(&app, "Refused: a mute lasts at most 7 days").await;
    assert!(app.store.mutes().unwrap().is_empty());

    app.bot
        .push_command(CHAT, &responder(), &format!("/mute {ACCOUNT} 1h"));
    wait_reply(&app, "muted by @alice").await;
    let post = app.publish("free BTC giveaway, send 1 get 2");
    until(|| app.incident_by_object(&post).is_some(), "the incident").await;
    assert_eq!(pages(&app), 0);
    app.bot
        .push_command(CHAT, &second_responder(), &format!("/unmute {ACCOUNT}"));
    wait_reply(&app, &format!("{ACCOUNT} unmuted by @bob (222)")).await;
    until(|| pages(&app) == 1, "the held page after /unmute").await;

    let actions: Vec<_> = app
        .store
        .timeline_records()
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.entry.incident.is_none()
                && matches!(r.entry.action, Action::Muted { .. } | Action::Unmuted)
        })
        .map(|r| {
            (
                r.entry.who,
                serde_json::to_value(&r.entry.action).unwrap()["action"].clone(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("@alice (111)".to_string(), "muted".into()),
            ("@bob (222)".to_string(), "unmuted".into())
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn quorum_needs_a_second_different_responder_and_the_page_says_who_waits() {
    let app = spawn_app_with(|c| {
        c.paging = Paging {
            approve_quorum: BTreeMap::from([(Severity::Critical, 2)]),
            ..Paging::default()
        }
    })
    .await;
    let post = app.publish("free BTC giveaway, send 1 get 2");
    until(|| pages(&app) == 1, "the page").await;
    let id = app.incident_by_object(&post).unwrap().id;
    let msg = app.bot.sent()[0].message_id;

    app.bot
        .press_button(CHAT, &responder(), msg, &format!("approve:{id}"));
    until(
        || {
            app.bot
                .message(CHAT, msg)
                .unwrap()
                .text
                .contains("Approve: 1/2 — waiting for a second responder (voted: @alice)")
        },
        "the page showing the vote",
    )
    .await;
    assert_eq!(
        app.bot.callback_answers()[0].text.as_deref(),
        Some(
            format!(
                "Approval of incident #{id} by @alice (111) recorded (1/2); another responder must confirm."
            )
            .as_str()
        )
    );
    app.bot
        .push_command(CHAT, &responder(), &format!("/approve {id}"));
    wait_reply(&app, "you already voted to approve incident").await;
    let inc = app.store.incident(id).unwrap().unwrap();
    assert_eq!(
        inc.state,
        State::Open,
        "the same responder twice is one vote"
    );
    assert_eq!(inc.approve_votes().count(), 1);

    app.bot
        .press_button(CHAT, &second_responder(), msg, &format!("approve:{id}"));
    until(
        || app.store.incident(id).unwrap().unwrap().state == State::Resolved,
        "the approval",
    )
    .await;
    let inc = app.store.incident(id).unwrap().unwrap();
    assert_eq!(inc.resolved_by.unwrap().id, second_responder().id);
    until(
        || {
            app.bot
                .message(CHAT, msg)
                .unwrap()
                .text
                .contains("RESOLVED (approved) by @bob (222)")
        },
        "the resolved page",
    )
    .await;
    assert!(!app.bot.message(CHAT, msg).unwrap().text.contains("waiting"));
    app.stop().await;
}

#[tokio::test]
async fn a_single_false_alarm_on_a_critical_incident_waits_for_a_second_responder() {
    // The default configuration: two responders, nothing configured under [paging].
    let app = spawn_app().await;
    let post = app.publish("free BTC giveaway, send 1 get 2");
    until(|| pages(&app) == 1, "the page").await;
    let inc = app.incident_by_object(&post).unwrap();
    assert_eq!(inc.severity, Severity::Critical);
    let id = inc.id;
    app.bot
        .push_command(CHAT, &responder(), &format!("/resolve {id} false-alarm"));
    wait_reply(&app, "another responder must confirm").await;
    let inc = app.store.incident(id).unwrap().unwrap();
    assert_ne!(inc.state, State::Resolved, "one responder resolves nothing");
    assert_eq!(inc.false_alarm_votes().count(), 1);
    app.bot
        .push_command(CHAT, &responder(), &format!("/resolve {id} false-alarm"));
    wait_reply(&app, "you already voted to resolve incident").await;
    assert_ne!(
        app.store.incident(id).unwrap().unwrap().state,
        State::Resolved
    );

    app.bot.push_command(
        CHAT,
        &second_responder(),
        &format!("/resolve {id} false-alarm"),
    );
    wait_reply(&app, &format!("Incident #{id} resolved")).await;
    let inc = app.store.incident(id).unwrap().unwrap();
    assert_eq!(inc.state, State::Resolved);
    assert_eq!(inc.resolved_by.unwrap().id, second_responder().id);
    let report = app.store.verify_timeline().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(
        app.store
            .timeline_records()
            .unwrap()
            .iter()
            .any(|r| matches!(
                r.entry.action,
                Action::FalseAlarmVote {
                    votes: 1,
                    needed: 2
                }
            ))
    );
    app.stop().await;
}

#[tokio::test]
async fn timeline_exports_since_a_time_and_log_verify_catches_a_hand_edit() {
    // One responder's false alarm ends the incident here: the export is under test.
    let app = spawn_app_with(|c| {
        c.paging.resolve_quorum = BTreeMap::from([(Severity::Critical, 1)]);
    })
    .await;
    let post = app.publish("free BTC giveaway, send 1 get 2");
    until(|| pages(&app) == 1, "the page").await;
    let id = app.incident_by_object(&post).unwrap().id;
    until(
        || app.store.incident(id).unwrap().unwrap().page.is_some(),
        "the page recorded",
    )
    .await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/ack {id}"));
    wait_reply(&app, "acknowledged by @alice").await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/resolve {id} false-alarm"));
    wait_reply(&app, "resolved (false alarm)").await;
    assert!(app.store.verify_timeline().unwrap().is_ok());

    let since = cut.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let (ok, stdout, stderr) = app.cli(&["incidents", "export", "--since", &since]).await;
    assert!(ok, "{stderr}");
    let exported: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported.len(), 1, "{stdout}");
    let e = &exported[0];
    assert_eq!(e["incident"], id);
    assert_eq!(e["action"], "resolved");
    assert_eq!(e["resolution"], "false_alarm");
    assert_eq!(e["who"], "@alice (111)");
    let all = app.store.timeline_records().unwrap();
    let last = all.last().unwrap();
    assert_eq!(e["seq"], last.seq);
    assert_eq!(e["hash"], last.hash.as_str());
    assert!(all[..all.len() - 1].iter().all(|r| r.at < cut));

    let (ok, stdout, _) = app.cli(&["incidents", "export", "--since", "1h"]).await;
    assert!(ok);
    assert_eq!(
        stdout.lines().count(),
        all.len(),
        "opened, paged, acked, resolved"
    );
    let (ok, _, stderr) = app.cli(&["incidents", "export", "--since", "lately"]).await;
    assert!(!ok);
    assert!(stderr.contains("query parameter `since`"), "{stderr}");

    let (_, _, state) = app.stop().await;
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["log", "verify", "--state"])
            .arg(state.path())
            .output()
            .unwrap()
    };
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // Opened, paged, acked, resolved, and the two posts seen.
    assert!(
        stdout.contains("incident timeline ok: 6 events"),
        "{stdout}"
    );

    // Someone with the file makes the ack look like someone else's, and rewrites the chain's
    // first event; both are reported.
    {
        let db = sled::open(state.path()).unwrap();
        let incidents = db.open_tree("incidents").unwrap();
        let (key, value) = incidents.last().unwrap().unwrap();
        let mut inc: serde_json::Value = serde_json::from_slice(&value).unwrap();
        inc["timeline"][2]["who"] = "@mallory (666)".into();
        incidents
            .insert(key, serde_json::to_vec(&inc).unwrap())
            .unwrap();
        let meta = db.open_tree("meta").unwrap();
        let key = [&b"timeline/"[..], &0u64.to_be_bytes()].concat();
        let mut first: serde_json::Value =
            serde_json::from_slice(&meta.get(&key).unwrap().unwrap()).unwrap();
        first["who"] = "someone else".into();
        meta.insert(key, serde_json::to_vec(&first).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("approved log ok"), "{stdout}");
    assert!(stdout.contains("incident timeline TAMPERED"), "{stdout}");
    assert!(
        stdout.contains("timeline event 0: content does not match its hash"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "incident #{id}: its timeline does not match the timeline chain"
        )),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_held_page_gets_no_reminders_and_reminders_are_chained_once_it_is_sent() {
    let app = spawn_app_with(|c| {
        mutable_posts(c);
        c.escalation = Some(tocsin::config::Escalation {
            renotify_after: std::time::Duration::from_millis(200),
            escalate_after: None,
            tiers: vec![],
            severity: Default::default(),
        })
    })
    .await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/mute {ACCOUNT} 1h"));
    wait_reply(&app, "muted by @alice").await;
    let post = app.publish("free BTC giveaway, send 1 get 2");
    until(|| app.incident_by_object(&post).is_some(), "the incident").await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let inc = app.incident_by_object(&post).unwrap();
    assert_eq!(inc.reminders, 0, "nothing was paged to remind of");
    assert_eq!(app.bot.sent().len(), 1, "only the reply to /mute");

    app.bot
        .push_command(CHAT, &responder(), &format!("/unmute {ACCOUNT}"));
    until(|| pages(&app) == 1, "the held page").await;
    until(
        || app.incident_by_object(&post).unwrap().reminders >= 1,
        "a reminder",
    )
    .await;
    let report = app.store.verify_timeline().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(
        app.store
            .timeline_records()
            .unwrap()
            .iter()
            .any(|r| serde_json::to_value(&r.entry.action).unwrap()["action"] == "reminded")
    );
    app.stop().await;
}

#[tokio::test]
async fn mutes_unmutes_and_a_critical_resolution_are_each_a_new_chat_message() {
    let app = spawn_app().await;
    let post = app.publish("free BTC giveaway, send 1 get 2");
    until(|| pages(&app) == 1, "the page").await;
    let inc = app.incident_by_object(&post).unwrap();
    assert_eq!(inc.severity, Severity::Critical);
    until(
        || app.store.incident(inc.id).unwrap().unwrap().page.is_some(),
        "the page recorded",
    )
    .await;
    let page = app.store.incident(inc.id).unwrap().unwrap().page.unwrap();

    // The Resolve button: the press is answered in a toast and the page is edited; the chat
    // hears of it in a message of its own, replying to the page.
    app.bot.press_button(
        CHAT,
        &responder(),
        page.message_id,
        &format!("resolve:{}", inc.id),
    );
    let announced = format!(
        "Incident #{} (CRITICAL · social.unapproved_post on {ACCOUNT}) resolved (contained) by @alice (111)",
        inc.id
    );
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains(&announced) && m.reply_to == Some(page.message_id))
        },
        "the resolution announced",
    )
    .await;
    assert!(
        app.bot.edits().iter().all(|e| !e.text.contains(&announced)),
        "a message of its own, not an edit"
    );

    app.bot
        .push_command(CHAT, &responder(), &format!("/mute {ACCOUNT} 30m"));
    wait_reply(&app, &format!("{ACCOUNT} muted by @alice (111) until")).await;
    app.bot
        .push_command(CHAT, &second_responder(), &format!("/unmute {ACCOUNT}"));
    wait_reply(&app, &format!("{ACCOUNT} unmuted by @bob (222)")).await;
    for said in ["muted by @alice", "unmuted by @bob"] {
        assert!(
            app.bot.edits().iter().all(|e| !e.text.contains(said)),
            "{said}: a new message, not an edit"
        );
    }
    app.stop().await;
}
