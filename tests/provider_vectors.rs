//! The providers' own vectors (`tests/fixtures/providers/`, each folder's `SOURCE.md` says where
//! every file comes from and what must be concluded from it) through the product's verifiers
//! and parsers. Published vectors carry old timestamps, so each verification is given its clock;
//! the SNS messages were signed by AWS and go through the pinned-certificate path (the
//! certificates have expired: trusted as configured), with a client that could reach nothing
//! but a closed loopback port, had anything been fetched.

use std::{path::PathBuf, time::Duration};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use tocsin::{
    config::{
        Secret,
        email::{MailgunHook, SendGridHook, SesHook},
    },
    mail::webhooks::{
        fold,
        mailgun::{self, Mailgun},
        postmark,
        sendgrid::{self, SendGrid},
        ses::{self, Pinned, Ses, SesEvent},
    },
};
use tocsin_fakes::mail_signers::basic_auth;

fn dir(provider: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/providers")
        .join(provider)
}

fn read(provider: &str, file: &str) -> Vec<u8> {
    std::fs::read(dir(provider).join(file)).unwrap_or_else(|e| panic!("{provider}/{file}: {e}"))
}

fn json(provider: &str, file: &str) -> Value {
    serde_json::from_slice(&read(provider, file)).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn at(unix: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(unix, 0).unwrap()
}

// ---- SendGrid ------------------------------------------------------------------------------

fn sendgrid_hook(key: &str) -> SendGrid {
    SendGrid::new(&SendGridHook {
        name: "sendgrid".into(),
        public_key: Secret::new(key),
        tolerance: Duration::from_secs(300),
        max_body: 8 * 1024 * 1024,
    })
    .expect("the published key parses")
}

#[test]
fn sendgrid_signed_vectors_verify_as_published() {
    let vectors = json("sendgrid", "vectors.json");
    let names = &vectors["headers"];
    assert!(
        names["signature"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(sendgrid::SIGNATURE_HEADER)
            && names["timestamp"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(sendgrid::TIMESTAMP_HEADER)
    );
    let cases = vectors["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut body = match case["body_file"].as_str() {
            Some(file) => read("sendgrid", file),
            None => case["body"].as_str().unwrap().as_bytes().to_vec(),
        };
        if case["body_transform"] == "strip trailing \\r\\n" {
            assert!(body.ends_with(b"\r\n"), "{name}");
            body.truncate(body.len() - 2);
        }
        let ts = case["timestamp"].as_str().unwrap();
        let h = headers(&[
            (
                sendgrid::SIGNATURE_HEADER,
                case["signature"].as_str().unwrap(),
            ),
            (sendgrid::TIMESTAMP_HEADER, ts),
        ]);
        let hook = sendgrid_hook(case["public_key"].as_str().unwrap());
        let verdict = hook.verify(&h, &body);
        match case["expect"].as_str().unwrap() {
            "valid" => assert_eq!(verdict.unwrap(), at(ts.parse().unwrap()), "{name}"),
            _ => assert_eq!(
                verdict.unwrap_err().reason(),
                "bad_signature",
                "{name} must not verify"
            ),
        }
    }
}

#[test]
fn sendgrid_dropped_event_is_accepted_in_its_time_and_stale_now() {
    let vectors = json("sendgrid", "vectors.json");
    let case = &vectors["cases"][0];
    assert_eq!(case["name"], "dropped-event");
    let body = read("sendgrid", "signed-dropped.body");
    let h = headers(&[
        (
            sendgrid::SIGNATURE_HEADER,
            case["signature"].as_str().unwrap(),
        ),
        (sendgrid::TIMESTAMP_HEADER, "1600112502"),
    ]);
    let hook = sendgrid_hook(case["public_key"].as_str().unwrap());
    let accepted = hook.accept(&h, &body, at(1600112502 + 1)).unwrap();
    assert_eq!(accepted.deliveries.len(), 1);
    let d = &accepted.deliveries[0];
    assert_eq!(
        d.key, "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
        "named by its sg_event_id"
    );
    assert_eq!(
        d.mail.message_id,
        "LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net"
    );
    assert!(d.mail.envelope.is_empty(), "a drop delivers nothing");
    assert_eq!(d.mail.sent_at, Some(at(1600112492)));
    assert!(d.mail.origin_proven, "ECDSA-signed by SendGrid");
    let events = sendgrid::parse_events(&body).unwrap();
    assert_eq!(events[0].event, "dropped");
    assert_eq!(events[0].email.as_deref(), Some("hello@world.com"));
    assert_eq!(events[0].reason.as_deref(), Some("Bounced Address"));
    assert_eq!(
        events[0].sg_message_id.as_deref(),
        Some("LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0")
    );
    // The same request now: six years late.
    let stale = hook.accept(&h, &body, Utc::now()).unwrap_err();
    assert_eq!(stale.reason(), "stale");
}

#[test]
fn sendgrid_test_event_verifies_but_is_not_an_event_batch() {
    let vectors = json("sendgrid", "vectors.json");
    let case = &vectors["cases"][4];
    assert_eq!(case["name"], "test-event");
    let body = read("sendgrid", "signed-test-event.body");
    let h = headers(&[
        (
            sendgrid::SIGNATURE_HEADER,
            case["signature"].as_str().unwrap(),
        ),
        (sendgrid::TIMESTAMP_HEADER, "1588788367"),
    ]);
    let hook = sendgrid_hook(case["public_key"].as_str().unwrap());
    hook.verify(&h, &body).expect("the signature holds");
    // One JSON object, not an array of events: signed, but not the shape the webhook posts.
    let e = hook.accept(&h, &body, at(1588788367)).unwrap_err();
    assert_eq!(e.reason(), "malformed", "{e}");
}

#[test]
fn sendgrid_documented_events_parse() {
    let all = sendgrid::parse_events(&read("sendgrid", "events-all.json")).unwrap();
    let kinds: Vec<&str> = all.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "processed",
            "deferred",
            "delivered",
            "open",
            "click",
            "bounce",
            "dropped",
            "spamreport",
            "unsubscribe",
            "group_unsubscribe",
            "group_resubscribe"
        ]
    );
    for e in &all {
        assert_eq!(e.email.as_deref(), Some("example@test.com"));
        assert_eq!(e.timestamp, Some(1513299569));
        assert_eq!(
            e.category,
            Some(sendgrid::Category::One("cat facts".into()))
        );
        assert_eq!(e.key(), "sg_event_id", "the documentation's placeholder id");
    }
    // Placeholder ids repeat: keyed by sg_event_id, the eleven collapse into one delivery.
    let keys: std::collections::HashSet<String> = all.iter().map(|e| e.key()).collect();
    assert_eq!(keys.len(), 1);
    let summaries = fold(all.into_iter().map(sendgrid::Event::summary));
    assert_eq!(summaries.len(), 1, "one message");
    assert_eq!(summaries[0].envelope, ["example@test.com"]);

    let one = |file: &str| {
        let mut events = sendgrid::parse_events(&read("sendgrid", file)).unwrap();
        assert_eq!(events.len(), 1, "{file}");
        events.remove(0)
    };
    let processed = one("event-processed.json");
    assert_eq!(processed.event, "processed");
    assert_eq!(processed.key(), "rbtnWrG1DVDGGGFHFyun0A==");
    assert_eq!(
        processed.sg_message_id.as_deref(),
        Some("14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000000000000000")
    );
    let delivered = one("event-delivered.json");
    assert_eq!(delivered.response.as_deref(), Some("250 OK"));
    assert_eq!(delivered.key(), "rWVYmVk90MjZJ9iohOBa3w==");
    let deferred = one("event-deferred.json");
    assert_eq!(deferred.event, "deferred");
    assert_eq!(deferred.attempt.as_ref().unwrap().as_string(), "5");
    assert_eq!(deferred.response.as_deref(), Some("400 try again later"));
    for (file, kind) in [
        ("event-bounce.json", "bounce"),
        ("event-blocked.json", "blocked"),
    ] {
        let b = one(file);
        assert_eq!(b.event, "bounce", "{file}");
        assert_eq!(b.kind.as_deref(), Some(kind), "{file}");
        assert_eq!(b.status.as_deref(), Some("5.0.0"));
        assert_eq!(b.reason.as_deref(), Some("500 unknown recipient"));
        assert_eq!(b.key(), "6g4ZI7SA-xmRDv57GoPIPw==");
    }
    assert_eq!(
        one("event-dropped.json").reason.as_deref(),
        Some("Bounced Address")
    );
    let open = one("event-open.json");
    assert_eq!(open.event, "open");
    assert_eq!(open.ip.as_deref(), Some("255.255.255.255"));
    assert!(open.useragent.is_some());
    let click = one("event-click.json");
    assert_eq!(click.url.as_deref(), Some("http://www.sendgrid.com/"));
    assert_eq!(one("event-spamreport.json").event, "spamreport");
    assert_eq!(one("event-unsubscribe.json").event, "unsubscribe");
}

