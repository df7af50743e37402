//! Compares each observation with what the company approved and says what is wrong.
//!
//! Detect reads the store but writes nothing itself: it returns the state changes its verdict
//! rests on (a post now seen, a first baseline) in [`Outcome::writes`], and `incidents` commits
//! them in the same transaction as the incident they cause. A crash between the two can then
//! neither page twice nor forget a post it never paged.

pub mod audit;
pub mod blind;
pub mod email;
pub mod fingerprint;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::{
    config::Email,
    model::{
        Distinct, Evidence, FieldChange, Finding, Observation, ObservationKind, Post, Profile,
        Rule, Severity, digest,
    },
    store::{ApprovedEntry, SeenPost, Store, StoreError},
};

pub use fingerprint::{content_from_text, fingerprint};

/// State that a verdict rests on, committed with the incident it causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    SeenPost {
        account: String,
        post_id: String,
        seen: SeenPost,
    },
    Baseline {
        account: String,
        field: String,
        value: String,
        by: String,
    },
    /// Recipients a sender reached, added to its volume bucket (`email.unapproved_bulk`).
    MailVolume {
        sender: String,
        /// Start of the bucket, seconds since the epoch.
        bucket: i64,
        recipients: u64,
    },
    /// The addresses and external domains a leaky message showed, as keyed hashes counted in
    /// bounded space. Not a write of its own: `incidents::record` merges them into the counts
    /// of the incident the finding joins, which only it knows.
    MailExposure {
        addresses: Distinct,
        domains: Distinct,
    },
    /// A post published by one of the account's trusted clients, approved by that client.
    ApprovedByClient {
        account: String,
        post_id: String,
        fingerprint: String,
        client: String,
    },
    /// A client joins or leaves the account's trusted list.
    TrustedClient {
        account: String,
        client: String,
        withdrawn: bool,
    },
}

impl Write {
    /// Applies the write inside the transaction that records the verdict it belongs to.
    pub fn apply(
        &self,
        tx: &crate::store::Tx<'_>,
        at: DateTime<Utc>,
    ) -> crate::store::TxResult<()> {
        match self {
            Write::SeenPost {
                account,
                post_id,
                seen,
            } => tx.put_seen_post(account, post_id, seen, at),
            Write::Baseline {
                account,
                field,
                value,
                by,
            } => tx.set_baseline(account, field, value, by, at),
            Write::MailVolume {
                sender,
                bucket,
                recipients,
            } => tx.add_mail_volume(sender, *bucket, *recipients),
            Write::MailExposure { .. } => Ok(()),
            Write::ApprovedByClient {
                account,
                post_id,
                fingerprint,
                client,
            } => {
                let entry = ApprovedEntry::ApprovedPost {
                    account: account.clone(),
                    fingerprint: Some(fingerprint.clone()),
                    post_id: Some(post_id.clone()),
                    expires_at: None,
                    by: client.clone(),
                    note: Some("published by a trusted client".into()),
                };
                tx.append_log(entry, at).map(|_| ())
            }
            Write::TrustedClient {
                account,
                client,
                withdrawn,
            } => {
                let entry = ApprovedEntry::TrustedClient {
                    account: account.clone(),
                    client: client.clone(),
                    withdrawn: *withdrawn,
                    by: TRUSTED_LIST_BY.into(),
                };
                tx.append_log(entry, at).map(|_| ())
            }
        }
    }

    /// Whether the write must be on disk before the pipeline goes on. Volume counters need
    /// not: they are written before the queue's checkpoint, so a crash that loses them loses
    /// the checkpoint too and the message is judged again.
    pub fn needs_flush(&self) -> bool {
        !matches!(self, Write::MailVolume { .. } | Write::MailExposure { .. })
    }
}

/// Detect's verdict on one observation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub finding: Option<Finding>,
    pub writes: Vec<Write>,
}

/// Who is recorded as having changed an account's trusted clients: the list comes from the
/// configuration file, whoever edited it.
pub const TRUSTED_LIST_BY: &str = "configuration";

/// Who is recorded as having accepted the first snapshot of an account.
pub const FIRST_SNAPSHOT: &str = "tocsin (first snapshot)";

/// Profile fields whose change hands the account or its audience to someone else.
fn field_severity(field: &str, after: &str) -> Severity {
    // Identity: who answers for the account (handle, PDS, keys) or whether it still exists.
    let critical = matches!(
        field,
        "url"
            | "handle"
            | "moved"
            | "email"
            | "pds"
            | "rotation_keys"
            | "signing_key"
            | "account_status"
    ) || (field.starts_with("field:")
        && (after.contains("http://") || after.contains("https://")));
    if critical {
        Severity::Critical
    } else {
        Severity::High
    }
}

