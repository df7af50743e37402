//! What every section shares: output, percentiles, and starting the release binary.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::Duration,
};

/// Every figure printed so far, by name (`metric`, or `metric[provider]`), for the gate.
static FIGURES: Mutex<Vec<(String, f64)>> = Mutex::new(Vec::new());

pub fn emit(metric: &str, value: f64, unit: &str) {
    record(metric, value);
    println!(
        "{}",
        serde_json::json!({ "metric": metric, "value": (value * 1000.0).round() / 1000.0, "unit": unit })
    );
}

/// Keeps a figure for [`figures`]; `emit` does it, sections printing their own lines call it.
pub fn record(name: &str, value: f64) {
    FIGURES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((name.to_owned(), value));
}

/// The figures printed by the sections run so far.
pub fn figures() -> Vec<(String, f64)> {
    FIGURES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The `p`th percentile (0–100) of `samples`, nearest rank.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Emits p50, p99 and max of `samples` under `name`.
pub fn emit_latencies(name: &str, samples: &[Duration]) {
    emit(&format!("{name}.count"), samples.len() as f64, "count");
    emit(&format!("{name}.p50"), ms(percentile(samples, 50.0)), "ms");
    emit(&format!("{name}.p99"), ms(percentile(samples, 99.0)), "ms");
    emit(&format!("{name}.max"), ms(percentile(samples, 100.0)), "ms");
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `tocsin run --config PATH`, logs off.
pub fn spawn_daemon(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["run", "--config"])
        .arg(config)
        .env("TOCSIN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tocsin")
}

/// SIGTERM, then wait; whether it exited cleanly.
pub fn stop_daemon(mut child: Child) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().map(|s| s.success()).unwrap_or(false)
}
