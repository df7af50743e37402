//! The incident record the store keeps and every room reads: state, timeline, votes, mutes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Evidence, Rule, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Open,
    Acked,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Acked => "acked",
            State::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// It was us: the content or setting is now approved.
    Approved,
    /// Dealt with: taken down, reverted, account recovered.
    Contained,
    FalseAlarm,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Approved => "approved",
            Resolution::Contained => "contained",
            Resolution::FalseAlarm => "false alarm",
        }
    }
}

/// Someone who acts on an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The Telegram user id, or 0 for the API and tocsin itself.
    pub id: u64,
    pub name: String,
}

impl Actor {
    pub fn system() -> Actor {
        Actor {
            id: 0,
            name: "tocsin".into(),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.id == 0 {
            f.write_str(&self.name)
        } else {
            write!(f, "{} ({})", self.name, self.id)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Opened,
    /// The same finding again with new evidence.
    Updated,
    /// The first page reached the chat: how long after the platform's own timestamp of the
    /// change (when it gives one) and after tocsin detected it.
    Paged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_change_ms: Option<i64>,
        since_detect_ms: i64,
    },
    Acked,
    Approved,
    Resolved {
        resolution: Resolution,
    },
    /// A responder's approval counted towards a quorum that is not reached yet.
    ApprovalVote {
        votes: u8,
        needed: u8,
        /// The evidence version of the page the voter pressed on (None: the incident as it
        /// was): the approval covers no member that joined after it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seen: Option<u32>,
    },
    /// An approval from a page older than the burst's newest members: these posts (the ones
    /// that page showed) joined the approved log; `newer` members stay open.
    ApprovedShown {
        posts: Vec<String>,
        newer: usize,
    },
    /// Account-level: the account's pages are held until `until` (no incident).
    Muted {
        until: DateTime<Utc>,
    },
    /// Account-level: a responder lifted the mute before it expired.
    Unmuted,
    /// A reminder went to the chat; `tier` counts from 1.
    Reminded {
        tier: usize,
        number: u32,
    },
    /// A responder's `/resolve N false-alarm` counted towards `resolve_quorum`, not reached yet.
    FalseAlarmVote {
        votes: u8,
        needed: u8,
    },
    /// A responder's `/resolve N` of a `monitor.blind` incident whose source is still blind:
    /// it takes two responders, not reached yet.
    ResolveVote {
        votes: u8,
        needed: u8,
    },
    /// A responder's takedown press counted towards `takedown_quorum`, not reached yet.
    TakedownVote {
        votes: u8,
        needed: u8,
        /// As for [`Action::ApprovalVote`]: the takedown deletes only what this version showed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seen: Option<u32>,
    },
    /// The quorum was reached: the platform is being asked to delete these posts, once.
    TakedownStarted {
        posts: Vec<String>,
    },
    /// The platform's answer for one post.
    TakedownResult {
        post_id: String,
        outcome: crate::model::TakedownOutcome,
    },
    /// A post the company approved was deleted (account-level when not paged).
    ApprovedPostDeleted {
        post_id: String,
    },
    /// Account-level: a post was seen with this content. Chained because a seen post silences
    /// the next sighting of the same content: a forged one would hide a rogue post.
    PostSeen {
        post_id: String,
        fingerprint: String,
    },
    /// Someone (a responder's press or command, or `auto_pause`) asked the mail kill switch to
    /// pause the mailer.
    PauseRequested,
    /// One call of the mail kill switch and the mailer's answer.
    MailerCalled {
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        detail: String,
        paused: bool,
    },
    /// The severity rose, or a finding of another rule joined: a message replying to the page
    /// was queued besides the edit, because an edit makes no phone ring.
    Rang {
        from: Severity,
        to: Severity,
        /// The rule of the finding that joined.
        rule: Rule,
    },
    /// The page was sent again as a new message, which is the incident's page from now on
    /// (the old one could not be edited, or a responder acted on a stale one).
    Repaged {
        reason: String,
    },
    /// A channel gave up on a page after its retries; the fallback channels were paged instead.
    DeadLettered {
        channel: String,
        attempts: u32,
        error: String,
    },
    /// The MTA's hold helper was asked to release (`release`) or delete (`discard`) the
    /// incident's held messages, and what it answered.
    HeldMail {
        op: String,
        messages: u64,
        ok: bool,
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub at: DateTime<Utc>,
    pub who: String,
    #[serde(flatten)]
    pub action: Action,
}

/// Where the incident's page is in the chat, and what it showed when last confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRef {
    pub chat_id: i64,
    pub message_id: i32,
    /// Digest of the text and buttons Telegram confirmed, to skip edits that change nothing.
    pub rendered: String,
    /// When this message was sent (rather than edited into its state): a message sent after a
    /// rise was queued already rang for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// The incident's evidence version ([`Incident::version`]) this message shows: what
    /// `/approve N` and `/takedown N` act on, and what a button without a version (from an
    /// older build) pressed on this message stands for. None: a page of an older build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u64,
    pub rule: Rule,
    pub severity: Severity,
    pub account: String,
    pub object: String,
    pub state: State,
    pub resolution: Option<Resolution>,
    pub evidence: Evidence,
    pub evidence_digest: String,
    /// Findings merged into this incident.
    pub findings: u32,
    pub opened_at: DateTime<Utc>,
    /// When the platform says the change happened, if it says.
    pub changed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub acked_by: Option<Actor>,
    pub resolved_by: Option<Actor>,
    pub timeline: Vec<TimelineEvent>,
    pub page: Option<PageRef>,
    /// Votes towards actions that need several responders (the quorums of `[paging]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<Vote>,
    /// Reminders sent while unacknowledged, the last one's time, and the escalation tier reached
    /// (0-based): the escalation schedule is derived from these, so it survives restarts.
    #[serde(default)]
    pub reminders: u32,
    #[serde(default)]
    pub last_reminder_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub tier: usize,
    /// The objects of a burst folded into this incident, first one included, oldest first.
    /// Empty for rules that do not group.
    #[serde(default)]
    pub members: Vec<Member>,
    /// Set while the platform is being asked to delete the incident's posts, so that a second
    /// press (or a second quorum) cannot call it again; cleared with the answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takedown_started: Option<DateTime<Utc>>,
}

/// One object of a grouped burst, with what Approve needs to approve it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub object: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The incident's evidence version when this member's current content arrived: a page of
    /// an older version did not show it, so a press there does not act on it. 0: before
    /// versions were kept (shown by every page).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub since: u32,
    /// Approved from a page that did not show the burst's newer members: in the approved log
    /// already, never taken down, the rest of the burst still open.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approved: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a page showed of a burst: the members a press there acts on, and how many newer ones
/// it leaves open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub members: Vec<Member>,
    pub newer: usize,
}

impl Incident {
    pub fn dedup_key(&self) -> String {
        dedup_key(&self.account, self.rule, &self.object)
    }

