//! Reduces a message to its [`MailSummary`] as it streams past, in bounded memory whatever its
//! size: the headers the email rules read, the envelope, and a count of the visible addresses.
//!
//! A leak is a message whose `To:` *is* the customer list (850,000 addresses, 14 MB), so the
//! [`Reader`] never holds a message: `To:`/`Cc:` are tokenised as they arrive and each address
//! is counted into a [`VisibleTally`] (keyed hashes, exact then estimated) with only the first
//! [`VISIBLE_SAMPLE`] kept in clear for the page; the other headers are kept up to
//! [`KEPT_HEADERS`] and decoded by mail-parser once the header block ends; the body is counted
//! and dropped. An Exchange journal report is read the same way: its envelope part line by line
//! (recipients kept up to a cap, the rest counted) and the attached original's header block.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use mail_parser::{HeaderValue, MessageParser, MimeHeaders};

use crate::model::{AddressKey, MailSummary, VisibleTally};

/// Headers that name the campaign a bulk message belongs to, in order of preference.
const CAMPAIGN_HEADERS: &[&str] = &[
    "X-Campaign-Id",
    "X-Campaign",
    "X-Mailgun-Tag",
    "X-SES-Configuration-Set",
    "X-SMTPAPI-Category",
    "X-Mailchimp-Campaign",
    "Feedback-ID",
];

/// Visible addresses kept in clear (lowercased) for the page's masked samples and for security
/// notices, which look for one registered address; the rest are only counted.
pub const VISIBLE_SAMPLE: usize = 64;
/// Bytes of the header block other than `To:`/`Cc:` kept for decoding; a header that does not
/// fit is dropped whole. Real header blocks are a few KiB.
pub const KEPT_HEADERS: usize = 64 * 1024;
/// One address (display name, comments and all) longer than this is skipped, not kept.
const MAX_ADDRESS: usize = 1024;
/// A physical line at least this long that is followed by a continuation was broken by an MTA,
/// not folded by its writer: Postfix breaks lines past `smtp_line_length_limit` (998 bytes; 990
/// before 2.9) by inserting CRLF and one space anywhere, inside an address too. Such a break is
/// undone whole (CRLF and the space), so the address it cut is read as written.
const FORCED_BREAK: usize = 990;
/// A MIME part's own header block is kept up to this.
const PART_HEADERS: usize = 8 * 1024;

/// Why a message could not be summarised.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("the message has no parsable header block")]
    Unparsable,
}

/// Summarises a whole message at once (tests, fuzzing): the [`Reader`] fed line by line.
pub fn summarise(
    feed: &str,
    key: &AddressKey,
    raw: &[u8],
    mail_from: &str,
    rcpt_to: &[String],
) -> Result<MailSummary, SummaryError> {
    let mut r = Reader::new(feed, key.clone(), usize::MAX);
    let mut at_line_start = true;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let complete = line.ends_with(b"\n");
        r.push(line, at_line_start, complete);
        at_line_start = complete;
    }
    r.finish(mail_from, rcpt_to)
}

/// The streaming summariser of one message. Feed it the message's lines (or pieces of a long
/// line) in order with [`Reader::push`], then [`Reader::finish`].
pub struct Reader {
    feed: String,
    key: AddressKey,
    /// Recipients of a journal report's envelope listed at most (the listener's `max_recipients`).
    max_envelope: usize,
    top: HeaderBlock,
    /// Set once the top header block ended and showed an Exchange journal report.
    report: Option<Report>,
    body: bool,
}

impl Reader {
    pub fn new(feed: &str, key: AddressKey, max_envelope: usize) -> Reader {
        Reader {
            feed: feed.to_owned(),
            key,
            max_envelope,
            top: HeaderBlock::new(KEPT_HEADERS),
            report: None,
            body: false,
        }
    }

