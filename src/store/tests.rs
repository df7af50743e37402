//! The store's invariants: chains verify and catch edits, indexes agree with the log.

use super::*;
use crate::model::digest;

fn post(account: &str, fp: &str) -> ApprovedEntry {
    ApprovedEntry::ApprovedPost {
        account: account.into(),
        fingerprint: Some(fp.into()),
        post_id: None,
        expires_at: None,
        by: "test".into(),
        note: None,
    }
}

#[test]
fn chain_verifies_and_catches_an_edited_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    store.approve(post("a", "f1"), now).unwrap();
    store
        .transact(|tx| tx.set_baseline("a", "note", "hello", "test", now))
        .unwrap();
    store.approve(post("a", "f2"), now).unwrap();
    let report = store.verify_log().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 3);
    assert!(store.is_post_approved("a", "f2", "x", now).unwrap());
    assert!(!store.is_post_approved("b", "f2", "x", now).unwrap());

    // Rewrite entry 1 as someone with the file would: valid JSON, changed content.
    let raw = store.approved_log.get(be(0)).unwrap().unwrap();
    let mut record: LogRecord = serde_json::from_slice(&raw).unwrap();
    record.entry = post("a", "rogue");
    store.approved_log.insert(be(0), encode(&record)).unwrap();
    let report = store.verify_log().unwrap();
    assert_eq!(
        report.problems,
        vec!["entry 0: content does not match its hash".to_string()]
    );
}

#[test]
fn incidents_from_before_the_timeline_chain_are_adopted_once() {
    use crate::model::{Action, Evidence, Incident, Rule, Severity, TimelineEvent};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    let evidence = Evidence::Profile {
        changes: Default::default(),
    };
    let incident = Incident {
        timeline: vec![TimelineEvent {
            at: now,
            who: "tocsin".into(),
            action: Action::Opened,
        }],
        ..Incident::opened(
            1,
            Rule::ProfileChanged,
            Severity::High,
            "a",
            "profile",
            evidence,
        )
    };
    let entry = TimelineEntry {
        incident: Some(1),
        account: "a".into(),
        who: "tocsin".into(),
        action: Action::Opened,
    };
    // As `incidents` writes it: the record and its chained event in one transaction.
    store
        .transact(|tx| {
            tx.put_incident(&incident)?;
            tx.append_timeline(entry.clone(), now)
        })
        .unwrap();
    assert_eq!(
        store.adopt_unchained_timelines().unwrap(),
        0,
        "already chained"
    );
    // What an older build left behind: incidents with timelines, no chain.
    for k in store.meta.scan_prefix(TIMELINE).keys() {
        store.meta.remove(k.unwrap()).unwrap();
    }
    store.meta.remove(TIMELINE_HEAD).unwrap();
    assert!(!store.verify_timeline().unwrap().is_ok());
    assert_eq!(store.adopt_unchained_timelines().unwrap(), 1);
    let report = store.verify_timeline().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(store.adopt_unchained_timelines().unwrap(), 0);
}

#[test]
fn baseline_index_must_match_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    store
        .transact(|tx| tx.set_baseline("a", "url", "https://ok", "t", now))
        .unwrap();
    assert_eq!(
        store.baseline("a", "url").unwrap().unwrap().value,
        "https://ok"
    );
    let forged = BaselineValue {
        value: "https://evil".into(),
        digest: digest("https://evil"),
        seq: 0,
    };
    store
        .baselines
        .insert(key2("a", "url"), encode(&forged))
        .unwrap();
    let report = store.verify_log().unwrap();
    assert_eq!(
        report.problems,
        vec!["baseline a/url: does not match the approved log".to_string()]
    );
}

#[test]
fn revocation_unapproves_and_keeps_the_chain_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    store.approve(post("a", "f1"), now).unwrap();
    store
        .transact(|tx| tx.set_baseline("a", "url", "https://ok", "t", now))
        .unwrap();
    assert!(store.is_post_approved("a", "f1", "x", now).unwrap());

    let record = store.revoke(0, "posted by mistake", "alice", now).unwrap();
    assert_eq!(record.seq, 2);
    assert_eq!(
        record.entry,
        ApprovedEntry::Revocation {
            seq: 0,
            reason: "posted by mistake".into(),
            by: "alice".into()
        }
    );
    assert!(!store.is_post_approved("a", "f1", "x", now).unwrap());
    assert_eq!(store.revocations().unwrap(), [(0, 2)].into_iter().collect());
    let report = store.verify_log().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 3);

    assert!(matches!(
        store.revoke(0, "again", "bob", now),
        Err(RevokeError::AlreadyRevoked { seq: 0, by_seq: 2 })
    ));
    assert!(matches!(
        store.revoke(1, "r", "bob", now),
        Err(RevokeError::Baseline(1))
    ));
    assert!(matches!(
        store.revoke(2, "r", "bob", now),
        Err(RevokeError::Revocation(2))
    ));
    assert!(matches!(
        store.revoke(9, "r", "bob", now),
        Err(RevokeError::NotFound(9))
    ));
    assert_eq!(store.log_len().unwrap(), 3, "refusals append nothing");
    // Approving the content again is how it comes back.
    store.approve(post("a", "f1"), now).unwrap();
    assert!(store.is_post_approved("a", "f1", "x", now).unwrap());
}

