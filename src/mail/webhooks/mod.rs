//! What the provider webhooks share: how a request is refused, how addresses are read out of
//! header values, and the [`Inbox`] that makes a 2xx mean "on disk".
//!
//! Each provider file (`ses.rs`, `sendgrid.rs`, `mailgun.rs`, `postmark.rs`) verifies its own
//! signature first and only then parses the body into [`MailSummary`]s; the HTTP handler hands
//! them to the inbox and answers once the inbox has committed them.

pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod ses;

use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    model::{MailSummary, Observation, ObservationKind},
    store::{
        Store, StoreError,
        mail_inbox::{CURSOR, InboxBatch, InboxRecord},
    },
};

/// Why a request was refused before its content was trusted; the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No signature (or credentials) where the provider always sends one.
    Missing,
    /// A signature that does not verify, or wrong credentials.
    BadSignature,
    /// A signed timestamp outside the accepted window.
    Stale,
    /// A Mailgun token already accepted once.
    Replayed,
    /// An SNS message from a topic not in `topic_arns`.
    Topic,
    /// An SNS `SigningCertURL`/`SubscribeURL` that is not an SNS https URL: never fetched.
    CertUrl,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing_signature",
            Refusal::BadSignature => "bad_signature",
            Refusal::Stale => "stale",
            Refusal::Replayed => "replayed",
            Refusal::Topic => "unknown_topic",
            Refusal::CertUrl => "cert_url",
        }
    }
}

/// A webhook request that was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// 401: not from the provider, or not now.
    #[error("refused ({}): {detail}", .reason.as_str())]
    Refused { reason: Refusal, detail: String },
    /// 400: signed, but not the shape the provider documents.
    #[error("malformed {field}: {detail}")]
    Malformed { field: String, detail: String },
    /// 503: we could not judge it now (signing certificate unreachable, store failing); the
    /// provider retries.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl HookError {
    pub fn refused(reason: Refusal, detail: impl Into<String>) -> Self {
        HookError::Refused {
            reason,
            detail: detail.into(),
        }
    }

    pub fn malformed(field: impl Into<String>, detail: impl ToString) -> Self {
        HookError::Malformed {
            field: field.into(),
            detail: detail.to_string(),
        }
    }

    /// The metric's `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            HookError::Refused { reason, .. } => reason.as_str(),
            HookError::Malformed { .. } => "malformed",
            HookError::Unavailable(_) => "unavailable",
        }
    }
}

/// What a verified request carries.
#[derive(Debug, Default)]
pub struct Accepted {
    pub mails: Vec<MailSummary>,
    /// A token to remember (Mailgun): key and when it may be forgotten (unix seconds). Refused
    /// as replayed if already remembered; written in the same commit as the events.
    pub token: Option<(Vec<u8>, i64)>,
}

/// Parses a JSON body into `T`, naming the field at fault.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, HookError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".into() } else { path };
        HookError::malformed(field, e.into_inner())
    })
}

/// The addresses of an address-list header value (`"A, B" <a@x>, b@y, Group: c@z;`),
/// lowercased, in order. Quoted display names and comments are skipped; what cannot hold an
/// address (no `@`) is dropped.
pub fn addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut angle: Option<String> = None;
    let (mut quoted, mut comment, mut escaped) = (false, 0u32, false);
    let mut flush = |current: &mut String, angle: &mut Option<String>| {
        let addr = angle.take().unwrap_or_else(|| {
            // A group name ends at ':'; what follows it is an address.
            current.rsplit(':').next().unwrap_or_default().to_owned()
        });
        let addr = addr.trim().trim_end_matches(';').trim().to_lowercase();
        if addr.contains('@') && !addr.contains(char::is_whitespace) {
            out.push(addr);
        }
        current.clear();
    };
    let mut in_angle = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted || comment > 0 => escaped = true,
            '"' if comment == 0 => quoted = !quoted,
            _ if quoted => {}
            '(' => comment += 1,
            ')' if comment > 0 => comment -= 1,
            _ if comment > 0 => {}
            '<' => {
                in_angle = true;
                angle = Some(String::new());
            }
            '>' => in_angle = false,
            ',' | ';' if !in_angle => flush(&mut current, &mut angle),
            _ if in_angle => angle.get_or_insert_with(String::new).push(c),
            _ => current.push(c),
        }
    }
    flush(&mut current, &mut angle);
    out
}

/// The address of one mailbox value (`Name <a@x>` or `a@x`), lowercased.
pub fn address(value: &str) -> String {
    addresses(value).into_iter().next().unwrap_or_default()
}

/// Why the inbox could not take a request's events.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("token already used")]
    Replayed,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("shutting down")]
    Closed,
}

struct Commit {
    records: Vec<InboxRecord>,
    token: Option<(Vec<u8>, i64)>,
    done: oneshot::Sender<Result<usize, InboxError>>,
}

/// Requests waiting at once are committed together: one batch, one flush. The cap keeps one
/// commit's latency bounded under a flood.
const MAX_GROUP_RECORDS: usize = 50_000;
/// How often expired replay tokens are dropped.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// The webhooks' handle on the durable inbox; cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    tx: mpsc::Sender<Commit>,
}

