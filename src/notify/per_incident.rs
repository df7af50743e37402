//! Telegram's worker: one lane per incident, so that no page waits behind another's failure.
//!
//! The queue (`outbox`, channel `telegram`) is read oldest first and split by incident. Each
//! incident's entries go out one at a time and in order (its page before the message replying
//! to it, an edit before the next); different incidents' deliveries are independent, sharing
//! only Telegram's pacing ([`Pacer`]), whose slots are reserved in queue order, so pages reach
//! the chat in the order their incidents were found whenever nothing fails.
//!
//! Each failure is sorted by what it says about the chat as a whole:
//! - Telegram refused this request (`DeliveryError::Refused`): the page's own problem. Its
//!   lane backs off alone (1 s doubling to 8 s) and gives up after [`ATTEMPTS`] tries: a dead
//!   letter, written in the incident's timeline, counted, and paged to every fallback channel.
//! - Flood control (`RetryAfter`): every lane waits as long as Telegram asks.
//! - The token or the chat was refused (`Unreachable`): the chat is down until an operator
//!   acts; every page waits (none is given up), retried oldest first, one at a time.
//! - The request failed without a Bot API answer, or with a 5xx (`Transient`): maybe the
//!   chat's, maybe the page's. The lane waits for the chat's backoff, and one page that has not
//!   failed yet is tried meanwhile (a probe). Delivered: the chat works, the first page's
//!   failures are its own (own backoff, a dead letter after [`ATTEMPTS`]). Failed the same
//!   way: the chat is down, no more probes, pages are retried oldest first so that they arrive
//!   in order once it is back. Down past `telegram.failure_grace` while `getUpdates` answers,
//!   the Bot API works after all: the page at the head is the one that cannot go.
//!
//! Answers Telegram means as success are taken as such: `message is not modified`, a success
//! whose body is not what the method documents (a warning, and
//! `tocsin_page_unexpected_answers_total{method}`), and the refusals `TelegramPager::deliver`
//! works around (an edit refused for good resends the page; a text refused for its content
//! goes as plain text).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tokio::{sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    IDLE_RECHECK, Outage, TelegramWatch, backoff,
    telegram::{Delivered, DeliveryError, Gate, How, Pacer, TelegramPager},
};
use crate::{
    incidents::Incidents,
    metrics::Metrics,
    model::{Incident, State},
    store::{OutboxEntry, Reminder, Store, TELEGRAM},
};

/// Tries of one queued item, the first included, before it is given up as a dead letter.
pub const ATTEMPTS: u32 = 5;
/// Deliveries under way at once. Pacing keeps requests a second apart; this only bounds how
/// many slow ones (a hung request, teloxide's 10 s pause after a 5xx) can overlap.
const IN_FLIGHT: usize = 4;

/// What the worker needs besides the queue.
pub struct Worker {
    pub pager: TelegramPager,
    pub incidents: Incidents,
    pub metrics: Arc<Metrics>,
    pub watch: TelegramWatch,
    /// Unix time (s) of the bot's last successful `getUpdates`: the Bot API answers.
    pub updates_ok: Arc<AtomicI64>,
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

/// One incident's place in the queue: how its current head has fared.
#[derive(Debug, Default)]
struct Lane {
    /// Failed tries of the current head, flood control excepted.
    attempts: u32,
    first_failure: Option<(Instant, DateTime<Utc>)>,
    /// Not before this (its own backoff after a failure that is its own).
    retry_at: Option<Instant>,
    /// Failed while the chat is failing: waits for the chat's retry.
    failed_with_channel: bool,
    in_flight: bool,
}

/// The chat as a whole.
#[derive(Debug, Default)]
struct Channel {
    /// Since when a failure that may be the chat's is not followed by a sign of life.
    failing_since: Option<Instant>,
    /// Since when the chat counts as down: a second page failed the same way (or the token or
    /// chat was refused). No more probes: pages are retried oldest first.
    down_since: Option<(Instant, DateTime<Utc>)>,
    /// The failure was a token or chat refusal: only a delivery proves it cured.
    refused_chat: bool,
    failures: u32,
    retry_at: Option<Instant>,
    last_success: Option<Instant>,
    /// Counts the failing periods, so a task started in an earlier one releases nothing.
    period: u64,
    /// While failing: a lane being retried (at most one) and a fresh lane being tried (at most
    /// one).
    retrying: bool,
    probing: bool,
}

impl Channel {
    fn failing(&self) -> bool {
        self.failing_since.is_some()
    }

