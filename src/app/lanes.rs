//! Two lanes into detect: the social watch (posts, profiles, admins, blind spots) and the mail
//! inputs (the journal, the providers' webhooks, the audit feeds). Each lane has its own channel
//! and task, and judges its observations in order; they share the store.
//!
//! A mail backlog therefore never sits in front of a post. On two cores the limit is CPU, not
//! queueing, and every judge also waits for sled's one transaction at a time, so the mail lane
//! is also held back by two rules:
//!
//! - [`Priority`]: before each mail observation, the mail lane waits while the social lane has
//!   work, so a post waits for at most the one mail observation already being judged;
//! - [`MailBudget`]: the mail lane may spend only a share of one core judging. Under a flood,
//!   the backlog waits on disk (the journal's queue, the webhooks' inbox), behind its
//!   checkpoint, instead of taking the machine from the sources, the pages and the bot.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

/// The lane an observation is judged in; named in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    Social,
    Mail,
}

impl Lane {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Lane::Social => "social",
            Lane::Mail => "mail",
        }
    }
}

/// Observations buffered in front of the social lane: a burst of posts from every watcher.
pub(super) const SOCIAL_DEPTH: usize = 1024;
/// Observations buffered in front of the mail lane. Small: the backlog belongs on disk, and a
/// journal summary can be large.
pub(super) const MAIL_DEPTH: usize = 64;

/// The social lane's claim on the judge. The mail lane starts an observation only while nobody
/// holds a claim, or once it has waited [`PATIENCE`]: the social lane has priority, the mail
/// lane is slowed, never stopped.
#[derive(Debug, Default)]
pub(super) struct Priority {
    claims: AtomicUsize,
    released: Notify,
}

/// How long the mail lane waits for the social lane to be idle before judging one observation
/// anyway.
pub(super) const PATIENCE: Duration = Duration::from_secs(1);

impl Priority {
    /// Held while the social lane (or the blind-spot check) judges.
    pub(super) fn claim(&self) -> Claim<'_> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        Claim(self)
    }

    /// Waits until no claim is held, at most `patience`; whether the social lane was idle.
    pub(super) async fn idle(&self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between is not missed.
            released.as_mut().enable();
            if self.claims.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return false;
            }
        }
    }
}

/// A held [`Priority`] claim; released on drop.
#[must_use]
pub(super) struct Claim<'a>(&'a Priority);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.0.claims.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.released.notify_waiters();
        }
    }
}

/// The share of one core the mail lane may spend judging, as a token bucket of judging time:
/// it fills at `share` seconds per second up to `burst`; each observation's judging time is
/// taken from it, and an empty bucket makes the lane wait until it is positive again.
#[derive(Debug)]
pub(super) struct MailBudget {
    share: f64,
    burst: Duration,
    /// Judging time left, in seconds; negative after an observation that cost more than was
    /// left.
    balance: f64,
    at: Instant,
}

/// Half a core: on two cores, the other one and a half stay for the sources, the social lane,
/// the pages, the bot and the listeners that take the mail in.
pub(super) const MAIL_SHARE: f64 = 0.5;
/// Judging time the mail lane may spend at once after a quiet spell.
pub(super) const MAIL_BURST: Duration = Duration::from_millis(200);

impl MailBudget {
    pub(super) fn new(share: f64, burst: Duration, now: Instant) -> MailBudget {
        MailBudget {
            share,
            burst,
            balance: burst.as_secs_f64(),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.balance = (self.balance + elapsed * self.share).min(self.burst.as_secs_f64());
        self.at = now;
    }

    /// How long to wait before judging the next observation.
    pub(super) fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.balance > 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.balance / self.share)
        }
    }

    /// Takes `spent` judging time, ending at `now`.
    pub(super) fn spend(&mut self, spent: Duration, now: Instant) {
        self.refill(now);
        self.balance -= spent.as_secs_f64();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_lets_a_burst_through_then_holds_the_lane_to_its_share() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut b = MailBudget::new(0.5, ms(200), t0);
        assert_eq!(b.wait(t0), Duration::ZERO);
        // 150 ms of judging from a full bucket (which cannot fill past 200 ms meanwhile).
        b.spend(ms(150), t0 + ms(150));
        assert_eq!(b.wait(t0 + ms(150)), Duration::ZERO, "50 ms left");
        // 150 ms more: 50 + 75 refilled - 150 = -25 ms, repaid at half speed in 50 ms.
        b.spend(ms(150), t0 + ms(300));
        let wait = b.wait(t0 + ms(300));
        assert!(
            wait.abs_diff(ms(50)) < Duration::from_micros(10),
            "{wait:?}"
        );
        assert_eq!(b.wait(t0 + ms(351)), Duration::ZERO);
    }

    #[test]
    fn the_budget_never_saves_more_than_a_burst() {
        let t0 = Instant::now();
        let mut b = MailBudget::new(0.5, Duration::from_millis(200), t0);
        let later = t0 + Duration::from_secs(3600);
        b.spend(Duration::from_millis(300), later);
        assert!(
            b.wait(later) > Duration::ZERO,
            "an hour idle saves 200 ms, not 30 min"
        );
    }

    #[tokio::test]
    async fn the_mail_lane_waits_for_the_social_lane_to_let_go() {
        let p = std::sync::Arc::new(Priority::default());
        assert!(p.idle(Duration::ZERO).await, "idle with no claim");
        let claim = p.claim();
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.idle(Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "held while the claim is");
        drop(claim);
        assert!(waiter.await.unwrap(), "released by the claim's drop");
    }

    #[tokio::test]
    async fn the_mail_lane_runs_anyway_after_its_patience() {
        let p = Priority::default();
        let _claim = p.claim();
        let patience = Duration::from_millis(50);
        let t0 = Instant::now();
        assert!(!p.idle(patience).await, "still claimed");
        assert!(t0.elapsed() >= patience);
    }
}
