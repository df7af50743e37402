//! The incident lifecycle against a real store: dedup, actions, quorum, mutes, the timeline chain.

use super::*;
use crate::model::{FieldChange, Resolution, Severity};

fn profile_finding(after: &str) -> Outcome {
    let mut changes = std::collections::BTreeMap::new();
    changes.insert(
        "note".to_string(),
        FieldChange {
            before: Some("hi".into()),
            after: after.into(),
        },
    );
    Outcome {
        finding: Some(Finding {
            rule: Rule::ProfileChanged,
            severity: Severity::High,
            account: "main".into(),
            object: "profile".into(),
            evidence: Evidence::Profile { changes },
            changed_at: None,
            seen_at: Utc::now(),
        }),
        writes: vec![],
    }
}

fn alice() -> Actor {
    Actor {
        id: 1,
        name: "alice".into(),
    }
}

#[tokio::test]
async fn dedup_ack_approve_and_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let incidents = Incidents::new(store.clone(), Arc::new(Notify::new()));
    assert_eq!(
        incidents.record(&profile_finding("pwned")).await.unwrap(),
        Recorded::Opened(1)
    );
    assert_eq!(
        incidents.record(&profile_finding("pwned")).await.unwrap(),
        Recorded::Nothing
    );
    assert_eq!(
        incidents.record(&profile_finding("pwned!")).await.unwrap(),
        Recorded::Updated(1)
    );
    assert_eq!(store.outbox_depth().unwrap().0, 2);

    let inc = incidents.ack(1, &alice()).await.unwrap();
    assert_eq!(inc.state, State::Acked);
    assert!(matches!(
        incidents.ack(1, &alice()).await,
        Err(ActionError::AlreadyAcked { .. })
    ));
    assert!(matches!(
        incidents.ack(9, &alice()).await,
        Err(ActionError::NotFound(9))
    ));

    let inc = incidents.approve(1, &alice()).await.unwrap();
    assert_eq!(inc.resolution, Some(Resolution::Approved));
    assert_eq!(
        store.baseline("main", "note").unwrap().unwrap().value,
        "pwned!"
    );
    let err = incidents
        .resolve(1, &alice(), Resolution::Contained)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "incident #1 is already resolved (approved) by alice (1)"
    );
    // The same evidence after resolution is not a new incident.
    assert_eq!(
        incidents.record(&profile_finding("pwned!")).await.unwrap(),
        Recorded::AlreadyJudged(1)
    );
    assert_eq!(
        incidents.record(&profile_finding("again")).await.unwrap(),
        Recorded::Opened(2)
    );
    let actions: Vec<_> = store
        .incident(1)
        .unwrap()
        .unwrap()
        .timeline
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        vec![
            Action::Opened,
            Action::Updated,
            Action::Acked,
            Action::Approved
        ]
    );
}

fn bob() -> Actor {
    Actor {
        id: 2,
        name: "bob".into(),
    }
}

fn policy() -> PagingPolicy {
    PagingPolicy {
        accounts: ["main".to_string()].into(),
        ..PagingPolicy::default()
    }
}

#[tokio::test]
async fn timeline_chain_matches_the_incidents_and_catches_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let incidents = Incidents::new(store.clone(), Arc::new(Notify::new())).with_policy(policy());
    incidents.record(&profile_finding("pwned")).await.unwrap();
    incidents.record(&profile_finding("pwned!")).await.unwrap();
    incidents.ack(1, &alice()).await.unwrap();
    incidents
        .mute("main", std::time::Duration::from_secs(60), &bob())
        .await
        .unwrap();
    incidents
        .resolve(1, &bob(), Resolution::Contained)
        .await
        .unwrap();
    let report = store.verify_timeline().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let records = store.timeline_records().unwrap();
    assert_eq!(report.entries, 5);
    assert_eq!(records[3].entry.incident, None, "the mute is account-level");
    assert_eq!(records[3].entry.account, "main");

    // Someone with the file moves the ack to another responder.
    let mut inc = store.incident(1).unwrap().unwrap();
    inc.timeline[2].who = "mallory (666)".into();
    store.transact(|tx| tx.put_incident(&inc)).unwrap();
    assert_eq!(
        store.verify_timeline().unwrap().problems,
        vec!["incident #1: its timeline does not match the timeline chain".to_string()]
    );
}

