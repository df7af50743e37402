//! What the command line does besides running the daemon: `init`, and the helpers of the
//! commands that are clients of the HTTP API.

pub mod output;
pub mod signals;

use anyhow::{Context, bail};

/// Writes the example config; `create_new` so two `init`s cannot both think they wrote it.
pub(crate) fn init(path: &std::path::Path, force: bool) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = match options.open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!(
                "{} already exists; pass --force to overwrite it",
                path.display()
            )
        }
        other => other.with_context(|| format!("creating {}", path.display()))?,
    };
    file.write_all(tocsin::config::EXAMPLE.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub(crate) fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}
