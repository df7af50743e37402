//! Reminders and escalation while nobody acknowledges.
//!
//! An unacknowledged page gets a reminder every `renotify_after` — a new message replying to the
//! page, because editing a message makes no phone ring — mentioning the current tier's people;
//! every `escalate_after` the next tier is mentioned (and its chat, if it has one, gets the
//! reminder too). The schedule is derived from fields stored on the incident (when it opened,
//! when it was last reminded), so it survives restarts without timers of its own: after a
//! restart the first due reminder simply goes out.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{Incidents, Timeline};
use crate::{
    config::Escalation,
    model::{Action, Incident, State},
    store::{Reminder, StoreError},
};

/// What is due for one incident at `now`: the tier to address, if a reminder is due.
pub fn due(policy: &Escalation, inc: &Incident, now: DateTime<Utc>) -> Option<usize> {
    // Only pages that reached the chat are reminded of: a reminder must not overtake its page.
    if inc.state != State::Open || inc.page.is_none() {
        return None;
    }
    let (every, step) = policy.timings(inc.severity);
    let since = inc.last_reminder_at.unwrap_or(inc.opened_at);
    if (now - since).to_std().unwrap_or_default() < every {
        return None;
    }
    let open_for = (now - inc.opened_at).to_std().unwrap_or_default();
    let tier = step.map_or(0, |s| {
        (open_for.as_millis() / s.as_millis().max(1)) as usize
    });
    Some(tier.min(policy.tiers.len().saturating_sub(1)))
}

fn text(
    policy: &Escalation,
    inc: &Incident,
    tier: usize,
    number: u32,
    now: DateTime<Utc>,
) -> String {
    let open_for = (now - inc.opened_at).to_std().unwrap_or_default();
    let open_for = humantime::format_duration(Duration::from_secs(open_for.as_secs()));
    let mut t = format!(
        "⏰ Reminder {number}: incident #{} is not acknowledged after {open_for} — {} {} on {}.",
        inc.id,
        inc.severity.as_str().to_uppercase(),
        inc.rule,
        inc.account
    );
    if let Some(tier_cfg) = policy.tiers.get(tier) {
        t += &format!(" Tier {}:", tier + 1);
        for m in &tier_cfg.mentions {
            t += &format!(" @{m}");
        }
    }
    t += &format!(" Press Ack on the page or send /ack {}.", inc.id);
    t
}

impl Incidents {
    /// Queues every reminder due now; returns how many.
    pub async fn remind_due(&self, policy: &Escalation) -> Result<usize, StoreError> {
        let now = Utc::now();
        let mut queued = 0;
        for inc in self.store().incidents()? {
            if due(policy, &inc, now).is_none() || self.store().reminder_pending(inc.id)? {
                continue;
            }
            // Decide again inside the transaction: an ack may have landed in between.
            let sent = self.store().transact(|tx| {
                let Some(mut inc) = tx.incident(inc.id)? else {
                    return Ok(false);
                };
                let Some(tier) = due(policy, &inc, now) else {
                    return Ok(false);
                };
                // A page a mute holds back was never sent: nothing to remind anyone of yet.
                if tx.is_held(inc.id)? {
                    return Ok(false);
                }
                inc.reminders += 1;
                inc.last_reminder_at = Some(now);
                inc.tier = tier;
                let reminder = Reminder {
                    text: text(policy, &inc, tier, inc.reminders, now),
                    extra_chat: policy.tiers.get(tier).and_then(|t| t.chat_id),
                };
                inc.event(
                    tx,
                    now,
                    "tocsin",
                    Action::Reminded {
                        tier: tier + 1,
                        number: inc.reminders,
                    },
                )?;
                tx.put_incident(&inc)?;
                tx.enqueue_reminder(inc.id, reminder, now)?;
                Ok(true)
            })?;
            queued += usize::from(sent);
        }
        if queued > 0 {
            self.store().flush().await?;
            self.wake_handle().notify_one();
        }
        Ok(queued)
    }
}

/// Checks for due reminders until shutdown, often enough for the shortest interval configured.
pub async fn run(incidents: Incidents, policy: Escalation, shutdown: CancellationToken) {
    let shortest = policy
        .severity
        .values()
        .filter_map(|r| r.renotify_after)
        .chain([policy.renotify_after])
        .min()
        .unwrap_or(policy.renotify_after);
    let tick = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        match incidents.remind_due(&policy).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(reminders = n, "reminders queued"),
            Err(e) => tracing::error!(error = %e, "cannot queue reminders"),
        }
    }
}
