//! Email audit feeds. Every feed (the SMTP journal listener, the providers' event webhooks, the
//! mailbox and admin audit pollers) reports the same two shapes, so the email rules judge a
//! message the same way whichever feed saw it:
//!
//! - [`MailSummary`]: the headers and envelope of one message as sent. Bodies are never kept: a
//!   leaked customer list must not be copied into a second database.
//! - [`AuditEvent`]: one change a mailbox or admin audit log reports (forwarding set, 2-step
//!   verification off, admin role granted, a forwarding inbox rule).

pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod ses;
pub mod webhook;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One message as sent, reduced to what the email rules read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MailSummary {
    /// Which feed saw it (`journal`, `ses`, `sendgrid`, `mailgun`, `postmark`, `imap`).
    pub feed: String,
    /// `Message-ID` (or the provider's message id when the header is absent).
    pub message_id: String,
    /// Envelope sender (`MAIL FROM`), lowercased; the `From:` address when the feed has no envelope.
    pub sender: String,
    /// The `From:` header address, lowercased.
    pub from: String,
    pub subject: String,
    /// Addresses visible to every recipient (`To:` and `Cc:`), lowercased, in header order.
    pub visible: Vec<String>,
    /// Every address the message was delivered to (envelope `RCPT TO`, or the provider's list).
    pub envelope: Vec<String>,
    /// The campaign or tag the sender gave it (`X-Campaign-Id`, SendGrid category, Mailgun tag…).
    pub campaign: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// One change reported by a mailbox or admin audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Which feed reported it (`google`, `m365`).
    pub feed: String,
    /// The feed's own id of the event, for dedup.
    pub id: String,
    pub at: DateTime<Utc>,
    /// Who made the change.
    pub actor: String,
    /// The feed's name of the action (`CHANGE_EMAIL_SETTING`, `Set-Mailbox`, …).
    pub action: String,
    /// The mailbox or user changed.
    pub target: String,
    /// Parameters of the change as the feed names them (`ForwardingSmtpAddress`, …).
    pub details: Vec<(String, String)>,
}
