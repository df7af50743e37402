//! `/ack N`: "I'm on it". Stops nothing, tells the other responders someone has it.

use super::{BotContext, Command, incident_arg, outcome};
use crate::model::Actor;

pub const USAGE: &str = "/ack N — acknowledge incident N";

pub fn parse(args: &[&str]) -> Command {
    incident_arg(args).map_or(Command::Usage(USAGE), Command::Ack)
}

pub async fn apply(ctx: &BotContext, id: u64, who: &Actor) -> String {
    outcome(ctx.incidents.ack(id, who).await, |inc| {
        format!("Incident #{} acknowledged by {who}.", inc.id)
    })
}