/// Judges one observation; `email` holds the `[email]` rules of the running configuration.
pub fn evaluate(store: &Store, email: &Email, obs: &Observation) -> Result<Outcome, StoreError> {
    match &obs.kind {
        ObservationKind::Post(post) => evaluate_post(store, &obs.account, post, obs.seen_at),
        ObservationKind::Profile(profile) => {
            evaluate_profile(store, &obs.account, profile, obs.seen_at)
        }
        ObservationKind::Admins(admins) => {
            evaluate_admins(store, &obs.account, admins, obs.seen_at)
        }
        ObservationKind::PostDeleted { post_id, .. } => {
            evaluate_deletion(store, &obs.account, post_id, obs.seen_at)
        }
        ObservationKind::Mail(mail) => {
            email::evaluate(store, email, &obs.account, mail, obs.seen_at)
        }
        ObservationKind::Audit(event) => Ok(audit::evaluate(&obs.account, event, obs.seen_at)),
        ObservationKind::Checkpoint { .. } => Ok(Outcome::default()),
    }
}

fn evaluate_post(
    store: &Store,
    account: &str,
    post: &Post,
    seen_at: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let fp = fingerprint(&post.content);
    let previous = store.seen_post(account, &post.id)?;
    if previous.as_ref().is_some_and(|p| p.fingerprint == fp) {
        return Ok(Outcome::default());
    }
    let seen = SeenPost {
        fingerprint: fp.clone(),
        text: post.content.text.clone(),
        edited_at: post.edited_at,
    };
    let mut writes = vec![Write::SeenPost {
        account: account.into(),
        post_id: post.id.clone(),
        seen,
    }];
    let approved = store.is_post_approved(account, &fp, &post.id, seen_at)?;
    // A new post from one of the company's tools is approved by the tool. Only a new post: an
    // edit keeps the client of the original, whoever made it.
    if let (None, false, false, Some(client)) = (&previous, approved, post.history, &post.client)
        && store.trusted_clients(account)?.contains(client)
    {
        writes.push(Write::ApprovedByClient {
            account: account.into(),
            post_id: post.id.clone(),
            fingerprint: fp,
            client: client.clone(),
        });
        return Ok(Outcome {
            finding: None,
            writes,
        });
    }
    let finding = match previous {
        _ if approved => None,
        None if post.history => None,
        None => Some(Finding {
            rule: Rule::UnapprovedPost,
            severity: Severity::Critical,
            account: account.into(),
            object: post.id.clone(),
            evidence: Evidence::Post {
                post_id: post.id.clone(),
                url: post.url.clone(),
                text: post.content.text.clone(),
                links: post.content.links.clone(),
                media: post.content.media.len(),
                client: post.client.clone(),
                fingerprint: fp,
            },
            changed_at: Some(post.created_at),
            seen_at,
        }),
        Some(before) => Some(Finding {
            rule: Rule::PostEdited,
            severity: Severity::High,
            account: account.into(),
            object: post.id.clone(),
            evidence: Evidence::PostEdited {
                post_id: post.id.clone(),
                url: post.url.clone(),
                before: before.text,
                after: post.content.text.clone(),
                fingerprint: fp,
            },
            changed_at: post.edited_at,
            seen_at,
        }),
    };
    Ok(Outcome { finding, writes })
}