    /// A sign of life: the chat is not failing any more; every lane may go again.
    fn recovered(&mut self, lanes: &mut HashMap<u64, Lane>) {
        if self.failing() {
            self.period += 1;
        }
        *self = Channel {
            last_success: self.last_success,
            period: self.period,
            ..Channel::default()
        };
        for lane in lanes.values_mut() {
            lane.failed_with_channel = false;
        }
    }
}

/// How a delivery was let through while the chat was failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Normal,
    /// A lane that has not failed with the chat: does the chat work?
    Probe(u64),
    /// The oldest lane that failed with the chat, after the chat's backoff.
    Retry(u64),
}

/// For an incident's first page: when it was found, and when the platform says it happened.
type First = Option<(DateTime<Utc>, Option<DateTime<Utc>>)>;

/// What one delivery task did.
enum Done {
    Page {
        seqs: Vec<u64>,
        enqueued_at: DateTime<Utc>,
        first: First,
        result: Result<Delivered, DeliveryError>,
    },
    Message {
        seq: u64,
        kind: &'static str,
        enqueued_at: DateTime<Utc>,
        result: Result<Option<&'static str>, DeliveryError>,
    },
    /// Nothing left to say when its turn came (acked, resolved, incident gone): dropped unsent.
    Dropped(Vec<u64>),
    /// Shut down before its slot.
    Cancelled,
}

/// One delivery handed to a task.
enum Job {
    /// Bring the page up to date, answering every queued page entry `seqs`.
    Page {
        seqs: Vec<u64>,
        repost: bool,
    },
    Remind {
        seq: u64,
        reminder: Reminder,
    },
    Ring {
        seq: u64,
        text: String,
        /// Sent whatever the incident's state ([`OutboxEntry::announce`]).
        announce: bool,
    },
}

impl Job {
    fn seqs(&self) -> Vec<u64> {
        match self {
            Job::Page { seqs, .. } => seqs.clone(),
            Job::Remind { seq, .. } | Job::Ring { seq, .. } => vec![*seq],
        }
    }

    /// The next delivery of one incident, from its entries (oldest first).
    fn of(entries: &[&(u64, OutboxEntry)]) -> Option<Job> {
        let (seq, head) = entries.first().map(|(s, e)| (*s, e))?;
        if let Some(reminder) = &head.reminder {
            return Some(Job::Remind {
                seq,
                reminder: reminder.clone(),
            });
        }
        if let Some(text) = &head.ring {
            return Some(Job::Ring {
                seq,
                text: text.clone(),
                announce: head.announce,
            });
        }
        // Every page update of the incident is answered by delivering its state once:
        // collected before the incident is read (in the task), and each written in the
        // transaction of the change it announces, so the state read then includes them all.
        let pages = entries.iter().filter(|(_, e)| e.is_page());
        Some(Job::Page {
            seqs: pages.clone().map(|(s, _)| *s).collect(),
            repost: pages.clone().any(|(_, e)| e.repost),
        })
    }
}

/// Flood control's hold, shared with the tasks waiting for their slot.
#[derive(Clone, Default)]
struct Hold(Arc<Mutex<Option<Instant>>>);

impl Hold {
    fn until(&self) -> Option<Instant> {
        *self.0.lock().expect("hold lock")
    }

    fn set(&self, until: Instant) {
        let mut h = self.0.lock().expect("hold lock");
        *h = Some(h.map_or(until, |t| t.max(until)));
    }
}

/// The worker's state between wake-ups.
struct Lanes {
    lanes: HashMap<u64, Lane>,
    channel: Channel,
    pacer: Pacer,
    gate: Gate,
    hold: Hold,
    outage: Outage,
    tasks: JoinSet<(u64, Pass, Done)>,
}