    /// One line of the message, or a piece of one: `at_line_start` when the previous piece ended
    /// a line, `complete` when this one does (ends with `\n`).
    pub fn push(&mut self, piece: &[u8], at_line_start: bool, complete: bool) {
        if !self.body {
            if self.top.push(piece, at_line_start, complete, &self.key) {
                self.body = true;
                self.report = Report::detect(&self.top.kept);
            }
            return;
        }
        if let Some(report) = &mut self.report {
            report.push(piece, at_line_start, complete, &self.key, self.max_envelope);
        }
    }

    /// The summary; `mail_from` and `rcpt_to` are the SMTP envelope of the copy received. An
    /// Exchange journal report replaces them with the original's envelope, read from the report.
    pub fn finish(
        mut self,
        mail_from: &str,
        rcpt_to: &[String],
    ) -> Result<MailSummary, SummaryError> {
        self.top.end(&self.key);
        if !self.top.seen_any {
            return Err(SummaryError::Unparsable);
        }
        if let Some(report) = self.report.take()
            && let Some(mut original) = report.original
        {
            original.end(&self.key);
            let mut s = original.summary(&self.feed)?;
            s.sender = report.sender.unwrap_or_default();
            if s.sender.is_empty() {
                s.sender = s.from.clone();
            }
            s.envelope = report.envelope;
            s.envelope_unlisted = report.unlisted;
            return Ok(s);
        }
        let mut s = self.top.summary(&self.feed)?;
        s.sender = normalise(mail_from);
        if s.sender.is_empty() {
            s.sender = s.from.clone();
        }
        s.envelope = rcpt_to.iter().map(|r| normalise(r)).collect();
        Ok(s)
    }
}

/// What the header line being read is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    None,
    /// `To:` or `Cc:`: tokenised as it streams.
    Address,
    /// Kept for mail-parser, starting at this offset of `kept`.
    Kept(usize),
    /// Over the budget (or not a header): skipped to its end.
    Dropped,
}

/// One header block read as it streams: `To:`/`Cc:` counted, the rest kept within a budget.
struct HeaderBlock {
    kept: Vec<u8>,
    budget: usize,
    field: Field,
    addresses: AddressList,
    tally: VisibleTally,
    sample: Vec<String>,
    /// At least one header line was seen.
    seen_any: bool,
    done: bool,
    /// Bytes of the physical line being read (without its line end).
    line_len: usize,
}

impl HeaderBlock {
    fn new(budget: usize) -> HeaderBlock {
        HeaderBlock {
            kept: Vec::new(),
            budget,
            field: Field::None,
            addresses: AddressList::default(),
            tally: VisibleTally::default(),
            sample: Vec::new(),
            seen_any: false,
            done: false,
            line_len: 0,
        }
    }

    /// Reads one piece; true when it was the empty line that ends the block.
    fn push(
        &mut self,
        piece: &[u8],
        at_line_start: bool,
        complete: bool,
        key: &AddressKey,
    ) -> bool {
        if self.done {
            return false;
        }
        let previous_line = if at_line_start {
            std::mem::take(&mut self.line_len)
        } else {
            0
        };
        self.line_len += trim_crlf(piece).len();
        let mut piece = piece;
        if at_line_start {
            if complete && trim_crlf(piece).is_empty() {
                self.end_field(key);
                self.done = true;
                return true;
            }
            if !matches!(piece.first(), Some(b' ' | b'\t')) {
                // A new header: the previous one is complete.
                self.end_field(key);
                let colon = piece.iter().position(|b| *b == b':');
                let name = colon.map(|c| trim_ascii(&piece[..c]));
                match (colon, name) {
                    (Some(c), Some(n))
                        if n.eq_ignore_ascii_case(b"to") || n.eq_ignore_ascii_case(b"cc") =>
                    {
                        self.seen_any = true;
                        self.field = Field::Address;
                        self.addresses.push(
                            &piece[c + 1..],
                            key,
                            &mut self.tally,
                            &mut self.sample,
                        );
                    }
                    (Some(_), Some(n)) if !n.is_empty() && !n.contains(&b' ') => {
                        self.seen_any = true;
                        self.field = Field::Kept(self.kept.len());
                        self.keep(piece);
                    }
                    _ => self.field = Field::Dropped,
                }
                return false;
            }
            if previous_line >= FORCED_BREAK && piece.first() == Some(&b' ') {
                // An MTA's forced break: joined back without the space it inserted.
                piece = &piece[1..];
                if let Field::Kept(_) = self.field {
                    let end = trim_crlf(&self.kept).len();
                    self.kept.truncate(end);
                }
            }
        }
        match self.field {
            Field::Address => self
                .addresses
                .push(piece, key, &mut self.tally, &mut self.sample),
            Field::Kept(_) => self.keep(piece),
            Field::None | Field::Dropped => {}
        }
        false
    }

