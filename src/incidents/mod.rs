//! Findings become incidents; responders move them along.
//!
//! An incident is keyed by (account, rule, object), so the same rogue post or the same profile
//! drift seen on every poll stays one incident, with the evidence kept current. States go
//! `open → acked → resolved`; every change is a timeline event with who and when, and every change
//! a responder should see is queued as a page **in the same sled transaction** that changes the
//! incident, so a crash can never leave a change unannounced. Every timeline event also goes to
//! the store's timeline hash chain in that transaction (`Timeline::event` is the one place that
//! writes both), so a hand-edited timeline is found by `tocsin log verify`.

mod actions;
pub use actions::{BULK_WINDOW, BulkTerms, compact_duration};
mod held;
pub use held::HeldAnswer;
mod mail;
pub use mail::prune_loop;
mod paging;
mod pause;

pub use paging::{MAX_MUTE, MuteError, PagingPolicy, ordinal};

pub use pause::{PauseError, PauseFuture, PauseMailer, PauseState, pausable};

pub mod escalation;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::{
    detect::Outcome,
    model::{
        Action, Actor, Evidence, Finding, GROUP_WINDOW, Incident, Member, PageRef, Rule, Severity,
        State, TimelineEvent, dedup_key, group_key, groups,
    },
    store::{Lift, Store, StoreError, Subject, TELEGRAM, TimelineEntry, Tx, TxResult, abort},
};

/// Writes an incident's timeline. Kept here rather than on the record in `model` because it
/// writes the store's timeline chain in the caller's transaction.
trait Timeline {
    fn event(&mut self, tx: &Tx<'_>, at: DateTime<Utc>, who: &str, action: Action) -> TxResult<()>;
}

impl Timeline for Incident {
    /// Records an event in the incident's timeline and in the timeline chain, in the caller's
    /// transaction: the only way an event is written, so the two cannot disagree.
    fn event(&mut self, tx: &Tx<'_>, at: DateTime<Utc>, who: &str, action: Action) -> TxResult<()> {
        tx.append_timeline(
            TimelineEntry {
                incident: Some(self.id),
                account: self.account.clone(),
                who: who.into(),
                action: action.clone(),
                subject: Some(Subject::of(self)),
            },
            at,
        )?;
        self.timeline.push(TimelineEvent {
            at,
            who: who.into(),
            action,
        });
        self.updated_at = at;
        Ok(())
    }
}

/// Why a responder's action did not happen. Each is answered in the chat as it is.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("there is no incident #{0}")]
    NotFound(u64),
    #[error("incident #{id} is already resolved ({resolution}) by {by}")]
    AlreadyResolved {
        id: u64,
        resolution: &'static str,
        by: String,
    },
    #[error("incident #{id} is already acknowledged by {by}")]
    AlreadyAcked { id: u64, by: String },
    #[error("you already voted to approve incident #{id}; another responder must confirm")]
    AlreadyVoted { id: u64 },
    #[error(
        "you already voted to resolve incident #{id} as a false alarm; another responder must confirm"
    )]
    AlreadyVotedFalseAlarm { id: u64 },
    #[error(
        "you already asked to resolve incident #{id} while its source is still blind; another responder must confirm"
    )]
    AlreadyVotedResolve { id: u64 },
    #[error("you already asked to take down incident #{id}; another responder must confirm")]
    AlreadyVotedTakedown { id: u64 },
    #[error("incident #{id} is not about a post: there is nothing to take down")]
    NotAPost { id: u64 },
    #[error("the takedown of incident #{id} is already under way")]
    TakedownInProgress { id: u64 },
    /// The press came from a page whose evidence has changed since, and nothing it showed is
    /// left to act on: acting on the current evidence would act on what nobody saw.
    #[error(
        "incident #{id} changed since the page you pressed on; nothing it showed is left to act on. Its current state is sent as a new message: act there"
    )]
    Changed { id: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies findings and actions; wakes the outbox worker when a page was queued.
#[derive(Clone)]
pub struct Incidents {
    store: Store,
    wake: Arc<Notify>,
    policy: Arc<PagingPolicy>,
    /// Findings of a groupable rule on the same account within this long of the incident's last
    /// update join it instead of opening another: an attacker's 40 scam posts are one page.
    group_window: std::time::Duration,
    /// `[email.kill_switch] auto_pause`: the mailer is paused when `email.exposed_recipients`
    /// opens, without waiting for a press.
    auto_pause: Option<Arc<dyn PauseMailer>>,
    /// Long mutes asked for by one responder, by account, waiting for a second.
    mute_requests: Arc<std::sync::Mutex<std::collections::HashMap<String, paging::MuteRequest>>>,
    /// Whether a source (its health entry) sees again since a time: resolving `monitor.blind`
    /// while it does not takes two responders. None (no sources known): every source sees.
    sight: Option<Sight>,
}

/// See [`Incidents::with_sight`].
pub type Sight = Arc<dyn Fn(&str, DateTime<Utc>) -> bool + Send + Sync>;

/// Responders needed to close a `monitor.blind` incident while its source is still blind,
/// whatever its severity: one phone must not be able to hide that tocsin cannot see.
pub const BLIND_QUORUM: u8 = 2;

/// A takedown marked as started this long ago without its answers (the daemon stopped in
/// between) no longer blocks a new attempt: longer than any platform call may take.
pub const TAKEDOWN_STALE: std::time::Duration = std::time::Duration::from_secs(120);

/// What a takedown press led to.
#[derive(Debug, Clone)]
pub enum TakedownStart {
    /// A vote below the quorum; the page says who else must confirm. `newer`: burst members
    /// the page pressed on did not show.
    Waiting { incident: Incident, newer: usize },
    /// The quorum is reached: delete `targets` (what the voters' pages showed), then call
    /// [`Incidents::finish_takedown`] with the answers. `newer` members stay as they are.
    Go {
        incident: Incident,
        targets: Vec<(String, Option<DateTime<Utc>>)>,
        newer: usize,
    },
}

/// What an approval press did: the incident after it, and how many burst members newer than
/// the page pressed on it left open (their page goes out again as a new message).
#[derive(Debug, Clone)]
pub struct Pressed {
    pub incident: Incident,
    pub newer: usize,
}

/// What [`Incidents::record`] did with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Nothing,
    /// Written in the timeline chain without an incident (an approved post's deletion when
    /// `paging.page_approved_deletions` is off).
    Noted,
    Opened(u64),
    Updated(u64),
    /// Same evidence as a resolved incident: the responders already judged it.
    AlreadyJudged(u64),
}

