//! The mail kill switch: a press (or `auto_pause`) calls the mailer once, and the page and the
//! timeline say what it answered.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use serde_json::json;
use tocsin::{
    config::Email,
    contain::mailer::Mailer,
    detect::Outcome,
    incidents::{Incidents, PauseState, Recorded},
    model::{Action, Evidence, Finding, Incident, MailEvidence, Rule, Severity},
    store::Store,
};
use tocsin_fakes::mailer::FakeMailer;

use crate::{
    email_audit::{KILL_SECRET, kill_switch, with_email},
    support::*,
};

fn exposed_finding() -> Outcome {
    Outcome {
        finding: Some(Finding {
            rule: Rule::ExposedRecipients,
            severity: Severity::Critical,
            account: "journal".into(),
            object: "<batch-1@mailer.corp.example>".into(),
            evidence: Evidence::Channel {
                channel: "journal".into(),
                problem: "1000 addresses visible in To:".into(),
                since: Utc::now(),
            },
            changed_at: None,
            seen_at: Utc::now(),
        }),
        writes: Vec::new(),
    }
}

/// An exposure found in a message from `account`, whose input proved its origin or not.
fn exposed_mail(account: &str, origin_proven: bool) -> Outcome {
    Outcome {
        finding: Some(Finding {
            rule: Rule::ExposedRecipients,
            severity: Severity::Critical,
            account: account.into(),
            object: "news@corp.example".into(),
            evidence: Evidence::Mail(MailEvidence {
                sender: "news@corp.example".into(),
                subject: "Spring sale".into(),
                message_id: format!("<{account}-1@corp.example>"),
                campaign: None,
                messages: 1,
                exposed: 30,
                domains: 3,
                recipients: 30,
                largest: 30,
                samples: vec!["c***@example.net".into()],
                estimated: false,
                origin_proven,
                held: Vec::new(),
            }),
            changed_at: None,
            seen_at: Utc::now(),
        }),
        writes: Vec::new(),
    }
}

async fn open_exposed(app: &TestApp) -> u64 {
    let incidents = Incidents::new(app.store.clone(), Arc::default());
    match incidents.record(&exposed_finding()).await.unwrap() {
        Recorded::Opened(id) => id,
        other => panic!("{other:?}"),
    }
}

fn pause_events(inc: &Incident) -> Vec<Action> {
    inc.timeline
        .iter()
        .filter(|e| {
            matches!(
                e.action,
                Action::PauseRequested | Action::MailerCalled { .. }
            )
        })
        .map(|e| e.action.clone())
        .collect()
}

