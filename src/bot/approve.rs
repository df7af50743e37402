//! `/approve N`: "it was us". The post or profile value joins the approved log and the incident
//! is resolved, so the same content does not page again.

use super::{BotContext, Command, incident_arg, outcome};
use crate::incidents::Actor;

pub const USAGE: &str = "/approve N — it was us: approve what incident N found";

pub fn parse(args: &[&str]) -> Command {
    incident_arg(args).map_or(Command::Usage(USAGE), Command::Approve)
}

pub async fn apply(ctx: &BotContext, id: u64, who: &Actor) -> String {
    outcome(ctx.incidents.approve(id, who).await, |inc| {
        format!(
            "Incident #{} approved by {who}; recorded in the approved log.",
            inc.id
        )
    })
}