/// Compares the account's configured trusted clients with the list in the approved log. A
/// difference is chained (one entry per client added or withdrawn, by
/// [`TRUSTED_LIST_BY`]) and paged: whoever can edit the file can make posts go unpaged, so
/// every change is shown to the responders, the first list included.
pub fn trusted_clients(
    store: &Store,
    account: &str,
    configured: &[String],
    now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let current = store.trusted_clients(account)?;
    let wanted: std::collections::BTreeSet<String> = configured.iter().cloned().collect();
    let added: Vec<String> = wanted.difference(&current).cloned().collect();
    let withdrawn: Vec<String> = current.difference(&wanted).cloned().collect();
    if added.is_empty() && withdrawn.is_empty() {
        return Ok(Outcome::default());
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let now_trusted: Vec<String> = wanted.into_iter().collect();
    let problem = format!(
        "changed in the configuration: added {}; withdrawn {}; trusted now {}",
        list(&added),
        list(&withdrawn),
        list(&now_trusted)
    );
    let writes = added
        .iter()
        .map(|c| (c, false))
        .chain(withdrawn.iter().map(|c| (c, true)))
        .map(|(client, withdrawn)| Write::TrustedClient {
            account: account.into(),
            client: client.clone(),
            withdrawn,
        })
        .collect();
    // Adding a client silences its posts; withdrawing one only makes more of them page.
    let severity = if added.is_empty() {
        Severity::Medium
    } else {
        Severity::High
    };
    Ok(Outcome {
        finding: Some(Finding {
            rule: Rule::TrustedClientsChanged,
            severity,
            account: account.into(),
            object: TRUSTED_CLIENTS_OBJECT.into(),
            evidence: Evidence::Channel {
                channel: "trusted clients".into(),
                problem,
                since: now,
            },
            changed_at: None,
            seen_at: now,
        }),
        writes,
    })
}

/// The object of a `social.trusted_clients_changed` incident.
pub const TRUSTED_CLIENTS_OBJECT: &str = "trusted_clients";

/// A deleted post matters when the company had approved it: someone with access removed a
/// legitimate message (or the approval is about to be reused). Unapproved posts going away
/// (a takedown, the attacker covering tracks) are already someone's incident.
fn evaluate_deletion(
    store: &Store,
    account: &str,
    post_id: &str,
    seen_at: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let Some(seen) = store.seen_post(account, post_id)? else {
        return Ok(Outcome::default());
    };
    if !store.is_post_approved(account, &seen.fingerprint, post_id, seen_at)? {
        return Ok(Outcome::default());
    }
    Ok(Outcome {
        finding: Some(Finding {
            rule: Rule::ApprovedPostDeleted,
            severity: Severity::Medium,
            account: account.into(),
            object: post_id.into(),
            evidence: Evidence::Post {
                post_id: post_id.into(),
                url: None,
                text: seen.text,
                links: Vec::new(),
                media: 0,
                client: None,
                fingerprint: seen.fingerprint,
            },
            changed_at: None,
            seen_at,
        }),
        writes: Vec::new(),
    })
}

/// Baselines of the admin list are kept as `admin:<id>` fields, apart from the profile's.
pub const ADMIN_PREFIX: &str = "admin:";

/// A new admin or owner, a changed role or a removed admin: one critical incident per account
/// (object `admins`), approved like a profile change (the new list becomes the baseline).
fn evaluate_admins(
    store: &Store,
    account: &str,
    admins: &Profile,
    seen_at: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let fields = Profile {
        fields: admins
            .fields
            .iter()
            .map(|(id, v)| (format!("{ADMIN_PREFIX}{id}"), v.clone()))
            .collect(),
    };
    let mut outcome = compare_fields(store, account, &fields, seen_at, true)?;
    if let Some(f) = &mut outcome.finding {
        f.rule = Rule::AdminChanged;
        f.severity = Severity::Critical;
        f.object = "admins".into();
    }
    Ok(outcome)
}

fn evaluate_profile(
    store: &Store,
    account: &str,
    profile: &Profile,
    seen_at: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    compare_fields(store, account, profile, seen_at, false)
}

/// Compares fields with the baselines of their kind (`admins`: the `admin:` ones; otherwise
/// every other one); the first snapshot of a kind becomes its baseline.
fn compare_fields(
    store: &Store,
    account: &str,
    profile: &Profile,
    seen_at: DateTime<Utc>,
    admins: bool,
) -> Result<Outcome, StoreError> {
    let mut baselines = store.baselines(account)?;
    baselines.retain(|field, _| field.starts_with(ADMIN_PREFIX) == admins);
    if baselines.is_empty() {
        let writes = profile
            .fields
            .iter()
            .map(|(field, value)| Write::Baseline {
                account: account.into(),
                field: field.clone(),
                value: value.clone(),
                by: FIRST_SNAPSHOT.into(),
            })
            .collect();
        return Ok(Outcome {
            finding: None,
            writes,
        });
    }
    let mut changes = BTreeMap::new();
    for (field, after) in &profile.fields {
        match baselines.get(field) {
            Some(b) if b.digest == digest(after) => {}
            // A field that appears empty where there was none is no change.
            None if after.is_empty() => {}
            b => {
                let before = b.map(|b| b.value.clone());
                changes.insert(
                    field.clone(),
                    FieldChange {
                        before,
                        after: after.clone(),
                    },
                );
            }
        }
    }
    for (field, b) in &baselines {
        if !profile.fields.contains_key(field) && !b.value.is_empty() {
            let change = FieldChange {
                before: Some(b.value.clone()),
                after: String::new(),
            };
            changes.insert(field.clone(), change);
        }
    }
    if changes.is_empty() {
        return Ok(Outcome::default());
    }
    let severity = changes
        .iter()
        .map(|(f, c)| field_severity(f, &c.after))
        .max()
        .unwrap_or(Severity::High);
    Ok(Outcome {
        finding: Some(Finding {
            rule: Rule::ProfileChanged,
            severity,
            account: account.into(),
            object: "profile".into(),
            evidence: Evidence::Profile { changes },
            changed_at: None,
            seen_at,
        }),
        writes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PostContent;
    use crate::store::ApprovedEntry;

    fn post(id: &str, text: &str, history: bool) -> Observation {
        Observation {
            account: "main".into(),
            seen_at: Utc::now(),
            kind: ObservationKind::Post(Post {
                id: id.into(),
                url: None,
                created_at: Utc::now(),
                edited_at: None,
                content: content_from_text(text),
                client: None,
                history,
            }),
        }
    }

    fn commit(store: &Store, outcome: &Outcome) {
        store
            .transact(|tx| {
                for w in &outcome.writes {
                    w.apply(tx, Utc::now())?;
                }
                Ok(())
            })
            .unwrap();
    }

    fn profile(fields: &[(&str, &str)]) -> Observation {
        Observation {
            account: "main".into(),
            seen_at: Utc::now(),
            kind: ObservationKind::Profile(Profile {
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
        }
    }

    #[test]
    fn posts_history_approved_rogue_and_edited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let history = evaluate(&store, &Email::default(), &post("1", "old news", true)).unwrap();
        assert!(history.finding.is_none());
        commit(&store, &history);

        let approved_text = "Q4 update https://example.com/q4";
        let fp = fingerprint(&content_from_text(approved_text));
        let entry = ApprovedEntry::ApprovedPost {
            account: "main".into(),
            fingerprint: Some(fp),
            post_id: None,
            expires_at: None,
            by: "t".into(),
            note: None,
        };
        store.approve(entry, Utc::now()).unwrap();
        assert!(
            evaluate(&store, &Email::default(), &post("2", approved_text, false))
                .unwrap()
                .finding
                .is_none()
        );

        let rogue = evaluate(
            &store,
            &Email::default(),
            &post("3", "giveaway, send 1 BTC", false),
        )
        .unwrap();
        assert_eq!(rogue.finding.as_ref().unwrap().rule, Rule::UnapprovedPost);
        commit(&store, &rogue);
        // Seen again unchanged: nothing new.
        assert_eq!(
            evaluate(
                &store,
                &Email::default(),
                &post("3", "giveaway, send 1 BTC", false)
            )
            .unwrap(),
            Outcome::default()
        );

        let edited = evaluate(
            &store,
            &Email::default(),
            &post("1", "old news, now with a link https://evil.example", false),
        )
        .unwrap();
        let f = edited.finding.unwrap();
        assert_eq!(f.rule, Rule::PostEdited);
        assert!(
            matches!(f.evidence, Evidence::PostEdited { ref before, .. } if before == "old news")
        );
    }

    #[test]
    fn approved_text_with_swapped_link_is_unapproved() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let fp = fingerprint(&content_from_text("Claim https://example.com/c"));
        let entry = ApprovedEntry::ApprovedPost {
            account: "main".into(),
            fingerprint: Some(fp),
            post_id: None,
            expires_at: None,
            by: "t".into(),
            note: None,
        };
        store.approve(entry, Utc::now()).unwrap();
        let mut obs = post("9", "Claim https://example.com/c", false);
        if let ObservationKind::Post(p) = &mut obs.kind {
            p.content = PostContent {
                links: vec!["https://evil.example/c".into()],
                ..p.content.clone()
            };
        }
        assert!(
            evaluate(&store, &Email::default(), &obs)
                .unwrap()
                .finding
                .is_some()
        );
    }

    #[test]
    fn first_profile_is_baseline_then_drift_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = evaluate(
            &store,
            &Email::default(),
            &profile(&[("note", "hi"), ("field:Website", "https://a.example")]),
        )
        .unwrap();
        assert!(first.finding.is_none());
        assert_eq!(first.writes.len(), 2);
        commit(&store, &first);
        let same = evaluate(
            &store,
            &Email::default(),
            &profile(&[("note", "hi"), ("field:Website", "https://a.example")]),
        )
        .unwrap();
        assert_eq!(same, Outcome::default());

        let drift = evaluate(
            &store,
            &Email::default(),
            &profile(&[("note", "hi"), ("display_name", "Support")]),
        )
        .unwrap();
        let f = drift.finding.unwrap();
        // A name change and a removed link: no new link target, so high rather than critical.
        assert_eq!(f.severity, Severity::High);
        let Evidence::Profile { changes } = f.evidence else {
            panic!("profile evidence")
        };
        assert_eq!(
            changes["display_name"],
            FieldChange {
                before: None,
                after: "Support".into()
            }
        );
        assert_eq!(changes["field:Website"].after, "");
    }
}
