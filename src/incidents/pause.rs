//! Pausing the mailer from an email incident: the request and every call's answer are timeline
//! events, written before and after the call, so the page shows "requested", then "paused" or
//! the failure, and a second press while one is in flight or after the mailer confirmed does
//! not call again.

use chrono::{DateTime, Utc};

use super::{Incidents, Timeline, save_and_page};
use crate::{
    model::{Action, Actor, Evidence, Finding, Incident, PauseCall, Rule},
    store::{Lift, StoreError, abort},
};

/// A request with no recorded answer older than this was cut short (a crash): another press
/// may call again.
const IN_FLIGHT: chrono::Duration = chrono::Duration::minutes(2);

/// Why a pause was not attempted.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("there is no incident #{0}")]
    NotFound(u64),
    #[error("incident #{id} is a {rule} incident; only email incidents pause the mailer")]
    NotMail { id: u64, rule: Rule },
    #[error("no mail kill switch is configured ([email.kill_switch])")]
    NotConfigured,
    #[error("the mailer was already paused by {by} at {}", at.format("%H:%M:%S UTC"))]
    AlreadyPaused { by: String, at: DateTime<Utc> },
    #[error("a pause requested by {by} is still in progress")]
    InProgress { by: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Rules whose incidents offer the kill switch.
pub fn pausable(rule: Rule) -> bool {
    matches!(rule, Rule::ExposedRecipients | Rule::UnapprovedBulk)
}

/// Where the incident's pause stands, read from its timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseState {
    None,
    Requested {
        by: String,
        at: DateTime<Utc>,
    },
    Paused {
        by: String,
        at: DateTime<Utc>,
        status: Option<u16>,
    },
    Failed {
        by: String,
        at: DateTime<Utc>,
        status: Option<u16>,
        detail: String,
        attempts: u32,
    },
}

impl PauseState {
    pub fn of(inc: &Incident) -> PauseState {
        let mut state = PauseState::None;
        for e in &inc.timeline {
            match (&e.action, &state) {
                (Action::PauseRequested, PauseState::Paused { .. }) => {}
                (Action::PauseRequested, _) => {
                    state = PauseState::Requested {
                        by: e.who.clone(),
                        at: e.at,
                    }
                }
                (
                    Action::MailerCalled {
                        attempt,
                        status,
                        detail,
                        paused,
                    },
                    PauseState::Requested { by, .. } | PauseState::Failed { by, .. },
                ) => {
                    let by = by.clone();
                    state = if *paused {
                        PauseState::Paused {
                            by,
                            at: e.at,
                            status: *status,
                        }
                    } else {
                        PauseState::Failed {
                            by,
                            at: e.at,
                            status: *status,
                            detail: detail.clone(),
                            attempts: *attempt,
                        }
                    };
                }
                _ => {}
            }
        }
        state
    }

    /// The page's line about the mailer, if it was ever asked.
    pub fn line(&self) -> Option<String> {
        let hm = |t: &DateTime<Utc>| t.format("%H:%M:%S UTC").to_string();
        let status =
            |s: &Option<u16>| s.map_or_else(|| "no answer".into(), |s| format!("HTTP {s}"));
        match self {
            PauseState::None => None,
            PauseState::Requested { by, at } => {
                Some(format!("Mailer: pause requested by {by} at {}", hm(at)))
            }
            PauseState::Paused { by, at, status: s } => Some(format!(
                "Mailer: PAUSED by {by} at {} ({})",
                hm(at),
                status(s)
            )),
            PauseState::Failed {
                by,
                at,
                status: s,
                detail,
                attempts,
            } => Some(format!(
                "Mailer: pause by {by} FAILED at {} ({}{}, {attempts} call(s)) — press again or /pause_mailer N",
                hm(at),
                status(s),
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": “{}”", crate::model::cut(detail, 120))
                }
            )),
        }
    }

    /// Whether a press now should call the mailer.
    pub fn may_press(&self) -> bool {
        matches!(self, PauseState::None | PauseState::Failed { .. })
            || matches!(self, PauseState::Requested { at, .. } if Utc::now() - *at > IN_FLIGHT)
    }
}

