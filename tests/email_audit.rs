//! Mailbox and admin audit pollers against the fake Google Reports API and the fake Microsoft 365
//! Management Activity API, and `mailbox.risky_setting`.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tocsin::{
    Config,
    config::{Email, GoogleFeed, KillSwitch, M365Feed, Secret},
    model::{Evidence, Incident, Rule, Severity},
};
use tocsin_fakes::{
    google::FakeGoogle,
    m365::{FakeM365, exchange_record},
    mailer::FakeMailer,
};

use crate::support::*;

const KEY_PEM: &str = include_str!("fixtures/google-service-account-test-key.pem");
const SA_EMAIL: &str = "tocsin-audit@example-corp.iam.gserviceaccount.com";
const ADMIN: &str = "it-admin@corp.example";
const GOOGLE: &str = "workspace";
const M365: &str = "exchange";
const TENANT: &str = "7e1c7c3a-58c2-4a9e-9d1b-2f0ad2c6c0de";
const CLIENT_ID: &str = "0b4e2b6e-1d2f-4a53-9c3c-6a1f4f0b9e11";
const CLIENT_SECRET: &str = "m365-client-secret-value";
pub(crate) const KILL_SECRET: &str = "kill-switch-secret";

/// A key pair that is not the service account's.
const OTHER_PEM: &str = include_str!("fixtures/other-test-key.pem");

fn public_key() -> Vec<u8> {
    public_key_of(KEY_PEM)
}

fn public_key_of(pem: &str) -> Vec<u8> {
    let der = tocsin::mail::audit::google::pem_der(pem).unwrap();
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    use ring::signature::KeyPair;
    key.public_key().as_ref().to_vec()
}

fn service_account_json(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "example-corp-audit",
        "private_key_id": "0123456789abcdef",
        "private_key": KEY_PEM,
        "client_email": SA_EMAIL,
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    })
    .to_string()
}

fn google_feed(g: &FakeGoogle) -> GoogleFeed {
    GoogleFeed {
        name: GOOGLE.into(),
        service_account: Secret::new(service_account_json(&g.token_url())),
        admin: ADMIN.into(),
        api_url: g.url(),
        applications: vec!["admin".into(), "login".into()],
        poll_interval: POLL,
        internal_domains: vec!["corp.example".into()],
        grace: None,
    }
}

