//! Logging. JSON lines when the output is not a terminal (the container), readable lines on one.
//! The filter comes from `TOCSIN_LOG` (e.g. `tocsin=debug`), else the caller's default.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

/// Builds the subscriber; the sink is a parameter so tests can capture the output.
pub fn subscriber<W>(
    default_filter: &str,
    json: bool,
    sink: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_env("TOCSIN_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink);
    if json {
        Box::new(builder.json().flatten_event(true).finish())
    } else {
        Box::new(builder.finish())
    }
}

/// Installs the global subscriber once, writing to stderr.
pub fn init(default_filter: &str) {
    let json = !std::io::stderr().is_terminal();
    let _ =
        tracing::subscriber::set_global_default(subscriber(default_filter, json, std::io::stderr));
}

/// Installs the global subscriber writing JSON lines to `path` (created or truncated): for
/// `tocsin demo`, whose story is the terminal's output.
pub fn init_file(path: &std::path::Path, default_filter: &str) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let _ = tracing::subscriber::set_global_default(subscriber(
        default_filter,
        true,
        std::sync::Mutex::new(file),
    ));
    Ok(())
}
