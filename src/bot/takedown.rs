//! `/takedown N` and the `Take down` button: delete the incident's post (every post of a burst)
//! on the platform with the account's write token. With `paging.takedown_quorum = 2` the first
//! press is a vote and a second responder's press deletes. The platform is called once per
//! quorum: the press that reaches it marks the takedown started in the incident's transaction,
//! and the answers are written in the timeline and shown on the page.

use super::{BotContext, Command, Seen, approve::with_newer, incident_arg, outcome, seen_version};
use crate::{
    contain,
    incidents::{ActionError, TakedownStart},
    model::Actor,
};

pub const USAGE: &str = "/takedown N — delete incident N's post(s) on the platform";

pub fn parse(args: &[&str]) -> Command {
    incident_arg(args).map_or(Command::Usage(USAGE), |id| {
        Command::Takedown(id, Seen::Delivered)
    })
}

pub async fn apply(ctx: &BotContext, id: u64, seen: Seen, who: &Actor) -> String {
    let incident = match ctx.incidents.store().incident(id) {
        Ok(Some(inc)) => inc,
        Ok(None) => return ActionError::NotFound(id).to_string(),
        Err(e) => return outcome(Err(ActionError::Store(e)), |_| String::new()),
    };
    let Some(account) = ctx.accounts.iter().find(|a| a.name == incident.account) else {
        return format!(
            "Cannot take down incident #{id}: account `{}` is no longer configured.",
            incident.account
        );
    };
    // Checked before any vote: without the credential nothing can be deleted, and a vote
    // would only promise what cannot happen.
    if account.write_token.is_none() {
        return format!(
            "Cannot take down incident #{id}: account `{}` has no write_token configured \
             (accounts[].write_token), so tocsin cannot delete on {}. Delete it by hand.",
            account.name, account.platform
        );
    }
    let seen = match seen_version(ctx, id, seen).await {
        Ok(v) => v,
        Err(refusal) => return refusal,
    };
    let started = match ctx.incidents.begin_takedown(id, who, Some(seen)).await {
        Ok(s) => s,
        Err(e) => {
            if let ActionError::Changed { .. } = e {
                super::repost(ctx, id).await;
            }
            return outcome(Err(e), |_| String::new());
        }
    };
    let (targets, newer) = match started {
        TakedownStart::Waiting { incident, newer } => {
            let votes = incident.takedown_votes().count();
            let needed = incident
                .takedown_votes()
                .map(|v| v.needed)
                .max()
                .unwrap_or(1);
            let reply = format!(
                "Takedown of incident #{id} by {who} recorded ({votes}/{needed}); another responder must confirm."
            );
            return with_newer(reply, newer);
        }
        TakedownStart::Go { targets, newer, .. } => (targets, newer),
    };
    let mut results = Vec::new();
    for (post_id, posted_at) in targets {
        let answer = contain::takedown(
            &ctx.http,
            ctx.incidents.store(),
            account,
            &post_id,
            posted_at,
        )
        .await;
        tracing::info!(incident = id, post = %post_id, ?answer, "takedown");
        results.push((post_id, answer));
    }
    let reply = outcome(
        ctx.incidents.finish_takedown(id, who, &results).await,
        |inc| summary(inc.id, &results, inc.resolution.is_some()),
    );
    with_newer(reply, newer)
}

/// One line for the chat (a button's answer is cut at 200 characters by Telegram).
fn summary(id: u64, results: &[(String, crate::model::TakedownOutcome)], resolved: bool) -> String {
    let mut s = match results {
        [(post, o)] => format!("Incident #{id}: post {post} {}.", o.describe()),
        _ => {
            let gone = results.iter().filter(|(_, o)| o.is_gone()).count();
            let first_bad = results.iter().find(|(_, o)| !o.is_gone());
            let mut s = format!("Incident #{id}: {gone}/{} posts taken down.", results.len());
            if let Some((post, o)) = first_bad {
                s += &format!(" Post {post}: {}.", o.describe());
            }
            s
        }
    };
    if resolved && results.iter().all(|(_, o)| o.is_gone()) {
        s += " Resolved (contained).";
    }
    s
}