fn m365_feed(m: &FakeM365) -> M365Feed {
    M365Feed {
        name: M365.into(),
        tenant: TENANT.into(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        login_url: m.url(),
        api_url: m.url(),
        poll_interval: POLL,
        internal_domains: vec!["corp.example".into()],
        grace: None,
    }
}

pub(crate) fn kill_switch(mailer: &FakeMailer, auto_pause: bool) -> KillSwitch {
    KillSwitch {
        method: "PUT".into(),
        url: mailer.pause_url(),
        headers: [("X-Mailer-Tenant".to_owned(), "corp".to_owned())].into(),
        body: Some(r#"{"state":"paused","reason":"tocsin"}"#.into()),
        secret: Some(Secret::new(KILL_SECRET)),
        secret_header: None,
        timeout: Duration::from_secs(5),
        auto_pause,
    }
}

pub(crate) fn with_email(email: Email) -> impl FnOnce(&mut Config) {
    move |c| c.email = Some(email)
}

fn risky(app: &TestApp) -> Vec<Incident> {
    app.store
        .incidents()
        .unwrap()
        .into_iter()
        .filter(|i| i.rule == Rule::RiskySetting)
        .collect()
}

fn risky_pages(app: &TestApp) -> usize {
    app.bot
        .sent()
        .iter()
        .filter(|m| m.text.contains("mailbox.risky_setting"))
        .count()
}

async fn wait_feed_polls(app: &TestApp, feed: &str, n: u64) {
    let polls = |app: &TestApp| app.health.snapshot().get(feed).map_or(0, |s| s.polls);
    let target = polls(app) + n;
    until(|| polls(app) >= target, "feed polls").await;
}

async fn audit_observations(app: &TestApp, feed: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", app.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.contains(&format!("account=\"{feed}\"")) && l.contains("kind=\"audit\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn seed_google(g: &FakeGoogle) {
    let t = Utc::now() - chrono::Duration::minutes(5);
    let s = |n: i64| t + chrono::Duration::seconds(n);
    // Admin: forwarding out of domain, a harmless setting, a role grant (two pages of two).
    g.push(
        "admin",
        s(1),
        ADMIN,
        "CHANGE_EMAIL_SETTING",
        json!([
            { "name": "SETTING_NAME", "value": "EMAIL_FORWARDING" },
            { "name": "USER_EMAIL", "value": "ceo@corp.example" },
            { "name": "NEW_VALUE", "value": "collect@exfil.example" },
        ]),
    );
    g.push(
        "admin",
        s(2),
        ADMIN,
        "CHANGE_EMAIL_SETTING",
        json!([
            { "name": "SETTING_NAME", "value": "EMAIL_SIGNATURE" },
            { "name": "USER_EMAIL", "value": "ceo@corp.example" },
            { "name": "NEW_VALUE", "value": "Best regards" },
        ]),
    );
    g.push(
        "admin",
        s(3),
        "intruder@corp.example",
        "ASSIGN_ROLE",
        json!([
            { "name": "ROLE_NAME", "value": "_SEED_ADMIN_ROLE" },
            { "name": "USER_EMAIL", "value": "intruder@corp.example" },
        ]),
    );
    g.push(
        "login",
        s(4),
        "ceo@corp.example",
        "login_success",
        json!([{ "name": "login_type", "value": "google_password" }]),
    );
    g.push("login", s(5), "ceo@corp.example", "2sv_disable", json!([]));
    g.push(
        "login",
        s(6),
        "cfo@corp.example",
        "suspicious_login",
        json!([
            { "name": "login_type", "value": "google_password" },
            { "name": "is_suspicious", "boolValue": true },
        ]),
    );
}

#[tokio::test]
async fn google_reports_pages_each_risky_setting_once_and_a_restart_keeps_the_cursor() {
    let g = FakeGoogle::start(public_key(), SA_EMAIL).await.unwrap();
    g.set_page_size(2);
    seed_google(&g);
    let email = Email {
        google: vec![google_feed(&g)],
        ..Email::default()
    };
    let app = spawn_app_with(with_email(email.clone())).await;
    until(|| risky_pages(&app) == 4, "four risky pages").await;
    let incidents = risky(&app);
    let mut what: Vec<(String, Severity)> = incidents
        .iter()
        .map(|i| match &i.evidence {
            Evidence::Mailbox { risk, .. } => (risk.clone(), i.severity),
            other => panic!("{other:?}"),
        })
        .collect();
    what.sort();
    assert_eq!(
        what,
        vec![
            ("2-step verification turned off".into(), Severity::Critical),
            ("admin role granted".into(), Severity::Critical),
            ("forwarding out of domain".into(), Severity::Critical),
            ("suspicious login".into(), Severity::Critical),
        ]
    );
    let page = app
        .bot
        .sent()
        .into_iter()
        .find(|m| m.text.contains("forwarding out of domain"))
        .unwrap();
    for part in [
        "Actor: it-admin@corp.example",
        "Action: CHANGE_EMAIL_SETTING (google)",
        "Target: ceo@corp.example",
        "Setting: NEW_VALUE = collect@exfil.example",
        &format!("Account: {GOOGLE}"),
    ] {
        assert!(page.text.contains(part), "{part} missing in {}", page.text);
    }
    // The admin application took two pages; the token was fetched with a valid assertion for
    // the impersonated admin and cached across polls.
    assert!(
        g.pages()
            .contains(&("admin".to_owned(), Some("page-2".to_owned()))),
        "{:?}",
        g.pages()
    );
    wait_feed_polls(&app, GOOGLE, 3).await;
    assert_eq!(risky_pages(&app), 4, "paged once each");
    assert_eq!(risky(&app).len(), 4);
    assert_eq!(g.tokens_issued(), 1);
    assert_eq!(g.subjects(), vec![ADMIN.to_owned()]);
    assert!(g.refused_assertions().is_empty());
    assert!(
        app.store
            .cursor("google:workspace:admin")
            .unwrap()
            .is_some()
    );

    // Restart: the cursor comes back from sled; nothing is read as new or paged again.
    let (masto, bot, state) = app.stop().await;
    let requests_before = g.pages().len();
    let app = start_with(masto, bot, state, with_email(email)).await;
    wait_feed_polls(&app, GOOGLE, 3).await;
    assert!(g.pages().len() > requests_before, "polled after restart");
    assert_eq!(
        audit_observations(&app, GOOGLE).await,
        0,
        "no event re-read"
    );
    assert_eq!(risky_pages(&app), 4);
    assert_eq!(g.tokens_issued(), 2, "a new process fetches a new token");

    // A new risky event after the restart is paged.
    g.push(
        "login",
        Utc::now(),
        "cfo@corp.example",
        "2sv_disable",
        json!([]),
    );
    until(|| risky_pages(&app) == 5, "the new event's page").await;
    app.stop().await;
}

#[tokio::test]
async fn a_refused_reports_token_pages_monitor_blind() {
    let g = FakeGoogle::start(public_key(), SA_EMAIL).await.unwrap();
    g.fail_with(Some(401));
    let email = Email {
        google: vec![google_feed(&g)],
        ..Email::default()
    };
    let app = spawn_app_with(with_email(email)).await;
    until(
        || {
            app.store
                .incidents()
                .unwrap()
                .iter()
                .any(|i| i.rule == Rule::MonitorBlind && i.account == GOOGLE)
        },
        "monitor.blind for the feed",
    )
    .await;
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains("monitor.blind") && m.text.contains(GOOGLE))
        },
        "the blind page",
    )
    .await;
    let h = app.health.snapshot()[GOOGLE].clone();
    assert!(h.refused, "{h:?}");
    assert_eq!(h.platform, "google_workspace");
    app.stop().await;
}

