//! Containment: what a responder's press does to the outside world. Takedowns delete a post
//! through the platform's API with the account's write token; the mail kill switch pauses the
//! mailer. Every attempt and its answer is written in the incident's timeline by the caller.

pub mod mailer;

use serde::{Deserialize, Serialize};

/// How a takedown ended, as the platform answered. Each is shown on the page and in the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TakedownOutcome {
    /// The platform confirmed the deletion.
    Deleted,
    /// The post was no longer there (404): someone else removed it first.
    AlreadyGone,
    /// The platform refused our token (401/403): the account's write access is gone or lacking.
    Forbidden { detail: String },
    /// The platform no longer allows deleting it (Telegram: older than 48 hours).
    TooOld { detail: String },
    /// Anything else; worth retrying by hand.
    Failed { detail: String },
}
