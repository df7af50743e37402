//! Telegram's pacing: the per-chat flood limits kept before sending ([`Pacer`], slots reserved
//! in order) and at the moment each request leaves ([`Gate`]). Apart from the rendering and
//! sending of pages because every message to the chat passes here, whatever it is.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// Telegram's per-chat flood limits: about one message per second in a chat, and at most 20 per
/// minute in a group. Edits count too. Waiting here costs a second; a 429 costs far more (and
/// slows every later page), so pages are paced before sending rather than after being refused.
///
/// Several incidents' deliveries may be under way at once, so a slot is reserved when a
/// delivery is handed out ([`Pacer::reserve`]), possibly in the future: the order of
/// reservations is the order of the requests.
#[derive(Debug, Default)]
pub struct Pacer {
    recent: std::collections::VecDeque<Instant>,
}

pub const MIN_SPACING: Duration = Duration::from_secs(1);
pub const PER_MINUTE: usize = 20;
/// Slots of each minute that edits of pages already in the chat never take: kept for first
/// pages, rings and reminders, so that a burst edited as it grows (a mail flood) cannot spend
/// the chat's minute before the next incident's page.
pub const KEPT_FOR_NEW: usize = 5;
const MINUTE: Duration = Duration::from_secs(60);

impl Pacer {
    /// How long to wait before the next message may go.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.wait_within(now, PER_MINUTE)
    }

    /// How long an edit of a page already in the chat waits: it may not take the minute's
    /// last [`KEPT_FOR_NEW`] slots.
    pub fn wait_edit(&mut self, now: Instant) -> Duration {
        self.wait_within(now, PER_MINUTE - KEPT_FOR_NEW)
    }

    fn wait_within(&mut self, now: Instant, per_minute: usize) -> Duration {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= MINUTE)
        {
            self.recent.pop_front();
        }
        let spacing = self.recent.back().map_or(Duration::ZERO, |last| {
            (*last + MIN_SPACING).saturating_duration_since(now)
        });
        let window = if self.recent.len() >= per_minute {
            (self.recent[self.recent.len() - per_minute] + MINUTE).saturating_duration_since(now)
        } else {
            Duration::ZERO
        };
        spacing.max(window)
    }

    /// Records a message sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.recent.push_back(now);
        if self.recent.len() > PER_MINUTE {
            self.recent.pop_front();
        }
    }

    /// Takes the next free slot at or after `now` and returns it.
    pub fn reserve(&mut self, now: Instant) -> Instant {
        let at = now + self.wait(now);
        self.sent(at);
        at
    }
}

/// The last line of pacing, right before each request leaves: a request starts at least
/// [`MIN_SPACING`] after the previous one started and after its answer came, whatever the slot
/// each was given. The time between a slot and the request (reading and rendering the
/// incident) varies, and so does the time a request takes to reach Telegram: spacing counted
/// from the answer holds at Telegram's end too. A hung request holds nobody past its start's
/// spacing. Shared by every delivery of the chat; requests pass in turn.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    /// Held while waiting, so requests pass in the order they came.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// The latest start or answer of a request.
    last: Arc<std::sync::Mutex<Option<Instant>>>,
    /// Already passed ([`Gate::passed`]): the request leaves at once.
    open: bool,
}

impl Gate {
    /// Waits for this request's turn and returns a gate it leaves through at once, still
    /// counted: for a request judged once more right before it leaves.
    pub async fn passed(&self) -> Gate {
        self.pass().await;
        Gate {
            open: true,
            ..self.clone()
        }
    }

    /// Sends one request through the gate.
    pub async fn request<R: IntoFuture>(&self, request: R) -> R::Output {
        self.pass().await;
        let answer = request.await;
        self.mark();
        answer
    }

    async fn pass(&self) {
        if self.open {
            self.mark();
            return;
        }
        let _turn = self.turn.lock().await;
        while let Some(at) = self.next() {
            tokio::time::sleep_until(at.into()).await;
        }
        self.mark();
    }

    /// When the next request may leave, if not yet.
    fn next(&self) -> Option<Instant> {
        let last = *self.last.lock().expect("gate lock");
        last.map(|t| t + MIN_SPACING)
            .filter(|at| *at > Instant::now())
    }

    fn mark(&self) {
        let now = Instant::now();
        let mut last = self.last.lock().expect("gate lock");
        *last = Some(last.map_or(now, |t| t.max(now)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spaces_messages_and_caps_a_minute() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        assert_eq!(p.wait(t0), Duration::ZERO);
        p.sent(t0);
        assert_eq!(
            p.wait(t0 + Duration::from_millis(400)),
            Duration::from_millis(600)
        );
        for i in 1..PER_MINUTE as u64 {
            p.sent(t0 + Duration::from_secs(i));
        }
        // 20 sent within 19 s: the 21st waits until the first is a minute old.
        assert_eq!(
            p.wait(t0 + Duration::from_secs(20)),
            Duration::from_secs(40)
        );
        assert_eq!(p.wait(t0 + Duration::from_secs(60)), Duration::ZERO);
    }
}