#[tokio::test]
async fn a_signature_by_another_key_is_refused_by_the_token_endpoint() {
    // The fake checks the signature for real: an endpoint that knows another public key refuses
    // the assertion, and the feed is blind.
    let other = FakeGoogle::start(public_key_of(OTHER_PEM), SA_EMAIL)
        .await
        .unwrap();
    let email = Email {
        google: vec![google_feed(&other)],
        ..Email::default()
    };
    let app = spawn_app_with(with_email(email)).await;
    until(
        || !other.refused_assertions().is_empty(),
        "a refused assertion",
    )
    .await;
    assert_eq!(other.refused_assertions()[0], "Invalid JWT Signature.");
    assert_eq!(other.tokens_issued(), 0);
    until(
        || app.health.snapshot()[GOOGLE].refused,
        "the feed reported refused",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn m365_content_feed_follows_next_page_uri_and_pages_each_risky_setting_once() {
    let m = FakeM365::start(TENANT, CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap();
    m.set_page_size(1);
    m.publish(vec![
        exchange_record(
            "d7cf7b7d-d471-4509-91d4-08db60408a69",
            "Set-Mailbox",
            "matt@corp.example",
            "ceo@corp.example",
            &[
                ("Identity", "ceo@corp.example"),
                ("ForwardingSmtpAddress", "smtp:bla@exfil.example"),
                ("DeliverToMailboxAndForward", "True"),
            ],
        ),
        exchange_record(
            "5a7e0c8c-0000-4000-8000-000000000001",
            "Set-Mailbox",
            "matt@corp.example",
            "cfo@corp.example",
            &[("ForwardingSmtpAddress", "smtp:assistant@corp.example")],
        ),
    ]);
    m.publish(vec![
        exchange_record(
            "5a7e0c8c-0000-4000-8000-000000000002",
            "New-InboxRule",
            "cfo@corp.example",
            "cfo@corp.example\\move",
            &[
                ("Name", "move"),
                ("RedirectTo", "\"drop\" [SMTP:drop@exfil.example]"),
            ],
        ),
        exchange_record(
            "5a7e0c8c-0000-4000-8000-000000000003",
            "New-TransportRule",
            "admin@corp.example",
            "copy all",
            &[
                ("Name", "copy all"),
                ("BlindCopyTo", "archive@exfil.example"),
            ],
        ),
        exchange_record(
            "5a7e0c8c-0000-4000-8000-000000000004",
            "MailItemsAccessed",
            "cfo@corp.example",
            "cfo@corp.example",
            &[],
        ),
    ]);
    let email = Email {
        m365: vec![m365_feed(&m)],
        ..Email::default()
    };
    let app = spawn_app_with(with_email(email.clone())).await;
    until(|| risky_pages(&app) == 3, "three risky pages").await;
    let mut risks: Vec<(String, String)> = risky(&app)
        .into_iter()
        .map(|i| match i.evidence {
            Evidence::Mailbox {
                risk, parameter, ..
            } => (risk, parameter),
            other => panic!("{other:?}"),
        })
        .collect();
    risks.sort();
    assert_eq!(
        risks,
        vec![
            (
                "forwarding inbox rule".into(),
                "RedirectTo = \"drop\" [SMTP:drop@exfil.example]".into()
            ),
            (
                "forwarding out of domain".into(),
                "ForwardingSmtpAddress = smtp:bla@exfil.example".into()
            ),
            (
                "transport rule blind-copies mail".into(),
                "BlindCopyTo = archive@exfil.example".into()
            ),
        ]
    );
    wait_feed_polls(&app, M365, 3).await;
    assert_eq!(risky_pages(&app), 3, "paged once each");
    assert_eq!(
        m.subscribe_calls(),
        1,
        "the subscription is started once per run"
    );
    assert_eq!(
        m.blob_reads().len(),
        2,
        "each blob read once: {:?}",
        m.blob_reads()
    );
    assert!(
        m.listings() >= 2,
        "two blobs at one per page: NextPageUri followed"
    );
    app.stop().await;
}

/// Opens an `email.exposed_recipients` incident the way the journal's rule does.
#[tokio::test]
async fn a_refused_m365_secret_pages_monitor_blind() {
    // The tenant knows another secret: the token endpoint answers 401 invalid_client.
    let m = FakeM365::start(TENANT, CLIENT_ID, "rotated-secret")
        .await
        .unwrap();
    let email = Email {
        m365: vec![m365_feed(&m)],
        ..Email::default()
    };
    let app = spawn_app_with(with_email(email)).await;
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|msg| msg.text.contains("monitor.blind") && msg.text.contains(M365))
        },
        "the blind page",
    )
    .await;
    let h = app.health.snapshot()[M365].clone();
    assert!(h.refused && h.platform == "microsoft_365", "{h:?}");
    assert_eq!(m.subscribe_calls(), 0);
    app.stop().await;
}
