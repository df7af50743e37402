//! A loopback IMAP server over TLS (IMAPS) with one mailbox: the subset of IMAP4rev1
//! (RFC 3501) and IDLE (RFC 2177) a mailbox watcher speaks — CAPABILITY, LOGIN, SELECT and
//! EXAMINE (with the `UIDVALIDITY` and `UIDNEXT` response codes), `UID FETCH n:*` of
//! `BODY.PEEK[HEADER]` (answered as `BODY[HEADER]` literals, `n:*` including the last message
//! even when its UID is below n, as RFC 3501 §6.4.8 says), IDLE with untagged `EXISTS`, NOOP,
//! LOGOUT — and the faults a watcher must survive: connections dropped, logins refused, the
//! mailbox recreated under a new UIDVALIDITY. It records any command that would set `\Seen`
//! (STORE, or a FETCH without PEEK). The certificate is issued for `localhost` and 127.0.0.1
//! by a CA of its own ([`FakeImap::ca_pem`]).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::PrivateKeyDer;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    sync::watch,
};
use tokio_rustls::TlsAcceptor;

#[derive(Default)]
struct Mailbox {
    uid_validity: u32,
    next_uid: u32,
    messages: Vec<(u32, Vec<u8>)>,
    refuse_logins: bool,
    logins: u64,
    /// Commands that would have marked a message `\Seen`.
    seen_setting: Vec<String>,
}

#[derive(Clone)]
pub struct FakeImap {
    addr: SocketAddr,
    ca_pem: String,
    user: String,
    password: String,
    state: Arc<Mutex<Mailbox>>,
    /// Bumped on every delivery: IDLE sessions report EXISTS.
    changed: watch::Sender<u64>,
    /// Bumped to drop every open connection.
    dropped: watch::Sender<u64>,
}

