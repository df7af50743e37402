//! `/mute ACCOUNT DURATION`: planned work on an account; its findings are recorded but not paged
//! until the mute ends (rules in `paging.unmutable` page anyway). A mute longer than
//! `paging.mute_without_quorum` takes two different responders asking for it.

use std::time::Duration;

use super::{BotContext, Command};
use crate::{
    incidents::MuteError,
    model::{Actor, parse_duration},
};

pub const USAGE: &str =
    "/mute ACCOUNT DURATION — hold ACCOUNT's pages, e.g. /mute mastodon-main 30m (at most 7d)";

pub fn parse(args: &[&str]) -> Command {
    match args {
        [account, duration @ ..] if !duration.is_empty() => {
            match parse_duration(&duration.join(" ")) {
                Ok(d) if d > Duration::ZERO => Command::Mute((*account).to_owned(), d),
                _ => Command::Usage(USAGE),
            }
        }
        _ => Command::Usage(USAGE),
    }
}

pub async fn apply(ctx: &BotContext, account: &str, duration: Duration, who: &Actor) -> String {
    match ctx.incidents.mute(account, duration, who).await {
        Ok(m) => format!(
            "{account} muted by {who} until {}: findings are recorded but not paged.",
            m.until.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        Err(MuteError::Store(e)) => {
            tracing::error!(error = %e, "mute failed");
            "Internal error: the mute was not recorded. Try again.".to_owned()
        }
        Err(e @ MuteError::NeedsSecond { .. }) => {
            format!("Mute of {account} asked for by {who}; {e}.")
        }
        Err(e) => format!("Refused: {e}."),
    }
}
