//! The registered mailbox against a real IMAP server: Debian's Dovecot on loopback
//! (`tests/mta/dovecot`), IMAPS with a certificate made at start, a user with a password, mail
//! delivered with `doveadm save`. The page of a vouched notice arrives through IDLE; the
//! mailbox's old mail is history, a forged notice is not paged, and no message is marked
//! `\Seen`.

use std::time::Instant;

use crate::{
    imap::{AUTHSERV, feed, notice, watching},
    support::dovecot::Dovecot,
};

const USER: &str = "social@example.com";
const PASSWORD: &str = "dovecot-test-password";

#[tokio::test]
async fn a_notice_delivered_to_dovecot_pages_through_idle() {
    if !Dovecot::available("imap_dovecot").await {
        return;
    }
    let dovecot = Dovecot::start(USER, PASSWORD).await;
    dovecot
        .save(&notice(
            AUTHSERV,
            "pass",
            "old",
            "Your password was changed",
        ))
        .await;
    let app = watching(feed("localhost", dovecot.port, PASSWORD, dovecot.ca_file())).await;

    dovecot
        .save(&notice(
            AUTHSERV,
            "fail",
            "forged",
            "Your email address was changed (forged)",
        ))
        .await;
    let sent = Instant::now();
    dovecot
        .save(&notice(
            AUTHSERV,
            "pass",
            "real",
            "New login to your account",
        ))
        .await;
    let page = app
        .page_containing("New login to your account", "the notice's page")
        .await;
    println!("dovecot idle → page: {} ms", sent.elapsed().as_millis());
    assert!(page.contains("email.security_notice"), "{page}");

    let settled = app.settle(2).await;
    settled.assert_not_mentioned("password was changed", "history is not paged");
    settled.assert_not_mentioned("(forged)", "a notice the provider did not vouch for");
    let flags = dovecot.flags().await;
    assert!(!flags.contains("\\Seen"), "{flags}");
    assert!(
        dovecot.log().contains("Login: user=<social@example.com>"),
        "{}",
        dovecot.log()
    );
    app.stop().await;
}
