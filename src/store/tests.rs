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
fn adoption_is_explicit_and_refused_once_the_chains_began() {
    use crate::model::{Action, Evidence, Incident, Rule, Severity, TimelineEvent};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.genesis().unwrap().is_some(), "an empty store begins");
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
        subject: Some(Subject::of(&incident)),
    };
    // As `incidents` writes it: the record, its chained event and its page in one transaction.
    store
        .transact(|tx| {
            tx.put_incident(&incident)?;
            tx.enqueue_page(&incident, now)?;
            tx.append_timeline(entry.clone(), now)
        })
        .unwrap();
    let report = store.verify_timeline().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(matches!(store.adopt(None), Err(AdoptError::Began(_))));

    // The chain deleted: reported, and still not adoptable.
    for k in store.meta.scan_prefix(TIMELINE).keys() {
        store.meta.remove(k.unwrap()).unwrap();
    }
    store.meta.remove(TIMELINE_HEAD).unwrap();
    let problems = store.verify_timeline().unwrap().problems;
    assert_eq!(
        problems,
        vec![
            "incident #1: not in the timeline chain (an older build's incident: `tocsin log \
             adopt`; otherwise its events were deleted)"
                .to_string()
        ]
    );
    assert!(matches!(store.adopt(None), Err(AdoptError::Began(_))));

    // What an older build left behind: incidents with timelines, no chain, no genesis record.
    store.meta.remove(GENESIS_KEY).unwrap();
    let v = store.verify(&VerifyOptions::default()).unwrap();
    assert!(!v.is_ok());
    assert!(v.store[0].starts_with("no genesis record"), "{:?}", v.store);
    let adopted = store.adopt(None).unwrap();
    assert_eq!((adopted.incidents, adopted.events), (1, 1));
    let v = store.verify(&VerifyOptions::default()).unwrap();
    assert!(v.is_ok(), "{:?}", v.problems());
    assert!(store.genesis().unwrap().unwrap().adopted);
    assert!(matches!(store.adopt(None), Err(AdoptError::Began(_))));
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
    let store = Store::open(dir.path()).unwrap();
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

/// A store signing with a new key, verified and signed for the first time as the daemon does
/// at start.
fn keyed_store(dir: &std::path::Path) -> (Store, PublicKey) {
    let store = Store::open(dir).unwrap();
    let (text, public) = SigningKey::generate().unwrap();
    store.set_signing_key(Some(std::sync::Arc::new(SigningKey::parse(&text).unwrap())));
    let (v, first) = store.check_integrity().unwrap();
    assert!(v.is_ok(), "{:?}", v.problems());
    assert!(first, "a new store is signed for the first time");
    (store, public)
}

fn with_key(key: PublicKey) -> VerifyOptions {
    VerifyOptions {
        public_key: Some(key),
        expect: Vec::new(),
    }
}

/// What someone with the sled file but not the key does: rewrites the approved log from `seq`
/// on with `entries`, every hash recomputed, the head and indexes moved to match.
fn rewrite_log_from(store: &Store, seq: u64, entries: Vec<ApprovedEntry>) {
    let keys: Vec<_> = store
        .approved_log
        .range(be(seq)..)
        .keys()
        .map(Result::unwrap)
        .collect();
    for k in keys {
        store.approved_log.remove(k).unwrap();
    }
    let mut prev = match seq {
        0 => GENESIS.to_owned(),
        n => store.log_record(n - 1).unwrap().unwrap().hash,
    };
    let mut head = None;
    for (i, entry) in entries.into_iter().enumerate() {
        let n = seq + i as u64;
        if let ApprovedEntry::ApprovedPost {
            account,
            fingerprint: Some(fp),
            ..
        } = &entry
        {
            store
                .approved_posts
                .insert(key2(account, &format!("fp:{fp}")), &be(n))
                .unwrap();
        }
        let record = LogRecord::new(n, Utc::now(), prev, entry);
        store.approved_log.insert(be(n), encode(&record)).unwrap();
        prev = record.hash.clone();
        head = Some((n, record.hash));
    }
    let (n, hash_hex) = head.unwrap_or((seq.saturating_sub(1), prev));
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&hash_hex, &mut hash).unwrap();
    store
        .meta
        .insert(HEAD, encode(&Head { seq: n, hash }))
        .unwrap();
}

