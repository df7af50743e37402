//! The one message that does not go through the outbox: "tocsin cannot write its state".
//!
//! When the disk refuses a write (full, read-only, failing), sled stops taking writes, so no
//! incident can be recorded and no page queued until the daemon is restarted on a writable
//! disk. Observations are not lost meanwhile (a source's cursor only moves once what came before
//! it is committed, so a restart reads them again), but nobody would know to restart. This task
//! tells the on-call chat directly, retrying until Telegram takes it; `/readyz` fails on the same
//! fault, and the heartbeat stops pinging so a dead-man monitor fires too.

use std::time::Duration;

use teloxide::{prelude::*, types::ChatId};
use tokio_util::sync::CancellationToken;

use crate::{platforms::telegram_channel::api::redact_token, store::Store};

/// How often the store's fault flag is looked at: a fault is rare, the look is a mutex read.
const CHECK: Duration = Duration::from_millis(250);

pub async fn run(store: Store, bot: Bot, chat_id: i64, shutdown: CancellationToken) {
    let fault = loop {
        if let Some(fault) = store.write_fault() {
            break fault;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHECK) => {}
        }
    };
    tracing::error!(
        error = %fault.error,
        since = %fault.since,
        "the state database refuses writes: nothing can be recorded until tocsin is restarted on a writable disk"
    );
    let text = format!(
        "⚠️ tocsin cannot write its state database since {} ({}).\n\
         New findings cannot be recorded or paged until the disk is fixed (space, permissions) \
         and tocsin is restarted. What the sources saw meanwhile is read again after the restart.",
        fault.since.format("%Y-%m-%d %H:%M:%S UTC"),
        fault.error
    );
    let mut wait = Duration::from_secs(1);
    loop {
        match bot.send_message(ChatId(chat_id), text.clone()).await {
            Ok(_) => {
                tracing::warn!("state database alarm sent to the on-call chat");
                return;
            }
            Err(e) => {
                let error = redact_token(&e.to_string(), bot.token());
                tracing::warn!(%error, "state database alarm not sent; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}