    fn keep(&mut self, piece: &[u8]) {
        let Field::Kept(start) = self.field else {
            return;
        };
        if self.kept.len() + piece.len() > self.budget {
            self.kept.truncate(start);
            self.field = Field::Dropped;
        } else {
            self.kept.extend_from_slice(piece);
        }
    }

    fn end_field(&mut self, key: &AddressKey) {
        if let Field::Kept(_) = self.field
            && !self.kept.ends_with(b"\n")
        {
            self.kept.extend_from_slice(b"\r\n");
        }
        if self.field == Field::Address {
            self.addresses.end(key, &mut self.tally, &mut self.sample);
        }
        self.field = Field::None;
    }

    /// Ends the block even without its empty line (a message that is all headers).
    fn end(&mut self, key: &AddressKey) {
        if !self.done {
            self.end_field(key);
            self.done = true;
        }
    }

    /// The summary of the headers kept and counted (sender and envelope are the caller's).
    fn summary(self, feed: &str) -> Result<MailSummary, SummaryError> {
        let mut raw = self.kept;
        raw.extend_from_slice(b"\r\n");
        let parsed = MessageParser::default().parse_headers(&raw[..]);
        let header = |name: &str| {
            parsed
                .as_ref()
                .and_then(|m| m.header_raw(name))
                .map(|v| v.trim().to_owned())
        };
        let (from, message_id, subject, sent_at, list_id) = match &parsed {
            Some(m) => (
                m.from()
                    .and_then(|a| a.first())
                    .and_then(|a| a.address())
                    .map(normalise)
                    .unwrap_or_default(),
                m.message_id().unwrap_or_default().to_owned(),
                m.subject().unwrap_or_default().to_owned(),
                m.date()
                    .and_then(|d| DateTime::<Utc>::from_timestamp(d.to_timestamp(), 0)),
                match m.list_id() {
                    HeaderValue::Text(t) => Some(t.trim().to_owned()),
                    HeaderValue::TextList(l) => l.first().map(|t| t.trim().to_owned()),
                    _ => m.header_raw("List-Id").map(|v| v.trim().to_owned()),
                },
            ),
            None => Default::default(),
        };
        let campaign = CAMPAIGN_HEADERS
            .iter()
            .find_map(|h| header(h))
            .or(list_id)
            .filter(|c| !c.is_empty());
        Ok(MailSummary {
            feed: feed.to_owned(),
            message_id,
            sender: String::new(),
            from,
            subject,
            visible: self.sample,
            envelope: Vec::new(),
            campaign,
            sent_at,
            tally: Some(self.tally),
            envelope_unlisted: 0,
            origin_proven: false,
            held_at_mta: None,
        })
    }
}

/// An RFC 5322 address list tokenised as it streams: quoted strings and comments skipped, the
/// `<addr-spec>` preferred over bare text, group names dropped, elements split at `,` and `;`.
#[derive(Default)]
struct AddressList {
    /// Text outside quotes, comments and angle brackets (a bare address, or a display name).
    bare: Vec<u8>,
    /// Inside `<…>`.
    angle: Option<Vec<u8>>,
    in_angle: bool,
    in_quote: bool,
    escaped: bool,
    comment: u32,
    /// The element outgrew [`MAX_ADDRESS`]: skipped.
    overlong: bool,
}

