//! The real `tocsin` binary as a child process, for what only a process can show: signals,
//! SIGKILL, exit codes and the log stream.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tocsin_fakes::{mastodon::FakeMastodon, telegram::FakeBotApi};

use super::*;

/// A fake Mastodon with the watched account (no posts yet), a fake Bot API, and a state dir.
pub async fn fakes() -> (FakeMastodon, FakeBotApi, tempfile::TempDir) {
    let masto = FakeMastodon::start().await.unwrap();
    masto.add_account(
        ACCOUNT_ID,
        "examplecorp",
        "ExampleCorp",
        "<p>Official account.</p>",
        &[],
    );
    let bot = FakeBotApi::start(BOT_TOKEN).await.unwrap();
    (masto, bot, tempfile::tempdir().unwrap())
}

/// Writes a config for one watched account against the fakes; `extra_account` adds a token line.
pub fn write_config(
    dir: &Path,
    bot: &FakeBotApi,
    masto: &FakeMastodon,
    account_extra: &str,
) -> PathBuf {
    let path = dir.join("tocsin.toml");
    let text = format!(
        r#"
[general]
state_dir = "{state}"
listen = "127.0.0.1:0"
api_token = "env:TOCSIN_API_TOKEN"

[telegram]
bot_token = "env:TOCSIN_TELEGRAM_TOKEN"
api_url = "{bot}"
chat_id = {CHAT}
responders = [111]
long_poll = "1s"

[[accounts]]
name = "{ACCOUNT}"
platform = "mastodon"
base_url = "{masto}"
account_id = "{ACCOUNT_ID}"
poll_interval = "150ms"
{account_extra}
"#,
        state = dir.join("state").display(),
        bot = bot.url(),
        masto = masto.url(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A running daemon. Killed (SIGKILL) on drop so a failing test leaves nothing behind.
pub struct Daemon {
    child: Child,
    /// Every line the daemon logged to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub fn spawn(config: &Path, log_filter: &str, env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tocsin"));
        command.args(["run", "--config"]).arg(config);
        Daemon::start(command, log_filter, env)
    }

    /// The daemon with no file allowed to grow past `kib` KiB (`ulimit -f`, SIGXFSZ ignored so a
    /// write fails with EFBIG as on a full disk): a disk that fills up, without root or a mount.
    pub fn spawn_with_file_limit(config: &Path, log_filter: &str, kib: u64) -> Daemon {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(format!(
                "trap '' XFSZ; ulimit -f {kib}; exec \"$0\" run --config \"$1\""
            ))
            .arg(env!("CARGO_BIN_EXE_tocsin"))
            .arg(config);
        Daemon::start(command, log_filter, &[])
    }

    fn start(mut command: Command, log_filter: &str, env: &[(&str, &str)]) -> Daemon {
        let mut child = command
            .env("TOCSIN_LOG", log_filter)
            .env("TOCSIN_API_TOKEN", API_TOKEN)
            .env("TOCSIN_TELEGRAM_TOKEN", BOT_TOKEN)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the tocsin binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Daemon { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The HTTP address, read from the "tocsin running" log line.
    pub async fn http_addr(&self) -> String {
        self.http_addr_of_run(1).await
    }

    /// The HTTP address of the `run`-th start (1: the first, 2: after the first reload, which
    /// re-binds the listener, on another port with `listen = "…:0"`).
    pub async fn http_addr_of_run(&self, run: usize) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).ok()?;
                    (v["message"] == "tocsin running")
                        .then(|| v["addr"].as_str().map(str::to_owned))?
                })
                .nth(run - 1);
            if let Some(addr) = found {
                return format!("http://{addr}");
            }
            assert!(
                Instant::now() < deadline,
                "no 'tocsin running' line for run {run}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal by name (`TERM`, `HUP`) with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to exit; its exit code and how long it took.
    pub async fn wait_exit(&mut self, bound: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), start.elapsed());
            }
            assert!(
                start.elapsed() < bound,
                "still running {bound:?} after the signal; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
