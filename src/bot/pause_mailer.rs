//! `/pause_mailer N` (also `/pause-mailer N`, and the `Pause mailer` button): calls the mail kill
//! switch for email incident N. The answer says whether the mailer confirmed; the page and the
//! timeline keep every call.

use super::{BotContext, Command, incident_arg};
use crate::{
    incidents::{PauseError, PauseState},
    model::Actor,
};

pub const USAGE: &str = "/pause_mailer N — pause the mailer for email incident N (kill switch)";

pub fn parse(args: &[&str]) -> Command {
    incident_arg(args).map_or(Command::Usage(USAGE), Command::PauseMailer)
}

pub async fn apply(ctx: &BotContext, id: u64, who: &Actor) -> String {
    let result = match &ctx.mailer {
        None => Err(PauseError::NotConfigured),
        Some(mailer) => ctx.incidents.pause_mailer(id, who, mailer.as_ref()).await,
    };
    match result {
        Ok((_, PauseState::Paused { status, .. })) => format!(
            "Mailer paused for incident #{id} (HTTP {}).",
            status.unwrap_or_default()
        ),
        Ok((_, state)) => state
            .line()
            .unwrap_or_else(|| format!("The mailer did not confirm the pause for #{id}.")),
        Err(PauseError::Store(e)) => {
            tracing::error!(error = %e, "pause not recorded");
            "Internal error: the pause was not recorded. Try again.".to_owned()
        }
        Err(e) => e.to_string(),
    }
}
