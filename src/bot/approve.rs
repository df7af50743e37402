//! `/approve N`: "it was us". The post or profile value joins the approved log and the incident
//! is resolved, so the same content does not page again. Where `paging.approve_quorum` asks for
//! several responders, each approval is a vote until enough different responders agree.

use super::{BotContext, Command, Seen, incident_arg, outcome, seen_version};
use crate::{
    incidents::ActionError,
    model::{Actor, State},
};

pub const USAGE: &str = "/approve N — it was us: approve what incident N found";

pub fn parse(args: &[&str]) -> Command {
    incident_arg(args).map_or(Command::Usage(USAGE), |id| {
        Command::Approve(id, Seen::Delivered)
    })
}

pub async fn apply(ctx: &BotContext, id: u64, seen: Seen, who: &Actor) -> String {
    let seen = match seen_version(ctx, id, seen).await {
        Ok(v) => v,
        Err(refusal) => return refusal,
    };
    let pressed = ctx.incidents.approve_seen(id, who, Some(seen)).await;
    if let Err(ActionError::Changed { .. }) = pressed {
        super::repost(ctx, id).await;
    }
    let newer = pressed.as_ref().map_or(0, |p| p.newer);
    let reply = outcome(pressed.map(|p| p.incident), |inc| {
        if inc.state == State::Resolved {
            return format!(
                "Incident #{} approved by {who}; recorded in the approved log.",
                inc.id
            );
        }
        let votes = inc.approve_votes().count();
        if votes == 0 {
            return format!(
                "Incident #{}: what the page showed is approved by {who}.",
                inc.id
            );
        }
        let needed = inc.approve_votes().map(|v| v.needed).max().unwrap_or(1);
        format!(
            "Approval of incident #{} by {who} recorded ({votes}/{needed}); another responder must confirm.",
            inc.id
        )
    });
    with_newer(reply, newer)
}

/// Tells the responder what their press left out.
pub(super) fn with_newer(reply: String, newer: usize) -> String {
    if newer == 0 {
        return reply;
    }
    format!("{reply} {newer} newer posts not included: see the new page.")
}