impl AddressList {
    fn push(
        &mut self,
        bytes: &[u8],
        key: &AddressKey,
        tally: &mut VisibleTally,
        sample: &mut Vec<String>,
    ) {
        for &b in bytes {
            if self.escaped {
                self.escaped = false;
                continue;
            }
            if self.in_quote {
                match b {
                    b'\\' => self.escaped = true,
                    b'"' => self.in_quote = false,
                    _ => {}
                }
                continue;
            }
            if self.comment > 0 {
                match b {
                    b'\\' => self.escaped = true,
                    b'(' => self.comment += 1,
                    b')' => self.comment -= 1,
                    _ => {}
                }
                continue;
            }
            if self.in_angle {
                match b {
                    b'>' => self.in_angle = false,
                    b'\r' | b'\n' | b' ' | b'\t' => {}
                    _ => self.add_to_angle(b),
                }
                continue;
            }
            match b {
                b'"' => self.in_quote = true,
                b'(' => self.comment = 1,
                b'<' => {
                    self.in_angle = true;
                    self.angle = Some(Vec::new());
                }
                b',' | b';' => self.end(key, tally, sample),
                // A group's name ends here; its members follow.
                b':' => self.bare.clear(),
                // Unfolding (RFC 5322 §2.2.3) removes the line end; the continuation's own
                // whitespace separates, unless it was an MTA's forced break.
                b'\r' | b'\n' => {}
                b'\t' => self.add_to_bare(b' '),
                _ => self.add_to_bare(b),
            }
        }
    }

    fn add_to_bare(&mut self, b: u8) {
        if self.bare.len() >= MAX_ADDRESS {
            self.overlong = true;
        } else if !(b == b' ' && self.bare.last().is_none_or(|l| *l == b' ')) {
            self.bare.push(b);
        }
    }

    fn add_to_angle(&mut self, b: u8) {
        if let Some(a) = &mut self.angle {
            if a.len() >= MAX_ADDRESS {
                self.overlong = true;
            } else {
                a.push(b);
            }
        }
    }

    /// Ends the element being read and counts its address, if it has one.
    fn end(&mut self, key: &AddressKey, tally: &mut VisibleTally, sample: &mut Vec<String>) {
        let address = match self.angle.take() {
            // A source route (`<@relay:user@host>`) names the mailbox after its last colon.
            Some(a) => a.rsplit(|b| *b == b':').next().unwrap_or(&[]).to_vec(),
            None => {
                let bare = trim_ascii(&self.bare);
                bare.rsplit(|b| *b == b' ').next().unwrap_or(&[]).to_vec()
            }
        };
        let overlong = std::mem::take(&mut self.overlong);
        self.bare.clear();
        self.in_angle = false;
        self.in_quote = false;
        self.comment = 0;
        if overlong || !address.contains(&b'@') {
            return;
        }
        let address = normalise(&String::from_utf8_lossy(&address));
        tally.add(key, &address);
        if sample.len() < VISIBLE_SAMPLE {
            sample.push(address);
        }
    }
}

/// An Exchange journal report being read: the envelope part, then the attached original.
struct Report {
    /// `--boundary`.
    delimiter: Vec<u8>,
    part: Part,
    envelope_read: bool,
    sender: Option<String>,
    envelope: Vec<String>,
    listed: BTreeSet<String>,
    unlisted: u64,
    original: Option<HeaderBlock>,
}

enum Part {
    /// Before the first delimiter, after the last, or a part nobody reads.
    Skip,
    /// A part's own header block.
    Headers(Box<HeaderBlock>),
    /// The first text part: the original's envelope, one `Key: value` per line.
    Envelope,
    /// The attached original's header block.
    Original,
}

