//! Who gets paged, and how many responders it takes to approve: mutes and quorum.
//!
//! A mute is per account, not per incident: an account under planned maintenance (a rebrand, a
//! migration) keeps producing findings that responders already expect. Findings are still
//! recorded (nothing is lost, the timeline and `/incidents` show them); only the page is held,
//! and sent when the mute ends. Rules listed as unmutable page regardless, because some changes
//! (a rogue post) are never part of planned work.
//!
//! A quorum guards "it was us" on severe incidents: an intruder holding one responder's phone
//! could otherwise approve their own rogue post and make it legitimate.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;

use super::{Incidents, account_event, muted, save_and_page};
use crate::{
    model::{Action, Actor, Mute, Rule, Severity, State},
    store::{Lift, StoreError, abort},
};

/// The longest mute accepted: a forgotten mute must not silence an account for good.
pub const MAX_MUTE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The paging configuration as the incidents need it.
#[derive(Debug, Clone, Default)]
pub struct PagingPolicy {
    /// Configured account names: a mute of anything else is refused.
    pub accounts: BTreeSet<String>,
    pub unmutable: Vec<Rule>,
    pub approve_quorum: BTreeMap<Severity, u8>,
    /// Distinct responders needed to resolve as `false-alarm`, per severity; 1 when not listed.
    pub resolve_quorum: BTreeMap<Severity, u8>,
    /// Distinct responders needed to take a post down (`paging.takedown_quorum`); 0 reads as 1.
    pub takedown_quorum: u8,
    /// The longest mute one responder sets alone; `None` (one responder on call) sets any.
    pub mute_without_quorum: Option<std::time::Duration>,
    /// Page a deleted approved post (medium) instead of only recording it.
    pub page_approved_deletions: bool,
}

impl PagingPolicy {
    /// The policy the daemon runs with. The silencing quorums default to two responders on
    /// critical incidents once two are on call; with one, they cannot, and the start says so.
    pub fn from_config(config: &crate::config::Config) -> PagingPolicy {
        let paging = &config.paging;
        let two = config.telegram.responders.len() >= 2;
        let or_default = |quorum: &BTreeMap<Severity, u8>| {
            if quorum.is_empty() && two {
                BTreeMap::from([(Severity::Critical, 2)])
            } else {
                quorum.clone()
            }
        };
        if !two {
            tracing::warn!(
                "one responder is on call: approvals, long mutes and false-alarm resolutions \
                 take one press, so one stolen phone can silence tocsin; add a second responder"
            );
        }
        PagingPolicy {
            accounts: config.accounts.iter().map(|a| a.name.clone()).collect(),
            unmutable: paging.unmutable.clone(),
            approve_quorum: or_default(&paging.approve_quorum),
            resolve_quorum: or_default(&paging.resolve_quorum),
            takedown_quorum: paging.takedown_quorum,
            mute_without_quorum: two.then_some(paging.mute_without_quorum),
            page_approved_deletions: paging.page_approved_deletions,
        }
    }

    /// Distinct responders needed to approve an incident of this severity.
    pub fn approve_quorum(&self, severity: Severity) -> u8 {
        self.approve_quorum.get(&severity).copied().unwrap_or(1)
    }

    /// Distinct responders needed to resolve an incident of this severity as a false alarm.
    pub fn resolve_quorum(&self, severity: Severity) -> u8 {
        self.resolve_quorum.get(&severity).copied().unwrap_or(1)
    }

    /// Distinct responders needed to take a post down.
    pub fn takedown_quorum(&self) -> u8 {
        self.takedown_quorum.max(1)
    }
}

/// A long mute one responder asked for, waiting for a second: kept in memory only, so a restart
/// forgets it and the mute has to be asked for again (failing towards paging).
#[derive(Debug, Clone)]
pub(super) struct MuteRequest {
    by: Actor,
    at: chrono::DateTime<Utc>,
    duration: std::time::Duration,
}

