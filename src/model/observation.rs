//! What the watchers report: posts, profiles, mail summaries and audit events.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AddressKey, Distinct};

/// Something a source saw on an account.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Our name of the account (`accounts[].name`).
    pub account: String,
    pub seen_at: DateTime<Utc>,
    pub kind: ObservationKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ObservationKind {
    Post(Post),
    Profile(Profile),
    /// Who administers the account (Telegram channel: `getChatAdministrators`), by user id →
    /// role and name. Judged against its own baselines (`admin:<id>`), apart from the profile.
    Admins(Profile),
    /// One message as sent (email feeds; `account` is the feed's name).
    Mail(MailSummary),
    /// One change from a mailbox or admin audit log (`account` is the feed's name).
    Audit(AuditEvent),
    /// The platform says a post was deleted (a push stream's delete). The hook of
    /// `social.approved_post_deleted`: detect decides whether the post was an approved one.
    PostDeleted {
        post_id: String,
        deleted_at: DateTime<Utc>,
    },
    /// Everything before this point has been handed over: the pipeline persists the cursor once
    /// it has committed what came before, so a crash re-reads rather than skips.
    Checkpoint {
        cursor: String,
        value: String,
    },
}

/// A post as the platform shows it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub id: String,
    pub url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub content: PostContent,
    /// The app that published it, when the platform says.
    pub client: Option<String>,
    /// Published before tocsin first looked at the account: recorded, never paged.
    pub history: bool,
}

/// What a post says, in the form the fingerprint is computed from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PostContent {
    /// Plain text with every link written as its full target.
    pub text: String,
    /// Link targets.
    pub links: Vec<String>,
    /// Digests of attached media.
    pub media: Vec<String>,
}

/// Every field of a profile the platform exposes, by our field name (`note`, `url`,
/// `field:Website`, …). A field that disappears is reported as an empty string by detect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub fields: BTreeMap<String, String>,
}

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
    /// The distinct visible addresses as the feed counted them while they streamed past (the
    /// journal): then `visible` is only the first few, kept for the page. `None`: count `visible`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tally: Option<VisibleTally>,
    /// Envelope recipients counted but not listed in `envelope` (a journal report naming more
    /// than are kept).
    #[serde(default)]
    pub envelope_unlisted: u64,
    /// The input proved who sent it: a signature only the provider can make (SES through SNS,
    /// SendGrid's ECDSA), or a journal peer in `allow_from` (and AUTH when configured). Only such
    /// mail may press the kill switch by itself (`auto_pause`): a shared secret in a URL (Mailgun,
    /// Postmark) tells who may post, not that the mail service did.
    #[serde(default)]
    pub origin_proven: bool,
    /// The MTA's queue id when the milter held the message (quarantine: Postfix's hold
    /// queue): what Release and Discard act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_at_mta: Option<String>,
}

impl MailSummary {
    /// Envelope recipients, listed or only counted.
    pub fn recipients(&self) -> u64 {
        self.envelope.len() as u64 + self.envelope_unlisted
    }
}

/// The distinct domains counted by name at most; more are only counted (keyed hashes).
pub const DOMAIN_LIMIT: usize = 1000;

/// Visible addresses counted without keeping them: keyed hashes for the distinct count, the
/// domains by name (up to [`DOMAIN_LIMIT`]) because internal ones are told apart by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VisibleTally {
    pub addresses: Distinct,
    pub domains: BTreeSet<String>,
    /// Distinct domains past [`DOMAIN_LIMIT`].
    pub more_domains: Distinct,
}

impl VisibleTally {
    /// Counts one normalised address.
    pub fn add(&mut self, key: &AddressKey, address: &str) {
        self.addresses.insert(key.hash(address));
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        if self.domains.contains(domain) {
            return;
        }
        if self.domains.len() < DOMAIN_LIMIT {
            self.domains.insert(domain.to_owned());
        } else {
            self.more_domains.insert(key.hash(domain));
        }
    }

    /// The tally of a complete list (a provider's event names every address).
    pub fn of<'a>(key: &AddressKey, addresses: impl IntoIterator<Item = &'a String>) -> Self {
        let mut t = VisibleTally::default();
        for a in addresses {
            t.add(key, a);
        }
        t
    }
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
    /// The company's own mail domains as the feed's config lists them: the rule needs them to
    /// tell forwarding out of the company from forwarding inside it, and they belong to the
    /// feed (one tenant each), so they travel with its events.
    #[serde(default)]
    pub internal_domains: Vec<String>,
}
