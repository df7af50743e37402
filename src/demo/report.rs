//! What the demo saw (printed at the end, with its checks) and why it could stop early.

use std::{fmt, time::Duration};

use tocsin::model::Incident;

use super::POLL;

/// What the demo saw, printed at the end.
pub struct Report {
    /// Where the daemon's log lines went.
    pub(super) log: std::path::PathBuf,
    pub(super) lines: Vec<String>,
    pub(super) latencies: Vec<(String, Duration)>,
    pub(super) incidents: Vec<Incident>,
    pub(super) final_pages: Vec<String>,
    pub(super) checks: Vec<(String, bool)>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|(_, ok)| *ok)
    }

    pub(super) fn check(&mut self, what: &str, ok: bool) {
        self.checks.push((what.to_owned(), ok));
    }
}

/// Why the demo could not play its story to the end.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] tocsin::config::ConfigError),
    #[error(transparent)]
    App(#[from] tocsin::AppError),
    #[error(transparent)]
    Store(#[from] tocsin::store::StoreError),
    #[error("a request to the daemon failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the daemon task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the story stalled: {0}")]
    Stalled(String),
}

pub(super) fn setup(what: &'static str) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Setup { what, source }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "tocsin demo — a takeover of a watched Mastodon account, then a leaky bulk send\n"
        )?;
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        writeln!(f, "\nIncident timelines (from the sled store):")?;
        for inc in &self.incidents {
            writeln!(
                f,
                "  #{} {} {} {} — {}",
                inc.id,
                inc.severity.as_str(),
                inc.rule,
                inc.account,
                inc.state.as_str()
            )?;
            for e in &inc.timeline {
                let action = serde_json::to_value(&e.action).unwrap_or_default();
                let mut what = action["action"].as_str().unwrap_or("?").to_owned();
                if let Some(ms) = action["since_detect_ms"].as_i64() {
                    what += &format!(" ({ms} ms after detection");
                    if let Some(c) = action["since_change_ms"].as_i64() {
                        what += &format!(", {c} ms after the change's own time");
                    }
                    what.push(')');
                }
                if let Some(r) = action["resolution"].as_str() {
                    what += &format!(" ({r})");
                }
                writeln!(
                    f,
                    "      {} {:<62} {}",
                    e.at.format("%H:%M:%S%.3f"),
                    what,
                    e.who
                )?;
            }
        }
        writeln!(f, "\nThe pages as they read in the chat now:")?;
        for p in &self.final_pages {
            writeln!(f, "  ┌────")?;
            for line in p.lines() {
                writeln!(f, "  │ {line}")?;
            }
            writeln!(f, "  └────")?;
        }
        writeln!(
            f,
            "\nChange → page latency (fake platform change to fake Bot API receipt, poll every {} ms):",
            POLL.as_millis()
        )?;
        for (what, d) in &self.latencies {
            writeln!(f, "  {what:<26} {:>6} ms", d.as_millis())?;
        }
        let mut ms: Vec<u128> = self.latencies.iter().map(|(_, d)| d.as_millis()).collect();
        ms.sort();
        if let (Some(max), false) = (ms.last(), ms.is_empty()) {
            writeln!(f, "  p50 {} ms, max {} ms", ms[(ms.len() - 1) / 2], max)?;
        }
        writeln!(f, "\nChecks:")?;
        for (what, ok) in &self.checks {
            writeln!(f, "  [{}] {what}", if *ok { "ok" } else { "FAILED" })?;
        }
        writeln!(
            f,
            "\n{}",
            if self.passed() {
                "demo passed"
            } else {
                "demo FAILED"
            }
        )?;
        writeln!(f, "(the daemon's log: {})", self.log.display())
    }
}
