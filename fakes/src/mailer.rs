//! A loopback mailer admin endpoint for the mail kill switch: the webhook recorder
//! ([`super::webhook::FakeReceiver`]) under another name, plus what "paused" means to it.

use std::time::Duration;

use super::webhook::{FakeReceiver, Received};

/// The path the demo and the tests configure as the kill switch.
pub const PAUSE_PATH: &str = "admin/pause";

#[derive(Clone)]
pub struct FakeMailer {
    receiver: FakeReceiver,
}

impl FakeMailer {
    pub async fn start() -> std::io::Result<FakeMailer> {
        Ok(FakeMailer {
            receiver: FakeReceiver::start().await?,
        })
    }

    /// The kill switch URL.
    pub fn pause_url(&self) -> url::Url {
        self.receiver.url(PAUSE_PATH)
    }

    /// Pause requests it accepted (answered 2xx).
    pub fn pauses(&self) -> Vec<Received> {
        self.receiver
            .received()
            .into_iter()
            .filter(|r| r.path == format!("/{PAUSE_PATH}"))
            .collect()
    }

    /// Whether the mailer is paused: it accepted a pause.
    pub fn paused(&self) -> bool {
        !self.pauses().is_empty()
    }

    /// Every request, accepted or not.
    pub fn requests(&self) -> usize {
        self.receiver.requests()
    }

    /// Answers the next request with `status`.
    pub fn fail_next(&self, status: u16) {
        self.receiver.fail_next(status);
    }

    /// Holds every request (counted, not answered) until [`FakeMailer::release`].
    pub fn hold(&self) {
        self.receiver.hold();
    }

    /// Answers held and later requests.
    pub fn release(&self) {
        self.receiver.release();
    }

    pub async fn wait_until(&self, timeout: Duration, f: impl Fn(&Self) -> bool) -> bool {
        super::wait_until(self, timeout, f).await
    }
}