#[tokio::test]
async fn pause_mailer_button_calls_the_kill_switch_once_and_the_timeline_records_it() {
    let mailer = FakeMailer::start().await.unwrap();
    let email = Email {
        kill_switch: Some(kill_switch(&mailer, false)),
        ..Email::default()
    };
    let app = spawn_app_with(with_email(email)).await;
    let id = open_exposed(&app).await;
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains("email.exposed_recipients"))
        },
        "the page",
    )
    .await;
    let page = app
        .bot
        .sent()
        .into_iter()
        .find(|m| m.text.contains("email.exposed_recipients"))
        .unwrap();
    let markup = page.reply_markup.clone().unwrap().to_string();
    assert!(
        markup.contains("Pause mailer") && markup.contains(&format!("pause:{id}")),
        "{markup}"
    );

    // An outsider's press is refused and never reaches the mailer.
    app.bot
        .press_button(CHAT, &outsider(), page.message_id, &format!("pause:{id}"));
    until(|| !app.bot.callback_answers().is_empty(), "the refusal").await;
    assert!(
        app.bot.callback_answers()[0]
            .text
            .as_deref()
            .unwrap_or_default()
            .starts_with("Refused")
    );
    assert_eq!(mailer.requests(), 0);

    app.bot
        .press_button(CHAT, &responder(), page.message_id, &format!("pause:{id}"));
    until(|| mailer.paused(), "the mailer paused").await;
    let call = mailer.pauses().remove(0);
    assert_eq!(call.method, "PUT");
    assert_eq!(
        call.header("authorization"),
        Some(&*format!("Bearer {KILL_SECRET}"))
    );
    assert_eq!(call.header("x-mailer-tenant"), Some("corp"));
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(
        call.json(),
        json!({ "state": "paused", "reason": "tocsin" })
    );
    until(
        || {
            app.bot
                .edits()
                .iter()
                .any(|e| e.text.contains("Mailer: PAUSED by @alice (111)"))
        },
        "the page shows the pause",
    )
    .await;
    let shown = app.bot.message(CHAT, page.message_id).unwrap();
    let markup = shown
        .reply_markup
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert!(
        !markup.contains("Pause mailer"),
        "paused: no button: {markup}"
    );
    assert!(markup.contains(&format!("ack:{id}")), "{markup}");
    let inc = app.store.incident(id).unwrap().unwrap();
    assert_eq!(
        pause_events(&inc),
        vec![
            Action::PauseRequested,
            Action::MailerCalled {
                attempt: 1,
                status: Some(200),
                detail: "ok".into(),
                paused: true
            }
        ]
    );
    assert_eq!(
        inc.timeline
            .iter()
            .find(|e| e.action == Action::PauseRequested)
            .unwrap()
            .who,
        "@alice (111)"
    );
    // The timeline chain holds the calls too.
    assert!(app.store.verify_timeline().unwrap().problems.is_empty());

    // A second press (or /pause_mailer) does not call again.
    app.bot
        .push_command(CHAT, &responder(), &format!("/pause_mailer {id}"));
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains("already paused by @alice (111)"))
        },
        "the already-paused answer",
    )
    .await;
    assert_eq!(mailer.requests(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_mailer_answering_500_is_shown_as_failed() {
    let mailer = FakeMailer::start().await.unwrap();
    mailer.fail_next(500);
    let email = Email {
        kill_switch: Some(kill_switch(&mailer, false)),
        ..Email::default()
    };
    let app = spawn_app_with(with_email(email)).await;
    let id = open_exposed(&app).await;
    app.bot
        .push_command(CHAT, &responder(), &format!("/pause-mailer {id}"));
    until(
        || app.bot.sent().iter().any(|m| m.text.contains("FAILED")),
        "the failure answer",
    )
    .await;
    // A 500 is the mailer's own answer: not repeated.
    assert_eq!(mailer.requests(), 1);
    assert!(!mailer.paused());
    let inc = app.store.incident(id).unwrap().unwrap();
    assert!(
        matches!(
            PauseState::of(&inc),
            PauseState::Failed {
                status: Some(500),
                ..
            }
        ),
        "{:?}",
        PauseState::of(&inc)
    );
    until(
        || {
            let mut texts = app.bot.edits().into_iter().map(|e| e.text);
            let mut sent = app.bot.sent().into_iter().map(|m| m.text);
            texts.any(|t| t.contains("Mailer: pause by @alice (111) FAILED"))
                || sent.any(|t| t.contains("email.exposed_recipients") && t.contains("FAILED"))
        },
        "the page shows the failure",
    )
    .await;
    // The failure leaves the button: a second press tries again, and works.
    app.bot
        .push_command(CHAT, &responder(), &format!("/pause-mailer {id}"));
    until(|| mailer.paused(), "paused on the second press").await;
    app.stop().await;
}

#[tokio::test]
async fn auto_pause_pauses_the_mailer_when_exposed_recipients_opens() {
    let mailer_fake = FakeMailer::start().await.unwrap();
    // A 503 from a proxy is retried: the mailer cannot have acted on it.
    mailer_fake.fail_next(503);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mailer = Arc::new(Mailer::new(kill_switch(&mailer_fake, true)).unwrap());
    let incidents = Incidents::new(store.clone(), Arc::default()).with_auto_pause(Some(mailer));
    // Mail whose origin is not proven (a URL secret, not a signature) does not press it.
    let Recorded::Opened(unproven) = incidents
        .record(&exposed_mail("mailgun", false))
        .await
        .unwrap()
    else {
        panic!("not opened")
    };
    let Recorded::Opened(id) = incidents.record(&exposed_mail("ses", true)).await.unwrap() else {
        panic!("not opened")
    };
    mailer_fake
        .wait_until(WAIT, |m| m.paused())
        .await
        .then_some(())
        .expect("auto-paused");
    until(
        || {
            PauseState::of(&store.incident(id).unwrap().unwrap()) != PauseState::None
                && matches!(
                    PauseState::of(&store.incident(id).unwrap().unwrap()),
                    PauseState::Paused { .. }
                )
        },
        "the pause recorded",
    )
    .await;
    let inc = store.incident(id).unwrap().unwrap();
    let calls: Vec<_> = pause_events(&inc);
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(matches!(
        calls[1],
        Action::MailerCalled {
            status: Some(503),
            paused: false,
            ..
        }
    ));
    assert!(matches!(
        calls[2],
        Action::MailerCalled {
            status: Some(200),
            paused: true,
            attempt: 2,
            ..
        }
    ));
    assert_eq!(
        inc.timeline
            .iter()
            .find(|e| e.action == Action::PauseRequested)
            .unwrap()
            .who,
        "tocsin"
    );
    assert_eq!(mailer_fake.requests(), 2);
    assert_eq!(
        PauseState::of(&store.incident(unproven).unwrap().unwrap()),
        PauseState::None,
        "the unproven exposure was left to a responder"
    );
    // Another rule does not pause.
    let mut other = exposed_mail("ses", true);
    if let Some(f) = &mut other.finding {
        f.rule = Rule::UnapprovedBulk;
    }
    incidents.record(&other).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mailer_fake.requests(), 2);
}

#[tokio::test]
async fn a_slow_mailer_does_not_hold_up_the_next_command() {
    let mailer = FakeMailer::start().await.unwrap();
    let mut switch = kill_switch(&mailer, false);
    switch.timeout = Duration::from_secs(20);
    let email = Email {
        kill_switch: Some(switch),
        ..Email::default()
    };
    let app = spawn_app_with(with_email(email)).await;
    let id = open_exposed(&app).await;
    app.page_containing("email.exposed_recipients", "the page")
        .await;
    mailer.hold();
    app.bot
        .push_command(CHAT, &responder(), &format!("/pause_mailer {id}"));
    until(|| mailer.requests() == 1, "the pause reached the mailer").await;
    // The mailer has not answered: the bot still handles what comes next.
    app.bot
        .push_command(CHAT, &responder(), &format!("/ack {id}"));
    until(
        || {
            app.bot
                .sent()
                .iter()
                .any(|m| m.text.contains(&format!("Incident #{id} acknowledged")))
        },
        "the ack answered",
    )
    .await;
    let inc = app.store.incident(id).unwrap().unwrap();
    assert_eq!(
        pause_events(&inc),
        vec![Action::PauseRequested],
        "the ack was handled while the mailer had not answered"
    );
    mailer.release();
    until(|| mailer.paused(), "the mailer paused").await;
    until(
        || {
            app.bot.sent().iter().any(|m| {
                m.text
                    .starts_with(&format!("Mailer paused for incident #{id}"))
            })
        },
        "the pause answered",
    )
    .await;
    assert_eq!(mailer.requests(), 1, "called once");
    app.stop().await;
}