#[test]
fn a_forged_approval_with_recomputed_hashes_is_caught_by_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = keyed_store(dir.path());
    store.approve(post("a", "f1"), Utc::now()).unwrap();
    let v = store.verify(&with_key(key)).unwrap();
    assert_eq!(v.signature, SignatureCheck::Valid, "{:?}", v.problems());

    let by_alice = ApprovedEntry::ApprovedPost {
        account: "a".into(),
        fingerprint: Some("rogue".into()),
        post_id: None,
        expires_at: None,
        by: "@alice (111)".into(),
        note: Some("incident #4".into()),
    };
    rewrite_log_from(&store, 1, vec![by_alice]);
    assert!(
        store
            .is_post_approved("a", "rogue", "x", Utc::now())
            .unwrap()
    );
    // The hashes alone hold: what `log verify` said before the heads were signed.
    assert!(store.verify_log().unwrap().is_ok());
    let v = store.verify(&with_key(key)).unwrap();
    assert!(!v.is_ok());
    let SignatureCheck::Invalid(why) = &v.signature else {
        panic!("{:?}", v.signature)
    };
    assert!(
        why.contains("the signature covers approved_log:0:") && why.contains("approved_log:1:"),
        "{why}"
    );

    // Nothing written afterwards is signed on top of it, so it never verifies again.
    store.approve(post("a", "f2"), Utc::now()).unwrap();
    assert!(matches!(
        store.verify(&with_key(key)).unwrap().signature,
        SignatureCheck::Invalid(_)
    ));

    // Removing the signature, or the genesis record's word that there was one, does not help.
    store.meta.remove(SIGNED_HEADS).unwrap();
    let v = store.verify(&with_key(key)).unwrap();
    assert!(
        matches!(&v.signature, SignatureCheck::Invalid(w) if w.contains("signed statement is gone")),
        "{:?}",
        v.signature
    );
}

/// A store with a post approved, another approved, and the first revoked.
fn revoked_store(dir: &std::path::Path) -> (Store, PublicKey) {
    let (store, key) = keyed_store(dir);
    let now = Utc::now();
    store.approve(post("a", "scam"), now).unwrap();
    store.approve(post("a", "ok"), now).unwrap();
    store
        .revoke(0, "approved by mistake", "@bob (222)", now)
        .unwrap();
    assert!(!store.is_post_approved("a", "scam", "x", now).unwrap());
    (store, key)
}

/// The intruder's edit of the indexes that goes with dropping the revocation of entry 0.
fn reinstate_scam(store: &Store) {
    store.revoked.remove(be(0)).unwrap();
    store
        .approved_posts
        .insert(key2("a", "fp:scam"), &be(0))
        .unwrap();
    assert!(
        store
            .is_post_approved("a", "scam", "x", Utc::now())
            .unwrap()
    );
}

#[test]
fn a_revocation_dropped_from_the_middle_breaks_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = revoked_store(dir.path());
    store.approve(post("a", "later"), Utc::now()).unwrap();
    assert!(store.verify(&with_key(key)).unwrap().is_ok());

    rewrite_log_from(&store, 2, vec![post("a", "later")]);
    reinstate_scam(&store);
    assert!(store.verify_log().unwrap().is_ok(), "the hashes alone hold");
    let v = store.verify(&with_key(key)).unwrap();
    assert!(
        matches!(v.signature, SignatureCheck::Invalid(_)),
        "{:?}",
        v.signature
    );
}

#[test]
fn a_chain_cut_back_to_a_signed_head_is_caught_by_a_published_head() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = keyed_store(dir.path());
    let now = Utc::now();
    store.approve(post("a", "scam"), now).unwrap();
    store.approve(post("a", "ok"), now).unwrap();
    // A copy of the state dir taken now holds this signed statement.
    let signed_before = store.meta.get(SIGNED_HEADS).unwrap().unwrap();
    store
        .revoke(0, "approved by mistake", "@bob (222)", now)
        .unwrap();
    let published = store.heads().unwrap().named();

    // The revocation cut off, the older signed statement put back.
    store.approved_log.remove(be(2)).unwrap();
    let entry1 = store.log_record(1).unwrap().unwrap();
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&entry1.hash, &mut hash).unwrap();
    store
        .meta
        .insert(HEAD, encode(&Head { seq: 1, hash }))
        .unwrap();
    store.meta.insert(SIGNED_HEADS, signed_before).unwrap();
    reinstate_scam(&store);
    let v = store.verify(&with_key(key)).unwrap();
    assert!(v.is_ok(), "an older signed head verifies by itself");

    let v = store
        .verify(&VerifyOptions {
            public_key: Some(key),
            expect: published.clone(),
        })
        .unwrap();
    let log_head = published
        .iter()
        .find(|h| h.chain == Chain::ApprovedLog)
        .unwrap();
    assert_eq!(
        v.log.problems,
        vec![format!(
            "published head {log_head}: entry 2 is gone (the chain ends at entry 1): the chain \
             was cut back"
        )]
    );
}

