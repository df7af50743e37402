//! A small SMTP client over a raw TCP connection: the MTA side of the journal listener for the
//! demo, the tests and the bench. It pipelines MAIL/RCPT/DATA (RFC 2920) like Postfix does,
//! dot-stuffs the message, and speaks STARTTLS (rustls) and AUTH PLAIN/LOGIN.

use std::{net::SocketAddr, sync::Arc};

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpStream,
};
use tokio_rustls::{
    TlsConnector,
    rustls::{
        self, RootCertStore,
        pki_types::{CertificateDer, ServerName},
    },
};

/// One reply: its code and its lines' text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

/// The connection, plain or after STARTTLS.
trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

pub struct SmtpClient {
    conn: BufReader<Box<dyn Duplex>>,
    /// The EHLO answer.
    pub ehlo: Reply,
}

/// A certificate for a loopback STARTTLS listener, signed by its own CA: the PEMs a test
/// writes into the listener's config, and the CA a client trusts.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub ca: CertificateDer<'static>,
}

impl TestCert {
    /// For `localhost` and 127.0.0.1.
    pub fn localhost() -> Result<TestCert, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tocsin test CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let key = KeyPair::generate()?;
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        Ok(TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: ca.pem(),
            ca: ca.der().clone(),
        })
    }
}

impl SmtpClient {
    /// Connects, reads the greeting and says EHLO.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<SmtpClient> {
        let (mut c, greeting) = SmtpClient::connect_raw(addr).await?;
        if greeting.code != 220 {
            return Err(std::io::Error::other(format!("greeting {greeting:?}")));
        }
        c.ehlo = c.command("EHLO mta.example").await?;
        Ok(c)
    }

    /// Connects without saying anything after the greeting (for tests of the state machine).
    pub async fn connect_raw(addr: SocketAddr) -> std::io::Result<(SmtpClient, Reply)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = SmtpClient {
            conn: BufReader::new(Box::new(stream)),
            ehlo: Reply {
                code: 0,
                text: String::new(),
            },
        };
        let greeting = c.reply().await?;
        Ok((c, greeting))
    }

    /// STARTTLS, the handshake trusting only `ca`, then EHLO again (RFC 3207).
    pub async fn starttls(mut self, ca: &CertificateDer<'static>) -> std::io::Result<SmtpClient> {
        let reply = self.command("STARTTLS").await?;
        if reply.code != 220 {
            return Err(std::io::Error::other(format!(
                "STARTTLS refused: {reply:?}"
            )));
        }
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone()).map_err(std::io::Error::other)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, self.conn.into_inner())
            .await?;
        let mut c = SmtpClient {
            conn: BufReader::new(Box::new(tls)),
            ehlo: self.ehlo,
        };
        c.ehlo = c.command("EHLO mta.example").await?;
        Ok(c)
    }

    /// AUTH PLAIN with an initial response (RFC 4616).
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> std::io::Result<Reply> {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.command(&format!("AUTH PLAIN {token}")).await
    }

    /// AUTH LOGIN through its two challenges.
    pub async fn auth_login(&mut self, user: &str, password: &str) -> std::io::Result<Reply> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let first = self.command("AUTH LOGIN").await?;
        if first.code != 334 {
            return Ok(first);
        }
        let second = self.command(&b64(user)).await?;
        if second.code != 334 {
            return Ok(second);
        }
        self.command(&b64(password)).await
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn reply(&mut self) -> std::io::Result<Reply> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.conn.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end();
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad reply line {line:?}")))?;
            text.push_str(line.get(4..).unwrap_or(""));
            text.push('\n');
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply { code, text });
            }
        }
    }

    /// Writes raw bytes (a command line must end with CRLF).
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.conn.get_mut().write_all(bytes).await?;
        self.conn.get_mut().flush().await
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> std::io::Result<Reply> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    /// Sends one message, pipelined: MAIL, every RCPT and DATA in one write, then the
    /// dot-stuffed message. Returns the final reply (250 when queued), or the first refusal.
    pub async fn send(
        &mut self,
        from: &str,
        rcpt: &[String],
        message: &[u8],
    ) -> std::io::Result<Reply> {
        let mut head = format!("MAIL FROM:<{from}> SIZE={}\r\n", message.len());
        for r in rcpt {
            head.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        head.push_str("DATA\r\n");
        self.write(head.as_bytes()).await?;
        let mail = self.reply().await?;
        let mut refused = (mail.code != 250).then(|| mail.clone());
        for _ in rcpt {
            let r = self.reply().await?;
            if r.code != 250 && refused.is_none() {
                refused = Some(r);
            }
        }
        let data = self.reply().await?;
        if data.code != 354 {
            return Ok(refused.unwrap_or(data));
        }
        self.write(&dot_stuff(message)).await?;
        self.reply().await
    }

    pub async fn quit(mut self) -> std::io::Result<()> {
        self.command("QUIT").await.map(|_| ())
    }
}

/// Doubles every leading dot and ends with `CRLF.CRLF` (RFC 5321 §4.5.2).
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_start = true;
    for &b in message {
        if at_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A bulk message that shows every recipient in `To:` (the leak), folded 10 per line.
pub fn leaky_message(from: &str, to: &[String], subject: &str, message_id: &str) -> Vec<u8> {
    let mut m = format!("From: Example Exchange <{from}>\r\nTo: ");
    for (i, chunk) in to.chunks(10).enumerate() {
        if i > 0 {
            m.push_str(",\r\n ");
        }
        m.push_str(&chunk.join(", "));
    }
    // Dated now, as a mailer stamps what it sends: the page's "after the message's time"
    // then measures the journal, not the age of a fixture.
    let date = chrono::Utc::now().to_rfc2822();
    m.push_str(&format!(
        "\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\nX-Campaign-Id: launch\r\n\
         Date: {date}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Dear customer,\r\nyour account statement is ready.\r\n"
    ));
    m.into_bytes()
}

/// `n` customer addresses, spread over `domains` domains, distinct per `batch`.
pub fn customers(batch: usize, n: usize, domains: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("customer{batch}x{i}@cust{}.example", i % domains.max(1)))
        .collect()
}
