//! Messages the milter held at the MTA: what Release and Discard did, in the timeline. The
//! helper is called by the bot (incidents never import `contain`); this records its answer and,
//! when it acted, forgets the incident's held ids so the page drops the buttons.

use super::{ActionError, Incidents, Timeline, save_and_page};
use crate::{
    model::{Action, Actor, Evidence, Incident},
    store::Lift,
};

/// The helper's answer for one Release or Discard.
pub struct HeldAnswer {
    /// `release` or `discard`.
    pub op: &'static str,
    pub messages: u64,
    pub ok: bool,
    pub detail: String,
}

impl Incidents {
    /// Writes the helper's answer in the incident's timeline; on success the held ids are
    /// cleared (they are in the active queue, or gone).
    pub async fn held_mail(
        &self,
        id: u64,
        who: &Actor,
        answer: &HeldAnswer,
    ) -> Result<Incident, ActionError> {
        self.act(id, |tx, mut inc, now| {
            if answer.ok
                && let Evidence::Mail(m) = &mut inc.evidence
            {
                m.held.clear();
            }
            let action = Action::HeldMail {
                op: answer.op.to_owned(),
                messages: answer.messages,
                ok: answer.ok,
                detail: answer.detail.clone(),
            };
            inc.event(tx, now, &who.to_string(), action).lift()?;
            save_and_page(tx, &inc, now).lift()?;
            Ok(inc)
        })
        .await
    }
}