// ---- Mailgun -------------------------------------------------------------------------------

#[test]
fn mailgun_signature_vectors_verify_as_published() {
    let vectors = json("mailgun", "vectors.json");
    for case in vectors["cases"].as_array().unwrap() {
        let s = |k: &str| case[k].as_str().unwrap();
        assert_eq!(
            mailgun::verify(s("signing_key"), s("timestamp"), s("token"), s("signature")),
            s("expect") == "valid",
            "{}",
            s("name")
        );
    }
}

fn mailgun_hook(key: &str) -> Mailgun {
    Mailgun::new(&MailgunHook {
        name: "mailgun".into(),
        signing_key: Secret::new(key),
        username: "mailgun".into(),
        password: Secret::new("url-secret"),
        tolerance: Duration::from_secs(300),
        max_body: 1024 * 1024,
    })
    .unwrap()
}

#[test]
fn mailgun_event_under_the_published_signature_is_accepted_in_its_time() {
    let vectors = json("mailgun", "vectors.json");
    let good = &vectors["cases"][0];
    assert_eq!(good["name"], "mailgun-php-good");
    let body = serde_json::json!({
        "signature": {
            "timestamp": good["timestamp"], "token": good["token"], "signature": good["signature"],
        },
        "event-data": json("mailgun", "event-delivered.json"),
    })
    .to_string();
    let hook = mailgun_hook(good["signing_key"].as_str().unwrap());
    let auth = basic_auth("mailgun", "url-secret");
    let h = headers(&[("authorization", &auth)]);
    let accepted = hook
        .accept(&h, body.as_bytes(), at(1403645220 + 1))
        .unwrap();
    let d = &accepted.deliveries[0];
    assert_eq!(
        d.mail.message_id,
        "20130822215151.29325.59996@samples.mailgun.org"
    );
    assert_eq!(d.mail.envelope, ["recipient@example.com"]);
    assert!(!d.mail.origin_proven, "the HMAC does not cover the event");
    // The old sample has no event id: it is named by what identifies it.
    assert!(
        d.key
            .starts_with("20130822215151.29325.59996@samples.mailgun.org\0delivered\0")
    );
    assert!(accepted.token.is_some());
    assert_eq!(
        hook.accept(&h, body.as_bytes(), Utc::now())
            .unwrap_err()
            .reason(),
        "stale"
    );
    // Without the URL's secret, the published signature gets nowhere.
    let e = hook
        .accept(&HeaderMap::new(), body.as_bytes(), at(1403645220))
        .unwrap_err();
    assert_eq!(e.reason(), "missing_signature");
}

