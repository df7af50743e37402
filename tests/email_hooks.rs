//! The provider event webhooks against signers that sign as the providers do (keys generated
//! here) and forgers that do not: SES through the SNS fake (TLS on loopback, real host check and
//! real certificate fetch), SendGrid, Mailgun, Postmark.

use std::time::Duration;

use chrono::Utc;
use tocsin::{
    App,
    config::{
        Email, Secret,
        email::{MailgunHook, PostmarkHook, SendGridHook, SesHook},
    },
    mail::webhooks::{Inbox, ses::TYPE_HEADER},
    model::ObservationKind,
    store::{
        Store,
        mail_inbox::{CURSOR, InboxRecord},
    },
};
use tocsin_fakes::{
    mail_signers::{SendGridSigner, basic_auth, mailgun_body, sendgrid_events, ses_event},
    mastodon::FakeMastodon,
    sns::FakeSns,
    telegram::FakeBotApi,
};
use tokio_util::sync::CancellationToken;

use crate::support::{self, until};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-bulk-events";
const MAILGUN_KEY: &str = "mailgun-signing-key-for-tests";
const POSTMARK_USER: &str = "postmark";
const POSTMARK_PASS: &str = "postmark-hook-password";

struct Hooked {
    url: String,
    store: Store,
    sns: FakeSns,
    sendgrid: SendGridSigner,
    shutdown: CancellationToken,
    _state: tempfile::TempDir,
    _fakes: (FakeMastodon, FakeBotApi),
}

async fn hooked() -> Hooked {
    let masto = FakeMastodon::start().await.unwrap();
    masto.add_account(support::ACCOUNT_ID, "examplecorp", "ExampleCorp", "", &[]);
    let bot = FakeBotApi::start(support::BOT_TOKEN).await.unwrap();
    let sns = FakeSns::start().await.unwrap();
    let sendgrid = SendGridSigner::new();
    let state = tempfile::tempdir().unwrap();
    let mut config = support::config(state.path(), &bot, &masto);
    config.email = Some(Email {
        ses: Some(SesHook {
            name: "ses-bulk".into(),
            topic_arns: vec![TOPIC.into()],
            confirm_subscriptions: true,
            max_age: Duration::from_secs(3600),
            campaign_tag: "campaign".into(),
            max_body: 1024 * 1024,
        }),
        sendgrid: Some(SendGridHook {
            name: "sendgrid".into(),
            public_key: Secret::new(sendgrid.public_key()),
            tolerance: Duration::from_secs(300),
            max_body: 8 * 1024 * 1024,
        }),
        mailgun: Some(MailgunHook {
            name: "mailgun".into(),
            signing_key: Secret::new(MAILGUN_KEY),
            tolerance: Duration::from_secs(300),
            max_body: 1024 * 1024,
        }),
        postmark: Some(PostmarkHook {
            name: "postmark".into(),
            username: POSTMARK_USER.into(),
            password: Secret::new(POSTMARK_PASS),
            max_body: 4096,
        }),
        ..Default::default()
    });
    let app = App::build(config)
        .await
        .unwrap()
        .with_sns_client(sns.client());
    let url = format!("http://{}", app.http_addr());
    let store = app.store().clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until(shutdown.clone()));
    Hooked {
        url,
        store,
        sns,
        sendgrid,
        shutdown,
        _state: state,
        _fakes: (masto, bot),
    }
}