impl Incidents {
    /// With the default policy: nothing muted is unmutable, every approval takes one responder.
    pub fn new(store: Store, wake: Arc<Notify>) -> Incidents {
        Incidents {
            store,
            wake,
            group_window: GROUP_WINDOW,
            policy: Arc::default(),
            auto_pause: None,
            mute_requests: Arc::default(),
            sight: None,
        }
    }

    /// `sees(account, since)`: whether the source of health entry `account` has seen its
    /// account since `since` (the daemon asks the sources' health).
    pub fn with_sight(mut self, sees: Sight) -> Incidents {
        self.sight = Some(sees);
        self
    }

    /// A `monitor.blind` incident whose source has not seen since it opened.
    fn still_blind(&self, inc: &Incident) -> bool {
        inc.rule == Rule::MonitorBlind
            && self
                .sight
                .as_ref()
                .is_some_and(|sees| !sees(&inc.account, inc.opened_at))
    }

    /// Pauses the mailer through `mailer` whenever an `email.exposed_recipients` incident opens.
    pub fn with_auto_pause(mut self, mailer: Option<Arc<dyn PauseMailer>>) -> Incidents {
        self.auto_pause = mailer;
        self
    }

    /// Sets the burst window; zero turns grouping off.
    pub fn with_group_window(mut self, window: std::time::Duration) -> Incidents {
        self.group_window = window;
        self
    }

    /// With the default policy, nothing muted is unmutable and every approval takes one
    /// responder; the daemon passes the `[paging]` configuration here.
    pub fn with_policy(mut self, policy: PagingPolicy) -> Incidents {
        self.policy = Arc::new(policy);
        self
    }

