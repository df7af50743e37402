//! The small subset of IMAP4rev1 (RFC 3501) with IDLE (RFC 2177) the feed needs: LOGIN,
//! EXAMINE (read-only: nothing tocsin does can set `\Seen`), UID FETCH of headers with
//! `BODY.PEEK`, IDLE and DONE, LOGOUT. Responses are read line by line with their literals
//! (`{N}` then N bytes), each line and literal bounded.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// The longest response line or literal accepted: a header block is small; a server sending
/// more is broken or hostile.
const MAX_LINE: usize = 64 * 1024;
const MAX_LITERAL: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server refused the login: {0}")]
    LoginRefused(String),
    #[error("the server answered {command} with: {answer}")]
    Refused { command: String, answer: String },
    #[error("unexpected answer: {0}")]
    Protocol(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// One response line with its literals in order.
#[derive(Debug, Default)]
pub struct Response {
    /// The text of the line, each literal replaced by `{N}`.
    pub line: String,
    pub literals: Vec<Vec<u8>>,
}

/// What EXAMINE reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    pub uid_validity: u32,
    pub uid_next: Option<u32>,
}

/// A message's UID and its header block.
#[derive(Debug)]
pub struct Fetched {
    pub uid: u32,
    pub header: Vec<u8>,
}

pub struct Session<S> {
    io: BufReader<S>,
    tag: u32,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Reads the greeting; `timeout` bounds every answer but IDLE's wait.
    pub async fn start(stream: S, timeout: Duration) -> Result<Session<S>, ImapError> {
        let mut s = Session {
            io: BufReader::new(stream),
            tag: 0,
            timeout,
        };
        let greeting = s.read_timed().await?;
        if !greeting.line.starts_with("* OK") && !greeting.line.starts_with("* PREAUTH") {
            return Err(ImapError::Protocol(greeting.line));
        }
        Ok(s)
    }

    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), ImapError> {
        let cmd = format!("LOGIN {} {}", quote(user), quote(password));
        match self.command(&cmd, "LOGIN").await {
            Err(ImapError::Refused { answer, .. }) => Err(ImapError::LoginRefused(answer)),
            other => other.map(|_| ()),
        }
    }

    /// Opens the mailbox read-only.
    pub async fn examine(&mut self, mailbox: &str) -> Result<Selected, ImapError> {
        let untagged = self
            .command(&format!("EXAMINE {}", quote(mailbox)), "EXAMINE")
            .await?;
        let code = |name: &str| {
            untagged.iter().find_map(|r| {
                let rest = r.line.split_once(&format!("[{name} "))?.1;
                rest.split(']').next()?.trim().parse::<u32>().ok()
            })
        };
        let uid_validity = code("UIDVALIDITY")
            .ok_or_else(|| ImapError::Protocol("EXAMINE without UIDVALIDITY".into()))?;
        Ok(Selected {
            uid_validity,
            uid_next: code("UIDNEXT"),
        })
    }

    /// Headers of the messages with UID `from` or above, in UID order.
    pub async fn fetch_from(&mut self, from: u32) -> Result<Vec<Fetched>, ImapError> {
        let untagged = self
            .command(
                &format!("UID FETCH {from}:* (UID BODY.PEEK[HEADER])"),
                "UID FETCH",
            )
            .await?;
        let mut out = Vec::new();
        for r in untagged {
            if !r.line.contains(" FETCH ") {
                continue;
            }
            let uid = r
                .line
                .split_once("UID ")
                .and_then(|(_, rest)| {
                    rest.split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
                .ok_or_else(|| ImapError::Protocol(format!("FETCH without UID: {}", r.line)))?;
            // `from:*` names the last message even when its UID is below `from`.
            if uid < from {
                continue;
            }
            let header = r.literals.into_iter().next().unwrap_or_default();
            out.push(Fetched { uid, header });
        }
        out.sort_by_key(|f| f.uid);
        Ok(out)
    }

    /// Waits in IDLE until the server reports a change to the mailbox or `wait` passes, then
    /// ends IDLE. True when something changed.
    pub async fn idle(&mut self, wait: Duration) -> Result<bool, ImapError> {
        let tag = self.send("IDLE").await?;
        let cont = self.read_timed().await?;
        if !cont.line.starts_with('+') {
            return Err(ImapError::Refused {
                command: "IDLE".into(),
                answer: cont.line,
            });
        }
        let changed = match tokio::time::timeout(wait, self.wait_change()).await {
            Ok(r) => r?,
            Err(_) => false,
        };
        self.io.get_mut().write_all(b"DONE\r\n").await?;
        self.io.get_mut().flush().await?;
        self.finish(&tag, "IDLE").await?;
        Ok(changed)
    }

    async fn wait_change(&mut self) -> Result<bool, ImapError> {
        loop {
            let r = self.read().await?;
            if r.line.ends_with(" EXISTS") || r.line.ends_with(" RECENT") {
                return Ok(true);
            }
            if r.line.starts_with("* BYE") {
                return Err(ImapError::Closed);
            }
        }
    }

    pub async fn logout(&mut self) {
        let _ = self.command("LOGOUT", "LOGOUT").await;
    }

    async fn command(&mut self, cmd: &str, name: &str) -> Result<Vec<Response>, ImapError> {
        let tag = self.send(cmd).await?;
        self.finish(&tag, name).await
    }

    async fn send(&mut self, cmd: &str) -> Result<String, ImapError> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        let w = self.io.get_mut();
        w.write_all(format!("{tag} {cmd}\r\n").as_bytes()).await?;
        w.flush().await?;
        Ok(tag)
    }

    /// Reads until the tagged answer: the untagged responses on OK, an error otherwise.
    async fn finish(&mut self, tag: &str, name: &str) -> Result<Vec<Response>, ImapError> {
        let mut untagged = Vec::new();
        loop {
            let r = self.read_timed().await?;
            if let Some(rest) = r.line.strip_prefix(tag).and_then(|l| l.strip_prefix(' ')) {
                if rest.starts_with("OK") {
                    return Ok(untagged);
                }
                return Err(ImapError::Refused {
                    command: name.into(),
                    answer: rest.to_owned(),
                });
            }
            if r.line.starts_with("* BYE") {
                return Err(ImapError::Closed);
            }
            untagged.push(r);
        }
    }

    async fn read_timed(&mut self) -> Result<Response, ImapError> {
        let t = self.timeout;
        tokio::time::timeout(t, self.read())
            .await
            .map_err(|_| ImapError::Timeout(t))?
    }

    /// One response: a line, and after each `{N}` at its end N bytes and the line's rest.
    async fn read(&mut self) -> Result<Response, ImapError> {
        let mut r = Response::default();
        loop {
            let mut buf = Vec::new();
            let n = (&mut self.io)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
                .await?;
            if n == 0 {
                return Err(ImapError::Closed);
            }
            if buf.len() > MAX_LINE || !buf.ends_with(b"\n") {
                return Err(ImapError::Protocol("response line too long".into()));
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\r', '\n']);
            r.line.push_str(line);
            let Some(size) = literal_size(line) else {
                return Ok(r);
            };
            if size > MAX_LITERAL {
                return Err(ImapError::Protocol(format!("literal of {size} bytes")));
            }
            let mut lit = vec![0; size];
            self.io.read_exact(&mut lit).await?;
            r.literals.push(lit);
        }
    }
}

/// `{N}` (or `{N+}`) at the end of a line.
fn literal_size(line: &str) -> Option<usize> {
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].trim_end_matches('+').parse().ok()
}

/// An IMAP quoted string.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        if c != '\r' && c != '\n' {
            q.push(c);
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_quotes() {
        assert_eq!(
            literal_size("* 1 FETCH (UID 4 BODY[HEADER] {342}"),
            Some(342)
        );
        assert_eq!(literal_size("* 1 FETCH (UID 4)"), None);
        assert_eq!(quote(r#"p"a\ss"#), r#""p\"a\\ss""#);
        assert_eq!(quote("a\r\nb"), "\"ab\"");
    }
}
