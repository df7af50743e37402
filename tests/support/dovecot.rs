//! A private Dovecot instance on loopback (`tests/mta/dovecot`): IMAPS with a certificate of
//! its own CA, one user, messages delivered with `doveadm save`. Stopped on drop.

use tokio::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mta/dovecot");

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub port: u16,
    user: String,
}

async fn script(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .output()
        .await
        .expect("run tests/mta/dovecot")
}

fn check(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "dovecot {what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Dovecot {
    /// Whether Dovecot is installed. When not, says so loudly: the test then proves nothing.
    pub async fn available(test: &str) -> bool {
        let ok = script(&["available"]).await.status.success();
        if !ok {
            eprintln!(
                "!!! {test} SKIPPED: Dovecot is not installed \
                 (run `bash tests/mta/dovecot install` as root; CI does)"
            );
        }
        ok
    }

    pub async fn start(user: &str, password: &str) -> Dovecot {
        let dir = tempfile::tempdir().unwrap();
        let port = super::postfix::free_port();
        let path = dir.path().to_str().unwrap().to_owned();
        let out = script(&["start", &path, &port.to_string(), user, password]).await;
        check("start", &out);
        Dovecot {
            dir,
            port,
            user: user.to_owned(),
        }
    }

    fn path(&self) -> String {
        self.dir.path().to_str().unwrap().to_owned()
    }

    /// The CA that issued the server's certificate.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Delivers `message` into the user's INBOX.
    pub async fn save(&self, message: &[u8]) {
        let file = self.dir.path().join("message.eml");
        std::fs::write(&file, message).unwrap();
        let out = script(&["save", &self.path(), &self.user, file.to_str().unwrap()]).await;
        check("save", &out);
    }

    /// The flags of every message in the INBOX, as doveadm prints them.
    pub async fn flags(&self) -> String {
        let out = script(&["flags", &self.path(), &self.user]).await;
        check("flags", &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(SCRIPT)
            .args(["stop", &self.path()])
            .output();
    }
}
