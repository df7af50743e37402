//! The milter wire protocol (Sendmail's libmilter, version 6, as Postfix speaks it): every
//! packet is a 4-byte big-endian length, one command byte, then the command's data. Codes from
//! sendmail's `include/libmilter/mfdef.h`.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version tocsin speaks (Sendmail 8.14+, Postfix 2.6+).
pub const VERSION: u32 = 6;

// Commands, MTA → milter.
pub const SMFIC_ABORT: u8 = b'A';
pub const SMFIC_BODY: u8 = b'B';
pub const SMFIC_CONNECT: u8 = b'C';
pub const SMFIC_MACRO: u8 = b'D';
pub const SMFIC_BODYEOB: u8 = b'E';
pub const SMFIC_HELO: u8 = b'H';
pub const SMFIC_QUIT_NC: u8 = b'K';
pub const SMFIC_HEADER: u8 = b'L';
pub const SMFIC_MAIL: u8 = b'M';
pub const SMFIC_EOH: u8 = b'N';
pub const SMFIC_OPTNEG: u8 = b'O';
pub const SMFIC_QUIT: u8 = b'Q';
pub const SMFIC_RCPT: u8 = b'R';
pub const SMFIC_DATA: u8 = b'T';
pub const SMFIC_UNKNOWN: u8 = b'U';

// Responses, milter → MTA.
pub const SMFIR_ACCEPT: u8 = b'a';
pub const SMFIR_CONTINUE: u8 = b'c';
pub const SMFIR_QUARANTINE: u8 = b'q';
pub const SMFIR_TEMPFAIL: u8 = b't';

/// Action flag: the filter may quarantine (Postfix: the hold queue).
pub const SMFIF_QUARANTINE: u32 = 0x20;

// Protocol flags: steps the MTA need not send, and steps the filter will not answer.
pub const SMFIP_NOBODY: u32 = 0x10;
pub const SMFIP_NR_HDR: u32 = 0x80;
pub const SMFIP_NOUNKNOWN: u32 = 0x100;
pub const SMFIP_NODATA: u32 = 0x200;
pub const SMFIP_NR_CONN: u32 = 0x1000;
pub const SMFIP_NR_HELO: u32 = 0x2000;
pub const SMFIP_NR_MAIL: u32 = 0x4000;
pub const SMFIP_NR_RCPT: u32 = 0x8000;
pub const SMFIP_NR_DATA: u32 = 0x10000;
pub const SMFIP_NR_UNKN: u32 = 0x20000;
pub const SMFIP_NR_EOH: u32 = 0x40000;
pub const SMFIP_NR_BODY: u32 = 0x80000;

/// The steps tocsin asks to skip or leave unanswered when the MTA offers it: it reads the
/// envelope and the headers, never the body, and decides only at end of message.
pub const WANTED: u32 = SMFIP_NOBODY
    | SMFIP_NOUNKNOWN
    | SMFIP_NODATA
    | SMFIP_NR_CONN
    | SMFIP_NR_HELO
    | SMFIP_NR_MAIL
    | SMFIP_NR_RCPT
    | SMFIP_NR_DATA
    | SMFIP_NR_UNKN
    | SMFIP_NR_HDR
    | SMFIP_NR_EOH
    | SMFIP_NR_BODY;

/// A packet larger than this is refused (the connection closed). Postfix sends body chunks of
/// at most 64 KiB and a header of at most `header_size_limit` (100 KiB by default).
pub const MAX_PACKET: usize = 4 * 1024 * 1024;

/// Why a connection could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("packet of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("empty packet")]
    Empty,
    #[error("malformed {0:?} command")]
    Malformed(char),
}

/// Reads one packet: (command, data). `None` at a clean end of stream.
pub async fn read_packet<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<u8>, ProtocolError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Err(ProtocolError::Empty);
    }
    if len > MAX_PACKET {
        return Err(ProtocolError::TooLarge(len));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    let cmd = buf.remove(0);
    Ok(Some(cmd))
}

/// Appends one packet to `out`.
pub fn packet(out: &mut Vec<u8>, cmd: u8, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32 + 1).to_be_bytes());
    out.push(cmd);
    out.extend_from_slice(data);
}

/// Writes what was appended and clears it.
pub async fn flush<W: AsyncWrite + Unpin>(w: &mut W, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        w.write_all(out).await?;
        w.flush().await?;
        out.clear();
    }
    Ok(())
}

/// The NUL-terminated strings of a command's data.
pub fn strings(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    data.split(|b| *b == 0)
}

/// SMFIC_OPTNEG's three numbers: version, actions, protocol flags.
pub fn optneg(data: &[u8]) -> Result<(u32, u32, u32), ProtocolError> {
    let n = |i: usize| {
        data.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    match (n(0), n(1), n(2)) {
        (Some(v), Some(a), Some(p)) => Ok((v, a, p)),
        _ => Err(ProtocolError::Malformed('O')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn packets_round_trip() {
        let mut out = Vec::new();
        packet(&mut out, SMFIC_HEADER, b"To\0a@b.example\0");
        let mut r = &out[..];
        let mut buf = Vec::new();
        assert_eq!(
            read_packet(&mut r, &mut buf).await.unwrap(),
            Some(SMFIC_HEADER)
        );
        let s: Vec<&[u8]> = strings(&buf).collect();
        assert_eq!(s, vec![&b"To"[..], &b"a@b.example"[..]]);
        assert_eq!(read_packet(&mut r, &mut buf).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_oversized_or_empty_packet_is_refused() {
        let mut r = &(MAX_PACKET as u32 + 1).to_be_bytes()[..];
        assert!(matches!(
            read_packet(&mut r, &mut Vec::new()).await,
            Err(ProtocolError::TooLarge(_))
        ));
        let mut r = &0u32.to_be_bytes()[..];
        assert!(matches!(
            read_packet(&mut r, &mut Vec::new()).await,
            Err(ProtocolError::Empty)
        ));
    }
}
