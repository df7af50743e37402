//! `/resolve N [contained|false-alarm]`: closes an incident without approving what it found.
//! `false-alarm` on an incident whose severity `paging.resolve_quorum` lists is a vote until
//! enough different responders agree.

use super::{BotContext, Command, outcome};
use crate::model::{Actor, Resolution, State};

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
        if inc.state != State::Resolved {
            let (votes, why) = match how {
                Resolution::FalseAlarm => (inc.false_alarm_votes().collect::<Vec<_>>(), ""),
                _ => (
                    inc.resolve_votes().collect(),
                    " (its source is still blind)",
                ),
            };
            let needed = votes.iter().map(|v| v.needed).max().unwrap_or(1);
            return format!(
                "Resolution of incident #{} as {} by {who} recorded ({}/{needed}){why}; another responder must confirm.",
                inc.id,
                how.as_str(),
                votes.len()
            );
        }
        format!("Incident #{} resolved ({}) by {who}.", inc.id, how.as_str())
    })
}