fn err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl FakeImap {
    pub async fn start(user: &str, password: &str) -> std::io::Result<FakeImap> {
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tocsin fake IMAP CA");
        let ca = ca_params.self_signed(&ca_key).map_err(err)?;
        let key = KeyPair::generate().map_err(err)?;
        let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(err)?
            .signed_by(&key, &ca, &ca_key)
            .map_err(err)?;
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(err)?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .map_err(err)?;
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let fake = FakeImap {
            addr: listener.local_addr()?,
            ca_pem: ca.pem(),
            user: user.to_owned(),
            password: password.to_owned(),
            state: Arc::new(Mutex::new(Mailbox {
                uid_validity: 1_700_000_001,
                next_uid: 1,
                ..Mailbox::default()
            })),
            changed: watch::channel(0).0,
            dropped: watch::channel(0).0,
        };
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let f = f.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = f.serve(tls).await;
                    }
                });
            }
        });
        Ok(fake)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The CA that issued the server's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Appends a message (as the MTA would deliver it); its UID.
    pub fn deliver(&self, raw: &[u8]) -> u32 {
        let uid = {
            let mut m = self.state.lock().unwrap();
            let uid = m.next_uid;
            m.next_uid += 1;
            m.messages.push((uid, raw.to_vec()));
            uid
        };
        self.changed.send_modify(|g| *g += 1);
        uid
    }

    pub fn refuse_logins(&self, refuse: bool) {
        self.state.lock().unwrap().refuse_logins = refuse;
    }

    /// Closes every open connection at once, without a BYE (a network drop).
    pub fn drop_connections(&self) {
        self.dropped.send_modify(|g| *g += 1);
    }

    /// Deletes and recreates the mailbox: empty, a new UIDVALIDITY, UIDs from 1 again.
    pub fn recreate(&self, uid_validity: u32) {
        let mut m = self.state.lock().unwrap();
        m.uid_validity = uid_validity;
        m.next_uid = 1;
        m.messages.clear();
    }

    /// Successful logins so far.
    pub fn logins(&self) -> u64 {
        self.state.lock().unwrap().logins
    }

    /// Commands that would have set `\Seen` on a message.
    pub fn seen_setting(&self) -> Vec<String> {
        self.state.lock().unwrap().seen_setting.clone()
    }

    async fn serve(
        &self,
        stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    ) -> std::io::Result<()> {
        let mut io = BufReader::new(stream);
        let mut dropped = self.dropped.subscribe();
        let mut changed = self.changed.subscribe();
        io.get_mut()
            .write_all(b"* OK [CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN] fake ready\r\n")
            .await?;
        let mut authed = false;
        // The message count this session was last told: a delivery since is reported as
        // soon as IDLE starts, as a real server does.
        let mut known = 0usize;
        loop {
            let mut line = String::new();
            let n = tokio::select! {
                _ = dropped.changed() => return Ok(()),
                n = io.read_line(&mut line) => n?,
            };
            if n == 0 {
                return Ok(());
            }
            let line = line.trim_end().to_owned();
            let (tag, rest) = line.split_once(' ').unwrap_or((&line, ""));
            let (cmd, args) = rest.split_once(' ').unwrap_or((rest, ""));
            let cmd = cmd.to_ascii_uppercase();
            let reply = match cmd.as_str() {
                "CAPABILITY" => {
                    format!("* CAPABILITY IMAP4rev1 IDLE\r\n{tag} OK CAPABILITY done\r\n")
                }
                "LOGIN" => {
                    let words = unquote_all(args);
                    let mut m = self.state.lock().unwrap();
                    let ok = !m.refuse_logins
                        && words.len() == 2
                        && words[0] == self.user
                        && words[1] == self.password;
                    if ok {
                        m.logins += 1;
                        authed = true;
                        format!("{tag} OK LOGIN completed\r\n")
                    } else {
                        format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
                    }
                }
                _ if !authed && cmd != "LOGOUT" && cmd != "NOOP" => {
                    format!("{tag} BAD not authenticated\r\n")
                }
                "SELECT" | "EXAMINE" => {
                    let m = self.state.lock().unwrap();
                    known = m.messages.len();
                    let mode = if cmd == "EXAMINE" {
                        "READ-ONLY"
                    } else {
                        "READ-WRITE"
                    };
                    format!(
                        "* {} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY {}] UIDs valid\r\n\
                         * OK [UIDNEXT {}] Predicted next UID\r\n{tag} OK [{mode}] {cmd} completed\r\n",
                        m.messages.len(),
                        m.uid_validity,
                        m.next_uid
                    )
                }
                "UID" if args.to_ascii_uppercase().starts_with("FETCH ") => {
                    self.fetch(tag, &args[6..])
                }
                "UID" | "STORE" => {
                    self.state.lock().unwrap().seen_setting.push(line.clone());
                    format!("{tag} OK done\r\n")
                }
                "IDLE" => {
                    io.get_mut().write_all(b"+ idling\r\n").await?;
                    changed.borrow_and_update();
                    let now = self.state.lock().unwrap().messages.len();
                    if now != known {
                        known = now;
                        io.get_mut()
                            .write_all(format!("* {now} EXISTS\r\n").as_bytes())
                            .await?;
                    }
                    let mut done = String::new();
                    loop {
                        tokio::select! {
                            _ = dropped.changed() => return Ok(()),
                            r = changed.changed() => {
                                if r.is_err() { return Ok(()); }
                                let n = self.state.lock().unwrap().messages.len();
                                known = n;
                                io.get_mut().write_all(format!("* {n} EXISTS\r\n").as_bytes()).await?;
                            }
                            n = io.read_line(&mut done) => {
                                if n? == 0 { return Ok(()); }
                                break;
                            }
                        }
                    }
                    format!("{tag} OK IDLE terminated\r\n")
                }
                "NOOP" => format!("{tag} OK NOOP completed\r\n"),
                "LOGOUT" => {
                    io.get_mut()
                        .write_all(format!("* BYE bye\r\n{tag} OK LOGOUT completed\r\n").as_bytes())
                        .await?;
                    return Ok(());
                }
                _ => format!("{tag} BAD unknown command\r\n"),
            };
            io.get_mut().write_all(reply.as_bytes()).await?;
            io.get_mut().flush().await?;
        }
    }

    /// `UID FETCH a:b (…)`: headers of the messages in range, in UID order.
    fn fetch(&self, tag: &str, args: &str) -> String {
        let (set, items) = args.split_once(' ').unwrap_or((args, ""));
        let mut m = self.state.lock().unwrap();
        if !items.to_ascii_uppercase().contains("BODY.PEEK[") {
            m.seen_setting.push(format!("UID FETCH {args}"));
        }
        let max = m.messages.last().map_or(0, |(u, _)| *u);
        let (lo, hi) = set.split_once(':').unwrap_or((set, set));
        let bound = |s: &str| {
            if s == "*" {
                max
            } else {
                s.parse().unwrap_or(0)
            }
        };
        let (a, b) = (bound(lo), bound(hi));
        let (lo, hi) = (a.min(b), a.max(b));
        let mut out = String::new();
        for (seq, (uid, raw)) in m.messages.iter().enumerate() {
            if *uid < lo || *uid > hi {
                continue;
            }
            let header = header_block(raw);
            out += &format!(
                "* {} FETCH (UID {uid} BODY[HEADER] {{{}}}\r\n{header})\r\n",
                seq + 1,
                header.len()
            );
        }
        out + &format!("{tag} OK UID FETCH completed\r\n")
    }
}

/// The header block of a message, with its empty line.
fn header_block(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    match text.find("\r\n\r\n") {
        Some(i) => text[..i + 4].to_owned(),
        None => format!("{}\r\n\r\n", text.trim_end()),
    }
}

/// The quoted strings (or atoms) of a command's arguments.
fn unquote_all(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => word.extend(chars.next()),
                    '"' => break,
                    c => word.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
    out
}