/// A pause in flight: every call the kill switch made, last one last.
pub type PauseFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Vec<PauseCall>> + Send + 'a>>;

/// The mail kill switch as the incidents drive it (`contain::mailer::Mailer`): one press, with
/// its retries. A trait so that the incidents, below containment, never import it.
pub trait PauseMailer: Send + Sync {
    fn pause(&self) -> PauseFuture<'_>;
}

impl Incidents {
    /// `auto_pause`: a newly opened `email.exposed_recipients` incident pauses the mailer at
    /// once, in its own task (the pipeline keeps judging meanwhile); recorded like a press, by
    /// `tocsin`. Only when the message that opened it came from an input that proved its origin
    /// (`MailEvidence::origin_proven`): whoever merely knows a webhook URL's secret must not be
    /// able to stop the company's mail; a responder still can, with the button.
    pub(super) fn auto_pause_if_due(&self, id: u64, finding: &Finding) {
        let Some(mailer) = self.auto_pause.clone() else {
            return;
        };
        if finding.rule != Rule::ExposedRecipients {
            return;
        }
        if !matches!(&finding.evidence, Evidence::Mail(m) if m.origin_proven) {
            tracing::warn!(
                incident = id,
                account = %finding.account,
                "auto_pause withheld: the message's origin is not proven; a responder can pause"
            );
            return;
        }
        let incidents = self.clone();
        tokio::spawn(async move {
            if let Err(e) = incidents
                .pause_mailer(id, &Actor::system(), mailer.as_ref())
                .await
            {
                tracing::error!(incident = id, error = %e, "auto-pause not made");
            }
        });
    }

    /// Pauses the mailer for incident `id`: records the request, calls the kill switch (with
    /// its retries), records every call and its answer, and re-renders the page each time.
    pub async fn pause_mailer(
        &self,
        id: u64,
        who: &Actor,
        mailer: &dyn PauseMailer,
    ) -> Result<(Incident, PauseState), PauseError> {
        let now = Utc::now();
        self.store.transact(|tx| {
            let Some(mut inc) = tx.incident(id).lift()? else {
                return abort(PauseError::NotFound(id));
            };
            if !pausable(inc.rule) {
                return abort(PauseError::NotMail { id, rule: inc.rule });
            }
            let state = PauseState::of(&inc);
            if !state.may_press() {
                return abort(match state {
                    PauseState::Paused { by, at, .. } => PauseError::AlreadyPaused { by, at },
                    PauseState::Requested { by, .. } => PauseError::InProgress { by },
                    _ => PauseError::NotFound(id),
                });
            }
            inc.event(tx, now, &who.to_string(), Action::PauseRequested)
                .lift()?;
            save_and_page(tx, &inc, now).lift()?;
            Ok(())
        })?;
        self.store.flush().await?;
        self.wake.notify_one();
        tracing::info!(incident = id, by = %who, "mail kill switch called");
        let calls = mailer.pause().await;
        let inc = self.store.transact(|tx| {
            let Some(mut inc) = tx.incident(id).lift()? else {
                return abort(PauseError::NotFound(id));
            };
            let at = Utc::now();
            for c in &calls {
                let action = Action::MailerCalled {
                    attempt: c.attempt,
                    status: c.status,
                    detail: c.detail.clone(),
                    paused: c.paused,
                };
                inc.event(tx, at, "kill switch", action).lift()?;
            }
            save_and_page(tx, &inc, at).lift()?;
            Ok(inc)
        })?;
        self.store.flush().await?;
        self.wake.notify_one();
        let state = PauseState::of(&inc);
        match &state {
            PauseState::Paused { .. } => tracing::info!(incident = id, "mailer paused"),
            other => tracing::warn!(incident = id, state = ?other, "mailer pause failed"),
        }
        Ok((inc, state))
    }
}
