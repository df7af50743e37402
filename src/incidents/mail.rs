//! Email bursts: every leaky (or bulk) message of one sender joins the sender's live incident
//! until a responder resolves it. The page shows running counters and is edited as they grow.
//!
//! The distinct addresses and domains are counted in bounded sketches kept in the store next to
//! the incident (`Tx::mail_set_merge`: keyed hashes, exact up to 100,000, then an estimate the
//! page marks as one), never in the incident, which is rewritten on every change and would
//! otherwise carry the leaked list. They are forgotten when the incident is resolved
//! ([`forget`], and [`prune_loop`] for what a crash left). A message that joins a burst updates the counters
//! and queues a page edit without a timeline event: the timeline records what happened to the
//! incident (opened, paged, acked, resolved), and a thousand "updated" events would make the
//! incident as large as the list it must not hold.

use chrono::{DateTime, Utc};

use super::{PagingPolicy, Recorded, ring_if_risen, save_and_page_unless_muted};
use crate::{
    detect::{Write, email::SAMPLES},
    model::{Evidence, Finding, Incident, Rule, State, dedup_key},
    store::{Tx, TxResult},
};

const ADDRESSES: u8 = b'a';
const DOMAINS: u8 = b'd';

/// Merges the exposed addresses and domains into the incident's counts; the counts now, and
/// whether the addresses are estimated.
fn count(tx: &Tx<'_>, incident: u64, writes: &[Write]) -> TxResult<Option<(u64, u64, bool)>> {
    let mut counted = None;
    for w in writes {
        if let Write::MailExposure { addresses, domains } = w {
            let a = tx.mail_set_merge(incident, ADDRESSES, addresses)?;
            let d = tx.mail_set_merge(incident, DOMAINS, domains)?;
            counted = Some((a.count(), d.count(), a.is_estimate() || d.is_estimate()));
        }
    }
    Ok(counted)
}

/// Forgets a resolved incident's counts: nothing joins it any more.
pub(super) fn forget(tx: &Tx<'_>, inc: &Incident) -> TxResult<()> {
    if matches!(inc.evidence, Evidence::Mail(_)) {
        tx.forget_mail_sets(inc.id, &[ADDRESSES, DOMAINS])?;
    }
    Ok(())
}

/// How often [`prune_loop`] sweeps.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Sweeps the mail counters until `shutdown`: volume buckets older than every window that reads
/// them (`bulk_window`, and each approved campaign's, 24 h when it names none), and the counts
/// of resolved incidents. At start too, so a state dir from an older build is cleaned.
pub async fn prune_loop(
    store: crate::store::Store,
    bulk_window: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let longest = store
            .approved_campaigns()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, e)| match e {
                crate::store::ApprovedEntry::ApprovedCampaign {
                    expires_at: Some(t),
                    ..
                } if t <= Utc::now() => None,
                crate::store::ApprovedEntry::ApprovedCampaign { window, .. } => Some(
                    window
                        .as_deref()
                        .and_then(|w| humantime::parse_duration(w).ok())
                        .unwrap_or(std::time::Duration::from_secs(24 * 3600)),
                ),
                _ => None,
            })
            .fold(bulk_window, std::cmp::max);
        // One bucket's width of slack: a window starts inside its oldest bucket.
        let keep =
            chrono::Duration::from_std(longest + longest / 12).unwrap_or(chrono::Duration::MAX);
        let since = Utc::now()
            .checked_sub_signed(keep)
            .unwrap_or(DateTime::UNIX_EPOCH);
        match store.prune_mail(since) {
            Ok(p) if p.buckets + p.sets > 0 => {
                tracing::info!(buckets = p.buckets, sets = p.sets, "mail counters pruned")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot prune the mail counters"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

pub(super) fn upsert(
    tx: &Tx<'_>,
    f: &Finding,
    writes: &[Write],
    now: DateTime<Utc>,
    group_window: std::time::Duration,
    policy: &PagingPolicy,
) -> TxResult<Recorded> {
    let Evidence::Mail(new) = &f.evidence else {
        return super::upsert(tx, f, now, group_window, policy);
    };
    let key = dedup_key(&f.account, f.rule, &f.object);
    let live = tx
        .incident_by_key(&key)?
        .filter(|inc| inc.state != State::Resolved);
    let Some(mut inc) = live else {
        let recorded = super::upsert(tx, f, now, group_window, policy)?;
        if let Recorded::Opened(id) = recorded {
            // The first message's own counts are already in the evidence.
            count(tx, id, writes)?;
        }
        return Ok(recorded);
    };
    let counted = count(tx, inc.id, writes)?;
    let before = inc.severity;
    join(&mut inc, f.rule, new, counted);
    inc.severity = inc.severity.max(f.severity);
    inc.evidence_digest = inc.evidence.digest();
    inc.findings += 1;
    inc.updated_at = now;
    // Approve covers what the voter saw; a grown burst needs new votes.
    inc.votes.clear();
    save_and_page_unless_muted(tx, &inc, now, policy)?;
    ring_if_risen(tx, &mut inc, before, f.rule, now, policy)?;
    Ok(Recorded::Updated(inc.id))
}

fn join(
    inc: &mut Incident,
    rule: Rule,
    new: &crate::model::MailEvidence,
    counted: Option<(u64, u64, bool)>,
) {
    let Evidence::Mail(e) = &mut inc.evidence else {
        inc.evidence = Evidence::Mail(new.clone());
        return;
    };
    // Bulk: the window's messages as detect counted them; exposure: one more message.
    e.messages = if rule == Rule::UnapprovedBulk {
        new.messages
    } else {
        e.messages + 1
    };
    if let Some((addresses, domains, estimated)) = counted {
        e.exposed = addresses;
        e.domains = domains;
        e.estimated |= estimated;
    }
    // Bulk: the window's total as detect computed it; exposure: every message's recipients.
    e.recipients = if rule == Rule::UnapprovedBulk {
        new.recipients
    } else {
        e.recipients + new.recipients
    };
    e.largest = e.largest.max(new.largest);
    for id in &new.held {
        if e.held.len() < crate::model::HELD_LIMIT && !e.held.contains(id) {
            e.held.push(id.clone());
        }
    }
    e.subject.clone_from(&new.subject);
    e.message_id.clone_from(&new.message_id);
    if new.campaign.is_some() {
        e.campaign.clone_from(&new.campaign);
    }
    for s in &new.samples {
        if e.samples.len() >= SAMPLES {
            break;
        }
        if !e.samples.contains(s) {
            e.samples.push(s.clone());
        }
    }
}