impl Drop for Hooked {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Hooked {
    async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> (u16, serde_json::Value) {
        let mut req = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    async fn post_sns(&self, body: String, kind: &str) -> (u16, serde_json::Value) {
        self.post("/hooks/ses", &[(TYPE_HEADER, kind.to_owned())], body)
            .await
    }

    fn inbox(&self) -> Vec<InboxRecord> {
        self.store
            .inbox_after(0)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    async fn metric(&self, line_prefix: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn rejected(&self, provider: &str, reason: &str) -> f64 {
        self.metric(&format!(
            "tocsin_webhook_rejected_total{{provider=\"{provider}\",reason=\"{reason}\"}}"
        ))
        .await
    }

    /// Waits until the pipeline has judged everything the inbox accepted.
    async fn judged(&self) {
        let last = self.store.inbox_last_seq().unwrap();
        until(
            || self.store.inbox_checkpoint().unwrap() >= last,
            "the pipeline's checkpoint of the inbox",
        )
        .await;
    }
}

fn recipients(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "customer{i}@{}",
                ["example.net", "example.org", "mail.example"][i % 3]
            )
        })
        .collect()
}

#[tokio::test]
async fn ses_notification_exposing_many_recipients_is_recorded_before_the_ok() {
    let h = hooked().await;
    let to = recipients(1000);
    for version in [1, 2] {
        let id = format!("0100018f-bulk-v{version}");
        let message = ses_event(&id, "news@corp.example", &to, "Spring sale", "spring-26");
        let body = h.sns.notification(TOPIC, &message, version, Utc::now());
        let (status, answer) = h.post_sns(body, "Notification").await;
        assert_eq!(status, 200, "v{version}: {answer}");
        assert_eq!(answer["accepted"], 1);
        // On disk by the time the provider heard OK (judged records go with the next commit).
        let inbox = h.inbox();
        let r = inbox.last().expect("committed before the 200");
        assert_eq!(r.account, "ses-bulk");
        assert_eq!(r.mail.feed, "ses");
        assert_eq!(
            r.mail.visible.len(),
            1000,
            "every address of the To: header, not the 3 of commonHeaders"
        );
        assert_eq!(r.mail.visible[999], "customer999@example.net");
        assert_eq!(r.mail.envelope.len(), 1000);
        assert_eq!(r.mail.sender, "news@corp.example");
        assert_eq!(r.mail.from, "news@corp.example");
        assert_eq!(r.mail.subject, "Spring sale");
        assert_eq!(r.mail.campaign.as_deref(), Some("spring-26"));
        assert_eq!(r.mail.message_id, format!("{id}@email.amazonses.com"));
    }
    assert_eq!(h.sns.cert_fetches(), 1, "the signing certificate is cached");

    h.judged().await;
    assert_eq!(
        h.metric("tocsin_observations_total{account=\"ses-bulk\",kind=\"mail\"}")
            .await,
        2.0,
        "both summaries reached the pipeline"
    );
    assert_eq!(
        h.metric("tocsin_webhook_summaries_total{provider=\"ses\"}")
            .await,
        2.0
    );
    // The exposure pages (email.exposed_recipients), on the webhook's account.
    until(
        || {
            h.store.incidents().unwrap().iter().any(|i| {
                i.rule == tocsin::model::Rule::ExposedRecipients && i.account == "ses-bulk"
            })
        },
        "an email.exposed_recipients incident",
    )
    .await;
    until(
        || {
            h._fakes
                .1
                .sent()
                .iter()
                .any(|m| m.chat_id == support::CHAT && m.text.contains("email.exposed_recipients"))
        },
        "the exposure page in the on-call chat",
    )
    .await;
}

#[tokio::test]
async fn ses_subscription_is_confirmed_through_the_subscribe_url() {
    let h = hooked().await;
    let (status, answer) = h
        .post_sns(
            h.sns.subscription_confirmation(TOPIC),
            "SubscriptionConfirmation",
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let confirmed = h.sns.confirmations();
    assert_eq!(confirmed.len(), 1);
    assert_eq!(confirmed[0]["TopicArn"], TOPIC);
    assert_eq!(confirmed[0]["Token"].len(), 64);
    assert!(h.inbox().is_empty(), "a confirmation is not a mail event");

    // Another topic's subscription is refused without fetching anything.
    let (status, _) = h
        .post_sns(
            h.sns
                .subscription_confirmation("arn:aws:sns:us-east-1:666:attacker"),
            "SubscriptionConfirmation",
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(h.sns.confirmations().len(), 1);
    assert_eq!(h.rejected("ses", "unknown_topic").await, 1.0);
}

#[tokio::test]
async fn ses_forgeries_are_refused_and_nothing_is_stored() {
    let h = hooked().await;
    let other = FakeSns::start().await.unwrap();
    let message = ses_event("m-forged", "news@corp.example", &recipients(30), "Hi", "c");

    // Signed with a key that is not the certificate's.
    let forged = other.notification(TOPIC, &message, 2, Utc::now());
    let forged = forged.replace(&other.cert_url(), &h.sns.cert_url());
    assert_eq!(h.post_sns(forged, "Notification").await.0, 401);
    assert_eq!(h.rejected("ses", "bad_signature").await, 1.0);

    // The certificate URL on another host: refused before any fetch.
    let fetches = h.sns.cert_fetches();
    let mut body: serde_json::Value =
        serde_json::from_str(&h.sns.notification(TOPIC, &message, 2, Utc::now())).unwrap();
    for url in [
        "https://attacker.example/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com.attacker.example/x.pem",
        "http://sns.us-east-1.amazonaws.com/x.pem",
    ] {
        body["SigningCertURL"] = url.into();
        h.sns.sign_into(&mut body, 2);
        assert_eq!(
            h.post_sns(body.to_string(), "Notification").await.0,
            401,
            "{url}"
        );
    }
    assert_eq!(
        h.sns.cert_fetches(),
        fetches,
        "no certificate fetched from a foreign host"
    );
    assert_eq!(h.rejected("ses", "cert_url").await, 3.0);

    // A signed message altered afterwards.
    let good = h.sns.notification(TOPIC, &message, 1, Utc::now());
    let tampered = good.replace("m-forged", "m-altered");
    assert_eq!(h.post_sns(tampered, "Notification").await.0, 401);

    // Stale: signed two hours ago (max_age 1h).
    let old = h
        .sns
        .notification(TOPIC, &message, 2, Utc::now() - chrono::Duration::hours(2));
    assert_eq!(h.post_sns(old, "Notification").await.0, 401);
    assert_eq!(h.rejected("ses", "stale").await, 1.0);

    // No signature at all, and not even JSON.
    let mut unsigned: serde_json::Value = serde_json::from_str(&good).unwrap();
    unsigned.as_object_mut().unwrap().remove("Signature");
    assert_eq!(
        h.post_sns(unsigned.to_string(), "Notification").await.0,
        401
    );
    assert_eq!(h.post_sns("hello".into(), "Notification").await.0, 401);
    assert_eq!(h.rejected("ses", "missing_signature").await, 2.0);

    // Well signed, but the SES event inside lacks `mail`: 400 naming the field.
    let odd = h
        .sns
        .notification(TOPIC, r#"{"eventType":"Send"}"#, 2, Utc::now());
    let (status, answer) = h.post_sns(odd, "Notification").await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("Message"),
        "{answer}"
    );
    assert!(
        answer["error"].as_str().unwrap().contains("mail"),
        "{answer}"
    );
    assert_eq!(h.rejected("ses", "malformed").await, 1.0);

    assert_eq!(
        h.store.inbox_last_seq().unwrap(),
        0,
        "nothing refused was stored"
    );
}

#[tokio::test]
async fn sendgrid_batches_verify_group_by_message_and_forgeries_fail() {
    let h = hooked().await;
    let now = Utc::now();
    let body = sendgrid_events(50, 2, "spring-26", now);
    let headers = h.sendgrid.headers(body.as_bytes(), now);
    let (status, answer) = h.post("/hooks/sendgrid", &headers, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 50, "200 events, 50 messages");
    let inbox = h.inbox();
    assert_eq!(inbox.len(), 50);
    assert_eq!(
        inbox[0].mail.envelope,
        vec!["customer0-0@example.net", "customer0-1@example.net"]
    );
    assert_eq!(inbox[0].mail.campaign.as_deref(), Some("spring-26"));

    // Another key, a missing header, a stale timestamp, a body altered after signing.
    let other = SendGridSigner::new();
    let forged = other.headers(body.as_bytes(), now);
    assert_eq!(
        h.post("/hooks/sendgrid", &forged, body.clone()).await.0,
        401
    );
    assert_eq!(
        h.post("/hooks/sendgrid", &headers[..1], body.clone())
            .await
            .0,
        401
    );
    let stale_at = now - chrono::Duration::minutes(10);
    let stale = h.sendgrid.headers(body.as_bytes(), stale_at);
    assert_eq!(h.post("/hooks/sendgrid", &stale, body.clone()).await.0, 401);
    let altered = body.replace("customer1-", "attacker1-");
    assert_eq!(h.post("/hooks/sendgrid", &headers, altered).await.0, 401);
    assert_eq!(h.rejected("sendgrid", "bad_signature").await, 2.0);
    assert_eq!(h.rejected("sendgrid", "missing_signature").await, 1.0);
    assert_eq!(h.rejected("sendgrid", "stale").await, 1.0);

    // Signed but not SendGrid's shape: 400 naming the field.
    let odd = r#"[{"email":"a@b.c","timestamp":1}]"#.to_owned();
    let odd_headers = h.sendgrid.headers(odd.as_bytes(), now);
    let (status, answer) = h.post("/hooks/sendgrid", &odd_headers, odd).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("[0]"),
        "{answer}"
    );
    assert!(
        answer["error"].as_str().unwrap().contains("event"),
        "{answer}"
    );
    // Seqs count every record ever committed (judged ones are pruned by later commits).
    assert_eq!(
        h.store.inbox_last_seq().unwrap(),
        50,
        "nothing refused was stored"
    );
    h.judged().await;
}

#[tokio::test]
async fn mailgun_tokens_are_accepted_once_and_signatures_checked() {
    let h = hooked().await;
    let event = serde_json::json!({
        "event": "delivered",
        "id": "ev-1",
        "timestamp": Utc::now().timestamp() as f64 + 0.25,
        "recipient": "a@example.net",
        "tags": ["spring-26"],
        "envelope": {"sender": "bounce+x@mg.corp.example", "targets": "a@example.net"},
        "message": {"headers": {
            "to": "a@example.net, \"B, Co\" <B@example.org>",
            "from": "News <news@corp.example>",
            "subject": "Sale",
            "message-id": "<20260101.1@mg.corp.example>",
        }},
    });
    let body = mailgun_body(MAILGUN_KEY, Utc::now(), "token-0123456789", event.clone());
    let (status, answer) = h.post("/hooks/mailgun", &[], body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let inbox = h.inbox();
    assert_eq!(
        inbox[0].mail.visible,
        vec!["a@example.net", "b@example.org"]
    );
    assert_eq!(inbox[0].mail.sender, "bounce+x@mg.corp.example");
    assert_eq!(inbox[0].mail.message_id, "20260101.1@mg.corp.example");

    // The same request again, inside the window: a replay.
    let (status, answer) = h.post("/hooks/mailgun", &[], body).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(h.rejected("mailgun", "replayed").await, 1.0);

    let wrong = mailgun_body("not-the-key", Utc::now(), "token-a", event.clone());
    assert_eq!(h.post("/hooks/mailgun", &[], wrong).await.0, 401);
    let stale = mailgun_body(
        MAILGUN_KEY,
        Utc::now() - chrono::Duration::minutes(6),
        "token-b",
        event.clone(),
    );
    assert_eq!(h.post("/hooks/mailgun", &[], stale).await.0, 401);
    let unsigned = serde_json::json!({ "event-data": event }).to_string();
    assert_eq!(h.post("/hooks/mailgun", &[], unsigned).await.0, 401);
    assert_eq!(h.rejected("mailgun", "bad_signature").await, 1.0);
    assert_eq!(h.rejected("mailgun", "stale").await, 1.0);
    assert_eq!(h.rejected("mailgun", "missing_signature").await, 1.0);
    // Seqs count every record ever committed (judged ones are pruned by later commits).
    assert_eq!(
        h.store.inbox_last_seq().unwrap(),
        1,
        "nothing refused was stored"
    );

    // The replay guard survives a restart of the inbox: it is in sled, not in memory.
    let key = tocsin::store::mail_inbox::token_key("mailgun", "token-0123456789");
    assert!(
        h.store
            .inbox_token_seen(&key, Utc::now().timestamp())
            .unwrap()
    );
}

#[tokio::test]
async fn postmark_needs_its_basic_auth_and_big_bodies_are_refused() {
    let h = hooked().await;
    let delivery = serde_json::json!({
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Recipient": "John@Example.com",
        "Tag": "welcome",
        "DeliveredAt": "2026-01-01T10:00:00Z",
        "Details": "Test delivery webhook details",
    })
    .to_string();
    let auth = ("authorization", basic_auth(POSTMARK_USER, POSTMARK_PASS));
    let (status, answer) = h
        .post(
            "/hooks/postmark",
            std::slice::from_ref(&auth),
            delivery.clone(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let inbox = h.inbox();
    assert_eq!(inbox[0].mail.envelope, vec!["john@example.com"]);
    assert_eq!(inbox[0].mail.campaign.as_deref(), Some("welcome"));

    let wrong = ("authorization", basic_auth(POSTMARK_USER, "guess"));
    assert_eq!(
        h.post("/hooks/postmark", &[wrong], delivery.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        h.post("/hooks/postmark", &[], delivery.clone()).await.0,
        401
    );
    assert_eq!(h.rejected("postmark", "bad_signature").await, 1.0);
    assert_eq!(h.rejected("postmark", "missing_signature").await, 1.0);

    // max_body is 4096 here.
    let big =
        serde_json::json!({"RecordType": "Delivery", "Details": "x".repeat(5000)}).to_string();
    assert_eq!(
        h.post("/hooks/postmark", std::slice::from_ref(&auth), big)
            .await
            .0,
        413
    );
    assert_eq!(h.rejected("postmark", "too_large").await, 1.0);
    let (status, answer) = h
        .post(
            "/hooks/postmark",
            &[auth],
            r#"{"RecordType":"Delivery"}"#.into(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("MessageID"),
        "{answer}"
    );
    // Seqs count every record ever committed (judged ones are pruned by later commits).
    assert_eq!(
        h.store.inbox_last_seq().unwrap(),
        1,
        "nothing refused was stored"
    );
}

#[tokio::test]
async fn accepted_events_not_yet_judged_are_judged_after_a_restart() {
    let h = hooked().await;
    let now = Utc::now();
    let body = sendgrid_events(10, 1, "c", now);
    let headers = h.sendgrid.headers(body.as_bytes(), now);
    assert_eq!(h.post("/hooks/sendgrid", &headers, body).await.0, 200);
    h.judged().await;
    let last = h.store.inbox_last_seq().unwrap();
    // As if the daemon died after the 200 but before judging: rewind the pipeline's checkpoint,
    // stop, and start a new inbox writer on the same store.
    h.store.set_cursor(CURSOR, "0").unwrap();
    h.shutdown.cancel();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let (inbox, writer) = Inbox::start(h.store.clone(), tx, CancellationToken::new());
    tokio::spawn(writer);
    let mut mails = 0;
    loop {
        let obs = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the backlog is handed over")
            .expect("the writer runs");
        match obs.kind {
            ObservationKind::Mail(m) => {
                assert_eq!(obs.account, "sendgrid");
                assert_eq!(m.feed, "sendgrid");
                mails += 1;
            }
            ObservationKind::Checkpoint { cursor, value } => {
                assert_eq!(cursor, CURSOR);
                assert_eq!(
                    value,
                    last.to_string(),
                    "the checkpoint follows the backlog"
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(mails, 10);
    drop(inbox);
}