/// Drains Telegram's queue until shutdown; the deliveries under way finish first.
pub async fn run(w: Worker) {
    let mut st = Lanes {
        lanes: HashMap::new(),
        channel: Channel::default(),
        pacer: Pacer::default(),
        gate: Gate::default(),
        hold: Hold::default(),
        outage: Outage::new(w.watch.clone()),
        tasks: JoinSet::new(),
    };
    while !w.shutdown.is_cancelled() {
        let next = dispatch(&w, &mut st);
        let sleep = next.map_or(IDLE_RECHECK, |t| {
            t.saturating_duration_since(Instant::now())
        });
        tokio::select! {
            _ = w.shutdown.cancelled() => break,
            _ = w.wake.notified() => {}
            _ = tokio::time::sleep(sleep.min(IDLE_RECHECK)) => {}
            Some(joined) = st.tasks.join_next(), if !st.tasks.is_empty() => {
                if let Ok((id, pass, done)) = joined {
                    settle(&w, &mut st, id, pass, done).await;
                }
            }
        }
    }
    // The sends under way finish and are recorded; the tasks still waiting for a slot stop.
    while let Some(joined) = st.tasks.join_next().await {
        if let Ok((id, pass, done)) = joined {
            settle(&w, &mut st, id, pass, done).await;
        }
    }
}

fn earliest(next: &mut Option<Instant>, t: Instant) {
    *next = Some(next.map_or(t, |n| n.min(t)));
}

/// Hands out every delivery that may start now; returns when to look again, if sooner than
/// the idle recheck.
fn dispatch(w: &Worker, st: &mut Lanes) -> Option<Instant> {
    let store = w.incidents.store();
    let queue = match store.outbox_entries(TELEGRAM) {
        Ok(q) => q,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the outbox");
            return Some(Instant::now() + Duration::from_secs(1));
        }
    };
    // Forget lanes whose entries are all gone (delivered, dropped, or given up).
    st.lanes
        .retain(|id, lane| lane.in_flight || queue.iter().any(|(_, e)| e.incident_id == *id));
    let now = Instant::now();
    let mut next = None;
    if let Some(until) = st.hold.until().filter(|t| *t > now) {
        earliest(&mut next, until);
        return next;
    }
    let mut order: Vec<u64> = Vec::new();
    for (_, e) in &queue {
        if !order.contains(&e.incident_id) {
            order.push(e.incident_id);
        }
    }
    // First pages, rings and reminders are handed out before edits of pages already in the
    // chat: an edit only refreshes what responders already see.
    for (edits, id) in [false, true]
        .into_iter()
        .flat_map(|edits| order.iter().map(move |id| (edits, *id)))
    {
        if st.tasks.len() >= IN_FLIGHT {
            break;
        }
        let lane = st.lanes.entry(id).or_default();
        if lane.in_flight {
            continue;
        }
        if let Some(t) = lane.retry_at.filter(|t| *t > now) {
            earliest(&mut next, t);
            continue;
        }
        let ch = &mut st.channel;
        let pass = if !ch.failing() {
            Pass::Normal
        } else if !lane.failed_with_channel && ch.down_since.is_none() {
            // Not failed yet, and the chat is not known to be down: does it work?
            if ch.probing {
                continue;
            }
            Pass::Probe(ch.period)
        } else {
            // Oldest first, one at a time, after the chat's backoff: in order once it is back.
            if let Some(t) = ch.retry_at.filter(|t| *t > now) {
                earliest(&mut next, t);
                continue;
            }
            if ch.retrying {
                continue;
            }
            Pass::Retry(ch.period)
        };
        let entries: Vec<&(u64, OutboxEntry)> =
            queue.iter().filter(|(_, e)| e.incident_id == id).collect();
        let Some(job) = Job::of(&entries) else {
            continue;
        };
        // The page shows the incident as it is now, when its turn is given: changes made while
        // it waits for its slot come with the next edit, as their own entries are still queued.
        let incident = match store.incident(id) {
            Ok(Some(inc)) => Box::new(inc),
            Ok(None) => {
                tracing::warn!(incident = id, "pages for an unknown incident dropped");
                for (seq, _) in &entries {
                    let _ = w.incidents.discard_page(TELEGRAM, *seq);
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, incident = id, "cannot read the incident of a queued page");
                earliest(&mut next, now + Duration::from_secs(1));
                continue;
            }
        };
        let needs_slot = match &job {
            Job::Page { repost, .. } => *repost || !w.pager.is_current(&incident),
            Job::Remind { .. } | Job::Ring { .. } => true,
        };
        let edit = needs_slot
            && matches!(&job, Job::Page { repost: false, .. })
            && incident.page.is_some();
        if edit != edits {
            continue;
        }
        // An edit takes a slot only when one is free now and the minute keeps its reserve:
        // it never books the future ahead of a page found meanwhile. Its entries stay queued,
        // and the one edit made later shows the state of then.
        if edit {
            let wait = st.pacer.wait_edit(now);
            if !wait.is_zero() {
                earliest(&mut next, now + wait);
                continue;
            }
        }
        match pass {
            Pass::Probe(_) => ch.probing = true,
            Pass::Retry(_) => ch.retrying = true,
            Pass::Normal => {}
        }
        lane.in_flight = true;
        let task = Task {
            pager: w.pager.clone(),
            store: store.clone(),
            hold: st.hold.clone(),
            gate: st.gate.clone(),
            shutdown: w.shutdown.clone(),
            incident,
            slot: if needs_slot {
                st.pacer.reserve(now)
            } else {
                now
            },
            enqueued_at: entries[0].1.enqueued_at,
        };
        let span = tracing::info_span!("incident", id);
        st.tasks.spawn(
            async move {
                let done = task.run(id, job).await;
                (id, pass, done)
            }
            .instrument(span),
        );
    }
    next
}