impl Report {
    /// A report when the header block says so and names its multipart boundary.
    fn detect(kept: &[u8]) -> Option<Report> {
        let mut raw = kept.to_vec();
        raw.extend_from_slice(b"\r\n");
        let m = MessageParser::default().parse_headers(&raw[..])?;
        m.header_raw("X-MS-Journal-Report")?;
        let ct = m.content_type()?;
        if !ct.ctype().eq_ignore_ascii_case("multipart") {
            return None;
        }
        let boundary = ct.attribute("boundary")?;
        Some(Report {
            delimiter: [b"--", boundary.as_bytes()].concat(),
            part: Part::Skip,
            envelope_read: false,
            sender: None,
            envelope: Vec::new(),
            listed: BTreeSet::new(),
            unlisted: 0,
            original: None,
        })
    }

    fn push(
        &mut self,
        piece: &[u8],
        at_line_start: bool,
        complete: bool,
        key: &AddressKey,
        max_envelope: usize,
    ) {
        if at_line_start && let Some(rest) = piece.strip_prefix(self.delimiter.as_slice()) {
            let rest = trim_ascii(rest);
            if rest.is_empty() {
                self.part = Part::Headers(Box::new(HeaderBlock::new(PART_HEADERS)));
                return;
            }
            if rest == b"--" {
                self.part = Part::Skip;
                return;
            }
        }
        match &mut self.part {
            Part::Skip => {}
            Part::Headers(h) => {
                if h.push(piece, at_line_start, complete, key) {
                    let kept = std::mem::take(&mut h.kept);
                    self.part = self.next_part(&kept);
                }
            }
            Part::Envelope if at_line_start => self.envelope_line(piece, max_envelope),
            Part::Envelope => {}
            Part::Original => {
                if let Some(o) = &mut self.original
                    && o.push(piece, at_line_start, complete, key)
                {
                    self.part = Part::Skip;
                }
            }
        }
    }

    /// What a part is, from its header block.
    fn next_part(&mut self, kept: &[u8]) -> Part {
        let mut raw = kept.to_vec();
        raw.extend_from_slice(b"\r\n");
        let ct = MessageParser::default()
            .parse_headers(&raw[..])
            .and_then(|m| {
                m.content_type().map(|c| {
                    (
                        c.ctype().to_ascii_lowercase(),
                        c.subtype().unwrap_or("").to_ascii_lowercase(),
                    )
                })
            })
            .unwrap_or_else(|| ("text".into(), "plain".into()));
        match (ct.0.as_str(), ct.1.as_str()) {
            ("message", "rfc822") if self.original.is_none() => {
                self.original = Some(HeaderBlock::new(KEPT_HEADERS));
                Part::Original
            }
            ("text", "plain") if !self.envelope_read => {
                self.envelope_read = true;
                Part::Envelope
            }
            _ => Part::Skip,
        }
    }

    /// `Sender: a@x`, `To: b@y, Forwarded: c@z` (the first address is the recipient), `Cc:`,
    /// `Bcc:`, `Recipient:`.
    fn envelope_line(&mut self, line: &[u8], max_envelope: usize) {
        let line = String::from_utf8_lossy(trim_crlf(line));
        let Some((k, value)) = line.split_once(':') else {
            return;
        };
        let first = value.split(',').next().unwrap_or("").trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "sender" => self.sender = Some(normalise(first)),
            "to" | "cc" | "bcc" | "recipient" if first.contains('@') => {
                let address = normalise(first);
                if self.listed.contains(&address) {
                    return;
                }
                if self.envelope.len() < max_envelope {
                    self.listed.insert(address.clone());
                    self.envelope.push(address);
                } else {
                    self.unlisted += 1;
                }
            }
            _ => {}
        }
    }
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// `<Jane@Example.COM>` → `jane@example.com`.
pub fn normalise(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase()
}

#[cfg(test)]
mod tests;
