//! The milter behind Debian's Postfix (`smtpd_milters`): tocsin sees the real envelope in line,
//! judges every message before Postfix accepts it, and holds a leak in Postfix's hold queue
//! before any of it leaves. Skipped, loudly, where Postfix is missing.

use std::collections::BTreeMap;

use tocsin::config::{Email, Milter, MilterAction};
use tocsin_fakes::smtp::{customers, leaky_message};

use crate::support::{postfix::*, *};

const SENDER: &str = "statements@exchange.example";

fn email(port: u16, policy: &[(&str, MilterAction)]) -> Email {
    Email {
        milter: Some(Milter {
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            policy: policy
                .iter()
                .map(|(r, a)| ((*r).to_owned(), *a))
                .collect::<BTreeMap<_, _>>(),
            ..Milter::default()
        }),
        internal_domains: vec!["exchange.example".into()],
        bulk_threshold: 100,
        ..Email::default()
    }
}

/// A Postfix that consults the milter on `milter_port` for every message and discards every
/// delivery (no journal copy), tempfailing when the milter cannot be reached.
async fn postfix_with_milter(milter_port: u16) -> Postfix {
    let postfix = Postfix::start(free_port(), None).await;
    let milter = format!("smtpd_milters=inet:127.0.0.1:{milter_port}");
    postfix
        .postconf(&[
            "always_bcc=",
            &milter,
            "milter_default_action=tempfail",
            "milter_protocol=6",
        ])
        .await;
    postfix
}

#[tokio::test]
async fn five_hundred_bcc_recipients_are_counted_from_the_milters_envelope() {
    if !Postfix::available("five_hundred_bcc_recipients_are_counted_from_the_milters_envelope")
        .await
    {
        return;
    }
    let port = free_port();
    let app = spawn_app_with(|c| c.email = Some(email(port, &[]))).await;
    let postfix = postfix_with_milter(port).await;
    // One message, one visible address (the sender's own list), 500 customers in Bcc.
    let bcc = customers(7, 500, 25);
    let message = leaky_message(
        SENDER,
        &["news@exchange.example".to_owned()],
        "Our news",
        "bcc-bulk@exchange.example",
    );
    let reply = postfix.submit(SENDER, "", &bcc, &message).await;
    assert_eq!(reply.code, 250, "{reply:?}\n{}", postfix.log());
    let page = app
        .page_containing("email.unapproved_bulk", "the Bcc bulk send paged")
        .await;
    assert!(page.contains("recipients: 500"), "{page}");
    assert!(
        !page.contains("exposed addresses"),
        "a message that exposes nobody is not described with exposure counters: {page}"
    );
    app.stop().await;
}

#[tokio::test]
async fn with_hold_every_leaky_batch_waits_in_postfixs_hold_queue() {
    if !Postfix::available("with_hold_every_leaky_batch_waits_in_postfixs_hold_queue").await {
        return;
    }
    let port = free_port();
    let app = spawn_app_with(|c| {
        c.email = Some(email(
            port,
            &[("email.exposed_recipients", MilterAction::Hold)],
        ))
    })
    .await;
    let postfix = postfix_with_milter(port).await;
    // A harmless message passes and is delivered.
    let fine = leaky_message(
        SENDER,
        &["jane@partner.example".to_owned()],
        "Minutes",
        "fine@exchange.example",
    );
    let reply = postfix
        .submit(SENDER, "", &["jane@partner.example".to_owned()], &fine)
        .await;
    assert_eq!(reply.code, 250, "{reply:?}");
    postfix
        .wait_log("status=sent", std::time::Duration::from_secs(30))
        .await;
    // The leak, in batches of 1,000: the first is held too, and the second.
    for batch in 1..=2 {
        let to = customers(batch, 1000, 40);
        let m = leaky_message(
            SENDER,
            &to,
            "Your statement",
            &format!("batch-{batch}@exchange.example"),
        );
        let reply = postfix.submit(SENDER, "", &to, &m).await;
        assert_eq!(reply.code, 250, "{reply:?}\n{}", postfix.log());
    }
    app.page_containing("exposed addresses:", "the leak paged")
        .await;
    let held = postfix.in_queue("hold").await;
    assert_eq!(held.len(), 2, "both batches held\n{}", postfix.log());
    assert_eq!(
        postfix.delivered(),
        1,
        "only the harmless message left:\n{}",
        postfix.log()
    );
    app.stop().await;
}

#[tokio::test]
async fn tocsin_down_with_tempfail_loses_nothing() {
    if !Postfix::available("tocsin_down_with_tempfail_loses_nothing").await {
        return;
    }
    let port = free_port();
    let postfix = postfix_with_milter(port).await;
    let to = customers(8, 1000, 40);
    let m = leaky_message(SENDER, &to, "Your statement", "while-down@exchange.example");
    // tocsin is down: Postfix answers 451 and keeps nothing; the client must retry.
    let reply = postfix.submit(SENDER, "", &to, &m).await;
    assert_eq!(reply.code, 451, "{reply:?}\n{}", postfix.log());
    assert_eq!(postfix.delivered(), 0, "{}", postfix.log());
    let app = spawn_app_with(|c| c.email = Some(email(port, &[]))).await;
    let reply = postfix.submit(SENDER, "", &to, &m).await;
    assert_eq!(reply.code, 250, "{reply:?}\n{}", postfix.log());
    app.page_containing(
        "exposed addresses: 1000 · domains: 40",
        "the retried leak paged",
    )
    .await;
    app.stop().await;
}

