//! Secrets: tokens that must reach the platforms and never the logs.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A resolved secret. `Debug` and `Display` print a placeholder so a secret that slips into a
/// `tracing` field or an error message is still not disclosed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The only way to read the value: greppable, so every use can be reviewed.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Resolves the config syntax: `env:NAME`, `file:/path` (trailing newline trimmed), or a
    /// literal. Resolving at load time means a missing variable stops start-up, not the first page.
    pub fn resolve(spec: &str) -> Result<Secret, String> {
        let value = if let Some(name) = spec.strip_prefix("env:") {
            std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set (from {spec:?})"))?
        } else if let Some(path) = spec.strip_prefix("file:") {
            read_bounded(path)?
                .trim_end_matches(['\n', '\r'])
                .to_owned()
        } else {
            spec.to_owned()
        };
        if value.is_empty() {
            return Err(format!("the secret from {} is empty", describe(spec)));
        }
        Ok(Secret(value))
    }
}

/// The largest secret file read. A token or key is a few KiB at most; a bound keeps a mistyped
/// path (`file:/dev/zero`, a log file) from stalling start-up or filling memory.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

fn read_bounded(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read secret file {path}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read secret file {path}: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "secret file {path} is larger than {MAX_SECRET_FILE} bytes; is it the right file?"
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("secret file {path} is not UTF-8"))
}

/// Names where a secret came from without showing a literal one.
fn describe(spec: &str) -> &str {
    if spec.starts_with("env:") || spec.starts_with("file:") {
        spec
    } else {
        "a literal"
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = String::deserialize(d)?;
        Secret::resolve(&spec).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_env_and_file() {
        assert_eq!(Secret::resolve("abc").unwrap().expose(), "abc");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok");
        std::fs::write(&path, "from-file\n").unwrap();
        let err = Secret::resolve("file:/dev/zero").unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        let s = Secret::resolve(&format!("file:{}", path.display())).unwrap();
        assert_eq!(s.expose(), "from-file");
        // PATH is always set in a test process; reading it proves the env: branch.
        let path_var = std::env::var("PATH").unwrap();
        assert_eq!(Secret::resolve("env:PATH").unwrap().expose(), path_var);
        let e = Secret::resolve("env:TOCSIN_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert!(e.contains("TOCSIN_TEST_SURELY_UNSET_VAR"));
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}