    /// The evidence version: it grows with every finding merged in, so a page rendered at
    /// version `v` showed exactly the members whose `since` is at most `v`.
    pub fn version(&self) -> u32 {
        self.findings
    }

    /// The burst members a page of version `seen` showed that are not approved yet, and how
    /// many unapproved members are newer than it. `None`: the incident as it is now.
    pub fn shown(&self, seen: Option<u32>) -> Shown {
        let seen = seen.unwrap_or(u32::MAX);
        let (members, newer): (Vec<&Member>, Vec<&Member>) = self
            .members
            .iter()
            .filter(|m| !m.approved)
            .partition(|m| m.since <= seen);
        Shown {
            members: members.into_iter().cloned().collect(),
            newer: newer.len(),
        }
    }

    /// The version a quorum of `action` reached with this press covers: the oldest page any of
    /// its voters pressed on.
    pub fn reach(&self, action: VoteAction, seen: Option<u32>) -> Option<u32> {
        self.votes
            .iter()
            .filter(|v| v.action == action)
            .map(|v| v.seen)
            .chain([seen])
            .map(|s| s.unwrap_or(u32::MAX))
            .min()
            .filter(|s| *s != u32::MAX)
    }

    /// Takedown votes cast so far while the quorum is not reached.
    pub fn takedown_votes(&self) -> impl Iterator<Item = &Vote> {
        self.votes
            .iter()
            .filter(|v| v.action == VoteAction::Takedown)
    }

    /// The posts a takedown deletes: every member of a burst not approved, or the one post,
    /// each with the time the platform gave it when known (Telegram refuses deletions after 48
    /// hours).
    pub fn takedown_targets(&self) -> Vec<(String, Option<DateTime<Utc>>)> {
        self.takedown_targets_seen(None)
    }

    /// The takedown targets a page of version `seen` showed (None: the incident as it is).
    pub fn takedown_targets_seen(&self, seen: Option<u32>) -> Vec<(String, Option<DateTime<Utc>>)> {
        let seen = seen.unwrap_or(u32::MAX);
        if !groups(self.rule) {
            return Vec::new();
        }
        let (post_id, at) = match &self.evidence {
            Evidence::Post { post_id, .. } => (post_id, self.changed_at),
            Evidence::PostEdited { post_id, .. } => (post_id, None),
            _ => return Vec::new(),
        };
        if self.members.is_empty() {
            return vec![(post_id.clone(), at)];
        }
        let first_at = match self.rule {
            Rule::UnapprovedPost => self.changed_at,
            _ => None,
        };
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.approved && m.since <= seen)
            .map(|(i, m)| (m.object.clone(), if i == 0 { first_at } else { None }))
            .collect()
    }

    /// Approve votes cast so far while the quorum is not reached.
    pub fn false_alarm_votes(&self) -> impl Iterator<Item = &Vote> {
        self.votes
            .iter()
            .filter(|v| v.action == VoteAction::FalseAlarm)
    }

    /// Votes to resolve a `monitor.blind` incident while its source is still blind.
    pub fn resolve_votes(&self) -> impl Iterator<Item = &Vote> {
        self.votes
            .iter()
            .filter(|v| v.action == VoteAction::Resolve)
    }

    pub fn approve_votes(&self) -> impl Iterator<Item = &Vote> {
        self.votes
            .iter()
            .filter(|v| v.action == VoteAction::Approve)
    }

