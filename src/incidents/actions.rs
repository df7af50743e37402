//! What responders do to an incident: acknowledge, approve (with its quorum), take down (with
//! its quorum and the platform's answers), resolve. Each is one transaction that changes the
//! incident, writes its timeline and queues the page.

use std::time::Duration;

use super::{ActionError, Incidents, TAKEDOWN_STALE, TakedownStart, Timeline, save_and_page};
use crate::{
    model::{Action, Actor, Evidence, Incident, Member, Resolution, Rule, State, VoteAction},
    store::{ApprovedEntry, Lift, abort},
};

/// How long an approval of bulk mail lasts unless the responder says otherwise.
pub const BULK_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// What `/approve` grants an `email.unapproved_bulk` sender. An approval from the chat is bounded
/// by default: a phone in the wrong hands must not be able to approve a spammer for ever with one
/// press.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkTerms {
    /// Envelope recipients the sender may reach within the window; by default twice what the
    /// incident saw.
    pub cap: Option<u64>,
    /// How long the approval lasts, and the span the cap counts over; by default [`BULK_WINDOW`].
    pub window: Option<Duration>,
}

impl BulkTerms {
    /// The cap and window for an incident that saw `observed` recipients. None for a campaign
    /// the mail names, approved without terms: the company's tag says which campaign is theirs.
    pub fn grant(&self, tagged: bool, observed: u64) -> Option<(u64, Duration)> {
        if tagged && *self == BulkTerms::default() {
            return None;
        }
        let cap = self.cap.unwrap_or(observed.saturating_mul(2).max(1));
        Some((cap, self.window.unwrap_or(BULK_WINDOW)))
    }
}

