//! `/resolve N [contained|false-alarm]`: closes an incident without approving what it found.

use super::{BotContext, Command, outcome};
use crate::model::{Actor, Resolution};

pub const USAGE: &str =
    "/resolve N [contained|false-alarm] — close incident N (default: contained)";

pub fn parse(args: &[&str]) -> Command {
    let (id, how) = match args {
        [id] => (id, Some(Resolution::Contained)),
        [id, how] => (
            id,
            match how.to_ascii_lowercase().as_str() {
                "contained" => Some(Resolution::Contained),
                "false-alarm" | "false_alarm" | "falsealarm" => Some(Resolution::FalseAlarm),
                _ => None,
            },
        ),
        _ => return Command::Usage(USAGE),
    };
    match (id.trim_start_matches('#').parse(), how) {
        (Ok(id), Some(how)) => Command::Resolve(id, how),
        _ => Command::Usage(USAGE),
    }
}

pub async fn apply(ctx: &BotContext, id: u64, how: Resolution, who: &Actor) -> String {
    outcome(ctx.incidents.resolve(id, who, how).await, |inc| {
        format!("Incident #{} resolved ({}) by {who}.", inc.id, how.as_str())
    })
}