/// One delivery, run in its own task so that a slow one holds nobody else.
struct Task {
    pager: TelegramPager,
    store: Store,
    hold: Hold,
    gate: Gate,
    shutdown: CancellationToken,
    /// As read when the delivery was handed out.
    incident: Box<Incident>,
    slot: Instant,
    enqueued_at: DateTime<Utc>,
}

impl Task {
    async fn run(self, id: u64, job: Job) -> Done {
        loop {
            let at = self.hold.until().map_or(self.slot, |h| h.max(self.slot));
            if at <= Instant::now() {
                break;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return Done::Cancelled,
                _ = tokio::time::sleep_until(at.into()) => {}
            }
        }
        // A message of its own is judged again once it may leave, right before it does: an
        // ack that landed while it waited for its turn silences a reminder. Its pacing is
        // done by then, so the request itself goes through an open gate.
        let (inc, gate) = match &job {
            Job::Page { .. } => (*self.incident, self.gate.clone()),
            Job::Remind { .. } | Job::Ring { .. } => {
                let open = self.gate.passed().await;
                match self.store.incident(id) {
                    Ok(Some(inc)) => (inc, open),
                    Ok(None) => return Done::Dropped(job.seqs()),
                    Err(_) => (*self.incident, open),
                }
            }
        };
        let gate = &gate;
        match job {
            Job::Page { seqs, repost } => {
                let first = inc
                    .page
                    .is_none()
                    .then_some((inc.opened_at, inc.changed_at));
                let result = if repost && first.is_none() {
                    self.pager
                        .resend(&inc, "a new message was asked for", gate)
                        .await
                } else {
                    self.pager.deliver(&inc, gate).await
                };
                Done::Page {
                    seqs,
                    enqueued_at: self.enqueued_at,
                    first,
                    result,
                }
            }
            Job::Remind { seq, reminder } => {
                // Acked or resolved since it was queued: the reminder has nothing left to say.
                if inc.state != State::Open {
                    return Done::Dropped(vec![seq]);
                }
                Done::Message {
                    seq,
                    kind: "reminder",
                    enqueued_at: self.enqueued_at,
                    result: self.pager.remind(&inc, &reminder, gate).await,
                }
            }
            Job::Ring {
                seq,
                text,
                announce,
            } => {
                // Resolved: nobody needs waking. A page sent as a new message after the ring
                // was queued showed the new state and rang already. An announcement is what
                // the chat must hear whatever happened since.
                if !announce
                    && (inc.state == State::Resolved || rang_already(&inc, self.enqueued_at))
                {
                    return Done::Dropped(vec![seq]);
                }
                Done::Message {
                    seq,
                    kind: if announce { "announcement" } else { "ring" },
                    enqueued_at: self.enqueued_at,
                    result: self.pager.reply(&inc, &text, gate).await,
                }
            }
        }
    }
}

