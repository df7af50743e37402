//! Whether the mailbox provider vouches for a message: the topmost `Authentication-Results`
//! header (RFC 8601) carrying the configured authserv-id, and in it a `dkim=pass` whose
//! signing domain is the platform's. Anyone can write an `Authentication-Results` header into
//! a message they send; the provider adds its own above every header that came with the
//! message, so only the topmost one with its id is the provider's word.

use chrono::{DateTime, Utc};
use mail_parser::MessageParser;

use crate::{config::SecurityNotices, mail::summary::normalise, model::MailSummary};

/// A header block's fields, unfolded, in order (name lowercased).
pub fn fields(block: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(block);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    out
}

/// Drops RFC 5322 comments (`(…)`, nested) outside quoted strings.
fn strip_comments(v: &str) -> String {
    let (mut depth, mut quoted, mut out) = (0usize, false, String::new());
    for c in v.chars() {
        match c {
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The signing domains of `dkim=pass` results in the topmost `Authentication-Results` of
/// `authserv_id`; empty when there is no such header.
pub fn dkim_pass_domains(fields: &[(String, String)], authserv_id: &str) -> Vec<String> {
    let Some(value) = fields
        .iter()
        .filter(|(n, _)| n == "authentication-results")
        .map(|(_, v)| strip_comments(v))
        .find(|v| {
            v.split(';')
                .next()
                .and_then(|id| id.split_whitespace().next())
                .is_some_and(|id| id.eq_ignore_ascii_case(authserv_id))
        })
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for resinfo in value.split(';').skip(1) {
        let mut tokens = resinfo.split_whitespace();
        let Some((method, result)) = tokens.next().and_then(|t| t.split_once('=')) else {
            continue;
        };
        let method = method.split('/').next().unwrap_or(method);
        if !method.eq_ignore_ascii_case("dkim") || !result.eq_ignore_ascii_case("pass") {
            continue;
        }
        for prop in tokens {
            let Some((name, val)) = prop.split_once('=') else {
                continue;
            };
            let val = val.trim_matches('"');
            let domain = match name.to_ascii_lowercase().as_str() {
                "header.d" => val,
                "header.i" => val.rsplit_once('@').map_or(val, |(_, d)| d),
                _ => continue,
            };
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if !domain.is_empty() && !out.contains(&domain) {
                out.push(domain);
            }
        }
    }
    out
}

/// `domain` is `parent` or below it.
fn within(domain: &str, parent: &str) -> bool {
    domain == parent || domain.ends_with(&format!(".{parent}"))
}

/// What the feed makes of one message.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// From a platform's sender, signed by the platform's domain as the provider says: judged.
    Vouched(Box<MailSummary>),
    /// From a platform's sender without the provider's `dkim=pass` for its domain: logged and
    /// counted, never judged (a forged notice must not page, nor a real one be hidden by it).
    Unvouched { from: String, subject: String },
    /// Not from any platform's sender: not a notice.
    Other,
}

/// Reads a message's header block: which platform's sender it claims, and whether the
/// provider vouches for that.
pub fn judge(header: &[u8], authserv_id: &str, notices: &SecurityNotices, feed: &str) -> Verdict {
    let parsed = MessageParser::default().parse_headers(header);
    let Some(m) = parsed else {
        return Verdict::Other;
    };
    let from = m
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(normalise)
        .unwrap_or_default();
    let from_domain = from.rsplit_once('@').map_or("", |(_, d)| d).to_owned();
    let platform_domains: Vec<String> = notices
        .patterns
        .iter()
        .flat_map(|p| &p.senders)
        .map(|s| {
            let s = s.to_ascii_lowercase();
            s.rsplit_once('@').map_or(s.clone(), |(_, d)| d.to_owned())
        })
        .filter(|d| within(&from_domain, d))
        .collect();
    let subject = m.subject().unwrap_or_default().to_owned();
    if from_domain.is_empty() || platform_domains.is_empty() {
        return Verdict::Other;
    }
    let signed = dkim_pass_domains(&fields(header), authserv_id);
    // The signature is the platform's and covers the From domain (relaxed alignment).
    let vouched = signed
        .iter()
        .any(|d| within(&from_domain, d) && platform_domains.iter().any(|p| within(d, p)));
    if !vouched {
        return Verdict::Unvouched { from, subject };
    }
    let addresses = |list: Option<&mail_parser::Address>| -> Vec<String> {
        list.map(|a| {
            a.iter()
                .filter_map(|x| x.address())
                .map(normalise)
                .collect()
        })
        .unwrap_or_default()
    };
    let mut visible = addresses(m.to());
    visible.extend(addresses(m.cc()));
    Verdict::Vouched(Box::new(MailSummary {
        feed: feed.to_owned(),
        message_id: m.message_id().unwrap_or_default().to_owned(),
        sender: from.clone(),
        from,
        subject,
        visible,
        envelope: Vec::new(),
        campaign: None,
        sent_at: m
            .date()
            .and_then(|d| DateTime::<Utc>::from_timestamp(d.to_timestamp(), 0)),
        tally: None,
        envelope_unlisted: 0,
        origin_proven: false,
        held_at_mta: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "mx.example.com";

    fn message(ar: &[&str]) -> Vec<u8> {
        let mut m = String::new();
        for a in ar {
            m += &format!("Authentication-Results: {a}\r\n");
        }
        m += "From: X <verify@x.com>\r\nTo: social@example.com\r\n";
        m += "Subject: Your email address was changed\r\nMessage-ID: <n1@x.com>\r\n\r\n";
        m.into_bytes()
    }

    fn verdict(ar: &[&str]) -> Verdict {
        judge(&message(ar), ID, &SecurityNotices::default(), "imap")
    }

    #[test]
    fn the_providers_topmost_dkim_pass_for_the_platform_vouches() {
        let v = verdict(&[
            "mx.example.com; dkim=pass (2048-bit key) header.d=x.com header.s=s1; spf=pass",
        ]);
        assert!(matches!(v, Verdict::Vouched(ref s) if s.subject.contains("email address")));
        // Folded, with the version and a comment.
        let v = verdict(&["mx.example.com 1;\r\n\tdkim=pass\r\n\t(good) header.i=@x.com"]);
        assert!(matches!(v, Verdict::Vouched(_)));
    }

    #[test]
    fn forged_or_foreign_results_do_not_vouch() {
        // The provider's own header says fail; a forged pass below it is ignored.
        let v = verdict(&[
            "mx.example.com; dkim=fail header.d=x.com",
            "mx.example.com; dkim=pass header.d=x.com",
        ]);
        assert!(matches!(v, Verdict::Unvouched { .. }), "{v:?}");
        // Another authserv-id's pass is not the provider's word.
        let v = verdict(&["mx.attacker.test; dkim=pass header.d=x.com"]);
        assert!(matches!(v, Verdict::Unvouched { .. }));
        // A pass for another domain is not the platform's signature.
        let v = verdict(&["mx.example.com; dkim=pass header.d=attacker.test"]);
        assert!(matches!(v, Verdict::Unvouched { .. }));
        // The id in a comment or as a substring does not count.
        let v = verdict(&["(mx.example.com) mx.example.com.evil; dkim=pass header.d=x.com"]);
        assert!(matches!(v, Verdict::Unvouched { .. }));
        assert!(matches!(verdict(&[]), Verdict::Unvouched { .. }));
    }

    #[test]
    fn mail_from_no_platform_is_not_a_notice() {
        let m = b"From: friend@example.org\r\nSubject: password changed\r\n\r\n";
        assert_eq!(
            judge(m, ID, &SecurityNotices::default(), "imap"),
            Verdict::Other
        );
    }
}