/// `7d`, `36h`, `90m`: a window as the approved log keeps it (read back with humantime).
pub fn compact_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl Incidents {
    pub async fn ack(&self, id: u64, who: &Actor) -> Result<Incident, ActionError> {
        self.act(id, |tx, mut inc, now| {
            match (inc.state, &inc.acked_by) {
                (State::Resolved, _) => return abort(already_resolved(&inc)),
                (State::Acked, Some(by)) => {
                    return abort(ActionError::AlreadyAcked {
                        id,
                        by: by.to_string(),
                    });
                }
                _ => {}
            }
            inc.state = State::Acked;
            inc.acked_by = Some(who.clone());
            inc.event(tx, now, &who.to_string(), Action::Acked).lift()?;
            save_and_page(tx, &inc, now).lift()?;
            Ok(inc)
        })
        .await
    }

    /// "It was us": records the approval that makes the finding legitimate, so the same content
    /// or setting does not page again, and resolves the incident.
    pub async fn approve(&self, id: u64, who: &Actor) -> Result<Incident, ActionError> {
        self.approve_with(id, who, BulkTerms::default()).await
    }

    /// [`Incidents::approve`], with the terms a bulk-mail approval grants.
    pub async fn approve_with(
        &self,
        id: u64,
        who: &Actor,
        terms: BulkTerms,
    ) -> Result<Incident, ActionError> {
        self.act(id, |tx, mut inc, now| {
            if inc.state == State::Resolved {
                return abort(already_resolved(&inc));
            }
            let by = who.to_string();
            let needed = self.policy.approve_quorum(inc.severity);
            if needed > 1 {
                let Ok(waiting) = inc.cast_vote(VoteAction::Approve, who, now, needed) else {
                    return abort(ActionError::AlreadyVoted { id });
                };
                if let Some(votes) = waiting {
                    let action = Action::ApprovalVote { votes, needed };
                    inc.event(tx, now, &by, action).lift()?;
                    save_and_page(tx, &inc, now).lift()?;
                    return Ok(inc);
                }
            }
            let note = Some(format!("incident #{id}"));
            match &inc.evidence {
                Evidence::Post {
                    post_id,
                    fingerprint,
                    ..
                }
                | Evidence::PostEdited {
                    post_id,
                    fingerprint,
                    ..
                } => {
                    // A burst is approved as a whole: every post in it, by its content.
                    let members = if inc.members.is_empty() {
                        vec![Member {
                            object: post_id.clone(),
                            fingerprint: Some(fingerprint.clone()),
                        }]
                    } else {
                        inc.members.clone()
                    };
                    for m in members {
                        let entry = ApprovedEntry::ApprovedPost {
                            account: inc.account.clone(),
                            fingerprint: m.fingerprint,
                            post_id: Some(m.object),
                            expires_at: None,
                            by: by.clone(),
                            note: note.clone(),
                        };
                        tx.append_log(entry, now).lift()?;
                    }
                }
                Evidence::Profile { changes } => {
                    for (field, change) in changes {
                        tx.set_baseline(&inc.account, field, &change.after, &by, now)
                            .lift()?;
                    }
                }
                // Nothing to approve: the channel either works again or it does not; a
                // mailbox setting is approved by being left as it is.
                Evidence::Channel { .. } | Evidence::Mailbox { .. } => {}
                // "This bulk send is ours": its campaign joins the approved log, for the
                // terms granted (see `BulkTerms`).
                Evidence::Mail(m) if inc.rule == Rule::UnapprovedBulk => {
                    let grant = terms.grant(m.campaign.is_some(), m.recipients);
                    let entry = ApprovedEntry::ApprovedCampaign {
                        sender: m.sender.clone(),
                        campaign: m.campaign.clone().unwrap_or_else(|| "*".into()),
                        max_recipients: grant.map(|(cap, _)| cap),
                        window: grant.map(|(_, w)| compact_duration(w)),
                        by: by.clone(),
                        expires_at: grant
                            .and_then(|(_, w)| chrono::Duration::from_std(w).ok())
                            .map(|w| now + w),
                    };
                    tx.append_log(entry, now).lift()?;
                }
                // A leak or a security notice that was expected: nothing to remember.
                Evidence::Mail(_) | Evidence::SecurityNotice(_) => {}
            }
            inc.state = State::Resolved;
            inc.resolution = Some(Resolution::Approved);
            inc.resolved_by = Some(who.clone());
            inc.event(tx, now, &by, Action::Approved).lift()?;
            save_and_page(tx, &inc, now).lift()?;
            Ok(inc)
        })
        .await
    }

    /// A responder asks for the incident's posts to be deleted. Below `takedown_quorum` the
    /// press is a vote; the press that reaches it marks the takedown as started in the same
    /// transaction, so the platform is called once per quorum however many presses race.
    pub async fn begin_takedown(&self, id: u64, who: &Actor) -> Result<TakedownStart, ActionError> {
        let stale = chrono::Duration::from_std(TAKEDOWN_STALE).unwrap_or_default();
        self.act(id, |tx, mut inc, now| {
            if inc.state == State::Resolved {
                return abort(already_resolved(&inc));
            }
            let targets = inc.takedown_targets();
            if targets.is_empty() {
                return abort(ActionError::NotAPost { id });
            }
            if inc.takedown_started.is_some_and(|at| now - at < stale) {
                return abort(ActionError::TakedownInProgress { id });
            }
            let by = who.to_string();
            let needed = self.policy.takedown_quorum();
            if needed > 1 {
                let Ok(waiting) = inc.cast_vote(VoteAction::Takedown, who, now, needed) else {
                    return abort(ActionError::AlreadyVotedTakedown { id });
                };
                if let Some(votes) = waiting {
                    let action = Action::TakedownVote { votes, needed };
                    inc.event(tx, now, &by, action).lift()?;
                    save_and_page(tx, &inc, now).lift()?;
                    return Ok(TakedownStart::Waiting(inc));
                }
            }
            inc.votes.retain(|v| v.action != VoteAction::Takedown);
            inc.takedown_started = Some(now);
            let posts = targets.iter().map(|(p, _)| p.clone()).collect();
            inc.event(tx, now, &by, Action::TakedownStarted { posts })
                .lift()?;
            save_and_page(tx, &inc, now).lift()?;
            Ok(TakedownStart::Go(inc))
        })
        .await
    }

    /// Records the platform's answers of a takedown started by [`Incidents::begin_takedown`].
    /// When every post is deleted or already gone the incident is resolved as contained.
    pub async fn finish_takedown(
        &self,
        id: u64,
        who: &Actor,
        results: &[(String, crate::model::TakedownOutcome)],
    ) -> Result<Incident, ActionError> {
        use crate::model::TakedownOutcome as T;
        self.act(id, |tx, mut inc, now| {
            let by = who.to_string();
            for (post_id, outcome) in results {
                let action = Action::TakedownResult {
                    post_id: post_id.clone(),
                    outcome: outcome.clone(),
                };
                inc.event(tx, now, &by, action).lift()?;
            }
            inc.takedown_started = None;
            let gone = results
                .iter()
                .all(|(_, o)| matches!(o, T::Deleted | T::AlreadyGone));
            if gone && !results.is_empty() && inc.state != State::Resolved {
                let resolution = Resolution::Contained;
                inc.state = State::Resolved;
                inc.resolution = Some(resolution);
                inc.resolved_by = Some(who.clone());
                inc.event(tx, now, &by, Action::Resolved { resolution })
                    .lift()?;
            }
            save_and_page(tx, &inc, now).lift()?;
            Ok(inc)
        })
        .await
    }

    pub async fn resolve(
        &self,
        id: u64,
        who: &Actor,
        resolution: Resolution,
    ) -> Result<Incident, ActionError> {
        self.act(id, |tx, mut inc, now| {
            if inc.state == State::Resolved {
                return abort(already_resolved(&inc));
            }
            // "False alarm" makes the same evidence never page again: a silencing action,
            // voted on like an approval. "Contained" hides nothing and stays one press.
            let needed = self.policy.resolve_quorum(inc.severity);
            if resolution == Resolution::FalseAlarm && needed > 1 {
                let Ok(waiting) = inc.cast_vote(VoteAction::FalseAlarm, who, now, needed) else {
                    return abort(ActionError::AlreadyVotedFalseAlarm { id });
                };
                if let Some(votes) = waiting {
                    let action = Action::FalseAlarmVote { votes, needed };
                    inc.event(tx, now, &who.to_string(), action).lift()?;
                    save_and_page(tx, &inc, now).lift()?;
                    return Ok(inc);
                }
            }
            inc.state = State::Resolved;
            inc.resolution = Some(resolution);
            inc.resolved_by = Some(who.clone());
            inc.event(tx, now, &who.to_string(), Action::Resolved { resolution })
                .lift()?;
            super::mail::forget(tx, &inc).lift()?;
            save_and_page(tx, &inc, now).lift()?;
            Ok(inc)
        })
        .await
    }
}

fn already_resolved(inc: &Incident) -> ActionError {
    ActionError::AlreadyResolved {
        id: inc.id,
        resolution: inc.resolution.map_or("resolved", Resolution::as_str),
        by: inc
            .resolved_by
            .as_ref()
            .map_or_else(|| "someone".into(), Actor::to_string),
    }
}
