//! `/status`: is tocsin seeing what it should? Sources, last poll, queue depth.

use std::sync::atomic::Ordering;

use super::BotContext;

pub fn apply(ctx: &BotContext) -> String {
    let store = ctx.incidents.store();
    let mut out = String::from("Sources:\n");
    let health = ctx.health.snapshot();
    if health.is_empty() {
        out += "  none configured\n";
    }
    for (name, h) in &health {
        let last_ok = h
            .last_success
            .map_or_else(|| "never".into(), |t| t.format("%H:%M:%S UTC").to_string());
        out += &format!(
            "  {name} ({}): last success {last_ok}, {} polls, {} errors",
            h.platform, h.polls, h.errors
        );
        if let Some(rl) = &h.rate_limit {
            out += &format!(
                ", rate limit {}/{} left",
                rl.remaining,
                rl.limit.map_or("?".into(), |l| l.to_string())
            );
        }
        if let Some((at, e)) = &h.last_error {
            out += &format!("\n    last error {}: {e}", at.format("%H:%M:%S UTC"));
        }
        if let Some(s) = &h.stream {
            match (s.connected, s.down_since) {
                (true, _) => out += &format!("\n    push stream connected, {} events", s.events),
                (false, since) => {
                    out += &format!(
                        "\n    push stream DOWN since {}: {}",
                        since.map_or_else(|| "?".into(), |t| t.format("%H:%M:%S UTC").to_string()),
                        s.last_error.as_deref().unwrap_or("not connected")
                    )
                }
            }
        }
        out.push('\n');
    }
    match store.outbox_depth() {
        Ok((0, _)) => out += "Page queue: empty\n",
        Ok((n, oldest)) => {
            let age = oldest.map_or(0, |t| (chrono::Utc::now() - t).num_seconds());
            out += &format!("Page queue: {n} waiting, oldest {age}s\n");
        }
        Err(e) => out += &format!("Page queue: unreadable ({e})\n"),
    }
    match store.mutes() {
        Ok(mutes) => {
            let now = chrono::Utc::now();
            let active: Vec<_> = mutes.iter().filter(|m| m.active(now)).collect();
            if active.is_empty() {
                out += "Mutes: none\n";
            }
            for m in active {
                out += &format!(
                    "Muted: {} until {} (by {}, {} left)\n",
                    m.account,
                    m.until.format("%Y-%m-%d %H:%M:%S UTC"),
                    m.by,
                    humantime::format_duration(std::time::Duration::from_secs(
                        (m.until - now).num_seconds().max(0) as u64
                    ))
                );
            }
        }
        Err(e) => out += &format!("Mutes: unreadable ({e})\n"),
    }
    if let Ok(n) = store.log_len() {
        out += &format!("Approved log: {n} entries\n");
    }
    out += &format!(
        "Refused actions since start: {}\n",
        ctx.refused.load(Ordering::Relaxed)
    );
    out
}
