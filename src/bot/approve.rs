//! `/approve N`: "it was us". The post or profile value joins the approved log and the incident
//! is resolved, so the same content does not page again. Where `paging.approve_quorum` asks for
//! several responders, each approval is a vote until enough different responders agree.
//!
//! On `email.unapproved_bulk` the approval is bounded: the sender may reach twice the volume
//! the incident saw, for 24 hours (a campaign the mail names by its tag is approved as before).
//! `/approve N cap=50000 window=7d` sets other bounds; past them the sender pages again.

use std::time::Duration;

use super::{BotContext, Command, Seen, incident_arg, outcome, seen_version};
use crate::{
    incidents::{ActionError, BulkTerms, compact_duration},
    model::{Actor, Evidence, Incident, Rule, State},
};

pub const USAGE: &str = "/approve N — it was us: approve what incident N found \
     (bulk mail: /approve N cap=RECIPIENTS window=DURATION, window from 1h to 30d)";

/// The bounds a responder may give a bulk approval's window.
const WINDOW_MIN: Duration = Duration::from_secs(3600);
const WINDOW_MAX: Duration = Duration::from_secs(30 * 86_400);

pub fn parse(args: &[&str]) -> Command {
    let Some((first, rest)) = args.split_first() else {
        return Command::Usage(USAGE);
    };
    let Some(id) = incident_arg(&[first]) else {
        return Command::Usage(USAGE);
    };
    if rest.is_empty() {
        return Command::Approve(id, Seen::Delivered);
    }
    match terms(rest) {
        Ok(terms) => Command::ApproveWith(id, terms),
        Err(why) => Command::Invalid(format!("{why} Usage: {USAGE}")),
    }
}

/// `cap=N` and `window=DURATION`, each checked; the error names the argument.
fn terms(args: &[&str]) -> Result<BulkTerms, String> {
    let mut terms = BulkTerms::default();
    for arg in args {
        let (key, value) = arg.split_once('=').unwrap_or((arg, ""));
        match key.to_ascii_lowercase().as_str() {
            "cap" => {
                let cap = value.parse::<u64>().ok().filter(|c| *c > 0);
                terms.cap = Some(cap.ok_or_else(|| {
                    format!("`{arg}`: cap must be a whole number of recipients above 0.")
                })?);
            }
            "window" => {
                let window = crate::model::parse_duration(value)
                    .ok()
                    .filter(|w| (WINDOW_MIN..=WINDOW_MAX).contains(w));
                terms.window = Some(window.ok_or_else(|| {
                    format!("`{arg}`: window must be a duration from 1h to 30d, like 24h or 7d.")
                })?);
            }
            _ => {
                return Err(format!(
                    "`{arg}`: unknown argument; /approve takes cap= and window= only."
                ));
            }
        }
    }
    Ok(terms)
}

pub async fn apply(ctx: &BotContext, id: u64, seen: Seen, who: &Actor) -> String {
    apply_with(ctx, id, seen, who, BulkTerms::default()).await
}

/// An approval of what the page at `seen` showed, bulk mail on `terms`.
pub async fn apply_with(
    ctx: &BotContext,
    id: u64,
    seen: Seen,
    who: &Actor,
    terms: BulkTerms,
) -> String {
    if terms != BulkTerms::default() {
        match ctx.incidents.store().incident(id) {
            Ok(Some(inc)) if inc.rule == Rule::UnapprovedBulk => {}
            Ok(Some(inc)) => {
                return format!(
                    "cap= and window= apply to email.unapproved_bulk incidents only; #{id} is {}. \
                     Use /approve {id}.",
                    inc.rule.as_str()
                );
            }
            Ok(None) => return ActionError::NotFound(id).to_string(),
            Err(e) => return outcome(Err(ActionError::Store(e)), |_| String::new()),
        }
    }
    let seen = match seen_version(ctx, id, seen).await {
        Ok(v) => v,
        Err(refusal) => return refusal,
    };
    let pressed = ctx.incidents.approve_seen(id, who, Some(seen), terms).await;
    if let Err(ActionError::Changed { .. }) = pressed {
        super::repost(ctx, id).await;
    }
    let newer = pressed.as_ref().map_or(0, |p| p.newer);
    let reply = outcome(pressed.map(|p| p.incident), |inc| {
        if inc.state == State::Resolved {
            return format!(
                "Incident #{} approved by {who}; recorded in the approved log.{}",
                inc.id,
                bulk_bounds(inc, terms)
            );
        }
        let votes = inc.approve_votes().count();
        if votes == 0 {
            return format!(
                "Incident #{}: what the page showed is approved by {who}.",
                inc.id
            );
        }
        let needed = inc.approve_votes().map(|v| v.needed).max().unwrap_or(1);
        format!(
            "Approval of incident #{} by {who} recorded ({votes}/{needed}); another responder must confirm.",
            inc.id
        )
    });
    with_newer(reply, newer)
}

/// Tells the responder what their press left out.
pub(super) fn with_newer(reply: String, newer: usize) -> String {
    if newer == 0 {
        return reply;
    }
    format!("{reply} {newer} newer posts not included: see the new page.")
}

/// What a bulk approval covers, for the reply.
fn bulk_bounds(inc: &Incident, terms: BulkTerms) -> String {
    let Evidence::Mail(m) = &inc.evidence else {
        return String::new();
    };
    if inc.rule != Rule::UnapprovedBulk {
        return String::new();
    }
    match terms.grant(m.campaign.is_some(), m.recipients) {
        Some((cap, window)) => format!(
            " {} may reach up to {cap} recipients for the next {}; past that it pages again.",
            m.sender,
            compact_duration(window)
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_terms_are_parsed_and_checked() {
        assert_eq!(parse(&["3"]), Command::Approve(3, Seen::Delivered));
        assert_eq!(
            parse(&["#3", "cap=50000", "window=7d"]),
            Command::ApproveWith(
                3,
                BulkTerms {
                    cap: Some(50_000),
                    window: Some(Duration::from_secs(7 * 86_400)),
                }
            )
        );
        assert_eq!(
            parse(&["3", "window=1h"]),
            Command::ApproveWith(
                3,
                BulkTerms {
                    cap: None,
                    window: Some(Duration::from_secs(3600)),
                }
            )
        );
        for (args, named) in [
            (&["3", "cap=0"][..], "`cap=0`"),
            (&["3", "cap=-1"], "`cap=-1`"),
            (&["3", "cap"], "`cap`"),
            (&["3", "window=59m"], "`window=59m`"),
            (&["3", "window=31d"], "`window=31d`"),
            (&["3", "cap=10", "forever=yes"], "`forever=yes`"),
        ] {
            match parse(args) {
                Command::Invalid(why) => {
                    assert!(why.starts_with(named), "{args:?}: {why}");
                    assert!(why.contains("/approve N"), "{why}");
                }
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        assert_eq!(parse(&[]), Command::Usage(USAGE));
        assert_eq!(parse(&["x", "cap=5"]), Command::Usage(USAGE));
    }
}
