//! `mailbox.risky_setting`: a mailbox or admin audit event that opens a way out for mail or for
//! the account itself: forwarding out of the company's domains, a forwarding or redirecting
//! inbox rule, a transport rule that blind-copies mail, 2-step verification turned off, an admin
//! role granted, a suspicious login, a password or recovery change.
//!
//! Each event is its own incident (object = the feed's event id), so a feed that reads an event
//! twice (the pollers re-read an overlap window) pages it once.

use chrono::{DateTime, Utc};

use super::Outcome;
use crate::model::{AuditEvent, Evidence, Finding, Rule, Severity};

/// What made an event risky, and the parameter that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Risk {
    pub what: &'static str,
    pub severity: Severity,
    /// `name = value` of the parameter that made it risky; empty when the event itself is.
    pub parameter: String,
}

/// Parameters of Exchange operations that send mail elsewhere.
const FORWARD_PARAMS: [&str; 3] = ["ForwardingSmtpAddress", "ForwardingAddress", "ForwardTo"];
const RULE_PARAMS: [&str; 3] = ["ForwardTo", "ForwardAsAttachmentTo", "RedirectTo"];

pub fn judge(e: &AuditEvent) -> Option<Risk> {
    let param = |names: &[&str]| {
        e.details
            .iter()
            .find(|(n, v)| names.iter().any(|x| n.eq_ignore_ascii_case(x)) && !v.trim().is_empty())
    };
    let shown = |(n, v): &(String, String)| format!("{n} = {v}");
    // Leaves the company: an address outside its domains, or a recipient object whose address
    // the log does not show (a mail contact is the usual way out).
    let external = |v: &str| {
        let found = addresses(v);
        found.is_empty() || found.iter().any(|a| !internal(a, &e.internal_domains))
    };
    let risk = |what, severity, parameter: String| {
        Some(Risk {
            what,
            severity,
            parameter,
        })
    };
    let action = e.action.as_str();
    match action {
        "Set-Mailbox" => param(&FORWARD_PARAMS[..2])
            .filter(|(_, v)| external(v))
            .and_then(|p| risk("forwarding out of domain", Severity::Critical, shown(p))),
        "New-InboxRule" | "Set-InboxRule" | "UpdateInboxRules" => param(&RULE_PARAMS)
            .filter(|(_, v)| external(v))
            .and_then(|p| risk("forwarding inbox rule", Severity::Critical, shown(p))),
        "New-TransportRule" | "Set-TransportRule" => param(&["BlindCopyTo"]).and_then(|p| {
            risk(
                "transport rule blind-copies mail",
                Severity::Critical,
                shown(p),
            )
        }),
        "2sv_disable" => risk(
            "2-step verification turned off",
            Severity::Critical,
            String::new(),
        ),
        "ASSIGN_ROLE" | "GRANT_ADMIN_PRIVILEGE" | "GRANT_DELEGATED_ADMIN_PRIVILEGES" => {
            let p = param(&["ROLE_NAME"]).map(shown).unwrap_or_default();
            risk("admin role granted", Severity::Critical, p)
        }
        "password_edit" => risk("password changed", Severity::High, String::new()),
        "recovery_email_edit" | "recovery_phone_edit" | "recovery_secret_qa_edit" => {
            risk("account recovery changed", Severity::High, String::new())
        }
        a if a.starts_with("suspicious_") => {
            let p = param(&["login_type", "login_challenge_method"])
                .map(shown)
                .unwrap_or_default();
            risk("suspicious login", Severity::Critical, p)
        }
        // Workspace email settings (`CHANGE_EMAIL_SETTING`, `CREATE_EMAIL_MONITOR`, user-level
        // forwarding events): a forwarding setting whose value leaves the company.
        _ => {
            let setting_forwards = e.details.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("SETTING_NAME") && v.to_ascii_uppercase().contains("FORWARD")
            }) || action.to_ascii_uppercase().contains("FORWARD");
            let by_name = e.details.iter().find(|(n, v)| {
                n.to_ascii_uppercase().contains("FORWARD")
                    && !addresses(v).is_empty()
                    && external(v)
            });
            let by_setting = setting_forwards
                .then(|| {
                    e.details.iter().find(|(n, v)| {
                        !n.eq_ignore_ascii_case("USER_EMAIL")
                            && !addresses(v).is_empty()
                            && external(v)
                    })
                })
                .flatten();
            by_name
                .or(by_setting)
                .and_then(|p| risk("forwarding out of domain", Severity::Critical, shown(p)))
        }
    }
}