#[test]
fn mailgun_documentation_body_parses_but_no_key_verifies_it() {
    let body = read("mailgun", "webhook-envelope-docs.json");
    let v: Value = serde_json::from_slice(&body).unwrap();
    let e = mailgun::Event::parse(v["event-data"].to_string().as_bytes()).unwrap();
    assert_eq!(e.event, "opened");
    assert_eq!(e.id.as_deref(), Some("DACSsAdVSeGpLid7TN03WA"));
    assert_eq!(e.key(), "DACSsAdVSeGpLid7TN03WA");
    assert_eq!(e.timestamp, Some(1529006854.329574));
    let auth = basic_auth("mailgun", "url-secret");
    let h = headers(&[("authorization", &auth)]);
    for key in ["key-3ax6xnjp29jd6fds4gc373sgvjxteol0", "any-other-key"] {
        let e = mailgun_hook(key)
            .accept(&h, &body, at(1529006854))
            .unwrap_err();
        assert_eq!(e.reason(), "bad_signature", "{key}");
    }
}

#[test]
fn mailgun_documented_events_parse() {
    let event = |file: &str| mailgun::Event::parse(&read("mailgun", file)).unwrap();
    let delivered = event("event-delivered.json");
    assert_eq!(delivered.event, "delivered");
    assert_eq!(
        delivered.recipient.as_deref(),
        Some("recipient@example.com")
    );
    assert_eq!(delivered.timestamp, Some(1377208314.173742));
    assert_eq!(delivered.id, None, "no id in this old sample");
    let summary = delivered.summary();
    assert_eq!(summary.subject, "Sample Message");
    assert_eq!(
        summary.message_id,
        "20130822215151.29325.59996@samples.mailgun.org"
    );
    assert_eq!(summary.sent_at.unwrap().timestamp_millis(), 1377208314173);

    let permanent = event("event-failed-permanent.json");
    assert_eq!(permanent.event, "failed");
    assert_eq!(permanent.severity.as_deref(), Some("permanent"));
    assert_eq!(permanent.reason.as_deref(), Some("bounce"));
    let status = permanent.delivery_status.as_ref().unwrap();
    assert_eq!(status.code, Some(550));
    assert_eq!(status.message.as_deref(), Some("Relay Not Permitted"));

    let temporary = event("event-failed-temporary.json");
    assert_eq!(temporary.severity.as_deref(), Some("temporary"));
    let status = temporary.delivery_status.as_ref().unwrap();
    assert_eq!((status.code, status.retry_seconds), (Some(498), Some(900)));

    let complained = event("event-complained.json");
    assert_eq!(complained.event, "complained");
    assert_eq!(complained.recipient.as_deref(), Some("foo@example.com"));
}