#[tokio::test]
async fn quorum_needs_two_different_responders() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut p = policy();
    p.approve_quorum.insert(Severity::High, 2);
    let incidents = Incidents::new(store.clone(), Arc::new(Notify::new())).with_policy(p);
    incidents.record(&profile_finding("pwned")).await.unwrap();
    let inc = incidents.approve(1, &alice()).await.unwrap();
    assert_eq!(inc.state, State::Open, "one vote is not enough");
    assert_eq!(inc.approve_votes().count(), 1);
    assert!(store.baseline("main", "note").unwrap().is_none());
    assert!(matches!(
        incidents.approve(1, &alice()).await,
        Err(ActionError::AlreadyVoted { id: 1 })
    ));
    // New evidence drops the vote: alice approved what she saw, not this.
    incidents.record(&profile_finding("pwned!")).await.unwrap();
    assert_eq!(store.incident(1).unwrap().unwrap().votes, vec![]);
    incidents.approve(1, &alice()).await.unwrap();
    let inc = incidents.approve(1, &bob()).await.unwrap();
    assert_eq!(inc.resolution, Some(Resolution::Approved));
    assert_eq!(inc.resolved_by, Some(bob()));
    let actions: Vec<_> = inc.timeline.iter().map(|e| e.action.clone()).collect();
    assert_eq!(
        actions,
        vec![
            Action::Opened,
            Action::ApprovalVote {
                votes: 1,
                needed: 2,
                seen: None
            },
            Action::Updated,
            Action::ApprovalVote {
                votes: 1,
                needed: 2,
                seen: None
            },
            Action::Approved
        ]
    );
    assert!(store.verify_timeline().unwrap().is_ok());
}

#[tokio::test]
async fn mute_holds_pages_until_lifted_except_unmutable_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let incidents = Incidents::new(store.clone(), Arc::new(Notify::new())).with_policy(policy());
    assert!(matches!(
        incidents
            .mute("other", std::time::Duration::from_secs(60), &alice())
            .await,
        Err(MuteError::UnknownAccount { .. })
    ));
    assert!(matches!(
        incidents
            .mute(
                "main",
                std::time::Duration::from_secs(8 * 24 * 3600),
                &alice()
            )
            .await,
        Err(MuteError::TooLong(_))
    ));
    incidents
        .mute("main", std::time::Duration::from_secs(3600), &alice())
        .await
        .unwrap();
    assert_eq!(
        incidents.record(&profile_finding("pwned")).await.unwrap(),
        Recorded::Opened(1)
    );
    assert_eq!(store.outbox_depth().unwrap().0, 0, "held, not paged");
    assert_eq!(store.held().unwrap(), vec![1]);
    assert_eq!(incidents.release_held().await.unwrap(), 0, "still muted");
    incidents.unmute("main", &bob()).await.unwrap();
    assert_eq!(store.outbox_depth().unwrap().0, 1, "paged when lifted");
    assert!(store.held().unwrap().is_empty());
    assert!(matches!(
        incidents.unmute("main", &bob()).await,
        Err(MuteError::NotMuted(_))
    ));

    // An unmutable rule pages through a mute.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut p = policy();
    p.unmutable.push(Rule::ProfileChanged);
    let incidents = Incidents::new(store.clone(), Arc::new(Notify::new())).with_policy(p);
    incidents
        .mute("main", std::time::Duration::from_secs(3600), &alice())
        .await
        .unwrap();
    incidents.record(&profile_finding("pwned")).await.unwrap();
    assert_eq!(store.outbox_depth().unwrap().0, 1);
}