impl Inbox {
    /// The inbox and its writer task. The writer first hands the pipeline what an earlier run
    /// accepted but did not judge, then commits requests as they come; it stops on `shutdown`
    /// (what it accepted stays on disk for the next start).
    pub fn start(
        store: Store,
        out: mpsc::Sender<Observation>,
        shutdown: CancellationToken,
    ) -> (
        Inbox,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel(256);
        (Inbox { tx }, writer(store, out, rx, shutdown))
    }

    /// Commits one request's summaries under `account`; Ok once they are durable (how many).
    pub async fn record(&self, account: &str, accepted: Accepted) -> Result<usize, InboxError> {
        let records = accepted
            .mails
            .into_iter()
            .map(|mail| InboxRecord {
                account: account.to_owned(),
                mail,
            })
            .collect();
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Commit {
                records,
                token: accepted.token,
                done,
            })
            .await
            .map_err(|_| InboxError::Closed)?;
        answer.await.map_err(|_| InboxError::Closed)?
    }
}

async fn writer(
    store: Store,
    out: mpsc::Sender<Observation>,
    mut rx: mpsc::Receiver<Commit>,
    shutdown: CancellationToken,
) {
    let run = async {
        let mut judged = store.inbox_checkpoint()?;
        let mut next = store.inbox_last_seq()? + 1;
        let pending = store.inbox_after(judged)?;
        if !pending.is_empty() {
            tracing::info!(
                events = pending.len(),
                "mail events accepted before the restart handed to the pipeline"
            );
            let last = pending.last().map_or(judged, |(seq, _)| *seq);
            if !forward(&out, pending.into_iter().map(|(_, r)| r), last).await {
                return Ok(());
            }
        }
        let mut forgot_at = tokio::time::Instant::now();
        loop {
            let Some(first) = rx.recv().await else {
                return Ok(());
            };
            let mut group = vec![first];
            let mut n = group[0].records.len();
            while n < MAX_GROUP_RECORDS {
                match rx.try_recv() {
                    Ok(c) => {
                        n += c.records.len();
                        group.push(c);
                    }
                    Err(_) => break,
                }
            }
            let now = Utc::now().timestamp();
            // Tokens are checked here, by the one writer, so two copies of a request racing
            // each other cannot both pass.
            let mut tokens: Vec<(Vec<u8>, i64)> = Vec::new();
            let mut accepted = Vec::with_capacity(group.len());
            for c in group {
                if let Some((key, until)) = &c.token {
                    let seen = tokens.iter().any(|(k, _)| k == key)
                        || match store.inbox_token_seen(key, now) {
                            Ok(seen) => seen,
                            Err(e) => {
                                let _ = c.done.send(Err(e.into()));
                                continue;
                            }
                        };
                    if seen {
                        let _ = c.done.send(Err(InboxError::Replayed));
                        continue;
                    }
                    tokens.push((key.clone(), *until));
                }
                accepted.push(c);
            }
            let done_upto = store.inbox_checkpoint()?;
            let batch = InboxBatch {
                records: accepted.iter().flat_map(|c| &c.records).collect(),
                first_seq: next,
                tokens,
                prune: (judged + 1)..(done_upto + 1).max(judged + 1),
            };
            let count = batch.records.len() as u64;
            if let Err(e) = store.inbox_commit(&batch).await {
                tracing::error!(error = %e, "cannot commit webhook events");
                let msg = e.to_string();
                for c in accepted {
                    let _ = c.done.send(Err(StoreError::Rejected(msg.clone()).into()));
                }
                continue;
            }
            judged = done_upto.max(judged);
            let last = next + count - 1;
            next += count;
            let mut records = Vec::with_capacity(count as usize);
            for c in accepted {
                let _ = c.done.send(Ok(c.records.len()));
                records.extend(c.records);
            }
            if count > 0 && !forward(&out, records.into_iter(), last).await {
                return Ok(());
            }
            if forgot_at.elapsed() >= FORGET_EVERY {
                forgot_at = tokio::time::Instant::now();
                store.inbox_forget_tokens(now)?;
            }
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        r = run => if let Err(e) = r as Result<(), StoreError> {
            tracing::error!(error = %e, "the webhook inbox stopped");
        }
    }
}

/// Hands records to the pipeline, then the checkpoint that lets it mark them judged.
async fn forward(
    out: &mpsc::Sender<Observation>,
    records: impl Iterator<Item = InboxRecord>,
    last: u64,
) -> bool {
    let seen_at = Utc::now();
    for r in records {
        let obs = Observation {
            account: r.account,
            seen_at,
            kind: ObservationKind::Mail(r.mail),
        };
        if out.send(obs).await.is_err() {
            return false;
        }
    }
    out.send(Observation {
        account: CURSOR.into(),
        seen_at,
        kind: ObservationKind::Checkpoint {
            cursor: CURSOR.into(),
            value: last.to_string(),
        },
    })
    .await
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_address_lists() {
        assert_eq!(
            addresses(
                r#""Doe, Jane" <Jane@Example.com>, bob@x.org (Bob, B.), Team: c@y.net, d@y.net;"#
            ),
            vec!["jane@example.com", "bob@x.org", "c@y.net", "d@y.net"]
        );
        assert_eq!(addresses("undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(address("Sender <s@corp.example>"), "s@corp.example");
        assert_eq!(address("s@corp.example"), "s@corp.example");
    }
}
