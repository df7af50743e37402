//! How a refused configuration is reported: the file, line and column, the dotted key, and
//! for a typo the key that was meant.

use super::PathBuf;

/// Why a configuration was refused. The message always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{location}key `{key}`: {message}")]
    Invalid {
        /// `file:line:column: ` or empty when unknown.
        location: String,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// An error about `key` with no file position: what a check after parsing reports.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            location: String::new(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// The dotted key the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } => None,
        }
    }
}

/// Appends "did you mean" to serde's unknown-field message: the list it prints is long and the
/// operator's typo is usually one or two letters from the key they meant.
pub(super) fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_owned();
    };
    let Some((given, expected)) = rest.split_once('`') else {
        return message.to_owned();
    };
    // Valid keys are the backticked names after the given one.
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|key| (levenshtein(given, key), key))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, key)) => format!("{message} — did you mean `{key}`?"),
        None => message.to_owned(),
    }
}

/// Edit distance in characters (insertions, deletions, substitutions).
pub(super) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

pub(super) fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}
