//! `/incidents`: what is still open or acknowledged, newest first.

use super::BotContext;
use crate::model::State;

/// A chat reply has room for this many lines and still reads at a glance.
const SHOWN: usize = 20;

pub fn apply(ctx: &BotContext) -> String {
    let all = match ctx.incidents.store().incidents() {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(error = %e, "cannot list incidents");
            return "Internal error: cannot read incidents.".into();
        }
    };
    let live: Vec<_> = all
        .iter()
        .rev()
        .filter(|i| i.state != State::Resolved)
        .collect();
    if live.is_empty() {
        return format!("No open incidents ({} resolved in total).", all.len());
    }
    let mut out = format!("{} open incident(s):\n", live.len());
    for inc in live.iter().take(SHOWN) {
        out += &format!(
            "#{} {} {} {} — {}\n",
            inc.id,
            inc.severity.as_str().to_uppercase(),
            inc.rule,
            inc.account,
            inc.state.as_str()
        );
    }
    if live.len() > SHOWN {
        out += &format!("… and {} more\n", live.len() - SHOWN);
    }
    out
}
