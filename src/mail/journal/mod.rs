//! The SMTP journal listener: the MTA sends it a copy of every message (Postfix
//! `always_bcc`/`recipient_bcc_maps`, Exchange journal reports) and it keeps a
//! [`MailSummary`] of each.
//!
//! A small RFC 5321 state machine: EHLO/HELO, MAIL (SIZE, BODY=8BITMIME), RCPT, DATA with
//! dot-unstuffing, RSET, NOOP, QUIT; PIPELINING, SIZE and 8BITMIME advertised. Replies to a
//! pipelined group are written once the client's input is drained. A malformed command is
//! answered 500/501/503 and changes nothing; an oversize message is read to its end and
//! answered 552, so the connection stays in step with the client.
//!
//! 250 to DATA means durable: the summary is in the `mail_queue` tree and flushed. One
//! [`Committer`] task takes every connection's summaries and flushes once per batch (a group
//! commit), so a thousand concurrent senders cost a handful of fsyncs, not a thousand. The
//! [`feed`] task hands the queue to the pipeline in order and drops entries once the pipeline
//! has committed past them (a checkpoint), so a crash re-judges rather than loses.

mod committer;
mod feed;
mod session;

pub use committer::Committer;

pub use feed::feed;
use std::{sync::Arc, time::Duration};

use session::*;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{config::Journal, watch::SourceContext};

/// Binds the listener (port 0 picks one), so the caller knows the address before serving.
pub async fn bind(config: &Journal) -> std::io::Result<TcpListener> {
    TcpListener::bind(config.listen).await
}

/// Accepts SMTP connections until `shutdown`; each connection is its own task.
pub async fn serve(
    listener: TcpListener,
    config: Journal,
    committer: Committer,
    ctx: SourceContext,
) {
    let config = Arc::new(config);
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let session = Session {
                    config: config.clone(),
                    committer: committer.clone(),
                    shutdown: ctx.shutdown.clone(),
                };
                connections.spawn(async move {
                    let (read, write) = stream.into_split();
                    if let Err(e) = session.run(read, write).await {
                        tracing::debug!(%peer, error = %e, "smtp connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "smtp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    connections.close();
    // A message in DATA is finished (or refused) by its connection; give them a moment.
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
}

/// Runs one SMTP session over `input` as a client would have sent it, answers discarded, with
/// accepted messages committed through `committer`: the fuzzers' way in (`crate::fuzzing`).
pub async fn session_over_bytes(config: Arc<Journal>, committer: Committer, input: &[u8]) {
    let session = Session {
        config,
        committer,
        shutdown: CancellationToken::new(),
    };
    let _ = session.run(input, tokio::io::sink()).await;
}
