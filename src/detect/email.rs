//! The email rules, judged on a [`MailSummary`] whatever feed saw it.
//!
//! - `email.security_notice` (critical): a platform's "your email/password changed, new login,
//!   2FA off" mail, filed under the social account whose registered address received it.
//! - `email.exposed_recipients` (critical): more than `max_visible_recipients` addresses in
//!   To+Cc, or visible addresses of more than one external domain.
//! - `email.unapproved_bulk` (high): the sender's envelope recipients within `bulk_window` pass
//!   `bulk_threshold` and no approved campaign covers them.
//!
//! One message raises at most one finding, the first of that order. Every message that is not
//! a notice adds its recipients to the sender's volume buckets (a [`Write`]), committed with the
//! verdict. The addresses a finding exposes travel as [`Write::MailExposure`] keyed hashes
//! (exact, then estimated), which `incidents` merges into the burst's counts; the incident keeps
//! only counters.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{Outcome, Write};
use crate::{
    config::Email,
    model::{
        AddressKey, Evidence, Finding, MailEvidence, MailSummary, NoticeEvidence, Rule, Severity,
        VisibleTally,
    },
    store::{ApprovedEntry, Store, StoreError},
};

/// Sample addresses shown (masked) on a page.
pub const SAMPLES: usize = 3;

