//! The provider event webhooks against signers that sign as the providers do (keys generated
//! here) and forgers that do not: SES through the SNS fake (TLS on loopback, real host check and
//! real certificate fetch), SendGrid, Mailgun, Postmark. Each event is taken once, whoever
//! sends it again; each provider's identifying headers are checked before the body is read.

use std::time::{Duration, Instant};

use chrono::Utc;
use tocsin::{
    App, Config,
    config::{
        Email, Secret,
        email::{MailgunHook, PostmarkHook, SendGridHook, SesHook},
    },
    incidents::PauseState,
    model::Rule,
    store::{
        Store,
        mail_inbox::{CURSOR, InboxRecord},
    },
};
use tocsin_fakes::{
    mail_signers::{SendGridSigner, basic_auth, mailgun_body, sendgrid_events, ses_event},
    mailer::FakeMailer,
    mastodon::FakeMastodon,
    sns::{self, FakeSns},
    telegram::FakeBotApi,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::{
    email_audit::kill_switch,
    support::{self, WAIT, until},
};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-bulk-events";
const MAILGUN_KEY: &str = "mailgun-signing-key-for-tests";
const MAILGUN_USER: &str = "mailgun";
const MAILGUN_PASS: &str = "mailgun-url-password";
const POSTMARK_USER: &str = "postmark";
const POSTMARK_PASS: &str = "postmark-hook-password";

struct Hooked {
    url: String,
    store: Store,
    sns: FakeSns,
    sendgrid: SendGridSigner,
    shutdown: CancellationToken,
    /// Stops the daemon when the test lets go of it.
    _stop: tokio_util::sync::DropGuard,
    /// The running daemon, awaited by [`Hooked::restart`].
    handle: Option<tokio::task::JoinHandle<Result<(), tocsin::AppError>>>,
    /// As built, for a restart on the same state.
    config: Config,
    state: tempfile::TempDir,
    _fakes: (FakeMastodon, FakeBotApi),
}

async fn hooked() -> Hooked {
    hooked_with(|_| {}).await
}

/// The daemon with every webhook configured, the config adjusted by `tweak` first.
async fn hooked_with(tweak: impl FnOnce(&mut Config)) -> Hooked {
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
            certificates: Vec::new(),
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
            username: MAILGUN_USER.into(),
            password: Secret::new(MAILGUN_PASS),
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
    tweak(&mut config);
    start(config, state, sns, sendgrid, (masto, bot)).await
}

/// Builds and runs the daemon on `config`, whose state is in `state`.
async fn start(
    config: Config,
    state: tempfile::TempDir,
    sns: FakeSns,
    sendgrid: SendGridSigner,
    fakes: (FakeMastodon, FakeBotApi),
) -> Hooked {
    let app = App::build(config.clone())
        .await
        .unwrap()
        .with_sns_client(sns.client());
    let url = format!("http://{}", app.http_addr());
    let store = app.store().clone();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run_until(shutdown.clone()));
    Hooked {
        url,
        store,
        sns,
        sendgrid,
        _stop: shutdown.clone().drop_guard(),
        shutdown,
        handle: Some(handle),
        config,
        state,
        _fakes: fakes,
    }
}

impl Hooked {
    /// Stops the daemon, lets `while_down` do what it wants to the store, and starts a new one
    /// on the same state and config.
    async fn restart(mut self, while_down: impl FnOnce(&Store)) -> Hooked {
        self.shutdown.cancel();
        self.handle.take().unwrap().await.unwrap().unwrap();
        while_down(&self.store);
        // The state dir is locked while any handle on it lives.
        let Hooked {
            store,
            sns,
            sendgrid,
            config,
            state,
            _fakes,
            ..
        } = self;
        drop(store);
        start(config, state, sns, sendgrid, _fakes).await
    }

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

    /// Posts an SNS message with the headers SNS sends with it.
    async fn post_sns(&self, body: String) -> (u16, serde_json::Value) {
        self.post("/hooks/ses", &FakeSns::headers(&body), body)
            .await
    }