// ---- Postmark (parse-only: Postmark signs nothing) ------------------------------------------

#[test]
fn postmark_documented_payloads_parse() {
    let event = |file: &str| postmark::Event::parse(&read("postmark", file)).unwrap();
    let delivery = event("delivery.json");
    assert_eq!(delivery.record_type(), "Delivery");
    assert_eq!(delivery.message_stream.as_deref(), Some("outbound"));
    assert_eq!(
        delivery.message_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000000")
    );
    assert_eq!(delivery.recipient().as_deref(), Some("john@example.com"));
    assert_eq!(
        delivery.at(),
        Some(Utc.with_ymd_and_hms(2026, 2, 13, 18, 19, 43).unwrap())
    );
    assert_eq!(delivery.server_id, Some(23));
    let meta = delivery.metadata.as_ref().unwrap();
    assert!(meta.contains_key("example") && meta.contains_key("example_2"));

    let bounce = event("bounce.json");
    assert_eq!(bounce.record_type(), "Bounce");
    assert_eq!(bounce.bounce_type.as_deref(), Some("HardBounce"));
    assert_eq!(bounce.type_code, Some(1));
    assert_eq!(bounce.recipient().as_deref(), Some("john@example.com"));
    assert_eq!(bounce.from.as_deref(), Some("sender@example.com"));
    assert_eq!(bounce.inactive, Some(true));
    assert_eq!(
        bounce.at(),
        Some(Utc.with_ymd_and_hms(2026, 2, 13, 18, 19, 43).unwrap())
    );

    let spam = event("spam-complaint.json");
    assert_eq!(spam.record_type(), "SpamComplaint");
    assert_eq!(spam.type_code, Some(100001));
    assert_eq!(spam.recipient().as_deref(), Some("john@example.com"));

    let open = event("open.json");
    assert_eq!(open.record_type(), "Open");
    assert_eq!(open.first_open, Some(true));
    assert_eq!(open.recipient().as_deref(), Some("john@example.com"));
    assert!(open.received_at.is_some());
    assert!(
        open.summary().envelope.is_empty(),
        "an open delivers nothing"
    );

    let click = event("click.json");
    assert_eq!(click.record_type(), "Click");
    assert_eq!(click.original_link.as_deref(), Some("https://example.com"));
    assert_eq!(click.click_location.as_deref(), Some("HTML"));

    // The older bounce shape: no RecordType, an offset and seven fractional digits, a number
    // in Metadata.
    let old = event("bounce-product-page.json");
    assert_eq!(old.record_type, None);
    assert_eq!(old.record_type(), "Bounce");
    assert_eq!(old.message_stream, None);
    assert_eq!(old.bounce_type.as_deref(), Some("HardBounce"));
    assert_eq!(
        old.message_id.as_deref(),
        Some("883953f4-6105-42a2-a16a-77a8eac79483")
    );
    assert_eq!(old.recipient().as_deref(), Some("john@example.com"));
    let bounced = DateTime::parse_from_rfc3339("2014-08-01T13:28:10.2735393-04:00").unwrap();
    assert_eq!(old.at(), Some(bounced.with_timezone(&Utc)));
    assert_eq!(old.metadata.as_ref().unwrap()["user_id"], 43);
    assert_eq!(old.summary().envelope, ["john@example.com"]);
}