pub fn evaluate(account: &str, e: &AuditEvent, seen_at: DateTime<Utc>) -> Outcome {
    let Some(r) = judge(e) else {
        return Outcome::default();
    };
    Outcome {
        finding: Some(Finding {
            rule: Rule::RiskySetting,
            severity: r.severity,
            account: account.to_owned(),
            object: e.id.clone(),
            evidence: Evidence::Mailbox {
                feed: e.feed.clone(),
                event_id: e.id.clone(),
                risk: r.what.to_owned(),
                actor: e.actor.clone(),
                action: e.action.clone(),
                target: e.target.clone(),
                parameter: r.parameter,
                at: e.at,
            },
            changed_at: Some(e.at),
            seen_at,
        }),
        writes: Vec::new(),
    }
}

/// Addresses in a parameter value as audit logs write them: `smtp:a@b.example`,
/// `"Name" [SMTP:a@b.example]`, `a@b.example;c@d.example`. Lowercased.
pub fn addresses(value: &str) -> Vec<String> {
    value
        .split(|c: char| {
            c.is_whitespace() || matches!(c, ';' | ',' | '[' | ']' | '<' | '>' | '"' | '\'')
        })
        .map(|t| {
            let t = t.trim();
            let t = t
                .split_once(':')
                .filter(|(p, _)| p.eq_ignore_ascii_case("smtp"))
                .map_or(t, |(_, a)| a);
            t.to_ascii_lowercase()
        })
        .filter(|t| {
            t.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
        })
        .collect()
}

/// Whether an address belongs to one of the company's domains (or their subdomains).
pub fn internal(address: &str, domains: &[String]) -> bool {
    let Some((_, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let domain = domain.to_ascii_lowercase();
    domains.iter().any(|d| {
        let d = d.trim_start_matches('@').to_ascii_lowercase();
        domain == d || domain.ends_with(&format!(".{d}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, details: &[(&str, &str)]) -> AuditEvent {
        AuditEvent {
            feed: "m365".into(),
            id: "1".into(),
            at: Utc::now(),
            actor: "admin@corp.example".into(),
            action: action.into(),
            target: "ceo@corp.example".into(),
            details: details
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            internal_domains: vec!["corp.example".into()],
        }
    }

    #[test]
    fn forwarding_is_risky_only_out_of_domain() {
        let out = event(
            "Set-Mailbox",
            &[("ForwardingSmtpAddress", "smtp:x@evil.example")],
        );
        assert_eq!(judge(&out).unwrap().what, "forwarding out of domain");
        let inside = event(
            "Set-Mailbox",
            &[("ForwardingSmtpAddress", "smtp:cfo@corp.example")],
        );
        assert_eq!(judge(&inside), None);
        let sub = event(
            "Set-Mailbox",
            &[("ForwardingSmtpAddress", "smtp:a@eu.corp.example")],
        );
        assert_eq!(judge(&sub), None);
        let cleared = event("Set-Mailbox", &[("ForwardingSmtpAddress", "")]);
        assert_eq!(judge(&cleared), None);
        let rule = event(
            "New-InboxRule",
            &[("RedirectTo", "\"x\" [SMTP:x@evil.example]")],
        );
        assert_eq!(judge(&rule).unwrap().what, "forwarding inbox rule");
        let bcc = event(
            "New-TransportRule",
            &[("BlindCopyTo", "audit@corp.example")],
        );
        assert_eq!(
            judge(&bcc).unwrap().what,
            "transport rule blind-copies mail"
        );
        let google = event(
            "CHANGE_EMAIL_SETTING",
            &[
                ("SETTING_NAME", "EMAIL_FORWARDING"),
                ("USER_EMAIL", "ceo@corp.example"),
                ("NEW_VALUE", "drop@evil.example"),
            ],
        );
        assert_eq!(
            judge(&google).unwrap().parameter,
            "NEW_VALUE = drop@evil.example"
        );
        assert_eq!(judge(&event("login_success", &[])), None);
        assert_eq!(
            judge(&event("2sv_disable", &[])).unwrap().severity,
            Severity::Critical
        );
        assert_eq!(
            judge(&event("password_edit", &[])).unwrap().severity,
            Severity::High
        );
    }

    #[test]
    fn addresses_as_audit_logs_write_them() {
        assert_eq!(addresses("smtp:A@Evil.example"), vec!["a@evil.example"]);
        assert_eq!(
            addresses("\"Drop\" [SMTP:drop@x.example];b@y.example"),
            vec!["drop@x.example", "b@y.example"]
        );
        assert!(addresses("Bob Smith").is_empty());
        assert!(internal("a@corp.example", &["corp.example".into()]));
        assert!(internal("a@eu.corp.example", &["@corp.example".into()]));
        assert!(!internal("a@notcorp.example", &["corp.example".into()]));
        assert!(!internal("a@corp.example.evil", &["corp.example".into()]));
    }
}
