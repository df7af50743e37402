//! `/release N` and `/discard N` (and the page's buttons) for messages the milter held at the
//! MTA. Release silences the incident, so it takes the quorum of Approve (it *is* an approval:
//! the press that reaches the quorum approves, then releases); Discard contains, so one press
//! deletes the held messages and resolves the incident as contained. The helper's answer is
//! written in the timeline either way.

use super::{BotContext, Command, incident_arg, outcome};
use crate::{
    contain::held::{HeldError, HeldOp},
    incidents::HeldAnswer,
    model::{Actor, Evidence, Incident, Resolution, State},
};

pub const RELEASE_USAGE: &str =
    "/release N — deliver the messages held at the MTA for incident N (quorum as for approve)";
pub const DISCARD_USAGE: &str = "/discard N — delete the messages held at the MTA for incident N";

pub fn parse_release(args: &[&str]) -> Command {
    incident_arg(args).map_or(Command::Usage(RELEASE_USAGE), Command::Release)
}

pub fn parse_discard(args: &[&str]) -> Command {
    incident_arg(args).map_or(Command::Usage(DISCARD_USAGE), Command::Discard)
}

fn held(inc: &Incident) -> Vec<String> {
    match &inc.evidence {
        Evidence::Mail(m) => m.held.clone(),
        _ => Vec::new(),
    }
}

/// Reads incident `id` and its held ids, or the reply that says why there is nothing to do.
fn held_of(ctx: &BotContext, id: u64) -> Result<(Incident, Vec<String>), String> {
    let inc = match ctx.incidents.store().incident(id) {
        Ok(Some(inc)) => inc,
        Ok(None) => return Err(format!("There is no incident #{id}.")),
        Err(e) => {
            tracing::error!(error = %e, "cannot read incident");
            return Err("Internal error: try again.".into());
        }
    };
    let ids = held(&inc);
    if ids.is_empty() {
        return Err(format!("Incident #{id} has no messages held at the MTA."));
    }
    if ctx.hold.is_none() {
        return Err(HeldError::NotConfigured.to_string());
    }
    Ok((inc, ids))
}

/// Runs the helper and writes its answer in the timeline; the reply, and whether the MTA acted.
async fn act(ctx: &BotContext, id: u64, who: &Actor, op: HeldOp, ids: &[String]) -> (String, bool) {
    let Some(helper) = &ctx.hold else {
        return (HeldError::NotConfigured.to_string(), false);
    };
    let result = helper.act(op, ids).await;
    let answer = HeldAnswer {
        op: match op {
            HeldOp::Release => "release",
            HeldOp::Delete => "discard",
        },
        messages: ids.len() as u64,
        ok: result.is_ok(),
        detail: match &result {
            Ok(out) => out.clone(),
            Err(e) => e.to_string(),
        },
    };
    let n = ids.len();
    let reply = outcome(
        ctx.incidents.held_mail(id, who, &answer).await,
        |_| match (&result, op) {
            (Ok(_), HeldOp::Release) => {
                format!("Incident #{id}: {n} held message(s) released at the MTA by {who}.")
            }
            (Ok(_), HeldOp::Delete) => {
                format!("Incident #{id}: {n} held message(s) deleted at the MTA by {who}.")
            }
            (Err(e), _) => format!("Incident #{id}: the MTA did not act: {e}"),
        },
    );
    (reply, answer.ok)
}

pub async fn release(ctx: &BotContext, id: u64, who: &Actor) -> String {
    let ids = match held_of(ctx, id) {
        Ok((_, ids)) => ids,
        Err(reply) => return reply,
    };
    let approved = match ctx.incidents.approve(id, who).await {
        Ok(inc) => inc,
        Err(e) => return outcome(Err(e), |_| String::new()),
    };
    if approved.state != State::Resolved {
        let votes = approved.approve_votes().count();
        let needed = approved
            .approve_votes()
            .map(|v| v.needed)
            .max()
            .unwrap_or(1);
        return format!(
            "Release of incident #{id} by {who} recorded ({votes}/{needed}); another responder must confirm."
        );
    }
    act(ctx, id, who, HeldOp::Release, &ids).await.0
}

pub async fn discard(ctx: &BotContext, id: u64, who: &Actor) -> String {
    let ids = match held_of(ctx, id) {
        Ok((inc, _)) if inc.state == State::Resolved => {
            return format!("Incident #{id} is already resolved.");
        }
        Ok((_, ids)) => ids,
        Err(reply) => return reply,
    };
    let (reply, deleted) = act(ctx, id, who, HeldOp::Delete, &ids).await;
    if deleted && let Err(e) = ctx.incidents.resolve(id, who, Resolution::Contained).await {
        tracing::warn!(error = %e, id, "discarded but not resolved");
    }
    reply
}
