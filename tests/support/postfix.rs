//! A private Postfix instance on loopback (`tests/mta/postfix`) journaling to tocsin: start it
//! pointed at a journal port, submit messages, read its queue and log. Stopped on drop.

use std::time::{Duration, Instant};

use tokio::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mta/postfix");

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Postfix {
    pub dir: tempfile::TempDir,
    /// Where its smtpd takes submissions (a milter test talks to it directly).
    #[allow(dead_code)]
    pub smtpd: u16,
}

async fn script(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .output()
        .await
        .expect("run tests/mta/postfix")
}

impl Postfix {
    /// Whether Postfix, swaks and the SASL plugins are installed. When not, says so loudly:
    /// the tests that need them then prove nothing.
    pub async fn available(test: &str) -> bool {
        let ok = script(&["available"]).await.status.success();
        if !ok {
            eprintln!(
                "!!! {test} SKIPPED: Postfix/swaks/libsasl2-modules are not installed \
                 (run `bash tests/mta/postfix install` as root; CI does)"
            );
        }
        ok
    }

    /// Starts an instance that relays its journal copies to 127.0.0.1:`journal_port`, over
    /// STARTTLS, with AUTH when `auth` is given.
    pub async fn start(journal_port: u16, auth: Option<(&str, &str)>) -> Postfix {
        let dir = tempfile::tempdir().unwrap();
        let smtpd = free_port();
        let path = dir.path().to_str().unwrap().to_owned();
        let (smtpd_s, journal_s) = (smtpd.to_string(), journal_port.to_string());
        let mut args = vec!["start", &path, &smtpd_s, &journal_s];
        if let Some((u, p)) = auth {
            args.extend([u, p]);
        }
        let out = script(&args).await;
        assert!(
            out.status.success(),
            "postfix start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Postfix { dir, smtpd }
    }

    fn path(&self) -> String {
        self.dir.path().to_str().unwrap().to_owned()
    }

    /// Submits `message` to the instance's smtpd for `rcpt` (envelope) with swaks.
    pub async fn send(&self, from: &str, rcpt: &[String], message: &[u8]) {
        let rcpt_file = self.dir.path().join("rcpt.txt");
        let message_file = self.dir.path().join("message.eml");
        std::fs::write(&rcpt_file, rcpt.join("\n")).unwrap();
        std::fs::write(&message_file, message).unwrap();
        let out = script(&[
            "send",
            &self.path(),
            from,
            rcpt_file.to_str().unwrap(),
            message_file.to_str().unwrap(),
        ])
        .await;
        assert!(
            out.status.success(),
            "swaks: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Submits `message` over SMTP straight to the instance's smtpd, with `params` on MAIL FROM
    /// (e.g. `SMTPUTF8`, which swaks cannot send). Returns the final reply, or the first refusal.
    #[allow(dead_code)]
    pub async fn submit(
        &self,
        from: &str,
        params: &str,
        rcpt: &[String],
        message: &[u8],
    ) -> tocsin_fakes::smtp::Reply {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.smtpd));
        let mut c = tocsin_fakes::smtp::SmtpClient::connect(addr).await.unwrap();
        let mail = c
            .command(&format!("MAIL FROM:<{from}> {params}"))
            .await
            .unwrap();
        if mail.code != 250 {
            return mail;
        }
        for r in rcpt {
            let reply = c.command(&format!("RCPT TO:<{r}>")).await.unwrap();
            if reply.code != 250 {
                return reply;
            }
        }
        let data = c.command("DATA").await.unwrap();
        if data.code != 354 {
            return data;
        }
        c.write(&tocsin_fakes::smtp::dot_stuff(message))
            .await
            .unwrap();
        let done = c.reply().await.unwrap();
        let _ = c.quit().await;
        done
    }

    /// Messages in the queue (any state).
    pub async fn count(&self) -> usize {
        let out = script(&["count", &self.path()]).await;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// The queue ids of the messages in `queue` (`hold`, `deferred`, `active`, `incoming`).
    #[allow(dead_code)]
    pub async fn in_queue(&self, queue: &str) -> Vec<String> {
        let out = script(&["queue", &self.path()]).await;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["queue_name"] == queue)
            .filter_map(|v| v["queue_id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Recipients Postfix delivered (`status=sent`), from its log.
    #[allow(dead_code)]
    pub fn delivered(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("status=sent"))
            .count()
    }

    /// Attempts delivery of everything queued now.
    pub async fn flush(&self) {
        script(&["flush", &self.path()]).await;
    }

    /// Changes main.cf settings and restarts (`smtpd_milters=inet:127.0.0.1:PORT`, …).
    #[allow(dead_code)]
    pub async fn postconf(&self, settings: &[&str]) {
        let mut args = vec!["postconf", self.dir.path().to_str().unwrap()];
        args.extend(settings);
        let out = script(&args).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Waits until the log shows `needle` (Postfix logs every delivery attempt).
    pub async fn wait_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "postfix never logged {needle:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the queue is empty: everything was delivered.
    pub async fn wait_empty(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.count().await > 0 {
            assert!(
                Instant::now() < deadline,
                "postfix queue not empty:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(SCRIPT)
            .args(["stop", self.dir.path().to_str().unwrap()])
            .status();
    }
}
