//! Email bursts: every leaky (or bulk) message of one sender joins the sender's live incident
//! until a responder resolves it. The page shows running counters and is edited as they grow.
//!
//! The distinct addresses and domains are counted in a set kept in the store next to the
//! incident (`Tx::mail_set_insert`), never in the incident, which is rewritten on every change
//! and would otherwise carry 23,000 addresses. A message that joins a burst updates the counters
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

/// Adds the exposed addresses and domains to the incident's sets; the counts of new ones.
fn count_new(tx: &Tx<'_>, incident: u64, writes: &[Write]) -> TxResult<(u64, u64)> {
    let (mut addresses, mut domains) = (0, 0);
    for w in writes {
        if let Write::MailExposure {
            addresses: a,
            domains: d,
        } = w
        {
            for key in a {
                addresses += u64::from(tx.mail_set_insert(incident, ADDRESSES, key)?);
            }
            for domain in d {
                domains += u64::from(tx.mail_set_insert(incident, DOMAINS, domain.as_bytes())?);
            }
        }
    }
    Ok((addresses, domains))
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
            count_new(tx, id, writes)?;
        }
        return Ok(recorded);
    };
    let (addresses, domains) = count_new(tx, inc.id, writes)?;
    let before = inc.severity;
    join(&mut inc, f.rule, new, addresses, domains);
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
    addresses: u64,
    domains: u64,
) {
    let Evidence::Mail(e) = &mut inc.evidence else {
        inc.evidence = Evidence::Mail(new.clone());
        return;
    };
    e.messages += 1;
    e.exposed += addresses;
    e.domains += domains;
    // Bulk: the window's total as detect computed it; exposure: every message's recipients.
    e.recipients = if rule == Rule::UnapprovedBulk {
        new.recipients
    } else {
        e.recipients + new.recipients
    };
    e.largest = e.largest.max(new.largest);
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