    /// Records `who`'s vote towards `action` under a quorum of `needed`: `Ok(Some(votes))` while
    /// the quorum is not reached yet, `Ok(None)` when this vote reaches it, `Err(())` when `who`
    /// already voted for it (a vote covers one responder, however often they press). `seen`:
    /// the version of the page pressed on, kept while the vote waits (see [`Incident::reach`]);
    /// the vote that reaches the quorum is spent on the action and keeps none.
    pub(crate) fn cast_vote(
        &mut self,
        action: VoteAction,
        who: &Actor,
        at: DateTime<Utc>,
        needed: u8,
        seen: Option<u32>,
    ) -> Result<Option<u8>, ()> {
        let of_action = |inc: &Incident| {
            inc.votes
                .iter()
                .filter(|v| v.action == action)
                .map(|v| v.who.id)
                .collect::<Vec<_>>()
        };
        if of_action(self).contains(&who.id) {
            return Err(());
        }
        let votes = of_action(self).len() + 1;
        let waiting = votes < usize::from(needed);
        self.votes.push(Vote {
            action,
            who: who.clone(),
            at,
            needed,
            seen: seen.filter(|_| waiting),
        });
        Ok(waiting.then_some(votes as u8))
    }
}

/// Rules whose findings come in bursts of distinct objects (posts) worth one page.
pub fn groups(rule: Rule) -> bool {
    matches!(rule, Rule::UnapprovedPost | Rule::PostEdited)
}

#[cfg(test)]
impl Incident {
    /// A freshly opened incident with one finding and nothing done yet: what the rooms that
    /// keep or render incidents start their tests from.
    pub(crate) fn opened(
        id: u64,
        rule: Rule,
        severity: Severity,
        account: &str,
        object: &str,
        evidence: Evidence,
    ) -> Incident {
        let now = Utc::now();
        Incident {
            id,
            rule,
            severity,
            account: account.into(),
            object: object.into(),
            state: State::Open,
            resolution: None,
            evidence_digest: evidence.digest(),
            evidence,
            findings: 1,
            opened_at: now,
            changed_at: None,
            updated_at: now,
            acked_by: None,
            resolved_by: None,
            timeline: Vec::new(),
            page: None,
            votes: Vec::new(),
            reminders: 0,
            last_reminder_at: None,
            tier: 0,
            members: Vec::new(),
            takedown_started: None,
        }
    }
}

pub fn dedup_key(account: &str, rule: Rule, object: &str) -> String {
    format!("{account}\0{}\0{object}", rule.as_str())
}

/// The index key of an account's live burst of a grouping rule.
pub fn group_key(account: &str, rule: Rule) -> String {
    format!("group\0{account}\0{}", rule.as_str())
}

/// The default burst window.
pub const GROUP_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// An account's pages held back until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mute {
    pub account: String,
    pub by: Actor,
    pub at: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Mute {
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        now < self.until
    }
}

/// What a vote is for: approving (`approve_quorum`), taking down (`takedown_quorum`) or
/// resolving as a false alarm (`resolve_quorum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteAction {
    Approve,
    Takedown,
    FalseAlarm,
    /// Resolving (as contained) a `monitor.blind` incident whose source is still blind.
    Resolve,
}

/// One responder's vote towards an action that needs several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub action: VoteAction,
    pub who: Actor,
    pub at: DateTime<Utc>,
    /// The quorum in force when the vote was cast, so the page can say how many are missing
    /// without reading the configuration.
    pub needed: u8,
    /// The evidence version of the page the voter pressed on, while the quorum is not reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<u32>,
}

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
    /// tocsin sent nothing: calling would have handed the write credential to an endpoint it
    /// cannot trust (Bluesky: the identity names a PDS other than the approved one).
    Refused { detail: String },
    /// The platform's server said the post is gone but an independent view still shows it or
    /// could not be asked: the incident stays open.
    Unconfirmed { detail: String },
}

impl TakedownOutcome {
    /// The post is no longer public: the incident is contained.
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            TakedownOutcome::Deleted | TakedownOutcome::AlreadyGone
        )
    }

    /// How the page and the chat say it.
    pub fn describe(&self) -> String {
        match self {
            TakedownOutcome::Deleted => "deleted".into(),
            TakedownOutcome::AlreadyGone => "already gone".into(),
            TakedownOutcome::Forbidden { detail } => format!("forbidden ({detail})"),
            TakedownOutcome::TooOld { detail } => format!("too old ({detail})"),
            TakedownOutcome::Failed { detail } => format!("failed ({detail})"),
            TakedownOutcome::Refused { detail } => format!("refused, nothing sent ({detail})"),
            TakedownOutcome::Unconfirmed { detail } => format!("unconfirmed ({detail})"),
        }
    }
}

/// One call and what the mailer answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseCall {
    pub attempt: u32,
    /// HTTP status; None when no answer came (refused, timed out).
    pub status: Option<u16>,
    /// The start of the answer's body, or the transport error.
    pub detail: String,
    /// The mailer confirmed (2xx).
    pub paused: bool,
}
