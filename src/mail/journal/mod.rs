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
use tokio::{io::AsyncWriteExt, net::TcpListener, sync::Semaphore};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{config::Journal, metrics::Metrics, model::AddressKey, watch::SourceContext};

/// Why the listener cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{key}: {detail}")]
    Tls { key: &'static str, detail: String },
}

/// Binds the listener (port 0 picks one), so the caller knows the address before serving.
pub async fn bind(config: &Journal) -> std::io::Result<TcpListener> {
    TcpListener::bind(config.listen).await
}

/// The STARTTLS acceptor of `tls_cert`/`tls_key` (PEM), when both are set. `check-config` and
/// start-up call it, so a bad certificate is refused with its config key.
pub fn tls_acceptor(config: &Journal) -> Result<Option<TlsAcceptor>, JournalError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.expose().as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| JournalError::Tls {
                key: "email.journal.tls_cert",
                detail: format!("not a PEM certificate chain: {e}"),
            })?;
    if chain.is_empty() {
        return Err(JournalError::Tls {
            key: "email.journal.tls_cert",
            detail: "no CERTIFICATE block in the PEM".into(),
        });
    }
    let key =
        PrivateKeyDer::from_pem_slice(key.expose().as_bytes()).map_err(|e| JournalError::Tls {
            key: "email.journal.tls_key",
            detail: format!("not a PEM private key: {e}"),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| JournalError::Tls {
            key: "email.journal.tls_key",
            detail: format!("does not match the certificate or is unusable: {e}"),
        })?;
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// What the listener needs besides its configuration.
pub struct Listener {
    pub committer: Committer,
    pub key: AddressKey,
    pub metrics: Arc<Metrics>,
    pub tls: Option<TlsAcceptor>,
}

/// Accepts SMTP connections until `shutdown`; each connection is its own task. At most
/// `max_sessions` are served at once (the next is answered 421); peers outside `allow_from`
/// are refused at the greeting, and as many of them as sessions are held at once.
pub async fn serve(listener: TcpListener, config: Journal, parts: Listener, ctx: SourceContext) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            tls = parts.tls.is_some(),
            auth = config.auth.is_some(),
            "journal listening"
        );
    }
    let sessions = Arc::new(Semaphore::new(config.max_sessions));
    let refusals = Arc::new(Semaphore::new(config.max_sessions));
    let config = Arc::new(config);
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "smtp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let allowed = config.allows(peer.ip());
        let pool = if allowed { &sessions } else { &refusals };
        let Ok(permit) = pool.clone().try_acquire_owned() else {
            if allowed {
                parts.metrics.journal_refused("sessions");
                tracing::warn!(%peer, max = config.max_sessions, "journal sessions at max_sessions; 421");
                connections.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        stream
                            .write_all(b"421 4.7.0 too many sessions; try again later\r\n")
                            .await?;
                        stream.shutdown().await
                    })
                    .await;
                });
            } else {
                parts.metrics.journal_refused("peer");
            }
            continue;
        };
        let session = Session {
            config: config.clone(),
            committer: parts.committer.clone(),
            shutdown: ctx.shutdown.clone(),
            tls: parts.tls.clone(),
            key: parts.key.clone(),
            metrics: Some(parts.metrics.clone()),
            peer: Peer {
                ip: Some(peer.ip()),
                allowed,
                loopback: crate::config::email::canonical(peer.ip()).is_loopback(),
            },
        };
        connections.spawn(async move {
            let _permit = permit;
            if let Err(e) = session.run(stream).await {
                tracing::debug!(%peer, error = %e, "smtp connection ended");
            }
        });
    }
    connections.close();
    // A message in DATA is finished (or refused) by its connection; give them a moment.
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
}

/// Runs one SMTP session over `input` as a client on loopback would have sent it, answers
/// discarded, with accepted messages committed through `committer`: the fuzzers' way in
/// (`crate::fuzzing`).
pub async fn session_over_bytes(
    config: Arc<Journal>,
    committer: Committer,
    key: AddressKey,
    input: &[u8],
) {
    let session = Session {
        config,
        committer,
        shutdown: CancellationToken::new(),
        tls: None,
        key,
        metrics: None,
        peer: Peer {
            ip: None,
            allowed: true,
            loopback: true,
        },
    };
    let _ = session.run(tokio::io::join(input, tokio::io::sink())).await;
}
