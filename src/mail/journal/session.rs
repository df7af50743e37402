//! One SMTP session: a small RFC 5321 state machine over a connection (or a byte slice, for the
//! fuzzers), handing each accepted message's summary to the committer.
//!
//! Who may speak is settled first: a peer outside `allow_from` is greeted `554 5.7.1` and
//! answered 503 until it quits or its grace runs out (RFC 5321 §3.1). STARTTLS (RFC 3207)
//! restarts the session over rustls with everything learned before forgotten, including input
//! the client pipelined behind the command (the CVE-2011-0411 injection). AUTH PLAIN and LOGIN
//! (RFC 4954) are offered only over TLS or on loopback. MAIL starts the transaction clock:
//! `transaction_timeout` bounds MAIL to the end of DATA, the idle timeout every read.
//!
//! DATA streams through a [`summary::Reader`]: memory per session is the read buffer, one line
//! piece and the reader's bounded state, whatever the message.

use std::{net::IpAddr, sync::Arc, time::Duration};

use base64::Engine;
use subtle::ConstantTimeEq;
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    time::Instant,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::Committer;
use crate::{
    config::Journal,
    mail::summary::{self, Reader},
    metrics::Metrics,
    model::AddressKey,
    store::StoreError,
};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets; some clients send longer
/// MAIL lines with parameters, so allow a little more before refusing.
pub(super) const MAX_COMMAND_LINE: usize = 2048;
/// A text line of DATA may be 1000 octets; longer lines are accepted (the size limit bounds
/// the message) but read in pieces of at most this.
pub(super) const MAX_DATA_CHUNK: usize = 64 * 1024;
/// An idle client is dropped after this long (RFC 5321 §4.5.3.2 suggests 5 minutes).
pub(super) const IDLE: Duration = Duration::from_secs(300);
/// How long a refused peer may stay to read why before it is disconnected.
pub(super) const REFUSED_GRACE: Duration = Duration::from_secs(10);
/// Failed AUTH attempts per connection before it is closed.
const AUTH_ATTEMPTS: u32 = 3;
/// The read buffer of a session.
const READ_BUFFER: usize = 64 * 1024;

/// Who is on the other end, as the listener saw it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer {
    pub(super) ip: Option<IpAddr>,
    /// In `allow_from`.
    pub(super) allowed: bool,
    /// A loopback address: credentials cross no wire, so AUTH needs no TLS.
    pub(super) loopback: bool,
}

pub(super) struct Session {
    pub(super) config: Arc<Journal>,
    pub(super) committer: Committer,
    pub(super) shutdown: CancellationToken,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) key: AddressKey,
    pub(super) metrics: Option<Arc<Metrics>>,
    pub(super) peer: Peer,
}

/// The envelope of the transaction in progress.
#[derive(Default)]
pub(super) struct Envelope {
    pub(super) from: Option<String>,
    pub(super) rcpt: Vec<String>,
    /// MAIL's time plus `transaction_timeout`: DATA must have ended by then.
    pub(super) deadline: Option<Instant>,
}

/// What the session learned; STARTTLS starts it over.
#[derive(Default)]
struct State {
    greeted: bool,
    tls: bool,
    authenticated: bool,
    auth_failures: u32,
    env: Envelope,
}

/// How a line read ended.
pub(super) enum Line {
    Complete,
    /// Longer than allowed; the rest up to the newline was discarded.
    TooLong,
    Eof,
}

/// How the command loop ended.
enum Next {
    Done,
    StartTls,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("idle for too long")]
    Idle,
    #[error("the transaction took longer than transaction_timeout")]
    TransactionTimeout,
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("too many failed AUTH attempts")]
    AuthFailures,
    #[error("shutting down")]
    Shutdown,
}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> Self {
        SessionError::Io(std::io::Error::other(e))
    }
}

/// A reply, and whether the connection ends after it.
type Reply = String;