fn rang_already(inc: &Incident, queued: DateTime<Utc>) -> bool {
    inc.page
        .as_ref()
        .and_then(|p| p.sent_at)
        .is_some_and(|sent| sent >= queued)
}

/// Records what a task did: delivered, dropped, or failed (then when to retry, or give up).
async fn settle(w: &Worker, st: &mut Lanes, id: u64, pass: Pass, done: Done) {
    if let Some(lane) = st.lanes.get_mut(&id) {
        lane.in_flight = false;
    }
    match pass {
        Pass::Probe(p) if p == st.channel.period => st.channel.probing = false,
        Pass::Retry(p) if p == st.channel.period => st.channel.retrying = false,
        _ => {}
    }
    let (seqs, failure, kind) = match done {
        Done::Cancelled => return,
        Done::Dropped(seqs) => {
            for seq in seqs {
                if let Err(e) = w.incidents.discard_page(TELEGRAM, seq) {
                    tracing::error!(error = %e, "cannot drop a message with nothing left to say");
                }
            }
            return;
        }
        Done::Page {
            seqs,
            enqueued_at,
            first,
            result: Ok(d),
        } => {
            // Nothing was sent for a page that was already current: no sign of the chat.
            let sent = d.how != How::Unchanged;
            page_delivered(w, id, &seqs, enqueued_at, first, d).await;
            st.lanes.remove(&id);
            if sent {
                succeeded(w, st).await;
            }
            return;
        }
        Done::Message {
            seq,
            kind,
            enqueued_at,
            result: Ok(unexpected),
        } => {
            if let Some(method) = unexpected {
                w.metrics.page_unexpected_answer(method);
                tracing::warn!(
                    incident = id,
                    method,
                    kind,
                    "telegram's answer is not what the method documents; taken as delivered"
                );
            }
            w.metrics.page_delivered(
                (Utc::now() - enqueued_at).num_milliseconds() as f64 / 1000.0,
                None,
            );
            if let Err(e) = w.incidents.discard_page(TELEGRAM, seq) {
                tracing::error!(error = %e, kind, "message sent but not removed from the outbox");
            }
            tracing::info!(incident = id, kind, "message delivered");
            st.lanes.remove(&id);
            succeeded(w, st).await;
            return;
        }
        Done::Page {
            seqs,
            result: Err(e),
            ..
        } => (seqs, e, "page"),
        Done::Message {
            seq,
            kind,
            result: Err(e),
            ..
        } => (vec![seq], e, kind),
    };
    st.outage.failed(&w.incidents, &failure).await;
    let now = Instant::now();
    let ch = &mut st.channel;
    let lane = st.lanes.entry(id).or_default();
    let first = *lane.first_failure.get_or_insert((now, Utc::now()));
    let (reason, own) = match &failure {
        DeliveryError::RetryAfter(d) => {
            w.metrics.page_failed("retry_after");
            tracing::warn!(
                incident = id,
                retry_after_s = d.as_secs(),
                "telegram flood control"
            );
            st.hold.set(now + *d);
            return;
        }
        DeliveryError::Refused(_) => ("refused", true),
        DeliveryError::Unreachable(_) => ("unreachable", false),
        // Another page went through since this one first failed: the failure is its own. Or
        // the chat has been "down" past the grace while getUpdates answers: the Bot API works,
        // and the page at the head of the retries is the one that cannot go.
        DeliveryError::Transient(_) => {
            let seen_working = ch.last_success.is_some_and(|t| t > first.0);
            let stuck = ch.down_since.is_some_and(|(since, utc)| {
                since.elapsed() >= w.watch.failure_grace
                    && w.updates_ok.load(Ordering::Relaxed) > utc.timestamp()
                    && !ch.refused_chat
            });
            ("transient", seen_working || stuck)
        }
    };
    lane.attempts += 1;
    let attempts = lane.attempts;
    if own {
        lane.retry_at = Some(now + backoff(attempts));
        if ch.failing() && matches!(failure, DeliveryError::Transient(_)) {
            ch.recovered(&mut st.lanes);
        }
    } else {
        lane.failed_with_channel = true;
        ch.failing_since.get_or_insert(now);
        // A second page failing the same way, or a refused token or chat: down.
        if matches!(pass, Pass::Probe(_)) || matches!(failure, DeliveryError::Unreachable(_)) {
            ch.down_since.get_or_insert((now, Utc::now()));
        }
        ch.refused_chat |= matches!(failure, DeliveryError::Unreachable(_));
        ch.failures += 1;
        ch.retry_at = Some(now + backoff(ch.failures));
    }
    w.metrics.page_failed(reason);
    tracing::warn!(incident = id, kind, error = %failure, attempts, own, "page not delivered; kept queued");
    if own && attempts >= ATTEMPTS {
        st.lanes.remove(&id);
        dead_letter(w, id, &seqs, kind, attempts, &failure.to_string()).await;
    }
}

