//! How often the bot says "Refused" to the same user.
//!
//! Every refused command is logged and counted; the reply is limited to one per user per
//! [`EVERY`], so an outsider cannot make the bot talk in the on-call chat or in private as often
//! as they like. The memory is bounded: at most [`CAP`] users are remembered, and while all of
//! them were answered within the hour a new user gets no reply at all (still logged and
//! counted), so a flood of fresh user ids costs neither memory nor messages.

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;

/// At most one refusal per user in this time.
pub const EVERY: Duration = Duration::from_secs(3600);
/// Users remembered at most.
pub const CAP: usize = 4096;

/// The last refusal sent to each user, within [`EVERY`].
#[derive(Debug)]
pub struct RefusalLimit {
    last: HashMap<u64, Instant>,
    every: Duration,
    cap: usize,
}

impl Default for RefusalLimit {
    fn default() -> Self {
        RefusalLimit::new(EVERY, CAP)
    }
}

impl RefusalLimit {
    pub fn new(every: Duration, cap: usize) -> Self {
        RefusalLimit {
            last: HashMap::new(),
            every,
            cap,
        }
    }

    /// Whether `user` may be told "Refused" at `now`; remembered when so.
    pub fn allow(&mut self, user: u64, now: Instant) -> bool {
        let every = self.every;
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < every;
        match self.last.get(&user) {
            Some(at) if fresh(at) => return false,
            Some(_) => {}
            None if self.last.len() >= self.cap => {
                self.last.retain(|_, at| fresh(at));
                if self.last.len() >= self.cap {
                    return false;
                }
            }
            None => {}
        }
        self.last.insert(user, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_refusal_per_user_per_period() {
        let mut limit = RefusalLimit::new(Duration::from_secs(3600), 10);
        let t0 = Instant::now();
        assert!(limit.allow(666, t0));
        for s in [1, 60, 3599] {
            assert!(!limit.allow(666, t0 + Duration::from_secs(s)), "{s}s later");
        }
        assert!(limit.allow(667, t0), "another user is answered");
        assert!(
            limit.allow(666, t0 + Duration::from_secs(3600)),
            "an hour later"
        );
    }

    #[test]
    fn a_flood_of_user_ids_is_bounded() {
        let mut limit = RefusalLimit::new(Duration::from_secs(3600), 100);
        let t0 = Instant::now();
        let answered = (0..10_000).filter(|u| limit.allow(*u, t0)).count();
        assert_eq!(
            answered, 100,
            "no more replies than the cap within the hour"
        );
        assert_eq!(limit.last.len(), 100);
        // Once the hour passed, the old entries make room for new users.
        let later = t0 + Duration::from_secs(3600);
        assert!(limit.allow(20_000, later));
        assert_eq!(limit.last.len(), 1, "expired users were dropped");
    }
}
