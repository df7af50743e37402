//! `/approve N`: "it was us". The post or profile value joins the approved log and the incident
//! is resolved, so the same content does not page again. Where `paging.approve_quorum` asks for
//! several responders, each approval is a vote until enough different responders agree.

use super::{BotContext, Command, incident_arg, outcome};
use crate::model::{Actor, State};

pub const USAGE: &str = "/approve N — it was us: approve what incident N found";

pub fn parse(args: &[&str]) -> Command {
    incident_arg(args).map_or(Command::Usage(USAGE), Command::Approve)
}

pub async fn apply(ctx: &BotContext, id: u64, who: &Actor) -> String {
    outcome(ctx.incidents.approve(id, who).await, |inc| {
        if inc.state != State::Resolved {
            let votes = inc.approve_votes().count();
            let needed = inc.approve_votes().map(|v| v.needed).max().unwrap_or(1);
            return format!(
                "Approval of incident #{} by {who} recorded ({votes}/{needed}); another responder must confirm.",
                inc.id
            );
        }
        format!(
            "Incident #{} approved by {who}; recorded in the approved log.",
            inc.id
        )
    })
}