/// A delivery went through: the chat works, and every lane that failed with it may go again.
async fn succeeded(w: &Worker, st: &mut Lanes) {
    st.channel.last_success = Some(Instant::now());
    st.channel.recovered(&mut st.lanes);
    st.outage.recovered(&w.incidents).await;
}

async fn page_delivered(
    w: &Worker,
    id: u64,
    seqs: &[u64],
    enqueued_at: DateTime<Utc>,
    first: First,
    d: Delivered,
) {
    if let Some(method) = d.unexpected {
        w.metrics.page_unexpected_answer(method);
        tracing::warn!(
            incident = id,
            method,
            message_id = d.page.message_id,
            "telegram's answer is not what the method documents; taken as delivered"
        );
    }
    if let Some(why) = &d.plain {
        tracing::warn!(
            incident = id,
            why,
            "page refused for its text; sent as plain text"
        );
    }
    let resent = match &d.how {
        How::Resent(why) => {
            tracing::warn!(incident = id, why, "page sent again as a new message");
            Some(why.as_str())
        }
        How::Unchanged | How::Edited | How::Sent => None,
    };
    // Counted before the outbox entries go: whoever sees the queue empty sees the count.
    let now = Utc::now();
    let age_ms = (now - enqueued_at).num_milliseconds();
    let seconds = |from: DateTime<Utc>| (now - from).num_milliseconds() as f64 / 1000.0;
    let latency = first.map(|(opened, changed)| (changed.map(seconds), seconds(opened)));
    w.metrics.page_delivered(age_ms as f64 / 1000.0, latency);
    match w.incidents.delivered(seqs, id, d.page, resent).await {
        Ok(_) => tracing::info!(
            incident = id,
            queued_ms = age_ms,
            first = first.is_some(),
            "page delivered"
        ),
        Err(e) => {
            tracing::error!(error = %e, "page delivered but not recorded; it will be re-checked")
        }
    }
}

/// Gives up on an item: out of Telegram's queue, into the timeline, to every fallback.
async fn dead_letter(w: &Worker, id: u64, seqs: &[u64], kind: &str, attempts: u32, error: &str) {
    w.metrics.page_dead_letter();
    match w
        .incidents
        .dead_letter(TELEGRAM, seqs, id, attempts, error)
        .await
    {
        Ok(0) => tracing::error!(
            incident = id,
            kind,
            attempts,
            error,
            "telegram gave up on this page and no fallback channel is configured: nobody is paged about it"
        ),
        Ok(fallbacks) => tracing::error!(
            incident = id,
            kind,
            attempts,
            error,
            fallbacks,
            "telegram gave up on this page; paged to the fallback channels"
        ),
        Err(e) => tracing::error!(error = %e, incident = id, "cannot record a dead letter"),
    }
}
