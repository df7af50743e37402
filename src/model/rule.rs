//! The rules findings are raised under, and how severe each is.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rule {
    #[serde(rename = "social.unapproved_post")]
    UnapprovedPost,
    #[serde(rename = "social.post_edited")]
    PostEdited,
    #[serde(rename = "social.profile_changed")]
    ProfileChanged,
    /// Pages are not reaching the on-call chat. Raised by `notify`, not by a source.
    #[serde(rename = "notify.telegram_down")]
    TelegramDown,
    /// A source cannot see its account: failing past its grace period, or its token refused.
    #[serde(rename = "monitor.blind")]
    MonitorBlind,
    /// A new admin or owner on a channel or page, or the bot removed from one.
    #[serde(rename = "social.admin_changed")]
    AdminChanged,
    /// A post the company approved was deleted.
    #[serde(rename = "social.approved_post_deleted")]
    ApprovedPostDeleted,
    /// One message shows too many addresses, or several customer domains, to every recipient.
    #[serde(rename = "email.exposed_recipients")]
    ExposedRecipients,
    /// A sender's recipients within a window exceed the bulk threshold with no approved campaign.
    #[serde(rename = "email.unapproved_bulk")]
    UnapprovedBulk,
    /// A platform's security mail (email or password changed, new login, 2FA off).
    #[serde(rename = "email.security_notice")]
    SecurityNotice,
    /// Forwarding out of domain, 2-step verification off, admin role granted, forwarding rule.
    #[serde(rename = "mailbox.risky_setting")]
    RiskySetting,
    /// The list of an account's trusted publishing tools changed in the configuration.
    #[serde(rename = "social.trusted_clients_changed")]
    TrustedClientsChanged,
    /// The state database does not verify against its signed chain heads: someone with the
    /// state dir edited it, or a chain was deleted. Raised by `app`, never by a source.
    #[serde(rename = "store.tampered")]
    StoreTampered,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::UnapprovedPost => "social.unapproved_post",
            Rule::PostEdited => "social.post_edited",
            Rule::ProfileChanged => "social.profile_changed",
            Rule::TelegramDown => "notify.telegram_down",
            Rule::MonitorBlind => "monitor.blind",
            Rule::AdminChanged => "social.admin_changed",
            Rule::ApprovedPostDeleted => "social.approved_post_deleted",
            Rule::ExposedRecipients => "email.exposed_recipients",
            Rule::UnapprovedBulk => "email.unapproved_bulk",
            Rule::SecurityNotice => "email.security_notice",
            Rule::RiskySetting => "mailbox.risky_setting",
            Rule::TrustedClientsChanged => "social.trusted_clients_changed",
            Rule::StoreTampered => "store.tampered",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}
