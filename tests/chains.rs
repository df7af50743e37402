//! Keyed, witnessed chains: an intruder with the state dir but not the signing key cannot make
//! an edit verify, cannot have a deleted chain re-adopted, cannot roll the disk back unseen.
//!
//! The intruder works as one would: the daemon stopped (sled holds a lock while it runs), the
//! database opened with sled, records rewritten with their hashes recomputed.

use std::{collections::BTreeMap, path::Path, process::Command};

use tocsin::{
    Config,
    config::{PagerDutyChannel, Paging, Secret, WebhookChannel},
    model::{Rule, Severity},
    store::{ApprovedEntry, LogRecord, PublicKey, SigningKey},
};
use tocsin_fakes::{pagerduty::FakePagerDuty, webhook::FakeReceiver};

use crate::support::{daemon::*, *};

const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";
const WEBHOOK_SECRET: &str = "webhook-secret-never-logged";

/// A new signing key: its text (for the config) and public half.
fn keypair() -> (String, PublicKey) {
    SigningKey::generate().unwrap()
}

fn signed_with(text: &str) -> impl FnOnce(&mut Config) {
    let text = text.to_owned();
    move |c: &mut Config| c.general.signing_key = Some(Secret::new(text))
}

/// `tocsin log verify --state DIR ARGS`: exit code and stdout.
fn log_verify(state: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["log", "verify", "--state"])
        .arg(state)
        .args(args)
        .env_remove("TOCSIN_PUBLIC_KEY")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The chat message publishing the heads on `occasion`, once sent.
fn heads_message(app_bot: &tocsin_fakes::telegram::FakeBotApi, occasion: &str) -> Option<String> {
    let title = format!("🔏 tocsin chain heads ({occasion})");
    app_bot
        .sent()
        .into_iter()
        .rev()
        .find(|m| m.text.starts_with(&title))
        .map(|m| m.text)
}

/// The `CHAIN:SEQ:HASH` lines of a published heads message.
fn published_heads(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("approved_log:") || l.starts_with("timeline:"))
        .map(str::to_owned)
        .collect()
}

