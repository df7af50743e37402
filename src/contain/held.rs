//! Messages the milter held at the MTA, released or deleted through the MTA host's helper.
//!
//! `postsuper -H`/`-d` need root on the MTA host and tocsin does not run as root: it runs the
//! configured `[email.milter] hold_helper` command (a narrow sudoers rule, or ssh to the MTA
//! host with a forced command) with `release|delete` and the queue ids, and the helper
//! (`contrib/tocsin-postsuper`) acts on exactly those ids, in the hold queue only. Queue ids are
//! checked here too, so nothing but an id ever reaches the helper's argument list.

use std::{process::Stdio, time::Duration};

use tokio::process::Command;

/// The helper's answer within this, or the call failed (it is killed).
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do with held messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldOp {
    /// Back to the active queue: delivered as if never held.
    Release,
    /// Deleted from the hold queue: never delivered.
    Delete,
}

impl HeldOp {
    pub fn as_str(self) -> &'static str {
        match self {
            HeldOp::Release => "release",
            HeldOp::Delete => "delete",
        }
    }
}

/// Why the helper did not do it.
#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    #[error("no hold helper is configured ([email.milter] hold_helper)")]
    NotConfigured,
    #[error("`{0}` is not a queue id")]
    BadId(String),
    #[error("the hold helper could not run: {0}")]
    Spawn(std::io::Error),
    #[error("the hold helper gave no answer within {0:?}")]
    Timeout(Duration),
    #[error("the hold helper failed ({status}): {detail}")]
    Failed { status: String, detail: String },
}

/// A Postfix queue id: short (hex) or long (base 52 with digits) form.
pub fn valid_id(id: &str) -> bool {
    (5..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The configured helper command.
#[derive(Debug, Clone)]
pub struct HoldHelper {
    command: Vec<String>,
}

impl HoldHelper {
    /// None when no command is configured.
    pub fn new(command: &[String]) -> Option<HoldHelper> {
        (!command.is_empty()).then(|| HoldHelper {
            command: command.to_vec(),
        })
    }

    /// Runs the helper for `ids`; its output (first lines) on success.
    pub async fn act(&self, op: HeldOp, ids: &[String]) -> Result<String, HeldError> {
        if let Some(bad) = ids.iter().find(|id| !valid_id(id)) {
            return Err(HeldError::BadId(bad.clone()));
        }
        let mut cmd = Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .arg(op.as_str())
            .args(ids)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(HeldError::Spawn)?;
        let out = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| HeldError::Timeout(HELPER_TIMEOUT))?
            .map_err(HeldError::Spawn)?;
        let text = |b: &[u8]| crate::model::cut(String::from_utf8_lossy(b).trim(), 300);
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(HeldError::Failed {
                status: out.status.to_string(),
                detail: text(&out.stderr),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queue_ids_pass() {
        assert!(valid_id("4FQ1mX0abcz") && valid_id("3F2A91C04B"));
        for bad in ["", "-d", "ALL", "a b", "../x", "abc;rm", "4FQ1mX0abcz\n"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_helper_gets_the_op_and_the_ids_and_its_failure_is_reported() {
        let echo = HoldHelper::new(&["echo".into()]).unwrap();
        let out = echo
            .act(HeldOp::Release, &["4FQ1mX0abcz".into()])
            .await
            .unwrap();
        assert_eq!(out, "release 4FQ1mX0abcz");
        let e = echo.act(HeldOp::Delete, &["-rf".into()]).await.unwrap_err();
        assert!(matches!(e, HeldError::BadId(_)), "{e}");
        let fail = HoldHelper::new(&["false".into()]).unwrap();
        let e = fail
            .act(HeldOp::Delete, &["4FQ1mX0abcz".into()])
            .await
            .unwrap_err();
        assert!(matches!(e, HeldError::Failed { .. }), "{e}");
    }
}
