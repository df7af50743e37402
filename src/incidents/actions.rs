//! What responders do to an incident: acknowledge, approve (with its quorum), take down (with
//! its quorum and the platform's answers), resolve. Each is one transaction that changes the
//! incident, writes its timeline and queues the page.

use super::{ActionError, Incidents, TAKEDOWN_STALE, TakedownStart, Timeline, save_and_page};
use crate::{
    model::{Action, Actor, Evidence, Incident, Member, Resolution, Rule, State, VoteAction},
    store::{ApprovedEntry, Lift, abort},
};

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
                // "This bulk send is ours": its campaign joins the approved log, uncapped.
                Evidence::Mail(m) if inc.rule == Rule::UnapprovedBulk => {
                    let entry = ApprovedEntry::ApprovedCampaign {
                        sender: m.sender.clone(),
                        campaign: m.campaign.clone().unwrap_or_else(|| "*".into()),
                        max_recipients: None,
                        window: None,
                        by: by.clone(),
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