#[test]
fn revoking_an_older_approval_leaves_a_newer_one_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    store.approve(post("a", "f1"), now).unwrap();
    store.approve(post("a", "f1"), now).unwrap();
    store.revoke(0, "superseded", "t", now).unwrap();
    assert!(store.is_post_approved("a", "f1", "x", now).unwrap());
    let report = store.verify_log().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn tampered_revocation_indexes_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    store.approve(post("a", "f1"), now).unwrap();
    store.revoke(0, "mistake", "t", now).unwrap();

    // Someone with the file puts the approval back in force.
    let key = key2("a", "fp:f1");
    store.approved_posts.insert(&key, &be(0)).unwrap();
    let report = store.verify_log().unwrap();
    assert_eq!(
        report.problems,
        vec!["approved post a/fp:f1: does not match the approved log".to_string()]
    );
    store.approved_posts.remove(&key).unwrap();

    store.revoked.remove(be(0)).unwrap();
    let report = store.verify_log().unwrap();
    assert_eq!(
        report.problems,
        vec!["revocations: the index does not match the approved log".to_string()]
    );
}

/// Opens a database this process just closed. sled lets go of its file lock when its
/// background flusher drops its handle, a moment after the last one of ours: under load that
/// moment can come after the next open.
fn reopen(dir: &std::path::Path) -> Store {
    for _ in 0..100 {
        match Store::open(dir) {
            Err(StoreError::Open { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.unwrap(),
        }
    }
    Store::open(dir).unwrap()
}

#[test]
fn pages_queued_by_the_one_channel_version_move_to_telegram() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        // As the previous version wrote them: 8-byte key, no channel field.
        let old = serde_json::json!({"incident_id": 3, "enqueued_at": Utc::now()});
        store.outbox.insert(be(5), encode(&old)).unwrap();
        store.db.flush().unwrap();
    }
    let store = reopen(dir.path());
    let (seq, entry) = store.outbox_first(TELEGRAM).unwrap().unwrap();
    assert_eq!((seq, entry.incident_id), (5, 3));
    assert_eq!(entry.channel, TELEGRAM);
    assert_eq!(store.outbox_depth().unwrap().0, 1);
    store.drop_unrouted(&["pagerduty:ops"]).unwrap();
    assert_eq!(store.outbox_depth().unwrap().0, 0);
}

#[test]
fn expired_approval_no_longer_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    let entry = ApprovedEntry::ApprovedPost {
        account: "a".into(),
        fingerprint: None,
        post_id: Some("7".into()),
        expires_at: Some(now + chrono::Duration::minutes(1)),
        by: "t".into(),
        note: None,
    };
    store.approve(entry, now).unwrap();
    assert!(store.is_post_approved("a", "whatever", "7", now).unwrap());
    assert!(
        !store
            .is_post_approved("a", "whatever", "7", now + chrono::Duration::minutes(2))
            .unwrap()
    );
}

#[test]
fn mail_counters_are_bounded_pruned_and_the_salt_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = store.address_key().unwrap();
    assert_eq!(
        store.address_key().unwrap().hash("a@b.example"),
        key.hash("a@b.example"),
        "one salt per install"
    );
    let now = Utc::now();
    let old = (now - chrono::Duration::hours(3)).timestamp();
    let mut many = crate::model::Distinct::default();
    for i in 0..150_000 {
        many.insert(key.hash(&format!("c{i}@x.example")));
    }
    let merged = store
        .transact(|tx| {
            tx.add_mail_volume("s@corp.example", old, 10)?;
            tx.add_mail_volume("s@corp.example", now.timestamp(), 5)?;
            tx.mail_set_merge(42, b'a', &many)
        })
        .unwrap();
    assert!(merged.is_estimate());
    assert!(merged.to_bytes().len() <= 16 * 1024 + 1, "bounded per set");
    let since = now - chrono::Duration::hours(2);
    assert_eq!(store.mail_volume("s@corp.example", since).unwrap(), 5);
    // Incident 42 does not exist (resolved and gone): its counts go; so does the old bucket.
    let pruned = store.prune_mail(since).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            buckets: 1,
            sets: 1
        }
    );
    assert_eq!(
        store
            .mail_volume("s@corp.example", now - chrono::Duration::hours(4))
            .unwrap(),
        5
    );
    assert_eq!(store.prune_mail(since).unwrap(), Pruned::default());
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.address_key().unwrap().hash("a@b.example"),
        key.hash("a@b.example"),
        "the salt survives a restart"
    );
}