// ---- SNS and SES ---------------------------------------------------------------------------

/// An SES webhook trusting exactly `certificate` (pinned), for `topic`, with a client that
/// can only reach a closed loopback port: a fetch would fail, never leave the machine.
fn pinned_ses(certificate: &str, topic: &str) -> Ses {
    let pem = String::from_utf8(read("sns", certificate)).unwrap();
    let config = SesHook {
        name: "ses".into(),
        topic_arns: vec![topic.into()],
        confirm_subscriptions: false,
        max_age: Duration::from_secs(3600),
        campaign_tag: "campaign".into(),
        max_body: 1024 * 1024,
        certificates: vec![Secret::new(pem)],
    };
    let nowhere = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all("http://127.0.0.1:9").unwrap())
        .build()
        .unwrap();
    Ses::new(&config, nowhere).unwrap()
}

fn sns_headers(message: &Value) -> HeaderMap {
    headers(&[
        (ses::TYPE_HEADER, message["Type"].as_str().unwrap()),
        (ses::TOPIC_HEADER, message["TopicArn"].as_str().unwrap()),
    ])
}

fn signed_at(message: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(message["Timestamp"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn the_pinned_certificates_have_expired_and_are_trusted_as_configured() {
    for (file, expired) in [
        (
            "certs/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem",
            "2022-08-17",
        ),
        (
            "certs/SimpleNotificationService-bb750dd426d95ee9390147a5624348ee.pem",
            "2016-08-21",
        ),
    ] {
        let pem = String::from_utf8(read("sns", file)).unwrap();
        let p = Pinned::parse(&pem, Utc::now()).unwrap();
        assert!(p.name.contains("sns.amazonaws.com"), "{}", p.name);
        let at = p.expired.expect("expired");
        assert_eq!(at.format("%Y-%m-%d").to_string(), expired, "{file}");
        assert_eq!(
            Pinned::parse(&pem, at - chrono::Duration::days(1))
                .unwrap()
                .expired,
            None
        );
    }
}

#[tokio::test]
async fn sns_signed_vectors_verify_as_published_through_the_pinned_certificates() {
    let vectors = json("sns", "vectors.json");
    let cases = vectors["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 16);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut message = json("sns", case["message_file"].as_str().unwrap());
        if let Some(changes) = case["mutate"].as_object() {
            for (k, v) in changes {
                message[k] = v.clone();
            }
        }
        for k in case["remove"].as_array().into_iter().flatten() {
            message.as_object_mut().unwrap().remove(k.as_str().unwrap());
        }
        let hook = pinned_ses(
            case["certificate"].as_str().unwrap(),
            message["TopicArn"].as_str().unwrap(),
        );
        let body = message.to_string();
        let verdict = hook
            .verify(
                &sns_headers(&message),
                body.as_bytes(),
                signed_at(&message) + chrono::Duration::seconds(1),
            )
            .await;
        match case["expect"].as_str().unwrap() {
            "valid" => {
                let m = verdict.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    m.message_id,
                    message["MessageId"].as_str().unwrap(),
                    "{name}"
                );
                assert_eq!(m.subject.as_deref(), message["Subject"].as_str(), "{name}");
            }
            _ => assert_eq!(
                verdict.unwrap_err().reason(),
                "bad_signature",
                "{name} must not verify"
            ),
        }
        assert_eq!(hook.cached_certificates(), 0, "{name}: nothing fetched");
    }
}

#[tokio::test]
async fn sns_vectors_read_as_source_md_says() {
    let cert = "certs/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem";
    let verify = |file: &'static str| async move {
        let message = json("sns", file);
        let hook = pinned_ses(cert, message["TopicArn"].as_str().unwrap());
        let at = signed_at(&message) + chrono::Duration::seconds(1);
        let m = hook
            .verify(&sns_headers(&message), message.to_string().as_bytes(), at)
            .await
            .unwrap();
        (hook, message, m, at)
    };
    let (_, _, m, _) = verify("notification-v1.json").await;
    assert_eq!(m.kind, "Notification");
    assert_eq!(m.message_id, "792cda85-518f-5dd3-9163-81d851212f3a");
    assert_eq!(
        m.topic_arn,
        "arn:aws:sns:us-east-2:295079676684:publish-and-verify-892f85fe-4836-424d-8188-ab85bef0f362"
    );
    assert_eq!(
        (m.message.as_str(), m.subject.as_deref()),
        ("Hello world", None)
    );
    assert_eq!(m.timestamp.to_rfc3339(), "2022-07-28T21:23:58.317+00:00");
    let (_, _, m, _) = verify("notification-v2.json").await;
    assert_eq!(m.message_id, "17dea24b-55c2-540b-8362-f916557af765");
    let (_, _, m, _) = verify("notification-v1-subject.json").await;
    assert_eq!(m.subject.as_deref(), Some("Hello world"));

    let (_, _, m, _) = verify("subscription-confirmation.json").await;
    assert_eq!(m.kind, "SubscriptionConfirmation");
    assert_eq!(
        m.topic_arn,
        "arn:aws:sns:us-east-1:820710015775:MyTestingTopic"
    );
    let url = m.subscribe_url.unwrap();
    assert_eq!(url.host_str(), Some("sns.us-east-1.amazonaws.com"));
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["Action"], "ConfirmSubscription");
    assert_eq!(q["TopicArn"], m.topic_arn);
    assert_eq!(q["Token"].len(), 256);

    // The SES complaint event: verified, then the whole path to a delivery.
    let (hook, message, m, at) = verify("ses-complaint-event-notification.json").await;
    assert_eq!(
        m.subject.as_deref(),
        Some("Amazon SES Email Event Notification")
    );
    let accepted = hook
        .accept(&sns_headers(&message), message.to_string().as_bytes(), at)
        .await
        .unwrap();
    let d = &accepted.deliveries[0];
    assert_eq!(
        d.key,
        message["MessageId"].as_str().unwrap(),
        "named by the SNS MessageId"
    );
    assert_eq!(d.mail.feed, "ses");
    assert_eq!(
        d.mail.message_id,
        "0100017fd2f875c4-c2929163-2767-49b1-8513-1a29e428e134-000000"
    );
    assert_eq!(d.mail.sender, "jesus.islasf@alumno.buap.mx");
    assert_eq!(d.mail.subject, "Complaint Notification");
    assert!(d.mail.origin_proven, "signed by SNS");
    let ev = SesEvent::parse(&m.message).unwrap();
    assert_eq!(ev.kind(), "Complaint");
    let complaint = ev.complaint.as_ref().unwrap();
    assert_eq!(complaint.complaint_feedback_type.as_deref(), Some("abuse"));
    assert_eq!(
        complaint.complained_recipients[0].email_address,
        "complaint@simulator.amazonses.com"
    );
    assert_eq!(ev.mail.tags["ses:configuration-set"], ["test-set"]);
    // Six hours after its time, past max_age: stale.
    let late = hook
        .verify(
            &sns_headers(&message),
            message.to_string().as_bytes(),
            at + chrono::Duration::hours(6),
        )
        .await
        .unwrap_err();
    assert_eq!(late.reason(), "stale");

    // The older feedback notification: notificationType, no Subject, no tags.
    let (hook, message, m, at) = verify("ses-bounce-notification.json").await;
    assert_eq!(m.subject, None);
    let ev = SesEvent::parse(&m.message).unwrap();
    assert_eq!(ev.notification_type.as_deref(), Some("Bounce"));
    let bounce = ev.bounce.as_ref().unwrap();
    assert_eq!(bounce.bounce_type, "Permanent");
    assert_eq!(bounce.bounce_sub_type.as_deref(), Some("General"));
    assert_eq!(
        bounce.bounced_recipients[0].email_address,
        "bounce@simulator.amazonses.com"
    );
    assert_eq!(
        bounce.bounced_recipients[0].status.as_deref(),
        Some("5.1.1")
    );
    assert_eq!(
        ev.mail.message_id,
        "0100017fe7043e8e-fc9c357d-a9a4-49bc-a4b4-fa984009d568-000000"
    );
    assert!(ev.mail.tags.is_empty());
    hook.accept(&sns_headers(&message), message.to_string().as_bytes(), at)
        .await
        .unwrap();

    // The 2015 message, with the other certificate; MessageAttributes are not signed.
    let message = json("sns", "notification-2015-attributes.json");
    let hook = pinned_ses(
        "certs/SimpleNotificationService-bb750dd426d95ee9390147a5624348ee.pem",
        message["TopicArn"].as_str().unwrap(),
    );
    let m = hook
        .verify(
            &sns_headers(&message),
            message.to_string().as_bytes(),
            signed_at(&message),
        )
        .await
        .unwrap();
    assert_eq!(
        (m.subject.as_deref(), m.message.as_str()),
        (Some("this is raw"), "boo")
    );
}