/// `jane@example.com` → `j***@example.com`.
pub fn mask(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

fn domain(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

/// The bucket width of the volume counters: a twelfth of the window, so the window is summed
/// from at most 13 keys and is exact to within one bucket.
fn bucket_secs(email: &Email) -> i64 {
    (email.bulk_window.as_secs() / 12).max(1) as i64
}

pub fn evaluate(
    store: &Store,
    rules: &Email,
    account: &str,
    mail: &MailSummary,
    seen_at: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    if let Some(f) = security_notice(rules, account, mail, seen_at) {
        return Ok(Outcome {
            finding: Some(f),
            writes: Vec::new(),
        });
    }
    let n = mail.recipients();
    let width = bucket_secs(rules);
    let now = seen_at.timestamp();
    let mut writes = vec![Write::MailVolume {
        sender: mail.sender.clone(),
        bucket: now - now.rem_euclid(width),
        recipients: n,
    }];
    // A feed that names every address (a provider's event) is counted here; the journal
    // counted while the message streamed past and kept only a sample.
    let mut key = None;
    let mut key = || -> Result<AddressKey, StoreError> {
        if key.is_none() {
            key = Some(store.address_key()?);
        }
        Ok(key.clone().expect("just set"))
    };
    let counted;
    let tally = match &mail.tally {
        Some(t) => t,
        None => {
            counted = VisibleTally::of(&key()?, &mail.visible);
            &counted
        }
    };
    let exposed = tally.addresses.count();
    let sender_domain = domain(&mail.sender);
    let external: BTreeSet<&str> = tally
        .domains
        .iter()
        .map(String::as_str)
        .filter(|d| !is_internal_domain(rules, d) && !d.eq_ignore_ascii_case(sender_domain))
        .collect();
    // Past the named domains every one is taken as external: a colleague's domain is among
    // the first thousand of any real message.
    let external_count = external.len() as u64 + tally.more_domains.count();
    let samples: BTreeSet<&str> = mail.visible.iter().map(String::as_str).collect();
    let evidence = |messages: u64, recipients: u64| MailEvidence {
        sender: mail.sender.clone(),
        subject: mail.subject.clone(),
        message_id: mail.message_id.clone(),
        campaign: mail.campaign.clone(),
        messages,
        exposed,
        domains: external_count,
        recipients,
        largest: exposed,
        samples: samples.iter().take(SAMPLES).map(|a| mask(a)).collect(),
        estimated: tally.addresses.is_estimate() || !tally.more_domains.is_empty(),
        origin_proven: mail.origin_proven,
        held: mail.held_at_mta.iter().cloned().collect(),
    };
    if exposed > rules.max_visible_recipients as u64 || external_count > 1 {
        let key = key()?;
        let mut domains = tally.more_domains.clone();
        for d in &external {
            domains.insert(key.hash(d));
        }
        writes.push(Write::MailExposure {
            addresses: tally.addresses.clone(),
            domains,
        });
        let finding = Finding {
            rule: Rule::ExposedRecipients,
            severity: Severity::Critical,
            account: account.to_owned(),
            object: mail.sender.clone(),
            evidence: Evidence::Mail(evidence(1, n)),
            changed_at: mail.sent_at,
            seen_at,
        };
        return Ok(Outcome {
            finding: Some(finding),
            writes,
        });
    }
    let window = chrono::Duration::from_std(rules.bulk_window).unwrap_or(chrono::Duration::MAX);
    let since = seen_at
        .checked_sub_signed(window)
        .unwrap_or(DateTime::UNIX_EPOCH);
    let (before, sent) = store.mail_window(&mail.sender, since)?;
    let total = before + n;
    if total > rules.bulk_threshold && !campaign_approved(store, mail, seen_at)? {
        let finding = Finding {
            rule: Rule::UnapprovedBulk,
            severity: Severity::High,
            account: account.to_owned(),
            object: mail.sender.clone(),
            evidence: Evidence::Mail(evidence(sent + 1, total)),
            changed_at: mail.sent_at,
            seen_at,
        };
        return Ok(Outcome {
            finding: Some(finding),
            writes,
        });
    }
    Ok(Outcome {
        finding: None,
        writes,
    })
}

fn is_internal_domain(rules: &Email, domain: &str) -> bool {
    rules
        .internal_domains
        .iter()
        .any(|d| domain.eq_ignore_ascii_case(d))
}

/// Whether an approved campaign covers the sender's volume including this message.
fn campaign_approved(
    store: &Store,
    mail: &MailSummary,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    for (_, entry) in store.approved_campaigns()? {
        let ApprovedEntry::ApprovedCampaign {
            sender,
            campaign,
            max_recipients,
            window,
            expires_at,
            ..
        } = entry
        else {
            continue;
        };
        if expires_at.is_some_and(|t| t <= now) {
            continue;
        }
        if !sender.eq_ignore_ascii_case(&mail.sender) {
            continue;
        }
        if campaign != "*" && mail.campaign.as_deref() != Some(campaign.as_str()) {
            continue;
        }
        let Some(max) = max_recipients else {
            return Ok(true);
        };
        let window = window
            .as_deref()
            .and_then(|w| humantime::parse_duration(w).ok())
            .and_then(|w| chrono::Duration::from_std(w).ok())
            .unwrap_or_else(|| chrono::Duration::hours(24));
        let since = now
            .checked_sub_signed(window)
            .unwrap_or(DateTime::UNIX_EPOCH);
        if store.mail_volume(&mail.sender, since)? + mail.recipients() <= max {
            return Ok(true);
        }
    }
    Ok(false)
}

fn security_notice(
    rules: &Email,
    account: &str,
    mail: &MailSummary,
    seen_at: DateTime<Utc>,
) -> Option<Finding> {
    let notices = &rules.security_notices;
    let from = if mail.from.is_empty() {
        &mail.sender
    } else {
        &mail.from
    };
    let from_domain = domain(from);
    let subject = mail.subject.to_lowercase();
    let pattern = notices.patterns.iter().find(|p| {
        p.senders.iter().any(|s| {
            let s = s.to_ascii_lowercase();
            from.eq_ignore_ascii_case(&s)
                || from_domain == s
                || from_domain.ends_with(&format!(".{s}"))
        }) && p
            .subjects
            .iter()
            .any(|phrase| subject.contains(&phrase.to_lowercase()))
    })?;
    let recipients = || mail.envelope.iter().chain(&mail.visible);
    let registered = notices.accounts.iter().find_map(|a| {
        recipients()
            .find(|r| a.platform == pattern.platform && r.eq_ignore_ascii_case(&a.address))
            .map(|r| (a.account.clone(), r.clone()))
    });
    let (linked, recipient) = registered.unwrap_or_else(|| {
        (
            account.to_owned(),
            recipients().next().cloned().unwrap_or_default(),
        )
    });
    let object = if mail.message_id.is_empty() {
        format!(
            "notice:{}",
            crate::model::digest(&format!("{from}\n{subject}\n{seen_at}"))
        )
    } else {
        format!("notice:{}", mail.message_id)
    };
    Some(Finding {
        rule: Rule::SecurityNotice,
        severity: Severity::Critical,
        account: linked,
        object,
        evidence: Evidence::SecurityNotice(NoticeEvidence {
            platform: pattern.platform.clone(),
            sender: from.clone(),
            subject: mail.subject.clone(),
            recipient,
            message_id: mail.message_id.clone(),
        }),
        changed_at: mail.sent_at,
        seen_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NoticeAccount;

    fn mail(visible: &[&str], envelope: usize) -> MailSummary {
        MailSummary {
            feed: "journal".into(),
            message_id: "m1@shop.example".into(),
            sender: "news@shop.example".into(),
            from: "news@shop.example".into(),
            subject: "Spring sale".into(),
            visible: visible.iter().map(|s| s.to_string()).collect(),
            envelope: (0..envelope)
                .map(|i| format!("c{i}@cust.example"))
                .collect(),
            campaign: Some("spring".into()),
            sent_at: None,
            ..MailSummary::default()
        }
    }

    fn store(email: Email) -> (tempfile::TempDir, Store, Email) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store, email)
    }

    fn commit(store: &Store, o: &Outcome) {
        store
            .transact(|tx| {
                for w in &o.writes {
                    w.apply(tx, Utc::now())?;
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn masks_keep_the_domain_only() {
        assert_eq!(mask("jane@example.com"), "j***@example.com");
        assert_eq!(mask("nope"), "***");
    }

    #[test]
    fn exposure_by_count_and_by_domains() {
        let (_d, store, rules) = store(Email {
            internal_domains: vec!["corp.example".into()],
            ..Email::default()
        });
        let many: Vec<String> = (0..26).map(|i| format!("u{i}@cust.example")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let o = evaluate(&store, &rules, "journal", &mail(&refs, 26), Utc::now()).unwrap();
        let f = o.finding.unwrap();
        assert_eq!(f.rule, Rule::ExposedRecipients);
        let Evidence::Mail(e) = f.evidence else {
            panic!("mail evidence")
        };
        assert_eq!((e.exposed, e.largest, e.domains), (26, 26, 1));
        assert_eq!(e.samples.len(), SAMPLES);
        assert!(e.samples[0].contains("***@cust.example"));

        let twenty_five: Vec<&str> = refs[..25].to_vec();
        assert!(
            evaluate(
                &store,
                &rules,
                "journal",
                &mail(&twenty_five, 25),
                Utc::now()
            )
            .unwrap()
            .finding
            .is_none(),
            "25 visible is the limit, not over it"
        );
        let two = mail(&["a@one.example", "b@two.example"], 2);
        assert_eq!(
            evaluate(&store, &rules, "journal", &two, Utc::now())
                .unwrap()
                .finding
                .unwrap()
                .rule,
            Rule::ExposedRecipients
        );
        let internal = mail(&["a@one.example", "b@corp.example", "c@shop.example"], 3);
        assert!(
            evaluate(&store, &rules, "journal", &internal, Utc::now())
                .unwrap()
                .finding
                .is_none(),
            "colleagues and the sender's own domain are not customers"
        );
    }

    #[test]
    fn bulk_over_the_window_unless_a_campaign_covers_it() {
        let (_d, store, rules) = store(Email {
            bulk_threshold: 100,
            ..Email::default()
        });
        let one = mail(&["x@cust.example"], 60);
        let first = evaluate(&store, &rules, "journal", &one, Utc::now()).unwrap();
        assert!(first.finding.is_none());
        commit(&store, &first);
        let second = evaluate(&store, &rules, "journal", &one, Utc::now()).unwrap();
        let f = second.finding.unwrap();
        assert_eq!(f.rule, Rule::UnapprovedBulk);
        assert!(matches!(f.evidence, Evidence::Mail(ref e) if e.recipients == 120));

        store
            .approve(
                ApprovedEntry::ApprovedCampaign {
                    sender: "news@shop.example".into(),
                    campaign: "spring".into(),
                    max_recipients: Some(1000),
                    window: Some("1h".into()),
                    by: "t".into(),
                    expires_at: None,
                },
                Utc::now(),
            )
            .unwrap();
        assert!(
            evaluate(&store, &rules, "journal", &one, Utc::now())
                .unwrap()
                .finding
                .is_none()
        );
        let mut other = one.clone();
        other.campaign = Some("autumn".into());
        assert!(
            evaluate(&store, &rules, "journal", &other, Utc::now())
                .unwrap()
                .finding
                .is_some(),
            "another campaign is not covered"
        );
    }

    #[test]
    fn a_campaign_approval_stops_covering_at_its_expiry() {
        let (_d, store, rules) = store(Email {
            bulk_threshold: 100,
            ..Email::default()
        });
        let t0 = Utc::now();
        let day = chrono::Duration::hours(24);
        let minute = chrono::Duration::minutes(1);
        store
            .approve(
                ApprovedEntry::ApprovedCampaign {
                    sender: "news@shop.example".into(),
                    campaign: "*".into(),
                    max_recipients: Some(240),
                    window: Some("1d".into()),
                    by: "t".into(),
                    expires_at: Some(t0 + day),
                },
                t0,
            )
            .unwrap();
        let one = mail(&["x@cust.example"], 60);
        let first = evaluate(&store, &rules, "journal", &one, t0 + day - minute * 2).unwrap();
        assert!(first.finding.is_none(), "under the threshold");
        commit(&store, &first);
        let second = evaluate(&store, &rules, "journal", &one, t0 + day - minute).unwrap();
        assert!(second.finding.is_none(), "120 over the threshold, covered");
        commit(&store, &second);
        // 180 recipients within the window, still under the cap; the approval has expired.
        let third = evaluate(&store, &rules, "journal", &one, t0 + day).unwrap();
        let f = third
            .finding
            .expect("pages again once the approval expired");
        assert_eq!(f.rule, Rule::UnapprovedBulk);
        assert!(store.verify_log().unwrap().is_ok());
    }

    #[test]
    fn security_notice_is_linked_to_the_registered_account() {
        let mut email = Email::default();
        email.security_notices.accounts.push(NoticeAccount {
            account: "x-main".into(),
            platform: "x".into(),
            address: "social@corp.example".into(),
        });
        let (_d, store, rules) = store(email);
        let mut m = mail(&["social@corp.example"], 0);
        m.from = "verify@x.com".into();
        m.sender = "bounce@x.com".into();
        m.envelope = vec!["social@corp.example".into()];
        m.subject = "Your X password was changed".into();
        let f = evaluate(&store, &rules, "journal", &m, Utc::now())
            .unwrap()
            .finding
            .unwrap();
        assert_eq!(f.rule, Rule::SecurityNotice);
        assert_eq!(f.account, "x-main");
        m.from = "verify@x.com.evil.example".into();
        assert!(
            evaluate(&store, &rules, "journal", &m, Utc::now())
                .unwrap()
                .finding
                .is_none_or(|f| f.rule != Rule::SecurityNotice),
            "a look-alike domain is not the platform"
        );
    }
}
