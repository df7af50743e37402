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
    /// Distinct responders needed to take a post down (`paging.takedown_quorum`); 0 reads as 1.
    pub takedown_quorum: u8,
    /// Page a deleted approved post (medium) instead of only recording it.
    pub page_approved_deletions: bool,
}

impl PagingPolicy {
    pub fn from_config(config: &crate::config::Config) -> PagingPolicy {
        PagingPolicy {
            accounts: config.accounts.iter().map(|a| a.name.clone()).collect(),
            unmutable: config.paging.unmutable.clone(),
            approve_quorum: config.paging.approve_quorum.clone(),
            takedown_quorum: config.paging.takedown_quorum,
            page_approved_deletions: config.paging.page_approved_deletions,
        }
    }

    /// Distinct responders needed to approve an incident of this severity.
    pub fn approve_quorum(&self, severity: Severity) -> u8 {
        self.approve_quorum.get(&severity).copied().unwrap_or(1)
    }

    /// Distinct responders needed to take a post down.
    pub fn takedown_quorum(&self) -> u8 {
        self.takedown_quorum.max(1)
    }
}

/// Why a mute or unmute did not happen; answered in the chat as it is.
#[derive(Debug, thiserror::Error)]
pub enum MuteError {
    #[error("there is no account `{account}`; known accounts: {known}")]
    UnknownAccount { account: String, known: String },
    #[error("a mute lasts at most 7 days; {0} is longer")]
    TooLong(String),
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