#[test]
fn a_seen_post_or_a_mute_written_by_hand_is_caught() {
    use crate::model::{Action, Actor, Mute};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    let seen = SeenPost {
        fingerprint: "f1".into(),
        text: "hello".into(),
        edited_at: None,
    };
    let mute = Mute {
        account: "a".into(),
        by: Actor {
            id: 111,
            name: "@alice".into(),
        },
        at: now,
        until: now + chrono::Duration::hours(1),
    };
    store
        .transact(|tx| {
            tx.put_seen_post("a", "1", &seen, now)?;
            tx.put_mute(&mute)?;
            let entry = TimelineEntry {
                incident: None,
                account: "a".into(),
                who: mute.by.to_string(),
                action: Action::Muted { until: mute.until },
                subject: None,
            };
            tx.append_timeline(entry, now)?;
            Ok(())
        })
        .unwrap();
    let report = store.verify_timeline().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);

    // The rogue post marked as seen (its next sighting would page nothing), the first post's
    // content changed, the mute stretched to a week and another account muted.
    let forged = SeenPost {
        fingerprint: "rogue".into(),
        ..seen.clone()
    };
    store
        .seen_posts
        .insert(key2("a", "2"), encode(&forged))
        .unwrap();
    store
        .seen_posts
        .insert(key2("a", "1"), encode(&forged))
        .unwrap();
    let week = Mute {
        until: now + chrono::Duration::days(7),
        ..mute.clone()
    };
    store
        .meta
        .insert(prefixed(MUTE, b"a"), encode(&week))
        .unwrap();
    let other = Mute {
        account: "b".into(),
        ..mute
    };
    store
        .meta
        .insert(prefixed(MUTE, b"b"), encode(&other))
        .unwrap();
    let mut problems = store.verify_timeline().unwrap().problems;
    problems.sort();
    assert_eq!(
        problems,
        vec![
            format!(
                "mute of a (until {}, by @alice (111)): not what the timeline chain says",
                week.until
            ),
            format!(
                "mute of b (until {}, by @alice (111)): not what the timeline chain says",
                other.until
            ),
            "seen post a/1: its content is not what the timeline chain saw".to_string(),
            "seen post a/2: not in the timeline chain".to_string(),
        ]
    );
}

#[test]
fn a_baseline_removed_from_the_index_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .transact(|tx| tx.set_baseline("a", "url", "https://ok", "t", Utc::now()))
        .unwrap();
    // The next snapshot would be the account's "first" one, accepted whatever it says.
    store.baselines.remove(key2("a", "url")).unwrap();
    assert_eq!(
        store.verify_log().unwrap().problems,
        vec!["baseline a/url: in the approved log but missing from the baselines".to_string()]
    );
}

/// What a verification costs and how long writes wait meanwhile, on a store of `POSTS` seen
/// posts (100,000) and `APPROVALS` approved-log entries (10,000) with a write every
/// `WRITE_EVERY_MS` (1000). A measurement, not a check:
/// `cargo test --release --lib verify_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn verify_cost_beside_writes() {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
        time::{Duration, Instant},
    };
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (posts, approvals) = (setting("POSTS", 100_000), setting("APPROVALS", 10_000));
    let write_every = Duration::from_millis(setting("WRITE_EVERY_MS", 1000));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (text, _) = SigningKey::generate().unwrap();
    store.set_signing_key(Some(Arc::new(SigningKey::parse(&text).unwrap())));
    store.check_integrity().unwrap();
    let now = Utc::now();
    for chunk in 0..posts / 1000 {
        store
            .transact(|tx| {
                for n in chunk * 1000..(chunk + 1) * 1000 {
                    let seen = SeenPost {
                        fingerprint: format!("fp{n}"),
                        text: format!("post number {n}"),
                        edited_at: None,
                    };
                    tx.put_seen_post(&format!("acct{}", n % 8), &n.to_string(), &seen, now)?;
                }
                Ok(())
            })
            .unwrap();
    }
    for chunk in 0..approvals / 1000 {
        store
            .transact(|tx| {
                for n in chunk * 1000..(chunk + 1) * 1000 {
                    tx.append_log(post("a", &format!("f{n}")), now)?;
                }
                Ok(())
            })
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut n, mut slowest) = (0u64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                store
                    .transact(|tx| tx.append_log(post("w", &format!("w{n}")), Utc::now()))
                    .unwrap();
                slowest = slowest.max(t.elapsed());
                n += 1;
                std::thread::sleep(write_every);
            }
            (n, slowest)
        })
    };
    for _ in 0..3 {
        let t = Instant::now();
        let (v, _) = store.check_integrity().unwrap();
        assert!(v.is_ok(), "{:?}", v.problems());
        eprintln!(
            "verified {} timeline events and {} log entries in {:?}",
            v.timeline.entries,
            v.log.entries,
            t.elapsed()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (n, slowest) = writer.join().unwrap();
    eprintln!("{n} writes meanwhile, the slowest took {slowest:?}");
}
