//! What responders do to an incident: acknowledge, approve (with its quorum), take down (with
//! its quorum and the platform's answers), resolve. Each is one transaction that changes the
//! incident, writes its timeline and queues the page.

use std::time::Duration;

use super::{
    ActionError, Incidents, Pressed, TAKEDOWN_STALE, TakedownStart, Timeline, save_and_page,
};
use crate::{
    model::{Action, Actor, Evidence, Incident, Member, Resolution, Rule, State, VoteAction},
    store::{ApprovedEntry, Lift, TxResult, abort},
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
    /// or setting does not page again, and resolves the incident. As [`Incidents::approve_seen`]
    /// on the incident as it is now (held mail released from the command line of the MTA).
    pub async fn approve(&self, id: u64, who: &Actor) -> Result<Incident, ActionError> {
        Ok(self
            .approve_seen(id, who, None, BulkTerms::default())
            .await?
            .incident)
    }

    /// An approval pressed on a page of evidence version `seen` (None: the incident as it is).
    /// It approves only what that page showed, and what every earlier vote's page showed: the
    /// members of a burst that joined later stay open, unapproved, and the incident's current
    /// state is sent as a new message, which becomes its page. Evidence other than a burst
    /// that changed since the page is not approved at all ([`ActionError::Changed`]). Bulk mail
    /// is approved on `terms` (see [`BulkTerms`]).
    pub async fn approve_seen(
        &self,
        id: u64,
        who: &Actor,
        seen: Option<u32>,
        terms: BulkTerms,
    ) -> Result<Pressed, ActionError> {
        self.act(id, |tx, mut inc, now| {
            if inc.state == State::Resolved {
                return abort(already_resolved(&inc));
            }
            check_shown(&inc, seen)?;
            let by = who.to_string();
            let mut needed = self.policy.approve_quorum(inc.severity);
            if self.still_blind(&inc) {
                needed = needed.max(super::BLIND_QUORUM);
            }
            if needed > 1 {
                let Ok(waiting) = inc.cast_vote(VoteAction::Approve, who, now, needed, seen) else {
                    return abort(ActionError::AlreadyVoted { id });
                };
                if let Some(votes) = waiting {
                    let action = Action::ApprovalVote {
                        votes,
                        needed,
                        seen,
                    };
                    inc.event(tx, now, &by, action).lift()?;
                    save_and_page(tx, &inc, now).lift()?;
                    let newer = inc.shown(seen).newer;
                    if newer > 0 {
                        tx.enqueue_repost(id, now).lift()?;
                    }
                    return Ok(Pressed {
                        incident: inc,
                        newer,
                    });
                }
            }
            let reach = inc.reach(VoteAction::Approve, seen);
            check_shown(&inc, reach)?;
            let shown = inc.shown(reach);
            let note = Some(format!("incident #{id}"));
            if shown.newer > 0 {
                // Only what every voter saw: the burst stays open with its newer members.
                let posts: Vec<String> = shown.members.iter().map(|m| m.object.clone()).collect();
                for m in shown.members {
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
                for m in &mut inc.members {
                    m.approved |= posts.contains(&m.object);
                }
                inc.votes.retain(|v| v.action != VoteAction::Approve);
                let newer = shown.newer;
                inc.event(tx, now, &by, Action::ApprovedShown { posts, newer })
                    .lift()?;
                save_and_page(tx, &inc, now).lift()?;
                tx.enqueue_repost(id, now).lift()?;
                return Ok(Pressed {
                    incident: inc,
                    newer,
                });
            }
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
                    // A burst is approved as a whole: every post in it not approved yet, by
                    // its content.
                    let members = if inc.members.is_empty() {
                        vec![Member {
                            object: post_id.clone(),
                            fingerprint: Some(fingerprint.clone()),
                            since: 0,
                            approved: false,
                        }]
                    } else {
                        shown.members
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
            inc.votes.retain(|v| v.action != VoteAction::Resolve);
            inc.event(tx, now, &by, Action::Approved).lift()?;
            save_and_page(tx, &inc, now).lift()?;
            announce_resolution(tx, &inc, now).lift()?;
            Ok(Pressed {
                incident: inc,
                newer: 0,
            })
        })
        .await
    }

    /// A responder asks for the incident's posts to be deleted, from a page of evidence
    /// version `seen` (None: the incident as it is): only the posts that page (and every
    /// earlier vote's page) showed are deleted. Below `takedown_quorum` the press is a vote;
    /// the press that reaches it marks the takedown as started in the same transaction, so the
    /// platform is called once per quorum however many presses race.
    pub async fn begin_takedown(
        &self,
        id: u64,
        who: &Actor,
        seen: Option<u32>,
    ) -> Result<TakedownStart, ActionError> {
        let stale = chrono::Duration::from_std(TAKEDOWN_STALE).unwrap_or_default();
        self.act(id, |tx, mut inc, now| {
            if inc.state == State::Resolved {
                return abort(already_resolved(&inc));
            }
            let all = inc.takedown_targets();
            if all.is_empty() {
                return abort(ActionError::NotAPost { id });
            }
            if inc.takedown_started.is_some_and(|at| now - at < stale) {
                return abort(ActionError::TakedownInProgress { id });
            }
            if inc.takedown_targets_seen(seen).is_empty() {
                return abort(ActionError::Changed { id });
            }
            let by = who.to_string();
            let needed = self.policy.takedown_quorum();
            if needed > 1 {
                let Ok(waiting) = inc.cast_vote(VoteAction::Takedown, who, now, needed, seen)
                else {
                    return abort(ActionError::AlreadyVotedTakedown { id });
                };
                if let Some(votes) = waiting {
                    let action = Action::TakedownVote {
                        votes,
                        needed,
                        seen,
                    };
                    inc.event(tx, now, &by, action).lift()?;
                    save_and_page(tx, &inc, now).lift()?;
                    let newer = all.len() - inc.takedown_targets_seen(seen).len();
                    if newer > 0 {
                        tx.enqueue_repost(id, now).lift()?;
                    }
                    return Ok(TakedownStart::Waiting {
                        incident: inc,
                        newer,
                    });
                }
            }
            let targets = inc.takedown_targets_seen(inc.reach(VoteAction::Takedown, seen));
            if targets.is_empty() {
                return abort(ActionError::Changed { id });
            }
            let newer = all.len() - targets.len();
            inc.votes.retain(|v| v.action != VoteAction::Takedown);
            inc.takedown_started = Some(now);
            let posts = targets.iter().map(|(p, _)| p.clone()).collect();
            inc.event(tx, now, &by, Action::TakedownStarted { posts })
                .lift()?;
            save_and_page(tx, &inc, now).lift()?;
            if newer > 0 {
                tx.enqueue_repost(id, now).lift()?;
            }
            Ok(TakedownStart::Go {
                incident: inc,
                targets,
                newer,
            })
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
            // A takedown from an older page leaves the newer posts up: still open.
            let all = inc
                .takedown_targets()
                .iter()
                .all(|(p, _)| results.iter().any(|(r, _)| r == p));
            if gone && all && !results.is_empty() && inc.state != State::Resolved {
                let resolution = Resolution::Contained;
                inc.state = State::Resolved;
                inc.resolution = Some(resolution);
                inc.resolved_by = Some(who.clone());
                inc.votes.retain(|v| v.action != VoteAction::Resolve);
                inc.event(tx, now, &by, Action::Resolved { resolution })
                    .lift()?;
                announce_resolution(tx, &inc, now).lift()?;
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
            // voted on like an approval. "Contained" hides nothing and stays one press, but
            // for a source still blind: closing that hides that tocsin cannot see.
            let false_alarm = resolution == Resolution::FalseAlarm;
            let mut needed = if false_alarm {
                self.policy.resolve_quorum(inc.severity)
            } else {
                1
            };
            if self.still_blind(&inc) {
                needed = needed.max(super::BLIND_QUORUM);
            }
            if needed > 1 {
                let (vote, already) = if false_alarm {
                    let already = ActionError::AlreadyVotedFalseAlarm { id };
                    (VoteAction::FalseAlarm, already)
                } else {
                    (VoteAction::Resolve, ActionError::AlreadyVotedResolve { id })
                };
                let Ok(waiting) = inc.cast_vote(vote, who, now, needed, None) else {
                    return abort(already);
                };
                if let Some(votes) = waiting {
                    let action = if false_alarm {
                        Action::FalseAlarmVote { votes, needed }
                    } else {
                        Action::ResolveVote { votes, needed }
                    };
                    inc.event(tx, now, &who.to_string(), action).lift()?;
                    save_and_page(tx, &inc, now).lift()?;
                    return Ok(inc);
                }
            }
            inc.state = State::Resolved;
            inc.resolution = Some(resolution);
            inc.resolved_by = Some(who.clone());
            inc.votes.retain(|v| v.action != VoteAction::Resolve);
            inc.event(tx, now, &who.to_string(), Action::Resolved { resolution })
                .lift()?;
            super::mail::forget(tx, &inc).lift()?;
            save_and_page(tx, &inc, now).lift()?;
            announce_resolution(tx, &inc, now).lift()?;
            Ok(inc)
        })
        .await
    }
}

/// Refuses a press from a page of version `seen` when nothing it showed is left to act on: a
/// burst whose shown members are all approved already, or other evidence (but mail, whose
/// approval is of its sender or campaign) that changed since.
fn check_shown(inc: &Incident, seen: Option<u32>) -> TxResult<(), ActionError> {
    let changed = if inc.members.is_empty() {
        let stale = seen.is_some_and(|v| v < inc.version());
        stale && !matches!(inc.evidence, Evidence::Mail(_))
    } else {
        inc.shown(seen).members.is_empty()
    };
    if changed {
        return abort(ActionError::Changed { id: inc.id });
    }
    Ok(())
}

/// A critical incident's resolution is announced as a message of its own, replying to its
/// page: an edit rings nobody, and a closed critical page is what an intruder holding one
/// phone would want nobody to notice.
fn announce_resolution(
    tx: &crate::store::Tx<'_>,
    inc: &Incident,
    now: chrono::DateTime<chrono::Utc>,
) -> TxResult<()> {
    // Telegram's own outage is never queued for Telegram.
    if inc.severity != crate::model::Severity::Critical || inc.rule == Rule::TelegramDown {
        return Ok(());
    }
    let how = inc.resolution.map_or("resolved", Resolution::as_str);
    let by = inc
        .resolved_by
        .as_ref()
        .map_or_else(|| "someone".into(), Actor::to_string);
    let text = format!(
        "✅ Incident #{} (CRITICAL · {} on {}) resolved ({how}) by {by}.",
        inc.id, inc.rule, inc.account
    );
    tx.enqueue_announcement(inc.id, text, now)?;
    Ok(())
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
