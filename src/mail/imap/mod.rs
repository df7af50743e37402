//! The registered mailbox of a social account, read over IMAP IDLE (`[[email.imap]]`): the
//! platform's security notices ("your email address was changed", "new login") reach it
//! first. TLS from the first byte; the mailbox is opened read-only (EXAMINE, `BODY.PEEK`), so
//! nothing is marked `\Seen`; where the feed is is kept as UIDVALIDITY + UID in sled (the
//! `\Seen` flag is a person's, or an intruder's). A message counts only when the provider
//! vouches for it ([`vouch`]); vouched ones are judged in the mail lane by
//! `email.security_notice`, the others logged and counted.

pub mod client;
pub mod vouch;

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{
    config::{ConfigError, Email, ImapFeed, NoticeAccount, SecurityNotices},
    model::ObservationKind,
    watch::SourceContext,
};

use client::{ImapError, Session};
use vouch::Verdict;

/// Each answer but IDLE's must come within this.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// IDLE is renewed this often (RFC 2177 asks for less than 29 minutes).
const IDLE_RENEW: Duration = Duration::from_secs(10 * 60);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The cursor key of a feed.
pub fn cursor_key(name: &str) -> String {
    format!("imap:{name}")
}

/// Where the feed is: the mailbox's UIDVALIDITY and the last UID handed to the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub uid_validity: u32,
    pub uid: u32,
}

impl Cursor {
    fn parse(v: &str) -> Option<Cursor> {
        let (a, b) = v.split_once(':')?;
        Some(Cursor {
            uid_validity: a.parse().ok()?,
            uid: b.parse().ok()?,
        })
    }

    fn value(&self) -> String {
        format!("{}:{}", self.uid_validity, self.uid)
    }
}

/// The TLS setup of a feed: the public roots plus `ca_file`.
pub fn tls(feed: &ImapFeed, index: usize) -> Result<TlsConnector, ConfigError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &feed.ca_file {
        let key = format!("email.imap[{index}].ca_file");
        let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect::<Result<_, _>>())
            .map_err(|e| ConfigError::invalid(&key, format!("not a PEM certificate file: {e}")))?;
        if certs.is_empty() {
            return Err(ConfigError::invalid(
                &key,
                "no CERTIFICATE block in the file",
            ));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| ConfigError::invalid(&key, e.to_string()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ConfigError::invalid(format!("email.imap[{index}]"), e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The notice rules with each registered mailbox linked to its social account: a notice in
/// the mailbox is about `account` whatever platform sent it.
pub fn link_accounts(mut email: Email) -> Email {
    let platforms: Vec<String> = email
        .security_notices
        .patterns
        .iter()
        .map(|p| p.platform.clone())
        .collect();
    for feed in &email.imap {
        for platform in &platforms {
            email.security_notices.accounts.push(NoticeAccount {
                account: feed.account.clone(),
                platform: platform.clone(),
                address: mailbox_address(feed),
            });
        }
    }
    email
}

/// The address a feed's notices are addressed to, as the pipeline sees it.
fn mailbox_address(feed: &ImapFeed) -> String {
    format!("imap:{}", feed.name)
}

/// Keeps the mailbox watched until shutdown.
pub async fn run(feed: ImapFeed, tls: TlsConnector, notices: SecurityNotices, ctx: SourceContext) {
    let mut wait = BACKOFF_MIN;
    loop {
        let outcome = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = session(&feed, &tls, &notices, &ctx) => r,
        };
        match outcome {
            Ok(()) => return,
            Err(e) => {
                let refused = matches!(e, ImapError::LoginRefused(_));
                tracing::warn!(feed = %feed.name, error = %e, "imap session ended");
                ctx.health.failure(&feed.name, e.to_string(), refused, None);
            }
        }
        if !ctx.sleep(wait).await {
            return;
        }
        wait = (wait * 2).min(BACKOFF_MAX);
    }
}

/// One connection: log in, catch up from the cursor, then IDLE and catch up after each
/// change. Returns only on an error (or when the pipeline is gone).
async fn session(
    feed: &ImapFeed,
    tls: &TlsConnector,
    notices: &SecurityNotices,
    ctx: &SourceContext,
) -> Result<(), ImapError> {
    let tcp = tokio::time::timeout(
        ANSWER_TIMEOUT,
        TcpStream::connect((feed.host.as_str(), feed.port)),
    )
    .await
    .map_err(|_| ImapError::Timeout(ANSWER_TIMEOUT))??;
    let name = ServerName::try_from(feed.host.clone())
        .map_err(|e| ImapError::Protocol(format!("host {}: {e}", feed.host)))?;
    let stream = tokio::time::timeout(ANSWER_TIMEOUT, tls.connect(name, tcp))
        .await
        .map_err(|_| ImapError::Timeout(ANSWER_TIMEOUT))??;
    let mut s = Session::start(stream, ANSWER_TIMEOUT).await?;
    s.login(&feed.username, feed.password.expose()).await?;
    let key = cursor_key(&feed.name);
    // Where the feed is: read once per connection, then kept here (a checkpoint reaches the
    // store only once the pipeline has committed what came before it).
    let mut stored = ctx
        .store
        .cursor(&key)
        .ok()
        .flatten()
        .and_then(|v| Cursor::parse(&v));
    loop {
        let selected = s.examine(&feed.mailbox).await?;
        let from = match stored {
            Some(c) if c.uid_validity == selected.uid_validity => c.uid + 1,
            Some(c) => {
                // The mailbox was recreated: its UIDs name other messages now. Everything in
                // it is read again; notices already judged are known by their Message-ID.
                tracing::warn!(
                    feed = %feed.name,
                    before = c.uid_validity,
                    now = selected.uid_validity,
                    "UIDVALIDITY changed; reading the mailbox again"
                );
                1
            }
            None => {
                // First look: what is already there is history.
                let last = match selected.uid_next {
                    Some(n) => n.saturating_sub(1),
                    None => s.fetch_from(1).await?.last().map_or(0, |f| f.uid),
                };
                let cursor = Cursor {
                    uid_validity: selected.uid_validity,
                    uid: last,
                };
                if !checkpoint(ctx, feed, &key, cursor).await {
                    return Ok(());
                }
                stored = Some(cursor);
                last + 1
            }
        };
        let mut last = from.saturating_sub(1);
        for m in s.fetch_from(from).await? {
            last = m.uid;
            match vouch::judge(&m.header, &feed.authserv_id, notices, "imap") {
                Verdict::Vouched(mut summary) => {
                    summary.envelope.push(mailbox_address(feed));
                    if !ctx.emit(&feed.name, ObservationKind::Mail(*summary)).await {
                        return Ok(());
                    }
                }
                Verdict::Unvouched { from, subject } => {
                    crate::metrics::IMAP_UNVOUCHED.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        feed = %feed.name, uid = m.uid, %from, %subject,
                        "a platform's mail without the provider's dkim=pass for its domain; not judged"
                    );
                }
                Verdict::Other => {}
            }
        }
        let cursor = Cursor {
            uid_validity: selected.uid_validity,
            uid: last,
        };
        if stored != Some(cursor) {
            if !checkpoint(ctx, feed, &key, cursor).await {
                return Ok(());
            }
            stored = Some(cursor);
        }
        ctx.health.success(&feed.name, None);
        s.idle(IDLE_RENEW).await?;
    }
}

async fn checkpoint(ctx: &SourceContext, feed: &ImapFeed, key: &str, c: Cursor) -> bool {
    ctx.emit(
        &feed.name,
        ObservationKind::Checkpoint {
            cursor: key.to_owned(),
            value: c.value(),
        },
    )
    .await
}
