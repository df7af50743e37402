//! The milter: Postfix (`smtpd_milters`) or Sendmail (`INPUT_MAIL_FILTER`) consults tocsin in
//! line for every message, with its real envelope (the sender and every recipient, Bcc
//! included). The message is summarised like a journal copy, judged by the same email rules
//! before end of message is answered, made durable in the journal's `mail_queue` (so the
//! pipeline pages it as any journaled message), and answered per `[email.milter] policy`:
//! accept (`observe`), quarantine (`hold`: Postfix's hold queue) or tempfail.
//!
//! The protocol is Sendmail's libmilter protocol, version 6 ([`protocol`]), written here from
//! its definition in `mfdef.h` and Postfix's MILTER_README.

pub mod protocol;
mod session;

use std::{sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::Milter,
    mail::journal::Committer,
    model::{AddressKey, MailSummary, Rule},
};

pub use session::MAX_ENVELOPE;

/// Runs one milter session over `input` as an MTA would have sent it, answers discarded:
/// the fuzzers' way in (`crate::fuzzing`).
pub async fn session_over_bytes(config: Arc<Milter>, parts: &Listener, input: &[u8]) {
    let session = session::Session {
        config,
        committer: parts.committer.clone(),
        judge: parts.judge.clone(),
        key: parts.key.clone(),
    };
    let _ = session
        .run(tokio::io::join(input, tokio::io::sink()), |_| {})
        .await;
}

/// Judges a message in line: the rule it raises, if any. The application passes the email
/// rules of the running configuration; the milter only maps the rule to its policy.
pub type Judge = Arc<dyn Fn(&MailSummary) -> Option<Rule> + Send + Sync>;

/// What the listener needs besides its configuration.
pub struct Listener {
    pub committer: Committer,
    pub key: AddressKey,
    pub judge: Judge,
}

/// Binds the listener (port 0 picks one), so the caller knows the address before serving.
pub async fn bind(config: &Milter) -> std::io::Result<TcpListener> {
    TcpListener::bind(config.listen).await
}

/// Acknowledges what the MTA sent at once. The MTA writes a macro packet (never answered) and
/// then its command as two small writes; with Nagle on the MTA's side the command waits for the
/// macro's acknowledgement, which the kernel delays by 40 ms when there is no reply to carry
/// it: 40 ms a message, most of Postfix's throughput. Linux clears the flag by itself, so it is
/// set again after every packet.
fn quickack(stream: &tokio::net::TcpStream) {
    #[cfg(target_os = "linux")]
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

/// Serves MTA connections until `shutdown`. A peer outside `allow_from` is closed before a
/// byte is read; past `max_sessions` a connection is closed too (the MTA then applies its
/// `milter_default_action`).
pub async fn serve(
    listener: TcpListener,
    config: Milter,
    parts: Listener,
    shutdown: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "milter listening");
    }
    let sessions = Arc::new(Semaphore::new(config.max_sessions));
    let config = Arc::new(config);
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "milter accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !config.allows(peer.ip()) {
            tracing::warn!(%peer, "milter connection from outside allow_from closed");
            continue;
        }
        let Ok(permit) = sessions.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = config.max_sessions, "milter sessions at max_sessions; closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let session = session::Session {
            config: config.clone(),
            committer: parts.committer.clone(),
            judge: parts.judge.clone(),
            key: parts.key.clone(),
        };
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            tokio::select! {
                r = session.run(stream, quickack) => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "milter connection ended");
                },
                _ = stop.cancelled() => {}
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
}