#[test]
fn silencing_quorums_default_to_two_on_critical_only_with_two_responders() {
    use crate::config::{Config, tests::GOOD};
    let two = Config::parse(GOOD, "t.toml").unwrap();
    let p = PagingPolicy::from_config(&two);
    assert_eq!(p.approve_quorum(Severity::Critical), 2);
    assert_eq!(p.resolve_quorum(Severity::Critical), 2);
    assert_eq!(p.approve_quorum(Severity::High), 1);
    assert_eq!(p.takedown_quorum(), 1, "containing stays one press");
    assert_eq!(
        p.mute_without_quorum,
        Some(std::time::Duration::from_secs(3600))
    );

    let one = Config::parse(
        &GOOD.replace("responders = [1, 2]", "responders = [1]"),
        "t.toml",
    )
    .unwrap();
    let p = PagingPolicy::from_config(&one);
    assert_eq!(p.approve_quorum(Severity::Critical), 1);
    assert_eq!(p.resolve_quorum(Severity::Critical), 1);
    assert_eq!(p.mute_without_quorum, None);

    // Said explicitly, a quorum of one holds with two responders.
    let text = format!("{GOOD}\n[paging]\napprove_quorum = {{ critical = 1 }}\n");
    let p = PagingPolicy::from_config(&Config::parse(&text, "t.toml").unwrap());
    assert_eq!(p.approve_quorum(Severity::Critical), 1);
    assert_eq!(p.resolve_quorum(Severity::Critical), 2);
}

fn blind_finding() -> Outcome {
    Outcome {
        finding: Some(Finding {
            rule: Rule::MonitorBlind,
            severity: Severity::High,
            account: "main".into(),
            object: "source".into(),
            evidence: Evidence::Channel {
                channel: "mastodon source".into(),
                problem: "the token was refused (401)".into(),
                since: Utc::now(),
            },
            changed_at: None,
            seen_at: Utc::now(),
        }),
        writes: vec![],
    }
}

#[tokio::test]
async fn a_still_blind_source_takes_two_responders_to_resolve_whatever_its_severity() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let sees = Arc::new(AtomicBool::new(false));
    let sight = sees.clone();
    let incidents = Incidents::new(store.clone(), Arc::new(Notify::new()))
        .with_sight(Arc::new(move |_, _| sight.load(Ordering::SeqCst)));
    assert_eq!(
        incidents.record(&blind_finding()).await.unwrap(),
        Recorded::Opened(1)
    );
    let inc = incidents
        .resolve(1, &alice(), Resolution::Contained)
        .await
        .unwrap();
    assert_eq!(inc.state, State::Open, "one responder is a vote");
    assert_eq!(inc.resolve_votes().count(), 1);
    assert!(matches!(
        incidents.resolve(1, &alice(), Resolution::Contained).await,
        Err(ActionError::AlreadyVotedResolve { id: 1 })
    ));
    assert!(
        matches!(
            incidents.approve(1, &alice()).await.unwrap().state,
            State::Open
        ),
        "Approve does not close it either"
    );
    let inc = incidents
        .resolve(1, &bob(), Resolution::Contained)
        .await
        .unwrap();
    assert_eq!(inc.state, State::Resolved);
    assert_eq!(inc.resolved_by, Some(bob()));
    assert!(inc.resolve_votes().next().is_none());
    assert!(store.verify_timeline().unwrap().is_ok());

    // The next outage, once the source sees again: one responder is enough.
    let mut next = blind_finding();
    if let Some(Finding {
        evidence: Evidence::Channel { since, .. },
        ..
    }) = &mut next.finding
    {
        *since += chrono::Duration::seconds(1);
    }
    assert_eq!(incidents.record(&next).await.unwrap(), Recorded::Opened(2));
    sees.store(true, Ordering::SeqCst);
    let inc = incidents
        .resolve(2, &alice(), Resolution::Contained)
        .await
        .unwrap();
    assert_eq!(inc.state, State::Resolved);
    assert!(store.verify_timeline().unwrap().is_ok());
}
