//! The mail lane's inputs. Every feed (the SMTP journal listener, the providers' event webhooks, the
//! mailbox and admin audit pollers) reports the same two shapes, so the email rules judge a
//! message the same way whichever feed saw it:
//!
//! - [`MailSummary`](crate::model::MailSummary): the headers and envelope of one message as sent. Bodies are never kept: a
//!   leaked customer list must not be copied into a second database.
//! - [`AuditEvent`](crate::model::AuditEvent): one change a mailbox or admin audit log reports (forwarding set, 2-step
//!   verification off, admin role granted, a forwarding inbox rule).

pub mod audit;
pub mod imap;
pub mod journal;
pub mod milter;
pub mod summary;
pub mod webhooks;

use crate::{
    config::{ConfigError, Email},
    watch::{SourceContext, SourceFuture},
};

/// Parses the keys the mail components parse when they are built (a Google service account,
/// the SendGrid verification key, pinned SNS certificates), so that `check-config` and
/// start-up refuse a bad one with its config key.
pub fn check(email: &Email) -> Result<(), ConfigError> {
    for (i, g) in email.google.iter().enumerate() {
        audit::google::ServiceAccount::parse(g.service_account.expose()).map_err(|e| {
            ConfigError::invalid(format!("email.google[{i}].service_account"), e.to_string())
        })?;
    }
    if let Some(j) = &email.journal {
        journal::tls_acceptor(j).map_err(|e| match e {
            journal::JournalError::Tls { key, detail } => ConfigError::invalid(key, detail),
        })?;
    }
    if let Some(s) = &email.sendgrid {
        webhooks::sendgrid::parse_public_key(s.public_key.expose())
            .map_err(|e| ConfigError::invalid("email.sendgrid.public_key", e))?;
    }
    for (i, f) in email.imap.iter().enumerate() {
        imap::tls(f, i)?;
    }
    if let Some(s) = &email.ses {
        for (i, pem) in s.certificates.iter().enumerate() {
            webhooks::ses::Pinned::parse(pem.expose(), chrono::Utc::now())
                .map_err(|e| ConfigError::invalid(format!("email.ses.certificates[{i}]"), e))?;
        }
    }
    Ok(())
}

/// The futures of the mail audit pollers, registered for health.
pub fn build_feeds(email: Option<&Email>, ctx: &SourceContext) -> Vec<SourceFuture> {
    let mut out: Vec<SourceFuture> = Vec::new();
    let Some(email) = email else { return out };
    for g in &email.google {
        ctx.health.register_feed(&g.name, "google_workspace");
        out.push(Box::pin(audit::google::run(g.clone(), ctx.clone())));
    }
    for m in &email.m365 {
        ctx.health.register_feed(&m.name, "microsoft_365");
        out.push(Box::pin(audit::m365::run(m.clone(), ctx.clone())));
    }
    for (i, f) in email.imap.iter().enumerate() {
        ctx.health.register_feed(&f.name, "imap");
        match imap::tls(f, i) {
            Ok(tls) => out.push(Box::pin(imap::run(
                f.clone(),
                tls,
                email.security_notices.clone(),
                ctx.clone(),
            ))),
            // `check` refused it before start; a file changed since is a failing source.
            Err(e) => ctx.health.failure(&f.name, e.to_string(), false, None),
        }
    }
    out
}