/// Opens the stopped daemon's database as the intruder does. sled lets go of its lock a moment
/// after the last handle is dropped.
fn open_db(state: &Path) -> sled::Db {
    for _ in 0..200 {
        if let Ok(db) = sled::open(state) {
            return db;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sled::open(state).unwrap()
}

/// The approved log's head as the store keeps it in `meta`.
fn set_log_head(db: &sled::Db, seq: u64, hash_hex: &str) {
    let hash = hex::decode(hash_hex).unwrap();
    let head = serde_json::json!({ "seq": seq, "hash": hash });
    db.open_tree("meta")
        .unwrap()
        .insert("approved_log_head", serde_json::to_vec(&head).unwrap())
        .unwrap();
}

/// Appends `entry` to the approved log with a correctly computed hash, moves the head and the
/// index: what makes a rogue post "approved" with the file alone.
fn forge_approval(db: &sled::Db, entry: ApprovedEntry, index_key: &str) {
    let log = db.open_tree("approved_log").unwrap();
    let (k, v) = log.last().unwrap().unwrap();
    let last: LogRecord = serde_json::from_slice(&v).unwrap();
    let seq = u64::from_be_bytes(k.as_ref().try_into().unwrap()) + 1;
    let record = LogRecord::new(seq, chrono::Utc::now(), last.hash.clone(), entry);
    log.insert(seq.to_be_bytes(), serde_json::to_vec(&record).unwrap())
        .unwrap();
    db.open_tree("approved_posts")
        .unwrap()
        .insert(index_key, &seq.to_be_bytes())
        .unwrap();
    set_log_head(db, seq, &record.hash);
    db.flush().unwrap();
}

async fn readyz(api: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("{api}/readyz")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// `/readyz` once everything but the chain has had time to be ready (the bot's first
/// `getUpdates`): what it says then about the chain is what it will keep saying.
async fn readyz_settled(api: &str) -> (u16, serde_json::Value) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = readyz(api).await;
        let others_ok = body["checks"]
            .as_object()
            .is_some_and(|c| c.iter().all(|(k, v)| k == "chain" || v == "ok"));
        if others_ok || std::time::Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The `store.tampered` page (a page has buttons; the heads publication mentions the rule too).
fn tampered_page(bot: &tocsin_fakes::telegram::FakeBotApi) -> Option<String> {
    bot.sent()
        .into_iter()
        .find(|m| m.reply_markup.is_some() && m.text.contains("store.tampered"))
        .map(|m| m.text)
}

#[tokio::test]
async fn without_a_key_readyz_warns_that_the_chains_are_unsigned() {
    let app = spawn_app().await;
    let (status, body) = readyz_settled(&app.api).await;
    assert_eq!(body["checks"]["chain"], "unsigned", "{body}");
    assert!(
        body["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("chain: unsigned"),
        "{body}"
    );
    assert_eq!(status, 200, "unsigned is a warning, not a failure: {body}");
    assert!(
        heads_message(&app.bot, "start").is_none(),
        "unsigned heads are not published to the chat"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_forged_approval_with_recomputed_hashes_is_caught_with_the_public_key() {
    let (key, public) = keypair();
    let app = spawn_app_with(signed_with(&key)).await;
    until(
        || heads_message(&app.bot, "start").is_some(),
        "the heads published at start",
    )
    .await;
    let (status, body) = readyz_settled(&app.api).await;
    assert_eq!(body["checks"]["chain"], "ok", "{body}");
    assert_eq!(status, 200, "{body}");
    let (masto, bot, state) = app.stop().await;

    let rogue = "Claim your airdrop now https://evil.example/claim";
    let fingerprint = tocsin::detect::fingerprint(&tocsin::detect::content_from_text(rogue));
    {
        let db = open_db(state.path());
        let entry = ApprovedEntry::ApprovedPost {
            account: ACCOUNT.into(),
            fingerprint: Some(fingerprint.clone()),
            post_id: None,
            expires_at: None,
            by: "@alice (111)".into(),
            note: Some("incident #1".into()),
        };
        forge_approval(&db, entry, &format!("{ACCOUNT}\0fp:{fingerprint}"));
    }
    // The hashes alone hold: that is all `log verify` could say before the heads were signed.
    let (code, stdout) = log_verify(state.path(), &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("approved log ok"), "{stdout}");
    assert!(stdout.contains("signature not checked"), "{stdout}");
    let (code, stdout) = log_verify(state.path(), &["--public-key", &public.to_string()]);
    assert_eq!(code, Some(3), "{stdout}");
    assert!(
        stdout.contains("signature BAD: the signature covers approved_log:"),
        "{stdout}"
    );

    // The daemon on the forged store: the rogue post is "approved", but the store is paged as
    // tampered with and /readyz fails.
    let app = start_with(masto, bot, state, signed_with(&key)).await;
    app.publish(rogue);
    until(
        || {
            app.store
                .incidents()
                .unwrap()
                .iter()
                .any(|i| i.rule == Rule::StoreTampered && i.page.is_some())
        },
        "the store.tampered page",
    )
    .await;
    let page = tampered_page(&app.bot).unwrap();
    assert!(page.contains("CRITICAL"), "{}", page);
    assert!(page.contains("signature: the signature covers"), "{}", page);
    let (status, body) = readyz_settled(&app.api).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["checks"]["chain"]
            .as_str()
            .unwrap()
            .starts_with("tampered"),
        "{body}"
    );
    until(
        || heads_message(&app.bot, "start").is_some_and(|t| t.contains("NOT SIGNED")),
        "the start publication saying the heads are not vouched for",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_timeline_chain_is_not_readopted_on_start_or_sighup() {
    let (masto, bot, dir) = fakes().await;
    let receiver = FakeReceiver::start().await.unwrap();
    let (key, public) = keypair();
    let config = dir.path().join("tocsin.toml");
    let write = || {
        std::fs::write(
            &config,
            format!(
                r#"
[general]
state_dir = "{state}"
listen = "127.0.0.1:0"
api_token = "env:TOCSIN_API_TOKEN"
signing_key = "env:TOCSIN_SIGNING_KEY"

[telegram]
bot_token = "env:TOCSIN_TELEGRAM_TOKEN"
api_url = "{bot}"
chat_id = {CHAT}
responders = [111]
long_poll = "1s"

[[accounts]]
name = "{ACCOUNT}"
platform = "mastodon"
base_url = "{masto}"
account_id = "{ACCOUNT_ID}"
poll_interval = "150ms"

[[channels.webhook]]
name = "soc"
url = "{hook}"
secret = "{WEBHOOK_SECRET}"
severities = ["critical"]
"#,
                state = dir.path().join("state").display(),
                bot = bot.url(),
                masto = masto.url(),
                hook = receiver.url("hook"),
            ),
        )
        .unwrap()
    };
    write();
    let env = [("TOCSIN_SIGNING_KEY", key.as_str())];
    let mut daemon = Daemon::spawn(&config, "info", &env);
    let api = daemon.http_addr().await;
    // After the first polls: what is there at the first one is history, never paged.
    let statuses = format!("/api/v1/accounts/{ACCOUNT_ID}/statuses");
    until(|| masto.request_count(&statuses) >= 2, "the first polls").await;
    masto.publish(
        ACCOUNT_ID,
        &tocsin_fakes::mastodon::status_html("free BTC, send 1 get 2"),
    );
    until(
        || bot.sent().iter().any(|m| m.text.contains("Incident #1")),
        "the page",
    )
    .await;
    daemon.signal("TERM");
    daemon.wait_exit(WAIT).await;
    let state = dir.path().join("state");
    {
        let db = open_db(&state);
        let meta = db.open_tree("meta").unwrap();
        for k in meta.scan_prefix("timeline/").keys() {
            meta.remove(k.unwrap()).unwrap();
        }
        meta.remove("timeline_head").unwrap();
        db.flush().unwrap();
    }
    drop(api);

    let mut daemon = Daemon::spawn(&config, "info", &env);
    let api = daemon.http_addr().await;
    until(
        || tampered_page(&bot).is_some(),
        "the store.tampered page in the chat",
    )
    .await;
    let page = tampered_page(&bot).unwrap();
    assert!(
        page.contains("incident #1: not in the timeline chain"),
        "{}",
        page
    );
    until(
        || {
            receiver
                .received()
                .iter()
                .any(|r| r.json()["rule"] == "store.tampered")
        },
        "the store.tampered page on the fallback channel",
    )
    .await;
    let (status, body) = readyz_settled(&api).await;
    assert_eq!(status, 503, "{body}");

    // A reload verifies again and adopts nothing.
    daemon.signal("HUP");
    until(
        || daemon.log_text().contains("configuration reloaded"),
        "the reload",
    )
    .await;
    // The reload binds its listener again: port 0 is a new port.
    let running = || -> Vec<String> {
        let log = daemon.log.lock().unwrap();
        log.iter()
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["message"] == "tocsin running").then(|| v["addr"].as_str().map(str::to_owned))?
            })
            .collect()
    };
    until(|| running().len() == 2, "the reloaded daemon running").await;
    let api = format!("http://{}", running()[1]);
    let (status, body) = readyz_settled(&api).await;
    assert_eq!(status, 503, "still tampered after the reload: {body}");
    let timeline: serde_json::Value = reqwest::Client::new()
        .get(format!("{api}/api/v1/timeline"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = timeline["events"].as_array().unwrap();
    assert!(
        events.iter().all(|e| e["incident"] != 1),
        "incident #1 was re-chained: {timeline}"
    );
    daemon.signal("TERM");
    daemon.wait_exit(WAIT).await;

    let (code, stdout) = log_verify(&state, &["--public-key", &public.to_string()]);
    assert_eq!(code, Some(3), "{stdout}");
    assert!(
        stdout.contains("incident #1: not in the timeline chain"),
        "{stdout}"
    );
    let adopt = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["log", "adopt", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&adopt.stderr);
    assert!(!adopt.status.success());
    assert!(
        stderr.contains("refused: this store's chains began"),
        "{stderr}"
    );
}

/// An intruder's change to an incident record.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

#[tokio::test]
async fn hand_edited_incident_fields_are_caught() {
    let (key, public) = keypair();
    let app = spawn_app_with(|c| {
        signed_with(&key)(c);
        c.paging = Paging {
            approve_quorum: BTreeMap::from([(Severity::Critical, 2)]),
            ..Paging::default()
        };
    })
    .await;
    let post = app.publish("free BTC giveaway, send 1 get 2");
    until(
        || {
            app.incident_by_object(&post)
                .is_some_and(|i| i.page.is_some())
        },
        "the page",
    )
    .await;
    let id = app.incident_by_object(&post).unwrap().id;
    app.bot
        .push_command(CHAT, &responder(), &format!("/ack {id}"));
    app.bot
        .push_command(CHAT, &responder(), &format!("/approve {id}"));
    until(
        || {
            app.store
                .incident(id)
                .unwrap()
                .is_some_and(|i| i.approve_votes().count() == 1 && i.acked_by.is_some())
        },
        "the ack and the first approval vote",
    )
    .await;
    let (_, _, state) = app.stop().await;
    let public = public.to_string();
    let (code, stdout) = log_verify(state.path(), &["--public-key", &public]);
    assert_eq!(code, Some(0), "{stdout}");

    let key_bytes = id.to_be_bytes();
    let original = {
        let db = open_db(state.path());
        let v = db.open_tree("incidents").unwrap().get(key_bytes).unwrap();
        v.unwrap().to_vec()
    };
    // Each edit alone, then the record put back.
    let edits: Vec<(&str, Edit, &str)> = vec![
        (
            "resolved as a false alarm",
            Box::new(|i| {
                i["state"] = "resolved".into();
                i["resolution"] = "false_alarm".into();
                i["resolved_by"] = serde_json::json!({"id": 111, "name": "@alice"});
            }),
            "its state is resolved but its chained events say acked",
        ),
        (
            "acked by someone else",
            Box::new(|i| i["acked_by"] = serde_json::json!({"id": 222, "name": "@bob"})),
            "acknowledged by @bob (222) but its chained events say @alice (111)",
        ),
        (
            "a second vote",
            Box::new(|i| {
                let mut vote = i["votes"][0].clone();
                vote["who"] = serde_json::json!({"id": 222, "name": "@bob"});
                i["votes"].as_array_mut().unwrap().push(vote);
            }),
            "a vote by @bob (222) to approve",
        ),
        (
            "a lower severity (one approval would do)",
            Box::new(|i| i["severity"] = "high".into()),
            "what it is about (rule, object, severity, evidence or burst members) is not what \
             its last chained event recorded",
        ),
        (
            "a vote's page version raised (the approval would cover newer posts)",
            Box::new(|i| i["votes"][0]["seen"] = 99.into()),
            "a vote by @alice (111) to approve",
        ),
        (
            "a burst member marked approved",
            Box::new(|i| i["members"][0]["approved"] = true.into()),
            "what it is about (rule, object, severity, evidence or burst members) is not what \
             its last chained event recorded",
        ),
        (
            "a resolution by hand",
            Box::new(|i| i["resolution"] = "approved".into()),
            "its resolution is approved but its chained events say none",
        ),
    ];
    for (what, edit, expected) in edits {
        {
            let db = open_db(state.path());
            let incidents = db.open_tree("incidents").unwrap();
            let mut inc: serde_json::Value = serde_json::from_slice(&original).unwrap();
            edit(&mut inc);
            incidents
                .insert(key_bytes, serde_json::to_vec(&inc).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let (code, stdout) = log_verify(state.path(), &["--public-key", &public]);
        assert_eq!(code, Some(3), "{what}: {stdout}");
        assert!(
            stdout.contains(&format!("incident #{id}: {expected}")),
            "{what}: {stdout}"
        );
        let db = open_db(state.path());
        db.open_tree("incidents")
            .unwrap()
            .insert(key_bytes, original.as_slice())
            .unwrap();
        db.flush().unwrap();
    }
    let (code, stdout) = log_verify(state.path(), &["--public-key", &public]);
    assert_eq!(code, Some(0), "put back, it verifies again: {stdout}");
}

/// Pre-approves `text` through the API; the entry's seq.
async fn approve(app: &TestApp, text: &str) -> u64 {
    let (status, body) = app
        .api_post(
            "/api/v1/approvals",
            serde_json::json!({ "account": ACCOUNT, "text": text }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["seq"].as_u64().unwrap()
}

#[tokio::test]
async fn a_dropped_revocation_is_caught_and_so_is_a_disk_rolled_back_past_it() {
    let (key, public) = keypair();
    let public = public.to_string();
    let app = spawn_app_with(signed_with(&key)).await;
    let scam = approve(&app, "Claim your airdrop https://evil.example").await;
    approve(&app, "Our Q4 report https://example.com/q4").await;
    let (masto, bot, state) = app.stop().await;
    // A copy of the disk, taken before the revocation.
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", state.path().display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());

    let app = start_with(masto, bot, state, signed_with(&key)).await;
    let (status, body) = app
        .api_post(
            &format!("/api/v1/approvals/{scam}/revoke"),
            serde_json::json!({ "reason": "approved by mistake" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let revocation = body["seq"].as_u64().unwrap();
    approve(&app, "Join our webinar https://example.com/webinar").await;
    let (masto, bot, state) = app.stop().await;
    // The next start publishes the heads, revocation included.
    let app = start_with(masto, bot, state, signed_with(&key)).await;
    until(
        || {
            app.bot
                .sent()
                .iter()
                .filter(|m| m.text.starts_with("🔏 tocsin chain heads (start)"))
                .count()
                == 3
        },
        "the third start's heads",
    )
    .await;
    let published = published_heads(&heads_message(&app.bot, "start").unwrap());
    assert_eq!(published.len(), 2, "{published:?}");
    let (_, _, state) = app.stop().await;

    // The rolled-back disk verifies by itself: its heads are validly signed. The published
    // heads are what show it is not the newest.
    let (code, stdout) = log_verify(copy.path(), &["--public-key", &public]);
    assert_eq!(code, Some(0), "{stdout}");
    let mut args = vec!["--public-key", public.as_str()];
    for h in &published {
        args.extend(["--expect-head", h.as_str()]);
    }
    let (code, stdout) = log_verify(copy.path(), &args);
    assert_eq!(code, Some(3), "{stdout}");
    assert!(stdout.contains("the chain was cut back"), "{stdout}");

    // The revocation dropped from the middle of the log, what follows it chained again.
    {
        let db = open_db(state.path());
        let log = db.open_tree("approved_log").unwrap();
        let records: Vec<LogRecord> = log
            .iter()
            .values()
            .map(|v| serde_json::from_slice(&v.unwrap()).unwrap())
            .collect();
        let mut prev = records[revocation as usize - 1].hash.clone();
        for (k, _) in log.range(revocation.to_be_bytes()..).map(Result::unwrap) {
            log.remove(k).unwrap();
        }
        let posts = db.open_tree("approved_posts").unwrap();
        let mut last = None;
        for (i, r) in records[revocation as usize + 1..].iter().enumerate() {
            let seq = revocation + i as u64;
            let record = LogRecord::new(seq, r.at, prev, r.entry.clone());
            if let ApprovedEntry::ApprovedPost {
                account,
                fingerprint: Some(fp),
                ..
            } = &record.entry
            {
                posts
                    .insert(format!("{account}\0fp:{fp}"), &seq.to_be_bytes())
                    .unwrap();
            }
            log.insert(seq.to_be_bytes(), serde_json::to_vec(&record).unwrap())
                .unwrap();
            prev = record.hash.clone();
            last = Some((seq, record.hash));
        }
        let (seq, hash) = last.unwrap();
        set_log_head(&db, seq, &hash);
        db.open_tree("revoked").unwrap().clear().unwrap();
        let ApprovedEntry::ApprovedPost {
            account,
            fingerprint: Some(fp),
            ..
        } = &records[scam as usize].entry
        else {
            panic!("the scam approval is a post")
        };
        posts
            .insert(format!("{account}\0fp:{fp}"), &scam.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let (code, stdout) = log_verify(state.path(), &[]);
    assert_eq!(code, Some(0), "the hashes alone hold: {stdout}");
    let (code, stdout) = log_verify(state.path(), &["--public-key", &public]);
    assert_eq!(code, Some(3), "{stdout}");
    assert!(stdout.contains("signature BAD"), "{stdout}");
}

#[tokio::test]
async fn signed_heads_are_published_to_the_chat_every_fallback_and_the_daily_summary() {
    let (key, public) = keypair();
    let pd = FakePagerDuty::start().await.unwrap();
    let receiver = FakeReceiver::start().await.unwrap();
    let (pd_url, hook) = (pd.url(), receiver.url("hook"));
    let app = spawn_app_with(move |c| {
        signed_with(&key)(c);
        c.general.publish_heads = std::time::Duration::from_millis(500);
        c.channels.pagerduty.push(PagerDutyChannel {
            name: "ops".into(),
            routing_key: Secret::new(ROUTING_KEY),
            api_url: pd_url,
            severities: None,
        });
        c.channels.webhook.push(WebhookChannel {
            name: "soc".into(),
            url: hook,
            secret: Secret::new(WEBHOOK_SECRET),
            severities: None,
        });
        c.heartbeat = Some(tocsin::config::Heartbeat {
            url: None,
            interval: std::time::Duration::from_secs(60),
            daily_summary: chrono::NaiveTime::from_hms_opt(0, 0, 0),
        });
    })
    .await;
    let start = {
        until(
            || heads_message(&app.bot, "start").is_some(),
            "the start publication",
        )
        .await;
        heads_message(&app.bot, "start").unwrap()
    };
    assert!(start.contains(&format!("key {public}")), "{start}");
    assert!(
        start.contains("First signature of these chains"),
        "a new store is signed for the first time: {start}"
    );
    assert!(
        start.contains("tocsin log verify --state DIR --public-key"),
        "{start}"
    );
    until(
        || heads_message(&app.bot, "every 500ms").is_some(),
        "a periodic publication",
    )
    .await;
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains("🔏 tocsin chain heads (daily summary)"))
        },
        "the heads in the daily summary",
    )
    .await;

    // The webhook's document carries the signed statement, verifiable with the public key.
    until(
        || {
            receiver
                .received()
                .iter()
                .any(|r| r.json()["event"] == "chain_heads")
        },
        "the webhook publication",
    )
    .await;
    let doc = receiver
        .received()
        .into_iter()
        .map(|r| r.json())
        .find(|d| d["event"] == "chain_heads")
        .unwrap();
    let message = doc["signed_message"].as_str().unwrap();
    assert!(message.starts_with("tocsin chain heads v1\n"), "{doc}");
    assert!(
        public.verifies(message.as_bytes(), doc["signature"].as_str().unwrap()),
        "{doc}"
    );
    assert_eq!(doc["public_key"], public.to_string());
    until(|| !pd.changes().is_empty(), "the PagerDuty change event").await;
    let change = &pd.changes()[0];
    assert_eq!(change["routing_key"], ROUTING_KEY);
    assert!(
        change["payload"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("tocsin chain heads"),
        "{change}"
    );
    assert!(pd.events().is_empty(), "publishing pages nobody");
    app.stop().await;
}

#[tokio::test]
async fn keygen_prints_a_key_pair_that_check_config_takes_and_refuses_a_public_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("keygen")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = \"")))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap()
            .to_owned()
    };
    let (secret, public) = (value("signing_key"), value("public_key"));
    let key = SigningKey::parse(&secret).unwrap();
    assert_eq!(key.public_key().to_string(), public);

    let (masto, bot, dir) = fakes().await;
    let config = write_config(dir.path(), &bot, &masto, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let check = |signing_key: &str| {
        std::fs::write(
            &config,
            text.replace(
                "api_token = \"env:TOCSIN_API_TOKEN\"",
                &format!("api_token = \"env:TOCSIN_API_TOKEN\"\nsigning_key = \"{signing_key}\""),
            ),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["check-config", "--config"])
            .arg(&config)
            .env("TOCSIN_API_TOKEN", API_TOKEN)
            .env("TOCSIN_TELEGRAM_TOKEN", BOT_TOKEN)
            .output()
            .unwrap()
    };
    let ok = check(&secret);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{out}");
    assert!(
        out.contains(&format!("chain heads   signed, public key {public}")),
        "{out}"
    );
    let refused = check(&public);
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("key `general.signing_key`"), "{err}");
}