    pub fn policy(&self) -> &PagingPolicy {
        &self.policy
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The outbox worker waits on this.
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Commits detect's verdict: its state writes, the incident it opens or updates, and the
    /// page that announces it, in one transaction; then makes it durable before returning.
    pub async fn record(&self, outcome: &Outcome) -> Result<Recorded, StoreError> {
        // Most mail events change nothing: no transaction over every tree for them.
        if outcome.writes.is_empty() && outcome.finding.is_none() {
            return Ok(Recorded::Nothing);
        }
        let now = Utc::now();
        let recorded = self.store.transact(|tx| {
            for w in &outcome.writes {
                w.apply(tx, now)?;
            }
            match &outcome.finding {
                Some(f)
                    if f.rule == Rule::ApprovedPostDeleted
                        && !self.policy.page_approved_deletions =>
                {
                    // Recorded in the timeline chain only: the operator chose not to be paged.
                    let entry = TimelineEntry {
                        incident: None,
                        account: f.account.clone(),
                        who: "tocsin".into(),
                        action: Action::ApprovedPostDeleted {
                            post_id: f.object.clone(),
                        },
                        subject: None,
                    };
                    tx.append_timeline(entry, now)?;
                    Ok(Recorded::Noted)
                }
                Some(
                    f @ Finding {
                        evidence: Evidence::Mail(_),
                        ..
                    },
                ) => mail::upsert(tx, f, &outcome.writes, now, self.group_window, &self.policy),
                Some(f) => upsert(tx, f, now, self.group_window, &self.policy),
                None => Ok(Recorded::Nothing),
            }
        })?;
        // A mail message joining a live burst needs no flush of its own: it came from the mail
        // queue, whose checkpoint is written after it, so a crash that loses the update loses
        // the checkpoint too and the message is judged again. New incidents are flushed.
        let mail_update = matches!(recorded, Recorded::Updated(_))
            && outcome
                .finding
                .as_ref()
                .is_some_and(|f| matches!(f.evidence, Evidence::Mail(_)));
        if !mail_update
            && (outcome.writes.iter().any(crate::detect::Write::needs_flush)
                || recorded != Recorded::Nothing)
        {
            self.store.flush().await?;
        }
        if matches!(recorded, Recorded::Opened(_) | Recorded::Updated(_)) {
            self.wake.notify_one();
        }
        if let (Recorded::Opened(id), Some(f)) = (recorded, &outcome.finding) {
            self.auto_pause_if_due(id, f);
        }
        Ok(recorded)
    }

    /// Records that the channel confirmed the incident's page, answering the queued entries
    /// `seqs` (all taken before the page was rendered, so none asks for a later state).
    /// `resent`: the page went out as a new message in place of the old one, and why.
    pub async fn delivered(
        &self,
        seqs: &[u64],
        incident_id: u64,
        page: PageRef,
        resent: Option<&str>,
    ) -> Result<Option<Incident>, StoreError> {
        let now = Utc::now();
        let incident = self.store.transact(|tx| {
            for seq in seqs {
                tx.remove_page(TELEGRAM, *seq)?;
            }
            let Some(mut inc) = tx.incident(incident_id)? else {
                return Ok(None);
            };
            if inc.page.is_none() {
                let since_change_ms = inc.changed_at.map(|t| (now - t).num_milliseconds());
                let since_detect_ms = (now - inc.opened_at).num_milliseconds();
                inc.event(
                    tx,
                    now,
                    "telegram",
                    Action::Paged {
                        since_change_ms,
                        since_detect_ms,
                    },
                )?;
            } else if let Some(reason) = resent {
                let reason = reason.to_owned();
                inc.event(tx, now, "telegram", Action::Repaged { reason })?;
            }
            inc.page = Some(page.clone());
            tx.put_incident(&inc)?;
            Ok(Some(inc))
        })?;
        self.store.flush().await?;
        Ok(incident)
    }

    /// A channel gave up on the queued entries `seqs` of an incident after `attempts`: they
    /// leave its queue, the incident's timeline says so, and every fallback channel is paged
    /// in the same transaction. Returns how many fallback channels were paged (0: nobody).
    pub async fn dead_letter(
        &self,
        channel: &str,
        seqs: &[u64],
        incident_id: u64,
        attempts: u32,
        error: &str,
    ) -> Result<usize, StoreError> {
        let now = Utc::now();
        let paged = self.store.transact(|tx| {
            for seq in seqs {
                tx.remove_page(channel, *seq)?;
            }
            let Some(mut inc) = tx.incident(incident_id)? else {
                return Ok(0);
            };
            let action = Action::DeadLettered {
                channel: channel.to_owned(),
                attempts,
                error: error.to_owned(),
            };
            inc.event(tx, now, "tocsin", action)?;
            tx.put_incident(&inc)?;
            tx.enqueue_fallbacks(&inc, now)
        })?;
        self.store.flush().await?;
        if paged > 0 {
            self.wake.notify_one();
        }
        Ok(paged)
    }

    /// Sends the incident's current state to the on-call chat as a new message, which becomes
    /// its page; the message there now is left as it is. For a page that can no longer be
    /// edited, or that a responder acted on after it went stale: the new message rings, an
    /// edit would not. Queued like any page, so it keeps the incident's order and the pacing.
    pub async fn repost_page(&self, id: u64) -> Result<(), ActionError> {
        let now = Utc::now();
        self.store.transact(|tx| match tx.incident(id).lift()? {
            Some(_) => tx.enqueue_repost(id, now).lift().map(drop),
            None => abort(ActionError::NotFound(id)),
        })?;
        self.store.flush().await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Drops a queued page: its incident no longer exists, the channel confirmed it, or the
    /// channel refused it for good.
    pub fn discard_page(&self, channel: &str, seq: u64) -> Result<(), StoreError> {
        self.store.transact(|tx| tx.remove_page(channel, seq))?;
        Ok(())
    }

    fn known_account(&self, account: &str) -> Result<(), MuteError> {
        if self.policy.accounts.contains(account) {
            return Ok(());
        }
        Err(MuteError::UnknownAccount {
            account: account.to_owned(),
            known: self
                .policy
                .accounts
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    async fn act<T>(
        &self,
        id: u64,
        f: impl Fn(&Tx<'_>, Incident, DateTime<Utc>) -> TxResult<T, ActionError>,
    ) -> Result<T, ActionError> {
        let now = Utc::now();
        let incident = self.store.transact(|tx| match tx.incident(id).lift()? {
            Some(inc) => f(tx, inc, now),
            None => abort(ActionError::NotFound(id)),
        })?;
        self.store.flush().await?;
        self.wake.notify_one();
        Ok(incident)
    }
}

/// An event about an account rather than one incident (a mute): chained, in no incident.
fn account_event(
    tx: &Tx<'_>,
    account: &str,
    who: &Actor,
    action: Action,
    at: DateTime<Utc>,
) -> TxResult<()> {
    let entry = TimelineEntry {
        incident: None,
        account: account.to_owned(),
        who: who.to_string(),
        action,
        subject: None,
    };
    tx.append_timeline(entry, at)?;
    Ok(())
}

fn save_and_page(tx: &Tx<'_>, inc: &Incident, now: DateTime<Utc>) -> TxResult<()> {
    tx.put_incident(inc)?;
    tx.enqueue_page(inc, now)?;
    // The page about to go out brings the incident up to date, held back or not.
    tx.unhold(inc.id)?;
    Ok(())
}

/// Whether a page about this incident waits for its account's mute to end. A tampered store
/// is never held back, whatever `paging.unmutable` says: a forged mute is one way to tamper.
fn muted(tx: &Tx<'_>, inc: &Incident, now: DateTime<Utc>, policy: &PagingPolicy) -> TxResult<bool> {
    if inc.rule == Rule::StoreTampered || policy.unmutable.contains(&inc.rule) {
        return Ok(false);
    }
    Ok(tx.mute(&inc.account)?.is_some_and(|m| m.active(now)))
}

/// Stores a change found by detect: paged now, or held if the account is muted.
pub(super) fn save_and_page_unless_muted(
    tx: &Tx<'_>,
    inc: &Incident,
    now: DateTime<Utc>,
    policy: &PagingPolicy,
) -> TxResult<()> {
    if muted(tx, inc, now, policy)? {
        tx.put_incident(inc)?;
        tx.hold(inc.id)
    } else {
        save_and_page(tx, inc, now)
    }
}

/// A finding that raised a live incident's severity, or one of another rule that joined it,
/// queues a message replying to the page besides the edit: editing a message makes no phone
/// ring, and a takeover joining a lesser incident must wake someone. Growth at the same
/// severity stays an edit. Held back like the page while the account is muted.
pub(super) fn ring_if_risen(
    tx: &Tx<'_>,
    inc: &mut Incident,
    before: Severity,
    rule: Rule,
    now: DateTime<Utc>,
    policy: &PagingPolicy,
) -> TxResult<()> {
    if (inc.severity <= before && rule == inc.rule) || muted(tx, inc, now, policy)? {
        return Ok(());
    }
    let what = if rule == inc.rule {
        format!(
            "severity rose from {} to {}",
            before.as_str().to_uppercase(),
            inc.severity.as_str().to_uppercase()
        )
    } else {
        format!(
            "a {rule} finding joined it ({})",
            inc.severity.as_str().to_uppercase()
        )
    };
    let text = format!(
        "🔺 Incident #{}: {what} — {} on {}. The page above is updated; press Ack there or send /ack {}.",
        inc.id, inc.rule, inc.account, inc.id
    );
    tx.enqueue_ring(inc.id, text, now)?;
    let action = Action::Rang {
        from: before,
        to: inc.severity,
        rule,
    };
    inc.event(tx, now, "tocsin", action)?;
    tx.put_incident(inc)
}

/// `since`: the incident's evidence version once this finding is in it.
fn member(f: &Finding, since: u32) -> Member {
    let fingerprint = match &f.evidence {
        Evidence::Post { fingerprint, .. } | Evidence::PostEdited { fingerprint, .. } => {
            Some(fingerprint.clone())
        }
        Evidence::Profile { .. }
        | Evidence::Channel { .. }
        | Evidence::Mailbox { .. }
        | Evidence::Mail(_)
        | Evidence::SecurityNotice(_) => None,
    };
    Member {
        object: f.object.clone(),
        fingerprint,
        since,
        approved: false,
    }
}

/// Opens an incident for a new finding, folds it into the live one with the same key, or into
/// the live burst of the same account and rule.
pub(super) fn upsert(
    tx: &Tx<'_>,
    f: &Finding,
    now: DateTime<Utc>,
    group_window: std::time::Duration,
    policy: &PagingPolicy,
) -> TxResult<Recorded> {
    let key = dedup_key(&f.account, f.rule, &f.object);
    let digest = f.evidence.digest();
    if let Some(mut inc) = tx.incident_by_key(&key)? {
        if inc.evidence_digest == digest {
            return Ok(match inc.state {
                State::Resolved => Recorded::AlreadyJudged(inc.id),
                _ => Recorded::Nothing,
            });
        }
        if inc.state != State::Resolved {
            let before = inc.severity;
            inc.evidence = f.evidence.clone();
            inc.evidence_digest = digest;
            inc.severity = inc.severity.max(f.severity);
            inc.findings += 1;
            // New content is a new member for the pages: one shown before did not show it.
            let since = inc.version();
            if let Some(m) = inc.members.iter_mut().find(|m| m.object == f.object) {
                *m = member(f, since);
            }
            // A vote approved the evidence its voter saw; new evidence needs new votes, or an
            // intruder could swap the content between the first and the second approval.
            inc.votes.clear();
            inc.event(tx, now, "tocsin", Action::Updated)?;
            save_and_page_unless_muted(tx, &inc, now, policy)?;
            ring_if_risen(tx, &mut inc, before, f.rule, now, policy)?;
            return Ok(Recorded::Updated(inc.id));
        }
    }
    if groups(f.rule) && !group_window.is_zero() {
        let burst = tx
            .incident_by_key(&group_key(&f.account, f.rule))?
            .filter(|inc| {
                inc.state != State::Resolved
                    && (now - inc.updated_at).to_std().unwrap_or_default() <= group_window
            });
        if let Some(mut inc) = burst {
            let before = inc.severity;
            inc.evidence = f.evidence.clone();
            inc.evidence_digest = digest;
            inc.severity = inc.severity.max(f.severity);
            inc.findings += 1;
            inc.members.push(member(f, inc.version()));
            // Approve approves every member: votes cast before this one joined do not cover it.
            inc.votes.clear();
            inc.event(tx, now, "tocsin", Action::Updated)?;
            save_and_page_unless_muted(tx, &inc, now, policy)?;
            ring_if_risen(tx, &mut inc, before, f.rule, now, policy)?;
            tx.index_incident(&key, inc.id)?;
            return Ok(Recorded::Updated(inc.id));
        }
    }
    let id = tx.next_incident_id()?;
    let mut inc = Incident {
        id,
        rule: f.rule,
        severity: f.severity,
        account: f.account.clone(),
        object: f.object.clone(),
        state: State::Open,
        resolution: None,
        evidence: f.evidence.clone(),
        evidence_digest: digest,
        findings: 1,
        opened_at: now,
        changed_at: f.changed_at,
        updated_at: now,
        acked_by: None,
        resolved_by: None,
        timeline: Vec::new(),
        page: None,
        members: if groups(f.rule) {
            vec![member(f, 1)]
        } else {
            Vec::new()
        },
        reminders: 0,
        last_reminder_at: None,
        tier: 0,
        votes: Vec::new(),
        takedown_started: None,
    };
    inc.event(tx, now, "tocsin", Action::Opened)?;
    save_and_page_unless_muted(tx, &inc, now, policy)?;
    if groups(f.rule) {
        tx.index_incident(&group_key(&f.account, f.rule), id)?;
    }
    Ok(Recorded::Opened(id))
}

#[cfg(test)]
mod tests;