/// miltertest (Debian's `miltertest`, from OpenDKIM: an independent libmilter MTA side) drives
/// the milter through negotiation, macros, an aborted transaction and two messages.
#[tokio::test]
async fn miltertest_finds_the_protocol_conformant() {
    if std::process::Command::new("miltertest")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!(
            "!!! miltertest_finds_the_protocol_conformant SKIPPED: miltertest is not installed \
             (apt-get install miltertest)"
        );
        return;
    }
    let port = free_port();
    let app = spawn_app_with(|c| {
        c.email = Some(email(
            port,
            &[("email.exposed_recipients", MilterAction::Hold)],
        ))
    })
    .await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/mta/milter-conformance.lua"
    );
    let out = tokio::process::Command::new("miltertest")
        .args(["-v", "-D", &format!("port={port}"), "-s", script])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("milter conformance: ok"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.page_containing(
        "exposed addresses: 30 · domains: 3",
        "the leak miltertest sent paged",
    )
    .await;
    app.stop().await;
}

/// The held leak's incident once its page says `held` messages are held.
async fn held_incident(app: &TestApp, sender: &str, held: usize) -> (u64, i32) {
    let needle = format!("Held at the MTA: {held} messages");
    until(
        || {
            let on = |t: &str| t.contains(&needle) && t.contains(sender);
            app.bot.sent().iter().any(|m| on(&m.text))
                || app.bot.edits().iter().any(|m| on(&m.text))
        },
        "the held count on the page",
    )
    .await;
    let inc = app
        .store
        .incidents()
        .unwrap()
        .into_iter()
        .find(|i| i.object == sender)
        .unwrap();
    let page = app
        .bot
        .sent()
        .into_iter()
        .find(|m| m.text.contains(&format!("#{}", inc.id)) && m.text.contains(sender))
        .expect("paged")
        .message_id;
    (inc.id, page)
}

#[tokio::test]
async fn release_takes_the_approve_quorum_and_discard_one_press_at_the_mta() {
    if !Postfix::available("release_takes_the_approve_quorum_and_discard_one_press_at_the_mta")
        .await
    {
        return;
    }
    let port = free_port();
    let postfix = postfix_with_milter(port).await;
    let helper = vec![
        "env".to_owned(),
        format!(
            "TOCSIN_POSTSUPER_CONFIG={}",
            postfix.dir.path().join("etc").display()
        ),
        concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/tocsin-postsuper").to_owned(),
    ];
    let app = spawn_app_with(|c| {
        let mut e = email(port, &[("email.exposed_recipients", MilterAction::Hold)]);
        e.milter.as_mut().unwrap().hold_helper = helper;
        c.email = Some(e);
        c.paging
            .approve_quorum
            .insert(tocsin::model::Severity::Critical, 2);
    })
    .await;
    // Two leaky batches of one sender: one incident, both held.
    for batch in 1..=2 {
        let to = customers(batch, 1000, 40);
        let m = leaky_message(
            SENDER,
            &to,
            "Your statement",
            &format!("r{batch}@exchange.example"),
        );
        assert_eq!(postfix.submit(SENDER, "", &to, &m).await.code, 250);
    }
    let (id, page) = held_incident(&app, SENDER, 2).await;
    assert_eq!(postfix.in_queue("hold").await.len(), 2);
    // Release is an approval: the first press is a vote, nothing leaves.
    app.bot
        .press_button(CHAT, &responder(), page, &format!("release:{id}"));
    until(
        || {
            app.store.incident(id).unwrap().is_some_and(|i| {
                i.timeline
                    .iter()
                    .any(|e| matches!(e.action, tocsin::model::Action::ApprovalVote { .. }))
            })
        },
        "the first release vote",
    )
    .await;
    assert_eq!(postfix.in_queue("hold").await.len(), 2);
    assert_eq!(postfix.delivered(), 0, "{}", postfix.log());
    // The second responder reaches the quorum: released and delivered, written in the timeline.
    app.bot
        .press_button(CHAT, &second_responder(), page, &format!("release:{id}"));
    postfix
        .wait_log("status=sent", std::time::Duration::from_secs(30))
        .await;
    postfix.wait_empty(std::time::Duration::from_secs(60)).await;
    assert_eq!(postfix.delivered(), 2000, "{}", postfix.log());
    let inc = app.store.incident(id).unwrap().unwrap();
    assert!(
        inc.timeline.iter().any(|e| matches!(
            &e.action,
            tocsin::model::Action::HeldMail { op, messages: 2, ok: true, .. } if op == "release"
        )),
        "{:?}",
        inc.timeline
    );

    // Another sender's leak: Discard, one press, deletes it; nothing more is delivered.
    let rogue = "rogue@exchange.example";
    let to = customers(9, 1000, 40);
    let m = leaky_message(rogue, &to, "Your statement", "rogue@exchange.example");
    assert_eq!(postfix.submit(rogue, "", &to, &m).await.code, 250);
    let (id, page) = held_incident(&app, rogue, 1).await;
    assert_eq!(postfix.in_queue("hold").await.len(), 1);
    app.bot
        .press_button(CHAT, &responder(), page, &format!("discard:{id}"));
    until(
        || {
            app.store
                .incident(id)
                .unwrap()
                .is_some_and(|i| i.state == tocsin::model::State::Resolved)
        },
        "discarded and contained",
    )
    .await;
    postfix.wait_empty(std::time::Duration::from_secs(30)).await;
    assert_eq!(postfix.delivered(), 2000, "{}", postfix.log());
    app.stop().await;
}