impl Session {
    fn refused(&self, reason: &str) {
        if let Some(m) = &self.metrics {
            m.journal_refused(reason);
        }
    }

    pub(super) async fn run<S>(self, stream: S) -> Result<(), SessionError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut conn = BufReader::with_capacity(READ_BUFFER, stream);
        if !self.peer.allowed {
            return self.refuse(&mut conn).await;
        }
        conn.write_all(b"220 tocsin journal ESMTP ready\r\n")
            .await?;
        conn.flush().await?;
        let mut state = State::default();
        match self.commands(&mut conn, &mut state).await? {
            Next::Done => Ok(()),
            Next::StartTls => {
                let acceptor = self.tls.clone().expect("STARTTLS is offered only with TLS");
                // Whatever the client pipelined behind STARTTLS is dropped with the buffer.
                let tcp = conn.into_inner();
                let tls = tokio::time::timeout(IDLE, acceptor.accept(tcp))
                    .await
                    .map_err(|_| SessionError::Idle)?
                    .map_err(SessionError::Tls)?;
                let mut conn = BufReader::with_capacity(READ_BUFFER, tls);
                let mut state = State {
                    tls: true,
                    ..State::default()
                };
                match self.commands(&mut conn, &mut state).await? {
                    Next::Done | Next::StartTls => Ok(()),
                }
            }
        }
    }

    /// RFC 5321 §3.1: a server that will not serve a client may greet it 554 and answer every
    /// command but QUIT 503, so the client's MTA reports a refusal rather than retrying.
    async fn refuse<S>(&self, conn: &mut BufReader<S>) -> Result<(), SessionError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let ip = self.peer.ip.map_or_else(|| "?".into(), |i| i.to_string());
        tracing::warn!(peer = %ip, "journal connection from outside allow_from refused");
        self.refused("peer");
        conn.write_all(
            format!("554 5.7.1 {ip} is not allowed to journal to this listener\r\n").as_bytes(),
        )
        .await?;
        conn.flush().await?;
        let until = Instant::now() + REFUSED_GRACE;
        let mut line = Vec::with_capacity(128);
        loop {
            line.clear();
            let read =
                tokio::time::timeout_at(until, read_line(conn, &mut line, MAX_COMMAND_LINE)).await;
            let Ok(read) = read else { return Ok(()) };
            match read? {
                Line::Eof => return Ok(()),
                _ if trim_crlf(&line).eq_ignore_ascii_case(b"QUIT") => {
                    conn.write_all(b"221 2.0.0 bye\r\n").await?;
                    conn.flush().await?;
                    return Ok(());
                }
                _ => {
                    conn.write_all(b"503 5.7.1 not allowed; say QUIT\r\n")
                        .await?;
                    conn.flush().await?;
                }
            }
        }
    }

    /// Reads one command line within the idle timeout and the transaction's deadline.
    async fn next_line<R: AsyncBufRead + Unpin>(
        &self,
        r: &mut R,
        line: &mut Vec<u8>,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<Line, SessionError> {
        let idle = Instant::now() + IDLE;
        let until = deadline.map_or(idle, |d| d.min(idle));
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(SessionError::Shutdown),
            r = tokio::time::timeout_at(until, read_line(r, line, max)) => match r {
                Ok(read) => Ok(read?),
                Err(_) if deadline.is_some_and(|d| d <= idle) => Err(SessionError::TransactionTimeout),
                Err(_) => Err(SessionError::Idle),
            }
        }
    }

    async fn commands<S>(
        &self,
        conn: &mut BufReader<S>,
        state: &mut State,
    ) -> Result<Next, SessionError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let max = self.config.max_message_size;
        let mut line = Vec::with_capacity(512);
        loop {
            line.clear();
            let read = match self
                .next_line(conn, &mut line, MAX_COMMAND_LINE, state.env.deadline)
                .await
            {
                Ok(read) => read,
                Err(e) => return Err(self.closing(conn, e).await),
            };
            let reply: Reply = match read {
                Line::Eof => return Ok(Next::Done),
                Line::TooLong => "500 5.5.2 line too long\r\n".into(),
                Line::Complete => {
                    let text = String::from_utf8_lossy(trim_crlf(&line)).into_owned();
                    let (verb, rest) = match text.split_once(' ') {
                        Some((v, r)) => (v.to_ascii_uppercase(), r.trim()),
                        None => (text.trim().to_ascii_uppercase(), ""),
                    };
                    match verb.as_str() {
                        "EHLO" | "HELO" if rest.is_empty() => {
                            "501 5.5.4 give your host name\r\n".into()
                        }
                        "EHLO" => {
                            state.greeted = true;
                            state.env = Envelope::default();
                            let mut ext = format!(
                                "250-tocsin journal\r\n250-PIPELINING\r\n250-SIZE {max}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                            );
                            if self.tls.is_some() && !state.tls {
                                ext.push_str("250-STARTTLS\r\n");
                            }
                            if self.auth_offered(state) {
                                ext.push_str("250-AUTH PLAIN LOGIN\r\n");
                            }
                            ext.push_str("250 ENHANCEDSTATUSCODES\r\n");
                            ext
                        }
                        "HELO" => {
                            state.greeted = true;
                            state.env = Envelope::default();
                            "250 tocsin journal\r\n".into()
                        }
                        "STARTTLS" => match () {
                            _ if self.tls.is_none() => {
                                "502 5.5.1 STARTTLS is not offered here\r\n".into()
                            }
                            _ if state.tls => "503 5.5.1 TLS is already on\r\n".into(),
                            _ if !rest.is_empty() => {
                                "501 5.5.4 STARTTLS takes no argument\r\n".into()
                            }
                            _ if !state.greeted => "503 5.5.1 EHLO first\r\n".into(),
                            _ => {
                                conn.write_all(b"220 2.0.0 ready to start TLS\r\n").await?;
                                conn.flush().await?;
                                return Ok(Next::StartTls);
                            }
                        },
                        "AUTH" => self.auth(conn, rest, state).await?,
                        "MAIL" => self.mail(rest, state),
                        "RCPT" => self.rcpt(rest, &mut state.env),
                        "DATA" if !rest.is_empty() => "501 5.5.4 DATA takes no argument\r\n".into(),
                        "DATA" if state.env.from.is_none() => "503 5.5.1 MAIL first\r\n".into(),
                        "DATA" if state.env.rcpt.is_empty() => "503 5.5.1 RCPT first\r\n".into(),
                        "DATA" => {
                            conn.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                                .await?;
                            conn.flush().await?;
                            let reply = match self.data(conn, state).await {
                                Ok(reply) => reply,
                                Err(e) => return Err(self.closing(conn, e).await),
                            };
                            state.env = Envelope::default();
                            reply
                        }
                        "RSET" => {
                            state.env = Envelope::default();
                            "250 2.0.0 reset\r\n".into()
                        }
                        "NOOP" => "250 2.0.0 ok\r\n".into(),
                        "VRFY" => "252 2.5.2 cannot verify, will accept\r\n".into(),
                        "HELP" => {
                            "214 2.0.0 journal listener: EHLO STARTTLS AUTH MAIL RCPT DATA RSET NOOP QUIT\r\n"
                                .into()
                        }
                        "QUIT" => {
                            conn.write_all(b"221 2.0.0 bye\r\n").await?;
                            conn.flush().await?;
                            return Ok(Next::Done);
                        }
                        "" => "500 5.5.2 empty command\r\n".into(),
                        _ => "500 5.5.2 command not recognised\r\n".into(),
                    }
                }
            };
            conn.write_all(reply.as_bytes()).await?;
            if state.auth_failures >= AUTH_ATTEMPTS {
                conn.write_all(b"421 4.7.0 too many failed AUTH attempts; closing\r\n")
                    .await?;
                conn.flush().await?;
                return Err(SessionError::AuthFailures);
            }
            // Pipelining (RFC 2920): answer a group once the client's input is drained.
            if conn.buffer().is_empty() {
                conn.flush().await?;
            }
        }
    }

    /// Tells the client why the connection ends (a deadline passed, shutdown), then gives the
    /// error back.
    async fn closing<S>(&self, conn: &mut BufReader<S>, e: SessionError) -> SessionError
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let reply: &[u8] = match e {
            SessionError::TransactionTimeout => {
                tracing::warn!(peer = ?self.peer.ip, "journal transaction over transaction_timeout; closed");
                self.refused("timeout");
                b"421 4.4.2 transaction took too long; closing\r\n"
            }
            SessionError::Idle => b"421 4.4.2 idle too long; closing\r\n",
            SessionError::Shutdown => b"421 4.3.2 shutting down\r\n",
            _ => return e,
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            conn.write_all(reply).await?;
            conn.flush().await
        })
        .await;
        e
    }

    fn auth_offered(&self, state: &State) -> bool {
        self.config.auth.is_some() && (state.tls || self.peer.loopback)
    }

    /// AUTH PLAIN / LOGIN (RFC 4954, RFC 4616), with an initial response or after a 334.
    async fn auth<S>(
        &self,
        conn: &mut BufReader<S>,
        rest: &str,
        state: &mut State,
    ) -> Result<Reply, SessionError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(creds) = &self.config.auth else {
            return Ok("502 5.5.1 AUTH is not offered here\r\n".into());
        };
        if !state.greeted {
            return Ok("503 5.5.1 EHLO first\r\n".into());
        }
        if !self.auth_offered(state) {
            return Ok("538 5.7.11 encryption required: STARTTLS first\r\n".into());
        }
        if state.authenticated {
            return Ok("503 5.5.1 already authenticated\r\n".into());
        }
        if state.env.from.is_some() {
            return Ok("503 5.5.1 AUTH not allowed during a transaction\r\n".into());
        }
        let (mechanism, initial) = match rest.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().to_owned())),
            None => (rest.to_ascii_uppercase(), None),
        };
        let (user, pass) = match mechanism.as_str() {
            "PLAIN" => {
                let response = match initial {
                    Some(i) => i,
                    None => match self.challenge(conn, "").await? {
                        Some(r) => r,
                        None => return Ok("501 5.7.0 AUTH cancelled\r\n".into()),
                    },
                };
                let Some(decoded) = decode64(&response) else {
                    return Ok("501 5.5.2 not base64\r\n".into());
                };
                let mut fields = decoded.split(|b| *b == 0);
                let (_authzid, user, pass) = (fields.next(), fields.next(), fields.next());
                match (user, pass, fields.next()) {
                    (Some(u), Some(p), None) => (u.to_vec(), p.to_vec()),
                    _ => return Ok("501 5.5.2 malformed PLAIN response\r\n".into()),
                }
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => Some(i),
                    None => self.challenge(conn, "VXNlcm5hbWU6").await?,
                };
                let Some(user) = user else {
                    return Ok("501 5.7.0 AUTH cancelled\r\n".into());
                };
                let Some(pass) = self.challenge(conn, "UGFzc3dvcmQ6").await? else {
                    return Ok("501 5.7.0 AUTH cancelled\r\n".into());
                };
                match (decode64(&user), decode64(&pass)) {
                    (Some(u), Some(p)) => (u, p),
                    _ => return Ok("501 5.5.2 not base64\r\n".into()),
                }
            }
            _ => return Ok("504 5.5.4 mechanisms: PLAIN LOGIN\r\n".into()),
        };
        // Both compared whole, in constant time, so timing tells nothing of either.
        let user_ok = user.ct_eq(creds.username.as_bytes());
        let pass_ok = pass.ct_eq(creds.password.expose().as_bytes());
        if bool::from(user_ok & pass_ok) {
            state.authenticated = true;
            return Ok("235 2.7.0 authenticated\r\n".into());
        }
        state.auth_failures += 1;
        self.refused("auth");
        tracing::warn!(peer = ?self.peer.ip, "journal AUTH with wrong credentials refused");
        Ok("535 5.7.8 authentication credentials invalid\r\n".into())
    }

    /// Sends a 334 challenge and reads the response line; `None` when the client cancels (`*`).
    async fn challenge<S>(
        &self,
        conn: &mut BufReader<S>,
        prompt: &str,
    ) -> Result<Option<String>, SessionError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        conn.write_all(format!("334 {prompt}\r\n").as_bytes())
            .await?;
        conn.flush().await?;
        let mut line = Vec::with_capacity(256);
        match self
            .next_line(conn, &mut line, MAX_COMMAND_LINE, None)
            .await?
        {
            Line::Complete => {
                let text = String::from_utf8_lossy(trim_crlf(&line)).trim().to_owned();
                Ok((text != "*").then_some(text))
            }
            Line::TooLong => Ok(None),
            Line::Eof => Err(SessionError::Io(std::io::ErrorKind::UnexpectedEof.into())),
        }
    }

    fn mail(&self, rest: &str, state: &mut State) -> Reply {
        if !state.greeted {
            return "503 5.5.1 EHLO first\r\n".into();
        }
        if self.config.require_tls && !state.tls {
            return "530 5.7.0 must issue a STARTTLS command first\r\n".into();
        }
        if self.config.auth.is_some() && !state.authenticated {
            return "530 5.7.0 authentication required\r\n".into();
        }
        let env = &mut state.env;
        if env.from.is_some() {
            return "503 5.5.1 nested MAIL\r\n".into();
        }
        let Some(arg) = strip_prefix_ci(rest, "FROM:") else {
            return "501 5.5.4 syntax: MAIL FROM:<address>\r\n".into();
        };
        let Some((path, params)) = path_and_params(arg) else {
            return "501 5.1.7 bad sender address syntax\r\n".into();
        };
        for p in params.split_whitespace() {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.to_ascii_uppercase().as_str() {
                "SIZE" => match v.parse::<usize>() {
                    Ok(n) if n > self.config.max_message_size => {
                        return format!(
                            "552 5.3.4 message size exceeds the limit of {} bytes\r\n",
                            self.config.max_message_size
                        );
                    }
                    Ok(_) => {}
                    Err(_) => return "501 5.5.4 bad SIZE value\r\n".into(),
                },
                "BODY" if v.eq_ignore_ascii_case("8BITMIME") || v.eq_ignore_ascii_case("7BIT") => {}
                // RFC 6531: UTF-8 in addresses and headers. Without it Postfix bounces the
                // journal copy of every internationalised message for good.
                "SMTPUTF8" if v.is_empty() && !p.contains('=') => {}
                // RFC 4954 §5: the submitter's identity, which the journal does not use.
                "AUTH" if self.config.auth.is_some() => {}
                _ => return format!("555 5.5.4 unsupported parameter {k}\r\n"),
            }
        }
        env.from = Some(summary::normalise(path));
        env.deadline = Some(Instant::now() + self.config.transaction_timeout);
        "250 2.1.0 sender ok\r\n".into()
    }

    pub(super) fn rcpt(&self, rest: &str, env: &mut Envelope) -> Reply {
        if env.from.is_none() {
            return "503 5.5.1 MAIL first\r\n".into();
        }
        let Some(arg) = strip_prefix_ci(rest, "TO:") else {
            return "501 5.5.4 syntax: RCPT TO:<address>\r\n".into();
        };
        let Some((path, _params)) = path_and_params(arg) else {
            return "501 5.1.3 bad recipient address syntax\r\n".into();
        };
        if path.is_empty() || !path.contains('@') {
            return "501 5.1.3 bad recipient address syntax\r\n".into();
        }
        if env.rcpt.len() >= self.config.max_recipients {
            return "452 4.5.3 too many recipients\r\n".into();
        }
        env.rcpt.push(summary::normalise(path));
        "250 2.1.5 recipient ok\r\n".into()
    }

    /// Streams the message to its terminating dot through the summariser, then commits the
    /// summary. Nothing of the message is held beyond the reader's bounded state.
    async fn data<R: AsyncBufRead + Unpin>(
        &self,
        r: &mut R,
        state: &State,
    ) -> Result<Reply, SessionError> {
        let env = &state.env;
        let max = self.config.max_message_size;
        let mut reader = Some(Reader::new(
            &self.config.name,
            self.key.clone(),
            self.config.max_recipients,
        ));
        let mut size = 0usize;
        let mut line = Vec::with_capacity(1024);
        // Whether the previous chunk ended a line: only then can a dot start one.
        let mut at_line_start = true;
        loop {
            line.clear();
            let read = self
                .next_line(r, &mut line, MAX_DATA_CHUNK, env.deadline)
                .await?;
            let complete = match read {
                Line::Eof => {
                    return Err(SessionError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                Line::Complete => line.ends_with(b"\n"),
                Line::TooLong => false,
            };
            let mut chunk: &[u8] = &line;
            if at_line_start {
                if trim_crlf(chunk) == b"." && complete {
                    break;
                }
                if chunk.starts_with(b".") {
                    chunk = &chunk[1..];
                }
            }
            size = size.saturating_add(chunk.len());
            if size > max {
                // Read to the end (the client is still sending) but stop summarising.
                reader = None;
            }
            if let Some(reader) = &mut reader {
                reader.push(chunk, at_line_start, complete);
            }
            at_line_start = complete;
        }
        let Some(reader) = reader else {
            return Ok(format!(
                "552 5.3.4 message exceeds the limit of {max} bytes\r\n"
            ));
        };
        let from = env.from.as_deref().unwrap_or_default();
        let mut summary = match reader.finish(from, &env.rcpt) {
            Ok(s) => s,
            Err(e) => return Ok(format!("554 5.6.0 {e}\r\n")),
        };
        // The peer is in allow_from (else nothing was read), and AUTH passed when configured.
        summary.origin_proven =
            self.peer.allowed && (self.config.auth.is_none() || state.authenticated);
        Ok(match self.committer.commit(&summary).await {
            Ok(seq) => format!("250 2.0.0 queued as {seq}\r\n"),
            Err(e) => {
                tracing::error!(error = %e, "journaled message not queued; the MTA will retry");
                "451 4.3.0 cannot queue the message now; try again\r\n".into()
            }
        })
    }
}

fn decode64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// Reads up to and including `\n`, at most `max` bytes; a longer line is cut (the caller
/// decides whether the rest is discarded or read as the next piece).
pub(super) async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if out.is_empty() {
                Line::Eof
            } else {
                Line::Complete
            });
        }
        let room = max - out.len();
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) if i < room => {
                out.extend_from_slice(&buf[..=i]);
                r.consume(i + 1);
                return Ok(Line::Complete);
            }
            _ if buf.len() < room => {
                let n = buf.len();
                out.extend_from_slice(buf);
                r.consume(n);
            }
            _ => {
                out.extend_from_slice(&buf[..room]);
                r.consume(room);
                if max == MAX_COMMAND_LINE {
                    skip_line(r).await?;
                }
                return Ok(Line::TooLong);
            }
        }
    }
}

/// Discards input up to and including the next `\n`.
pub(super) async fn skip_line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<()> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

pub(super) fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

pub(super) fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s[prefix.len()..].trim_start())
}

/// `<path> PARAMS` → (path, params). The null path `<>` is a valid sender (bounces).
pub(super) fn path_and_params(arg: &str) -> Option<(&str, &str)> {
    let arg = arg.trim();
    let rest = arg.strip_prefix('<')?;
    let end = rest.find('>')?;
    let path = &rest[..end];
    if path.contains(char::is_whitespace) {
        return None;
    }
    Some((path, rest[end + 1..].trim()))
}
