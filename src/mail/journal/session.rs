//! One SMTP session: a small RFC 5321 state machine over a connection (or a byte slice, for the
//! fuzzers), handing each accepted message's summary to the committer.

use std::{sync::Arc, time::Duration};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio_util::sync::CancellationToken;

use super::Committer;
use crate::{config::Journal, mail::summary, store::StoreError};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets; some clients send longer
/// MAIL lines with parameters, so allow a little more before refusing.
pub(super) const MAX_COMMAND_LINE: usize = 2048;
/// A text line of DATA may be 1000 octets; longer lines are accepted (the size limit bounds
/// the message) but read in pieces of at most this.
pub(super) const MAX_DATA_CHUNK: usize = 64 * 1024;
/// An idle client is dropped after this long (RFC 5321 §4.5.3.2 suggests 5 minutes).
pub(super) const IDLE: Duration = Duration::from_secs(300);

pub(super) struct Session {
    pub(super) config: Arc<Journal>,
    pub(super) committer: Committer,
    pub(super) shutdown: CancellationToken,
}

/// The envelope of the transaction in progress.
#[derive(Default)]
pub(super) struct Envelope {
    pub(super) from: Option<String>,
    pub(super) rcpt: Vec<String>,
}

/// How a line read ended.
pub(super) enum Line {
    Complete,
    /// Longer than allowed; the rest up to the newline was discarded.
    TooLong,
    Eof,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("idle for too long")]
    Idle,
    #[error("shutting down")]
    Shutdown,
}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> Self {
        SessionError::Io(std::io::Error::other(e))
    }
}

impl Session {
    pub(super) async fn run(
        self,
        read: impl tokio::io::AsyncRead + Unpin,
        write: impl tokio::io::AsyncWrite + Unpin,
    ) -> Result<(), SessionError> {
        let mut r = BufReader::with_capacity(64 * 1024, read);
        let mut w = BufWriter::new(write);
        let max = self.config.max_message_size;
        w.write_all(b"220 tocsin journal ESMTP ready\r\n").await?;
        w.flush().await?;
        let mut greeted = false;
        let mut env = Envelope::default();
        let mut line = Vec::with_capacity(512);
        loop {
            line.clear();
            let read = tokio::select! {
                _ = self.shutdown.cancelled() => {
                    w.write_all(b"421 4.3.2 shutting down\r\n").await?;
                    w.flush().await?;
                    return Err(SessionError::Shutdown);
                }
                r = tokio::time::timeout(IDLE, read_line(&mut r, &mut line, MAX_COMMAND_LINE)) => r,
            };
            let reply: String = match read.map_err(|_| SessionError::Idle)?? {
                Line::Eof => return Ok(()),
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
                            greeted = true;
                            env = Envelope::default();
                            format!(
                                "250-tocsin journal\r\n250-PIPELINING\r\n250-SIZE {max}\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
                            )
                        }
                        "HELO" => {
                            greeted = true;
                            env = Envelope::default();
                            "250 tocsin journal\r\n".into()
                        }
                        "MAIL" => self.mail(rest, greeted, &mut env),
                        "RCPT" => self.rcpt(rest, &mut env),
                        "DATA" if !rest.is_empty() => "501 5.5.4 DATA takes no argument\r\n".into(),
                        "DATA" if env.from.is_none() => "503 5.5.1 MAIL first\r\n".into(),
                        "DATA" if env.rcpt.is_empty() => "503 5.5.1 RCPT first\r\n".into(),
                        "DATA" => {
                            w.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                                .await?;
                            w.flush().await?;
                            let reply = self.data(&mut r, &env).await?;
                            env = Envelope::default();
                            reply
                        }
                        "RSET" => {
                            env = Envelope::default();
                            "250 2.0.0 reset\r\n".into()
                        }
                        "NOOP" => "250 2.0.0 ok\r\n".into(),
                        "VRFY" => "252 2.5.2 cannot verify, will accept\r\n".into(),
                        "HELP" => {
                            "214 2.0.0 journal listener: EHLO MAIL RCPT DATA RSET NOOP QUIT\r\n"
                                .into()
                        }
                        "QUIT" => {
                            w.write_all(b"221 2.0.0 bye\r\n").await?;
                            w.flush().await?;
                            return Ok(());
                        }
                        "" => "500 5.5.2 empty command\r\n".into(),
                        _ => "500 5.5.2 command not recognised\r\n".into(),
                    }
                }
            };
            w.write_all(reply.as_bytes()).await?;
            // Pipelining (RFC 2920): answer a group once the client's input is drained.
            if r.buffer().is_empty() {
                w.flush().await?;
            }
        }
    }

    pub(super) fn mail(&self, rest: &str, greeted: bool, env: &mut Envelope) -> String {
        if !greeted {
            return "503 5.5.1 EHLO first\r\n".into();
        }
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
                _ => return format!("555 5.5.4 unsupported parameter {k}\r\n"),
            }
        }
        env.from = Some(summary::normalise(path));
        "250 2.1.0 sender ok\r\n".into()
    }

    pub(super) fn rcpt(&self, rest: &str, env: &mut Envelope) -> String {
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

    /// Reads the message to its terminating dot, then summarises and commits it.
    pub(super) async fn data<R: AsyncBufRead + Unpin>(
        &self,
        r: &mut R,
        env: &Envelope,
    ) -> Result<String, SessionError> {
        let max = self.config.max_message_size;
        let mut message = Vec::with_capacity(16 * 1024);
        let mut oversize = false;
        let mut line = Vec::with_capacity(1024);
        // Whether the previous chunk ended a line: only then can a dot start one.
        let mut at_line_start = true;
        loop {
            line.clear();
            let read = tokio::time::timeout(IDLE, read_line(r, &mut line, MAX_DATA_CHUNK))
                .await
                .map_err(|_| SessionError::Idle)??;
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
            at_line_start = complete;
            if !oversize {
                if message.len() + chunk.len() > max {
                    oversize = true;
                    message = Vec::new();
                } else {
                    message.extend_from_slice(chunk);
                }
            }
        }
        if oversize {
            return Ok(format!(
                "552 5.3.4 message exceeds the limit of {max} bytes\r\n"
            ));
        }
        let from = env.from.as_deref().unwrap_or_default();
        let summary = match summary::summarise(&self.config.name, &message, from, &env.rcpt) {
            Ok(s) => s,
            Err(e) => return Ok(format!("554 5.6.0 {e}\r\n")),
        };
        drop(message);
        Ok(match self.committer.commit(&summary).await {
            Ok(seq) => format!("250 2.0.0 queued as {seq}\r\n"),
            Err(e) => {
                tracing::error!(error = %e, "journaled message not queued; the MTA will retry");
                "451 4.3.0 cannot queue the message now; try again\r\n".into()
            }
        })
    }
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
