//! The mailbox and admin audit pollers (Google Workspace, Microsoft 365): a cursor that
//! re-reads an overlap (audit logs publish late) and skips what it already reported, one poll
//! loop with backoff and health, and the OAuth token both cache.

pub mod google;
pub mod m365;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    model::ObservationKind,
    watch::{SourceContext, SourceError},
};

/// How far back each poll looks again: audit logs publish events minutes (Google: up to hours)
/// after they happened, out of order. Events already seen in the window are skipped by id.
pub const OVERLAP: Duration = Duration::from_secs(30 * 60);
/// Where a feed without a cursor starts: the last hour, so an install made during an incident
/// still sees what led to it.
pub const FIRST_LOOKBACK: Duration = Duration::from_secs(60 * 60);
/// The longest wait after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// An audit poller's resume point, kept in sled through [`ObservationKind::Checkpoint`]: the
/// newest event time seen and the ids seen within [`OVERLAP`] of it. The next poll asks from
/// `time - OVERLAP` and skips those ids, so a late event is read and a seen one is not re-sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCursor {
    pub time: Option<DateTime<Utc>>,
    pub seen: Vec<(String, DateTime<Utc>)>,
}

impl AuditCursor {
    pub fn load(ctx: &SourceContext, key: &str) -> AuditCursor {
        match ctx.store.cursor(key) {
            Ok(Some(v)) => serde_json::from_str(&v).unwrap_or_else(|e| {
                tracing::warn!(cursor = key, error = %e, "unreadable audit cursor; starting over");
                AuditCursor::default()
            }),
            _ => AuditCursor::default(),
        }
    }

    /// Where the next request starts.
    pub fn start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let back = |d: Duration| chrono::Duration::from_std(d).unwrap_or_default();
        match self.time {
            Some(t) => t - back(OVERLAP),
            None => now - back(FIRST_LOOKBACK),
        }
    }

    pub fn seen(&self, id: &str) -> bool {
        self.seen.iter().any(|(s, _)| s == id)
    }

    /// Adds what this poll read and forgets ids that fell out of the window.
    pub fn advance(&mut self, read: impl IntoIterator<Item = (String, DateTime<Utc>)>) {
        for (id, at) in read {
            if !self.seen(&id) {
                self.time = Some(self.time.map_or(at, |t| t.max(at)));
                self.seen.push((id, at));
            }
        }
        if let Some(t) = self.time {
            let floor = t - chrono::Duration::from_std(OVERLAP).unwrap_or_default();
            self.seen.retain(|(_, at)| *at >= floor);
        }
    }

    /// Hands the cursor to the pipeline, which stores it once what came before is committed.
    pub async fn checkpoint(&self, ctx: &SourceContext, feed: &str, key: &str) -> bool {
        let value = serde_json::to_string(self).expect("cursor serializes");
        ctx.emit(
            feed,
            ObservationKind::Checkpoint {
                cursor: key.to_owned(),
                value,
            },
        )
        .await
    }
}

/// Polls a feed until shutdown: health after each poll (a refused credential is `refused`, so
/// `monitor.blind` pages at once), doubling waits after failures.
pub async fn poll_loop<F, Fut>(name: &str, interval: Duration, ctx: &SourceContext, mut poll: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, SourceError>>,
{
    let mut failures = 0u32;
    loop {
        let wait = match poll().await {
            Ok(true) => {
                failures = 0;
                ctx.health.success(name, None);
                interval
            }
            Ok(false) => return,
            Err(e) => {
                failures += 1;
                tracing::warn!(feed = %name, error = %e, failures, "audit poll failed");
                let refused = matches!(e, SourceError::Unauthorized { .. });
                ctx.health.failure(name, e.to_string(), refused, None);
                match e {
                    SourceError::RateLimited(d) => d.max(interval),
                    _ => interval
                        .saturating_mul(2u32.saturating_pow(failures.min(16)))
                        .min(MAX_BACKOFF.max(interval)),
                }
            }
        };
        if !ctx.sleep(wait).await {
            return;
        }
    }
}

/// An OAuth 2.0 access token (Google's JWT-bearer grant, Microsoft's client credentials), kept
/// until a minute before it lapses so a poll never starts with a token about to expire.
#[derive(Default)]
pub(crate) struct CachedToken(Option<(String, tokio::time::Instant)>);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl CachedToken {
    /// Drops the token: an API refused it before its expiry (revoked), so ask for a new one.
    pub(crate) fn forget(&mut self) {
        self.0 = None;
    }

    /// The cached token, or a new one from `request` (a form POST to the token endpoint).
    /// A 400/401/403 from the token endpoint means the key, secret or delegation is gone:
    /// refused, so the source is blind at once rather than after its grace.
    pub(crate) async fn get(
        &mut self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<String, SourceError> {
        if let Some((t, until)) = &self.0
            && tokio::time::Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let resp = request.send().await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(match status.as_u16() {
                400 | 401 | 403 => SourceError::Unauthorized {
                    status: status.as_u16(),
                },
                _ => status_error(status, what, None),
            });
        }
        let t: TokenResponse = resp.json().await.map_err(|e| SourceError::Malformed {
            what: "the token answer".into(),
            detail: e.to_string(),
        })?;
        let life = Duration::from_secs(t.expires_in.unwrap_or(3600).saturating_sub(60).max(1));
        self.0 = Some((t.access_token.clone(), tokio::time::Instant::now() + life));
        Ok(t.access_token)
    }
}

/// Maps a non-success answer to the error the health report needs.
pub(crate) fn status_error(
    status: reqwest::StatusCode,
    what: &str,
    retry_after: Option<u64>,
) -> SourceError {
    match status.as_u16() {
        401 | 403 => SourceError::Unauthorized {
            status: status.as_u16(),
        },
        429 => SourceError::RateLimited(Duration::from_secs(retry_after.unwrap_or(60))),
        s => SourceError::Status {
            status: s,
            what: what.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_skips_seen_ids_and_forgets_them_past_the_overlap() {
        let t0 = Utc::now() - chrono::Duration::hours(2);
        let mut c = AuditCursor::default();
        assert_eq!(c.start(t0), t0 - chrono::Duration::hours(1));
        c.advance([("a".to_owned(), t0), ("b".to_owned(), t0)]);
        assert!(c.seen("a") && c.seen("b"));
        assert_eq!(c.start(Utc::now()), t0 - chrono::Duration::minutes(30));
        // A late event older than the newest still counts as seen once read.
        let t1 = t0 + chrono::Duration::minutes(45);
        c.advance([
            ("c".to_owned(), t1),
            ("late".to_owned(), t1 - chrono::Duration::minutes(5)),
        ]);
        assert_eq!(c.time, Some(t1));
        assert!(c.seen("late") && c.seen("c"));
        assert!(!c.seen("a"), "older than the overlap window: forgotten");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<AuditCursor>(&json).unwrap(), c);
    }
}
