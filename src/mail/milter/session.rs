//! One MTA connection: option negotiation, then per message the envelope (MAIL, RCPT), the
//! headers through the same streaming [`Reader`] as the journal, and at end of message the
//! verdict, made in line: the summary is judged, made durable for the pipeline, and only then
//! answered (accept, quarantine or tempfail), so the first leaky message is held too.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, BufReader};

use super::{Judge, protocol::*};
use crate::{
    config::{Milter, MilterAction},
    mail::{
        journal::Committer,
        summary::{self, Reader},
    },
    model::AddressKey,
};

/// Envelope recipients listed per message at most; the rest are counted.
pub const MAX_ENVELOPE: usize = 100_000;

pub(super) struct Session {
    pub config: Arc<Milter>,
    pub committer: Committer,
    pub judge: Judge,
    pub key: AddressKey,
}

/// One message being read.
struct Message {
    from: String,
    rcpt: Vec<String>,
    unlisted: u64,
    reader: Reader,
    /// Postfix's queue id (`{i}`), when the MTA sent the macro.
    queue_id: Option<String>,
}

impl Session {
    /// Serves the connection; `acked` is called after every packet read (the listener asks the
    /// kernel to acknowledge at once, see [`super::serve`]).
    pub(super) async fn run<S>(self, stream: S, acked: impl Fn(&S)) -> Result<(), ProtocolError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut r = BufReader::new(stream);
        let mut out = Vec::with_capacity(256);
        let mut buf = Vec::with_capacity(4096);
        // Steps the MTA does not wait an answer for (negotiated).
        let mut no_reply = 0u32;
        let mut message: Option<Message> = None;
        let mut queue_id: Option<String> = None;
        loop {
            let read =
                tokio::time::timeout(self.config.idle_timeout, read_packet(&mut r, &mut buf))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?;
            let Some(cmd) = read? else { return Ok(()) };
            acked(r.get_ref());
            // What to answer a step, unless negotiated away.
            let reply = |flag: u32, out: &mut Vec<u8>| {
                if no_reply & flag == 0 {
                    packet(out, SMFIR_CONTINUE, &[]);
                }
            };
            match cmd {
                SMFIC_OPTNEG => {
                    let (version, actions, offered) = optneg(&buf)?;
                    let protocol = WANTED & offered;
                    no_reply = protocol
                        & (SMFIP_NR_CONN
                            | SMFIP_NR_HELO
                            | SMFIP_NR_MAIL
                            | SMFIP_NR_RCPT
                            | SMFIP_NR_DATA
                            | SMFIP_NR_UNKN
                            | SMFIP_NR_HDR
                            | SMFIP_NR_EOH
                            | SMFIP_NR_BODY);
                    let mut data = Vec::with_capacity(12);
                    data.extend_from_slice(&version.min(VERSION).to_be_bytes());
                    data.extend_from_slice(&(actions & SMFIF_QUARANTINE).to_be_bytes());
                    data.extend_from_slice(&protocol.to_be_bytes());
                    packet(&mut out, SMFIC_OPTNEG, &data);
                }
                SMFIC_MACRO => {
                    // {i}, the queue id: Postfix sends it with the steps its
                    // milter_*_macros name (by default from RCPT on).
                    let mut s = strings(buf.get(1..).unwrap_or_default());
                    while let (Some(name), Some(value)) = (s.next(), s.next()) {
                        if name == b"i" || name == b"{i}" {
                            let id = String::from_utf8_lossy(value).into_owned();
                            match &mut message {
                                Some(m) => m.queue_id = Some(id),
                                None => queue_id = Some(id),
                            }
                        }
                    }
                }
                SMFIC_CONNECT => reply(SMFIP_NR_CONN, &mut out),
                SMFIC_HELO => reply(SMFIP_NR_HELO, &mut out),
                SMFIC_MAIL => {
                    let from = strings(&buf).next().unwrap_or_default();
                    message = Some(Message {
                        from: summary::normalise(&String::from_utf8_lossy(from)),
                        rcpt: Vec::new(),
                        unlisted: 0,
                        reader: Reader::new(&self.config.name, self.key.clone(), 0),
                        queue_id: queue_id.take(),
                    });
                    reply(SMFIP_NR_MAIL, &mut out);
                }
                SMFIC_RCPT => {
                    if let Some(m) = &mut message {
                        let to = strings(&buf).next().unwrap_or_default();
                        if m.rcpt.len() < MAX_ENVELOPE {
                            m.rcpt
                                .push(summary::normalise(&String::from_utf8_lossy(to)));
                        } else {
                            m.unlisted += 1;
                        }
                    }
                    reply(SMFIP_NR_RCPT, &mut out);
                }
                SMFIC_DATA => reply(SMFIP_NR_DATA, &mut out),
                SMFIC_UNKNOWN => reply(SMFIP_NR_UNKN, &mut out),
                SMFIC_HEADER => {
                    if let Some(m) = &mut message {
                        header(&mut m.reader, &buf);
                    }
                    reply(SMFIP_NR_HDR, &mut out);
                }
                SMFIC_EOH => {
                    if let Some(m) = &mut message {
                        m.reader.push(b"\r\n", true, true);
                    }
                    reply(SMFIP_NR_EOH, &mut out);
                }
                SMFIC_BODY => reply(SMFIP_NR_BODY, &mut out),
                SMFIC_BODYEOB => {
                    let verdict = match message.take() {
                        Some(m) => self.end_of_message(m).await,
                        None => SMFIR_ACCEPT,
                    };
                    if verdict == SMFIR_QUARANTINE {
                        packet(&mut out, SMFIR_QUARANTINE, b"tocsin: held for review\0");
                        packet(&mut out, SMFIR_ACCEPT, &[]);
                    } else {
                        packet(&mut out, verdict, &[]);
                    }
                }
                SMFIC_ABORT => message = None,
                SMFIC_QUIT_NC => {
                    message = None;
                    queue_id = None;
                }
                SMFIC_QUIT => {
                    flush(r.get_mut(), &mut out).await?;
                    return Ok(());
                }
                other => return Err(ProtocolError::Malformed(other as char)),
            }
            flush(r.get_mut(), &mut out).await?;
        }
    }

    /// Judges the message, queues its summary, and returns the answer: accept, quarantine or
    /// tempfail. A message a rule finds is answered only once its summary is on disk (one that
    /// cannot be made durable is answered tempfail: the MTA keeps it and the client retries),
    /// so no page is lost to a crash. A message no rule finds is answered at once and reaches
    /// the disk with the next group commit (sled also flushes every 200 ms): a crash in between
    /// can only under-count its sender's volume, and waiting on the disk for every clean
    /// message would cost the MTA most of its throughput.
    async fn end_of_message(&self, m: Message) -> u8 {
        let mut summary = match m.reader.finish(&m.from, &m.rcpt) {
            Ok(s) => s,
            // No header at all: nothing a mail rule reads.
            Err(_) => return SMFIR_ACCEPT,
        };
        summary.envelope_unlisted = m.unlisted;
        // The peer is in allow_from (else nothing was read): the MTA itself.
        summary.origin_proven = true;
        let action = (self.judge)(&summary).map(|rule| (rule, self.config.action(rule)));
        if let Some((_, MilterAction::Hold)) = action {
            summary.held_at_mta.clone_from(&m.queue_id);
        }
        let queued = match action {
            Some(_) => self.committer.commit(&summary).await.map(drop),
            None => self.committer.enqueue(&summary).await,
        };
        if let Err(e) = queued {
            tracing::error!(error = %e, "milter: message not queued; answered tempfail");
            return SMFIR_TEMPFAIL;
        }
        match action {
            Some((rule, a)) if a != MilterAction::Observe => {
                tracing::warn!(
                    %rule,
                    action = ?a,
                    queue_id = m.queue_id.as_deref().unwrap_or("?"),
                    sender = %summary.sender,
                    "milter: message stopped at the MTA"
                );
                match a {
                    MilterAction::Hold => SMFIR_QUARANTINE,
                    _ => SMFIR_TEMPFAIL,
                }
            }
            _ => SMFIR_ACCEPT,
        }
    }
}

/// Feeds one SMFIC_HEADER (`name\0value\0`) to the reader as the header lines it was: the
/// value's embedded line ends are its folds.
fn header(reader: &mut Reader, data: &[u8]) {
    let mut s = strings(data);
    let (Some(name), Some(value)) = (s.next(), s.next()) else {
        return;
    };
    let mut line = Vec::with_capacity(name.len() + value.len() + 4);
    for (i, part) in value.split(|b| *b == b'\n').enumerate() {
        let part = part.strip_suffix(b"\r").unwrap_or(part);
        line.clear();
        if i == 0 {
            line.extend_from_slice(name);
            line.extend_from_slice(b": ");
        } else if part.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        line.extend_from_slice(part);
        line.extend_from_slice(b"\r\n");
        reader.push(&line, true, true);
    }
}
