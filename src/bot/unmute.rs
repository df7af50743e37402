//! `/unmute ACCOUNT`: ends a mute early; the pages it held go out now.

use super::{BotContext, Command};
use crate::{incidents::MuteError, model::Actor};

pub const USAGE: &str = "/unmute ACCOUNT — page ACCOUNT again now";

pub fn parse(args: &[&str]) -> Command {
    match args {
        [account] => Command::Unmute((*account).to_owned()),
        _ => Command::Usage(USAGE),
    }
}

pub async fn apply(ctx: &BotContext, account: &str, who: &Actor) -> String {
    match ctx.incidents.unmute(account, who).await {
        Ok(_) => format!("{account} unmuted by {who}; held pages are sent now."),
        Err(MuteError::Store(e)) => {
            tracing::error!(error = %e, "unmute failed");
            "Internal error: the unmute was not recorded. Try again.".to_owned()
        }
        Err(e) => format!("Refused: {e}."),
    }
}