#[tokio::test]
async fn sns_vectors_are_refused_by_their_url_when_it_is_not_snss() {
    let message = json("sns", "notification-v1.json");
    let cert = "certs/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem";
    let hook = pinned_ses(cert, message["TopicArn"].as_str().unwrap());
    let at = signed_at(&message);
    for host in [
        "sns.s3.amazonaws.com",
        "sns.s3-accelerate.amazonaws.com",
        "sns.s3-us-west-2.amazonaws.com",
    ] {
        let mut m = message.clone();
        m["SigningCertURL"] = format!(
            "https://{host}/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
        )
        .into();
        let e = hook
            .verify(&sns_headers(&m), m.to_string().as_bytes(), at)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "cert_url", "{host}");
    }
}

#[test]
fn ses_documented_events_parse() {
    let event = |file: &str| {
        let text = String::from_utf8(read("sns", &format!("ses-examples/{file}"))).unwrap();
        SesEvent::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let send = event("send.json");
    assert_eq!(send.kind(), "Send");
    assert_eq!(
        send.mail.message_id,
        "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
    );
    assert_eq!(send.mail.source, "sender@example.com");
    assert_eq!(send.mail.destination, ["recipient@example.com"]);
    assert_eq!(send.mail.tags["ses:configuration-set"], ["ConfigSet"]);
    assert!(send.mail.tags.contains_key("myCustomTag1"));
    let summary = send.summary("campaign");
    assert_eq!(summary.subject, "Message sent from Amazon SES");
    assert_eq!(summary.envelope, ["recipient@example.com"]);
    assert_eq!(summary.visible, ["recipient@example.com"]);

    let delivery = event("delivery.json");
    assert_eq!(delivery.kind(), "Delivery");
    let d = delivery.delivery.as_ref().unwrap();
    assert_eq!(d.recipients, ["recipient@example.com"]);
    assert_eq!(
        d.smtp_response.as_deref(),
        Some("250 2.6.0 Message received")
    );
    assert_eq!(d.processing_time_millis, Some(11893));

    let bounce = event("bounce.json");
    assert_eq!(bounce.kind(), "Bounce");
    let b = bounce.bounce.as_ref().unwrap();
    assert_eq!(
        (b.bounce_type.as_str(), b.bounce_sub_type.as_deref()),
        ("Permanent", Some("General"))
    );
    assert_eq!(
        b.bounced_recipients[0].email_address,
        "recipient@example.com"
    );
    assert_eq!(b.bounced_recipients[0].status.as_deref(), Some("5.1.1"));
    assert_eq!(bounce.mail.source, "Sender Name <sender@example.com>");
    assert_eq!(bounce.summary("campaign").sender, "sender@example.com");

    let complaint = event("complaint.json");
    assert_eq!(complaint.kind(), "Complaint");
    assert_eq!(
        complaint
            .complaint
            .as_ref()
            .unwrap()
            .complaint_feedback_type
            .as_deref(),
        Some("abuse")
    );
    let reject = event("reject.json");
    assert_eq!(reject.kind(), "Reject");
    assert_eq!(
        reject.reject.as_ref().unwrap().reason.as_deref(),
        Some("Bad content")
    );
}