    async fn post_mailgun(&self, body: String) -> (u16, serde_json::Value) {
        let auth = ("authorization", basic_auth(MAILGUN_USER, MAILGUN_PASS));
        self.post("/hooks/mailgun", &[auth], body).await
    }

    async fn post_postmark(&self, body: String) -> (u16, serde_json::Value) {
        let auth = ("authorization", basic_auth(POSTMARK_USER, POSTMARK_PASS));
        self.post("/hooks/postmark", &[auth], body).await
    }

    /// `/readyz`'s verdict on the webhook inbox.
    async fn inbox_readiness(&self) -> String {
        let body: serde_json::Value = reqwest::get(format!("{}/readyz", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["checks"]["webhook_inbox"]
            .as_str()
            .unwrap_or("absent")
            .to_owned()
    }

    fn inbox(&self) -> Vec<InboxRecord> {
        self.store
            .inbox_after(0, usize::MAX)
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
        let (status, answer) = h.post_sns(body).await;
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
async fn notifications_arriving_together_on_a_cold_cache_fetch_the_certificate_once() {
    let h = hooked().await;
    // SNS posts with many connections at once: every request misses the empty cache together,
    // and must not each spend the fetch budget on the same certificate.
    let posts = (0..16).map(|i| {
        let message = ses_event(
            &format!("0100-cold-{i}"),
            "news@corp.example",
            &recipients(3),
            "Hi",
            "c",
        );
        h.post_sns(h.sns.notification(TOPIC, &message, 2, Utc::now()))
    });
    for (status, answer) in futures_util::future::join_all(posts).await {
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(h.sns.cert_fetches(), 1);
}

#[tokio::test]
async fn ses_subscription_is_confirmed_through_the_subscribe_url() {
    let h = hooked().await;
    let (status, answer) = h.post_sns(h.sns.subscription_confirmation(TOPIC)).await;
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
    assert_eq!(h.post_sns(forged).await.0, 401);
    assert_eq!(h.rejected("ses", "bad_signature").await, 1.0);

    // The certificate URL elsewhere than an SNS host's certificate: refused before any fetch.
    // The S3 virtual hosts look like SNS's (`sns.` + something + `.amazonaws.com`), and the
    // fake serves the certificate there as the owner of a bucket named `sns` would: a check
    // that let them through would fetch it, and the forgery (signed with that certificate's
    // key) would verify.
    let fetches = h.sns.cert_fetches();
    let mut body: serde_json::Value =
        serde_json::from_str(&h.sns.notification(TOPIC, &message, 2, Utc::now())).unwrap();
    let foreign = [
        "https://attacker.example/SimpleNotificationService-0a.pem".to_owned(),
        format!("https://{}.attacker.example{}", sns::HOST, sns::CERT_PATH),
        format!("http://{}{}", sns::HOST, sns::CERT_PATH),
        format!("https://{}/certs/attacker.pem", sns::HOST),
    ]
    .into_iter()
    .chain(sns::S3_HOSTS.map(|host| format!("https://{host}{}", sns::CERT_PATH)));
    let mut refused = 0.0;
    for url in foreign {
        body["SigningCertURL"] = url.clone().into();
        h.sns.sign_into(&mut body, 2);
        let (status, answer) = h.post_sns(body.to_string()).await;
        assert_eq!(status, 401, "{url}: {answer}");
        refused += 1.0;
        assert_eq!(h.rejected("ses", "cert_url").await, refused, "{url}");
    }
    assert_eq!(
        h.sns.cert_fetches(),
        fetches,
        "no certificate fetched from a foreign host"
    );

    // A signed message altered afterwards.
    let good = h.sns.notification(TOPIC, &message, 1, Utc::now());
    let tampered = good.replace("m-forged", "m-altered");
    assert_eq!(h.post_sns(tampered).await.0, 401);

    // Stale: signed two hours ago (max_age 1h).
    let old = h
        .sns
        .notification(TOPIC, &message, 2, Utc::now() - chrono::Duration::hours(2));
    assert_eq!(h.post_sns(old).await.0, 401);
    assert_eq!(h.rejected("ses", "stale").await, 1.0);

    // No signature at all, and not even JSON (with SNS's headers).
    let mut unsigned: serde_json::Value = serde_json::from_str(&good).unwrap();
    unsigned.as_object_mut().unwrap().remove("Signature");
    assert_eq!(h.post_sns(unsigned.to_string()).await.0, 401);
    let headers = FakeSns::headers(&good);
    assert_eq!(h.post("/hooks/ses", &headers, "hello".into()).await.0, 401);
    assert_eq!(h.rejected("ses", "missing_signature").await, 2.0);
    // SNS's headers that disagree with the signed message.
    let mut other_topic = headers.clone();
    other_topic[2].1 = "arn:aws:sns:us-east-1:123456789012:other".into();
    assert_eq!(
        h.post("/hooks/ses", &other_topic, good.clone()).await.0,
        401
    );
    assert_eq!(h.rejected("ses", "unknown_topic").await, 1.0);

    // Well signed, but the SES event inside lacks `mail`: 400 naming the field.
    let odd = h
        .sns
        .notification(TOPIC, r#"{"eventType":"Send"}"#, 2, Utc::now());
    let (status, answer) = h.post_sns(odd).await;
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
async fn mailgun_needs_its_url_secret_and_a_token_serves_one_event() {
    let h = hooked().await;
    let event = |id: &str| {
        serde_json::json!({
            "event": "delivered",
            "id": id,
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
        })
    };
    let body = mailgun_body(MAILGUN_KEY, Utc::now(), "token-0123456789", event("ev-1"));

    // Well signed with the account's key, but without the secret only our URL carries: anyone
    // else holding the signing key (or one signed request) gets no further.
    let (status, answer) = h.post("/hooks/mailgun", &[], body.clone()).await;
    assert_eq!(status, 401, "{answer}");
    let wrong = ("authorization", basic_auth(MAILGUN_USER, "guess"));
    assert_eq!(
        h.post("/hooks/mailgun", &[wrong], body.clone()).await.0,
        401
    );
    assert_eq!(h.rejected("mailgun", "missing_signature").await, 1.0);
    assert_eq!(h.rejected("mailgun", "bad_signature").await, 1.0);
    assert!(h.inbox().is_empty());

    let (status, answer) = h.post_mailgun(body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let inbox = h.inbox();
    assert_eq!(
        inbox[0].mail.visible,
        vec!["a@example.net", "b@example.org"]
    );
    assert_eq!(inbox[0].mail.sender, "bounce+x@mg.corp.example");
    assert_eq!(inbox[0].mail.message_id, "20260101.1@mg.corp.example");
    assert!(
        !inbox[0].mail.origin_proven,
        "a shared secret proves no origin"
    );

    // The same request again (Mailgun retrying, or a replay): 200, the same event, not counted.
    let (status, answer) = h.post_mailgun(body).await;
    assert_eq!(
        (status, &answer["duplicates"]),
        (200, &1.into()),
        "{answer}"
    );
    // Another event under the token of that signed request: not Mailgun's.
    let riding = mailgun_body(
        MAILGUN_KEY,
        Utc::now(),
        "token-0123456789",
        event("ev-forged"),
    );
    let (status, answer) = h.post_mailgun(riding).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(h.rejected("mailgun", "replayed").await, 1.0);

    let wrong = mailgun_body("not-the-key", Utc::now(), "token-a", event("ev-2"));
    assert_eq!(h.post_mailgun(wrong).await.0, 401);
    let stale = mailgun_body(
        MAILGUN_KEY,
        Utc::now() - chrono::Duration::minutes(6),
        "token-b",
        event("ev-3"),
    );
    assert_eq!(h.post_mailgun(stale).await.0, 401);
    let unsigned = serde_json::json!({ "event-data": event("ev-4") }).to_string();
    assert_eq!(h.post_mailgun(unsigned).await.0, 401);
    assert_eq!(h.rejected("mailgun", "bad_signature").await, 2.0);
    assert_eq!(h.rejected("mailgun", "stale").await, 1.0);
    assert_eq!(h.rejected("mailgun", "missing_signature").await, 2.0);
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
        "DeliveredAt": Utc::now(),
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
    // Postmark gives no event id: an event older than any retry would outlive its key.
    let old = serde_json::json!({
        "RecordType": "Delivery", "MessageID": "m-old", "Recipient": "a@example.net",
        "DeliveredAt": Utc::now() - chrono::Duration::days(4),
    });
    assert_eq!(h.post_postmark(old.to_string()).await.0, 401);
    assert_eq!(h.rejected("postmark", "stale").await, 1.0);
    let timeless = r#"{"RecordType":"Open","MessageID":"m","Recipient":"a@example.net"}"#;
    let (status, answer) = h.post_postmark(timeless.into()).await;
    assert_eq!(status, 400, "{answer}");
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
    // As if the daemon died after the 200 but before judging: the pipeline's checkpoint is
    // rewound while it is down, and a new daemon starts on the same state.
    let h = h
        .restart(|store| store.set_cursor(CURSOR, "0").unwrap())
        .await;
    h.judged().await;
    assert_eq!(h.store.inbox_checkpoint().unwrap(), last);
    // Judged by the new daemon (its counters start at zero): the ten events, once each.
    support::quiet::until_async(
        || async { judged_mails(&h, "sendgrid").await >= 10.0 },
        "the backlog judged",
    )
    .await;
    assert_eq!(judged_mails(&h, "sendgrid").await, 10.0);
}

/// Counts of what the pipeline judged from a webhook's account.
async fn judged_mails(h: &Hooked, account: &str) -> f64 {
    h.metric(&format!(
        "tocsin_observations_total{{account=\"{account}\",kind=\"mail\"}}"
    ))
    .await
}

#[tokio::test]
async fn each_providers_retry_or_replay_is_counted_once() {
    let h = hooked().await;
    let now = Utc::now();

    // SES: SNS retries a notification with its MessageId; a replay carries it too.
    let message = ses_event("0100-once", "news@corp.example", &recipients(3), "Hi", "c");
    let notification = h.sns.notification(TOPIC, &message, 2, now);
    let (status, answer) = h.post_sns(notification.clone()).await;
    assert_eq!((status, &answer["accepted"]), (200, &1.into()), "{answer}");
    let (status, answer) = h.post_sns(notification).await;
    assert_eq!(
        status, 200,
        "a retry whose first 200 was lost is not refused"
    );
    assert_eq!(
        (&answer["accepted"], &answer["duplicates"]),
        (&0.into(), &1.into())
    );
    // Another notification of the same message (a Delivery after the Send) is an event of its own.
    let (status, answer) = h
        .post_sns(h.sns.notification(TOPIC, &message, 2, now))
        .await;
    assert_eq!((status, &answer["accepted"]), (200, &1.into()), "{answer}");

    // SendGrid: a batch sent again, then a batch holding those events and one more message.
    let batch = sendgrid_events(3, 2, "c", now);
    let headers = h.sendgrid.headers(batch.as_bytes(), now);
    let (status, answer) = h.post("/hooks/sendgrid", &headers, batch.clone()).await;
    assert_eq!((status, &answer["accepted"]), (200, &3.into()), "{answer}");
    let (status, answer) = h.post("/hooks/sendgrid", &headers, batch).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&answer["accepted"], &answer["duplicates"]),
        (&0.into(), &12.into())
    );
    let wider = sendgrid_events(4, 2, "c", now);
    let headers = h.sendgrid.headers(wider.as_bytes(), now);
    let (status, answer) = h.post("/hooks/sendgrid", &headers, wider).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&answer["accepted"], &answer["duplicates"]),
        (&1.into(), &12.into())
    );
    let last = h.inbox().pop().unwrap();
    assert_eq!(
        last.mail.envelope,
        vec!["customer3-0@example.net", "customer3-1@example.net"]
    );

    // Mailgun: the same event.
    let event = serde_json::json!({
        "event": "delivered", "id": "mg-once", "timestamp": now.timestamp() as f64,
        "recipient": "a@example.net",
        "message": {"headers": {"message-id": "<m@mg.corp.example>", "from": "news@corp.example"}},
    });
    let body = mailgun_body(MAILGUN_KEY, now, "token-once", event);
    assert_eq!(h.post_mailgun(body.clone()).await.1["accepted"], 1);
    let (status, answer) = h.post_mailgun(body).await;
    assert_eq!(
        (status, &answer["duplicates"]),
        (200, &1.into()),
        "{answer}"
    );

    // Postmark: the same delivery again; the same message delivered to another recipient and
    // opened by the first are deliveries of their own.
    let delivery = |recipient: &str, kind: &str, at_field: &str| {
        serde_json::json!({
            "RecordType": kind, "MessageID": "pm-once", "Recipient": recipient,
            at_field: now, "Tag": "c",
        })
        .to_string()
    };
    let first = delivery("a@example.net", "Delivery", "DeliveredAt");
    assert_eq!(h.post_postmark(first.clone()).await.1["accepted"], 1);
    let (status, answer) = h.post_postmark(first).await;
    assert_eq!(
        (status, &answer["duplicates"]),
        (200, &1.into()),
        "{answer}"
    );
    let other = delivery("b@example.net", "Delivery", "DeliveredAt");
    assert_eq!(h.post_postmark(other).await.1["accepted"], 1);
    let open = delivery("a@example.net", "Open", "ReceivedAt");
    assert_eq!(h.post_postmark(open).await.1["accepted"], 1);

    for (provider, duplicates) in [
        ("ses", 1.0),
        ("sendgrid", 24.0),
        ("mailgun", 1.0),
        ("postmark", 1.0),
    ] {
        assert_eq!(
            h.metric(&format!(
                "tocsin_webhook_duplicates_total{{provider=\"{provider}\"}}"
            ))
            .await,
            duplicates,
            "{provider}"
        );
    }
    // Judged once each: never counted again in the senders' volumes.
    h.judged().await;
    assert_eq!(judged_mails(&h, "ses-bulk").await, 2.0);
    assert_eq!(judged_mails(&h, "sendgrid").await, 4.0);
    assert_eq!(judged_mails(&h, "mailgun").await, 1.0);
    assert_eq!(judged_mails(&h, "postmark").await, 3.0);
    assert_eq!(h.store.inbox_last_seq().unwrap(), 10);
}

type Headers = Vec<(&'static str, String)>;

/// Sends a request head announcing a body, and not the body; the status of the answer. A
/// server that waits for the body answers only at its request deadline, with 408.
async fn head_without_body(url: &str, path: &str, headers: &[(&str, String)]) -> u16 {
    let addr = url.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn requests_without_their_providers_headers_are_refused_before_the_body() {
    let h = hooked().await;
    let sns_headers = FakeSns::headers(&h.sns.notification(TOPIC, "{}", 2, Utc::now()));
    let mut unknown_topic = sns_headers.clone();
    unknown_topic[2].1 = "arn:aws:sns:us-east-1:666:attacker".into();
    let cases: Vec<(&str, Headers, &str)> = vec![
        ("/hooks/ses", vec![], "missing_signature"),
        ("/hooks/ses", sns_headers[..1].to_vec(), "missing_signature"),
        ("/hooks/ses", unknown_topic, "unknown_topic"),
        (
            "/hooks/sendgrid",
            vec![(
                tocsin_fakes::mail_signers::SENDGRID_SIGNATURE,
                "MEUCIQ".into(),
            )],
            "missing_signature",
        ),
        ("/hooks/mailgun", vec![], "missing_signature"),
        (
            "/hooks/mailgun",
            vec![("authorization", basic_auth(MAILGUN_USER, "guess"))],
            "bad_signature",
        ),
        ("/hooks/postmark", vec![], "missing_signature"),
        (
            "/hooks/postmark",
            vec![("authorization", basic_auth("someone", POSTMARK_PASS))],
            "bad_signature",
        ),
    ];
    for (path, headers, _) in &cases {
        assert_eq!(
            head_without_body(&h.url, path, headers).await,
            401,
            "{path} {headers:?}: answered without waiting for the body"
        );
    }
    for provider in ["ses", "sendgrid", "mailgun", "postmark"] {
        for reason in ["missing_signature", "bad_signature", "unknown_topic"] {
            let expected = cases
                .iter()
                .filter(|(p, _, r)| p.ends_with(provider) && *r == reason)
                .count();
            assert_eq!(
                h.rejected(provider, reason).await,
                expected as f64,
                "{provider} {reason}"
            );
        }
    }
    // With its credentials the same head gets as far as its body: its declared length is over
    // this webhook's max_body.
    let auth = [("authorization", basic_auth(POSTMARK_USER, POSTMARK_PASS))];
    assert_eq!(
        head_without_body(&h.url, "/hooks/postmark", &auth).await,
        413
    );
    assert!(h.inbox().is_empty());
}

#[tokio::test]
async fn the_inbox_recovers_after_store_errors_and_readyz_says_so_meanwhile() {
    let h = hooked().await;
    let message = ses_event("0100-fault", "news@corp.example", &recipients(3), "Hi", "c");
    let refused = h.sns.notification(TOPIC, &message, 2, Utc::now());
    assert_eq!(h.inbox_readiness().await, "ok");

    // The disk refuses the inbox's writes: the provider hears 503 and will retry.
    h.store.fail_inbox_writes(u32::MAX);
    let (status, answer) = h.post_sns(refused.clone()).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(h.rejected("ses", "unavailable").await, 1.0);
    let readiness = h.inbox_readiness().await;
    assert!(readiness.contains("cannot write"), "{readiness}");

    // The disk comes back: the writer's retries find out on their own, without a request.
    h.store.fail_inbox_writes(0);
    let deadline = Instant::now() + WAIT;
    while h.inbox_readiness().await != "ok" {
        assert!(Instant::now() < deadline, "the inbox never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The retry of the refused notification is taken (nothing of it was written), and so is
    // what comes next.
    let (status, answer) = h.post_sns(refused).await;
    assert_eq!((status, &answer["accepted"]), (200, &1.into()), "{answer}");
    let next = h.sns.notification(TOPIC, &message, 2, Utc::now());
    assert_eq!(h.post_sns(next).await.1["accepted"], 1);
    h.judged().await;
    assert_eq!(judged_mails(&h, "ses-bulk").await, 2.0);
}

#[tokio::test]
async fn only_mail_whose_origin_is_proven_pauses_the_mailer() {
    let mailer = FakeMailer::start().await.unwrap();
    let ks = kill_switch(&mailer, true);
    let h = hooked_with(move |c| {
        c.email.as_mut().unwrap().kill_switch = Some(ks);
    })
    .await;
    let to = recipients(30);
    // Mailgun (a URL secret, not a signature): the exposure pages, the mailer is left alone.
    let event = serde_json::json!({
        "event": "delivered", "id": "mg-exposed", "timestamp": Utc::now().timestamp() as f64,
        "recipient": to[0],
        "message": {"headers": {
            "to": to.join(", "), "from": "news@corp.example",
            "message-id": "<leak@mg.corp.example>", "subject": "Hi",
        }},
    });
    let body = mailgun_body(MAILGUN_KEY, Utc::now(), "token-exposed", event);
    assert_eq!(h.post_mailgun(body).await.0, 200);
    h.judged().await;
    let incident_of = |account: &str| {
        h.store
            .incidents()
            .unwrap()
            .into_iter()
            .find(|i| i.rule == Rule::ExposedRecipients && i.account == account)
    };
    let unproven = incident_of("mailgun").expect("the exposure is paged");
    assert_eq!(PauseState::of(&unproven), PauseState::None);
    assert_eq!(mailer.requests(), 0);

    // SES (signed by SNS): the same exposure pauses the mailer at once.
    let message = ses_event("0100-exposed", "news@corp.example", &to, "Hi", "c");
    assert_eq!(
        h.post_sns(h.sns.notification(TOPIC, &message, 2, Utc::now()))
            .await
            .0,
        200
    );
    until(|| mailer.paused(), "the mailer paused").await;
    assert!(incident_of("ses-bulk").is_some());
    assert_eq!(mailer.requests(), 1);
    assert_eq!(
        PauseState::of(&incident_of("mailgun").unwrap()),
        PauseState::None,
        "the unproven incident was never pressed"
    );
}