/// How long a request for a long mute waits for its second responder.
pub const MUTE_REQUEST_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Why a mute or unmute did not happen; answered in the chat as it is.
#[derive(Debug, thiserror::Error)]
pub enum MuteError {
    #[error("there is no account `{account}`; known accounts: {known}")]
    UnknownAccount { account: String, known: String },
    #[error("a mute lasts at most 7 days; {0} is longer")]
    TooLong(String),
    /// Not an error of the responder's: the mute is recorded as asked for and waits.
    #[error(
        "a mute longer than {limit} needs a second responder: {account} stays paged until \
         another responder sends /mute {account} {duration}"
    )]
    NeedsSecond {
        account: String,
        limit: String,
        duration: String,
    },
    #[error("`{0}` is not muted")]
    NotMuted(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// "second", "third": how the page names the responder it is waiting for.
pub fn ordinal(n: usize) -> String {
    match n {
        1 => "first".into(),
        2 => "second".into(),
        3 => "third".into(),
        4 => "fourth".into(),
        5 => "fifth".into(),
        n => format!("{n}th"),
    }
}

impl Incidents {
    /// Holds the account's pages until `now + duration`; recorded in the timeline chain as an
    /// account-level event. A second mute replaces the first.
    pub async fn mute(
        &self,
        account: &str,
        duration: std::time::Duration,
        who: &Actor,
    ) -> Result<Mute, MuteError> {
        self.known_account(account)?;
        let too_long = || MuteError::TooLong(humantime::format_duration(duration).to_string());
        if duration > MAX_MUTE {
            return Err(too_long());
        }
        let now = Utc::now();
        let duration = self.mute_quorum(account, duration, who, now)?;
        let until = chrono::Duration::from_std(duration)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(too_long)?;
        let mute = Mute {
            account: account.to_owned(),
            by: who.clone(),
            at: now,
            until,
        };
        self.store.transact::<_, StoreError>(|tx| {
            tx.put_mute(&mute)?;
            account_event(tx, account, who, Action::Muted { until }, now)
        })?;
        self.store.flush().await?;
        Ok(mute)
    }

    /// A mute longer than `paging.mute_without_quorum` is a vote: the first responder's request
    /// waits (for [`MUTE_REQUEST_TTL`]) for a second, different one. Returns the duration to
    /// mute for: the shorter of the two requests, so neither responder gets more than they
    /// asked for.
    fn mute_quorum(
        &self,
        account: &str,
        duration: std::time::Duration,
        who: &Actor,
        now: chrono::DateTime<Utc>,
    ) -> Result<std::time::Duration, MuteError> {
        let Some(limit) = self.policy.mute_without_quorum else {
            return Ok(duration);
        };
        let mut requests = self
            .mute_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if duration <= limit {
            requests.remove(account);
            return Ok(duration);
        }
        let ttl = chrono::Duration::from_std(MUTE_REQUEST_TTL).unwrap_or_default();
        match requests.get(account) {
            Some(r) if r.by.id != who.id && now - r.at < ttl => {
                let granted = r.duration.min(duration);
                tracing::info!(account, first = %r.by, second = %who, "long mute confirmed");
                requests.remove(account);
                Ok(granted)
            }
            _ => {
                tracing::warn!(account, by = %who, ?duration, "long mute waits for a second responder");
                requests.insert(
                    account.to_owned(),
                    MuteRequest {
                        by: who.clone(),
                        at: now,
                        duration,
                    },
                );
                Err(MuteError::NeedsSecond {
                    account: account.to_owned(),
                    limit: humantime::format_duration(limit).to_string(),
                    duration: humantime::format_duration(duration).to_string(),
                })
            }
        }
    }

    /// Lifts a mute before it expires and sends the pages it held.
    pub async fn unmute(&self, account: &str, who: &Actor) -> Result<Mute, MuteError> {
        self.known_account(account)?;
        let now = Utc::now();
        let mute = self.store.transact(|tx| {
            let Some(mute) = tx.mute(account).lift()?.filter(|m| m.active(now)) else {
                return abort(MuteError::NotMuted(account.to_owned()));
            };
            tx.remove_mute(account).lift()?;
            account_event(tx, account, who, Action::Unmuted, now).lift()?;
            Ok(mute)
        })?;
        self.release_held().await?;
        Ok(mute)
    }

    /// Pages every incident held by a mute that has ended (expired or lifted). Called by the
    /// periodic check in `app` and right after an unmute; cheap when nothing is held.
    pub async fn release_held(&self) -> Result<usize, StoreError> {
        let held = self.store.held()?;
        if held.is_empty() {
            return Ok(0);
        }
        let now = Utc::now();
        let mut released = 0;
        for id in held {
            let paged = self.store.transact(|tx| {
                let Some(inc) = tx.incident(id)? else {
                    tx.unhold(id)?;
                    return Ok(false);
                };
                if inc.state == State::Resolved {
                    tx.unhold(id)?;
                    return Ok(false);
                }
                if muted(tx, &inc, now, &self.policy)? {
                    return Ok(false);
                }
                save_and_page(tx, &inc, now)?;
                Ok(true)
            })?;
            released += usize::from(paged);
        }
        if released > 0 {
            self.store.flush().await?;
            self.wake.notify_one();
        }
        Ok(released)
    }
}
