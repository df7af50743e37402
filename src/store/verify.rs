//! Checking the store against its chains: what `tocsin log verify` and the daemon (at start and
//! every hour) run.
//!
//! The chains are only worth what is checked against them. Besides each chain's links and
//! hashes, and the signature over both heads ([`super::signing`]), every piece of state that can
//! keep a page from ringing must agree with a chain:
//! - approved posts, baselines and revocations: the approved log's indexes, both ways;
//! - each incident: its timeline is exactly its chained events, and its state, resolution,
//!   who acked and resolved it, its votes and its takedown marker are what replaying those
//!   events gives; what it is about (rule, object, severity, evidence, burst members) is what
//!   its last event recorded ([`super::Subject`]); an unresolved incident that never reached
//!   the chat still has its page queued or held;
//! - the dedup index points only at incidents about the key's object: a key moved to a
//!   resolved incident with the same evidence would make a new finding "already judged";
//! - mutes and seen posts: what the chain's last account event about them says.
//!
//! A published head given with `--expect-head` must still be in its chain: that is what finds
//! a chain cut back to an older signed head, which its own signature cannot.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{
    SeenPostKey, Store, StoreError, Subject, TIMELINE, TIMELINE_HEAD, TimelineRecord, VerifyReport,
    be, chain, decode, from_be,
    genesis::{Genesis, mute_is_chained},
    prefixed,
    signing::{Chain, ChainHead, HeadRef, Heads, PublicKey},
};
use crate::model::{
    Action, Evidence, Incident, Mute, Resolution, Rule, State, VoteAction, dedup_key, group_key,
};

/// What to check besides the chains themselves.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The key the heads must be signed with; None checks no signature.
    pub public_key: Option<PublicKey>,
    /// Published heads the chains must still hold.
    pub expect: Vec<ChainHead>,
}

/// What the signature over both heads says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// No key to check it with.
    NotChecked,
    /// Signed with the key, and naming exactly where both chains end.
    Valid,
    /// The genesis record says the heads were never signed: no key was ever configured.
    NeverSigned,
    /// Why it does not hold.
    Invalid(String),
}

/// Everything `verify` found, chain by chain.
#[derive(Debug, Clone)]
pub struct Verification {
    pub log: VerifyReport,
    pub timeline: VerifyReport,
    /// Where the chains end, as walked.
    pub heads: Heads,
    pub signature: SignatureCheck,
    /// About the store as a whole: its genesis record.
    pub store: Vec<String>,
}

impl Verification {
    /// No problem found. A store whose heads were never signed passes: the daemon then signs
    /// them for the first time, and `log verify --public-key` refuses it on its own.
    pub fn is_ok(&self) -> bool {
        self.log.is_ok()
            && self.timeline.is_ok()
            && self.store.is_empty()
            && !matches!(self.signature, SignatureCheck::Invalid(_))
    }

    /// Every problem, each naming where it is.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.store.iter().map(|p| format!("store: {p}")));
        if let SignatureCheck::Invalid(p) = &self.signature {
            out.push(format!("signature: {p}"));
        }
        out.extend(
            self.log
                .problems
                .iter()
                .map(|p| format!("approved log: {p}")),
        );
        out.extend(
            self.timeline
                .problems
                .iter()
                .map(|p| format!("incident timeline: {p}")),
        );
        out
    }
}

/// What the daemon last found; `/readyz` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Integrity {
    /// Not verified yet.
    #[default]
    Unverified,
    /// Verified, but no signing key is configured: someone who recomputes the hashes after an
    /// edit is not caught.
    Unsigned { at: DateTime<Utc> },
    /// Verified, heads signed.
    Verified { at: DateTime<Utc> },
    /// The last verification found these problems.
    Tampered {
        at: DateTime<Utc>,
        problems: Vec<String>,
    },
}

impl VerifyReport {
    /// Where the walked chain ends.
    pub fn end(&self) -> Option<HeadRef> {
        (self.entries > 0).then(|| HeadRef {
            seq: self.entries - 1,
            hash: self.head.clone(),
        })
    }
}

impl Store {
    /// Checks both chains, the state they cover, the genesis record, and with `opts` the
    /// signature and the published heads.
    ///
    /// A first pass runs beside the daemon's transactions: on a large store it takes seconds,
    /// and holding every write (every page) that long each hour is not acceptable. A write
    /// landing between reading one tree and the next can only make that pass see a mismatch
    /// that is not there, never hide one (an edit made to agree needs the key), so a store that
    /// verifies then is done; otherwise the check runs again with transactions held, and that
    /// second pass is the answer.
    pub fn verify(&self, opts: &VerifyOptions) -> Result<Verification, StoreError> {
        let unheld = self.verify_now(opts)?;
        if unheld.is_ok() {
            return Ok(unheld);
        }
        let _gate = self.verify_gate.write().unwrap_or_else(|p| p.into_inner());
        self.verify_now(opts)
    }

    /// One pass of [`Store::verify`], as the trees are now.
    fn verify_now(&self, opts: &VerifyOptions) -> Result<Verification, StoreError> {
        let mut log = self.log_report()?;
        let mut timeline = self.timeline_report()?;
        for e in &opts.expect {
            let report = match e.chain {
                Chain::ApprovedLog => &mut log,
                Chain::Timeline => &mut timeline,
            };
            if let Some(p) = self.check_expected(e, report.end())? {
                report.problems.push(p);
            }
        }
        let heads = Heads {
            approved_log: log.end(),
            timeline: timeline.end(),
        };
        let genesis = self.genesis()?;
        let mut store = Vec::new();
        if genesis.is_none() && self.holds_chained_data()? {
            store.push(
                "no genesis record: the store was kept by an older build (stop tocsin and run \
                 `tocsin log adopt`), or the record was deleted"
                    .to_owned(),
            );
        }
        let signature = match &opts.public_key {
            None => SignatureCheck::NotChecked,
            Some(key) => self.check_signature(key, genesis.as_ref(), &heads)?,
        };
        Ok(Verification {
            log,
            timeline,
            heads,
            signature,
            store,
        })
    }

    /// The approved log alone: its chain and indexes (no signature).
    pub fn verify_log(&self) -> Result<VerifyReport, StoreError> {
        let _gate = self.verify_gate.write().unwrap_or_else(|p| p.into_inner());
        self.log_report()
    }

    /// The timeline chain alone and the state it covers (no signature).
    pub fn verify_timeline(&self) -> Result<VerifyReport, StoreError> {
        let _gate = self.verify_gate.write().unwrap_or_else(|p| p.into_inner());
        self.timeline_report()
    }

    /// What the last [`Store::check_integrity`] found.
    pub fn integrity(&self) -> Integrity {
        self.integrity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The daemon's check, at start and every hour: verifies with its own key against the heads
    /// it published ([`Store::note_published`]), allows signing when the store verifies (signing the heads for the first
    /// time if they never were: the second value is true then) and stops it when not.
    pub fn check_integrity(&self) -> Result<(Verification, bool), StoreError> {
        let public_key = self.public_key();
        let verification = self.verify(&VerifyOptions {
            public_key,
            expect: self.published(),
        })?;
        let at = Utc::now();
        let (status, first) = if verification.is_ok() {
            let first = self.start_signing()?;
            let status = match public_key {
                Some(_) => Integrity::Verified { at },
                None => Integrity::Unsigned { at },
            };
            (status, first)
        } else {
            self.stop_signing();
            let problems = verification.problems();
            (Integrity::Tampered { at, problems }, false)
        };
        *self.integrity.lock().unwrap_or_else(|p| p.into_inner()) = status;
        Ok((verification, first))
    }

    /// Remembers heads this process published: every later verification checks that the
    /// chains still hold them (kept across reloads, lost at exit like any witness in memory).
    pub fn note_published(&self, heads: Vec<ChainHead>) {
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        for h in heads {
            published.retain(|p| p.chain != h.chain);
            published.push(h);
        }
    }

    /// The last published head of each chain.
    pub fn published(&self) -> Vec<ChainHead> {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where both chains end now, as their heads record it.
    pub fn heads(&self) -> Result<Heads, StoreError> {
        let read = |key: &[u8]| -> Result<Option<HeadRef>, StoreError> {
            let head: Option<super::Head> = self
                .meta
                .get(key)?
                .map(|v| decode("meta", &v))
                .transpose()?;
            Ok(head.map(|h| HeadRef {
                seq: h.seq,
                hash: hex::encode(h.hash),
            }))
        };
        Ok(Heads {
            approved_log: read(super::HEAD)?,
            timeline: read(TIMELINE_HEAD)?,
        })
    }

    /// Whether a published head is still in its chain.
    fn check_expected(
        &self,
        e: &ChainHead,
        end: Option<HeadRef>,
    ) -> Result<Option<String>, StoreError> {
        let (bytes, noun) = match e.chain {
            Chain::ApprovedLog => (self.approved_log.get(be(e.seq))?, "entry"),
            Chain::Timeline => (self.meta.get(prefixed(TIMELINE, &be(e.seq)))?, "event"),
        };
        let ends = end.map_or_else(
            || "the chain is empty".to_owned(),
            |h| format!("the chain ends at {noun} {}", h.seq),
        );
        let Some(bytes) = bytes else {
            return Ok(Some(format!(
                "published head {e}: {noun} {} is gone ({ends}): the chain was cut back",
                e.seq
            )));
        };
        let hash = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["hash"].as_str().map(str::to_owned));
        Ok((hash.as_deref() != Some(e.hash.as_str())).then(|| {
            format!(
                "published head {e}: {noun} {} is not the one published: the chain was rewritten \
                 or rolled back",
                e.seq
            )
        }))
    }

    fn check_signature(
        &self,
        key: &PublicKey,
        genesis: Option<&Genesis>,
        ends: &Heads,
    ) -> Result<SignatureCheck, StoreError> {
        use SignatureCheck::*;
        let signed = self.signed_heads()?;
        let since = genesis.and_then(|g| g.signed.as_ref());
        let judge = |s: &super::SignedHeads| {
            if !key.verifies(&s.heads.message(), &s.signature) {
                Invalid(
                    "the signed heads do not verify with the key: the statement was forged or \
                     edited"
                        .into(),
                )
            } else if s.heads != *ends {
                Invalid(format!(
                    "the signature covers {} but the chains end at {}: records were added, \
                     removed or rewritten without the key",
                    describe(&s.heads),
                    describe(ends)
                ))
            } else {
                Valid
            }
        };
        Ok(match (since, signed) {
            (None, None) => NeverSigned,
            (None, Some(_)) if genesis.is_some() => Invalid(
                "the heads carry a signature, but the genesis record says they were never signed: \
                 the record was edited"
                    .into(),
            ),
            (None, Some(s)) => judge(&s),
            (Some(since), None) => Invalid(format!(
                "the heads have been signed since {} but the signed statement is gone",
                since.at
            )),
            (Some(since), Some(_)) if since.key != *key => Invalid(format!(
                "the heads are signed by key {} (since {}), not by the key given",
                since.key, since.at
            )),
            (Some(_), Some(s)) => judge(&s),
        })
    }

    /// Walks the timeline chain like the approved log's, then checks every incident, the dedup
    /// index, the mutes and the seen posts against it.
    fn timeline_report(&self) -> Result<VerifyReport, StoreError> {
        let mut walk = chain::ChainWalk::new("timeline event", "event");
        let mut per_incident: BTreeMap<u64, Vec<TimelineRecord>> = BTreeMap::new();
        let mut last_mute: HashMap<String, TimelineRecord> = HashMap::new();
        let mut last_seen: HashMap<SeenPostKey, String> = HashMap::new();
        for item in self.meta.scan_prefix(TIMELINE) {
            let (k, v) = item?;
            let seq = from_be("meta/timeline", &k[TIMELINE.len()..])?;
            let Some((record, _)) = walk.step::<TimelineRecord>(seq, &v) else {
                continue;
            };
            match (record.entry.incident, &record.entry.action) {
                (Some(id), _) => per_incident.entry(id).or_default().push(record),
                (None, Action::Muted { .. } | Action::Unmuted) => {
                    last_mute.insert(record.entry.account.clone(), record);
                }
                (
                    None,
                    Action::PostSeen {
                        post_id,
                        fingerprint,
                    },
                ) => {
                    let key = SeenPostKey::new(&record.entry.account, post_id);
                    last_seen.insert(key, fingerprint.clone());
                }
                _ => {}
            }
        }
        let head: Option<super::Head> = self
            .meta
            .get(TIMELINE_HEAD)?
            .map(|v| decode("meta", &v))
            .transpose()?;
        walk.check_head("timeline head", head.map(|h| (h.seq, hex::encode(h.hash))));
        let mut problems = std::mem::take(&mut walk.problems);

        let queued = self.queued_on_telegram()?;
        let held: HashSet<u64> = self.held()?.into_iter().collect();
        let mut incidents = BTreeMap::new();
        for item in self.incidents.iter() {
            let (k, v) = item?;
            let id = from_be("incidents", &k)?;
            let records = per_incident.remove(&id).unwrap_or_default();
            match serde_json::from_slice::<Incident>(&v) {
                Ok(inc) => {
                    let waiting = queued.contains(&id) || held.contains(&id);
                    check_incident(&inc, &records, waiting, &mut problems);
                    incidents.insert(id, inc);
                }
                Err(e) => problems.push(format!("incident #{id}: unreadable ({e})")),
            }
        }
        for id in per_incident.keys() {
            problems.push(format!(
                "incident #{id}: in the timeline chain but missing from the incidents"
            ));
        }
        for item in self.incident_keys.iter() {
            let (k, v) = item?;
            let id = from_be("incident_keys", &v)?;
            let key = String::from_utf8_lossy(&k);
            let name = key.replace('\0', "/");
            match incidents.get(&id) {
                None => problems.push(format!(
                    "dedup key {name}: points at incident #{id}, which does not exist"
                )),
                Some(inc) if !key_belongs(&key, inc) => problems.push(format!(
                    "dedup key {name}: points at incident #{id}, which is not about it"
                )),
                Some(_) => {}
            }
        }
        let mutes: HashMap<String, Mute> = self
            .mutes()?
            .into_iter()
            .map(|m| (m.account.clone(), m))
            .collect();
        for (account, mute) in &mutes {
            if !mute_is_chained(mute, last_mute.get(account)) {
                problems.push(format!(
                    "mute of {account} (until {}, by {}): not what the timeline chain says",
                    mute.until, mute.by
                ));
            }
        }
        for (account, r) in &last_mute {
            if matches!(r.entry.action, Action::Muted { .. }) && !mutes.contains_key(account) {
                problems.push(format!(
                    "mute of {account}: in the timeline chain (event {}) but missing",
                    r.seq
                ));
            }
        }
        for (key, fingerprint) in self.seen_posts()? {
            let name = format!("{}/{}", key.account, key.post_id);
            match last_seen.remove(&key) {
                Some(chained) if chained == fingerprint => {}
                Some(_) => problems.push(format!(
                    "seen post {name}: its content is not what the timeline chain saw"
                )),
                None => problems.push(format!("seen post {name}: not in the timeline chain")),
            }
        }
        let mut gone: Vec<_> = last_seen.into_keys().collect();
        gone.sort();
        for key in gone {
            problems.push(format!(
                "seen post {}/{}: in the timeline chain but missing from the seen posts",
                key.account, key.post_id
            ));
        }
        Ok(VerifyReport {
            entries: walk.walked(),
            head: walk.head().to_owned(),
            problems,
        })
    }
}

/// "approved_log:3:ab12… timeline:9:cd34…", for a problem's text.
fn describe(heads: &Heads) -> String {
    let named = heads.named();
    if named.is_empty() {
        return "two empty chains".into();
    }
    named
        .iter()
        .map(ChainHead::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a dedup index key may point at `inc`: its own key, a burst member's, its group's.
fn key_belongs(key: &str, inc: &Incident) -> bool {
    key == inc.dedup_key()
        || key == group_key(&inc.account, inc.rule)
        || inc
            .members
            .iter()
            .any(|m| key == dedup_key(&inc.account, inc.rule, &m.object))
}

/// An incident as its chained events leave it.
#[derive(Default)]
struct Replay {
    state: Option<State>,
    resolution: Option<Resolution>,
    acked_by: Option<String>,
    resolved_by: Option<String>,
    takedown_started: Option<DateTime<Utc>>,
    /// Votes an event accounts for (action, who, when, the version of the page pressed on):
    /// cleared where the incident's votes are.
    votes: Vec<(VoteAction, String, DateTime<Utc>, Option<u32>)>,
    paged: bool,
}

impl Replay {
    /// Mirrors what `incidents` does to the record with each event.
    fn of(records: &[TimelineRecord]) -> Replay {
        let mut r = Replay::default();
        for rec in records {
            let who = &rec.entry.who;
            match &rec.entry.action {
                Action::Opened => r.state = Some(State::Open),
                Action::Updated => r.votes.clear(),
                // A page sent again as a new message is a page in the chat too.
                Action::Paged { .. } | Action::Repaged { .. } => r.paged = true,
                Action::Acked => {
                    r.state = Some(State::Acked);
                    r.acked_by = Some(who.clone());
                }
                Action::Approved => {
                    r.votes.retain(|(a, ..)| *a != VoteAction::Resolve);
                    r.state = Some(State::Resolved);
                    r.resolution = Some(Resolution::Approved);
                    r.resolved_by = Some(who.clone());
                    // The vote that reached the quorum is kept with the approval's time.
                    r.votes
                        .push((VoteAction::Approve, who.clone(), rec.at, None));
                }
                // Part of a burst approved: the quorum is spent, the incident stays as it was
                // (the approved members are in its subject).
                Action::ApprovedShown { .. } => {
                    r.votes.retain(|(a, ..)| *a != VoteAction::Approve);
                }
                Action::Resolved { resolution } => {
                    // Votes to close a blind source's incident are spent with it.
                    r.votes.retain(|(a, ..)| *a != VoteAction::Resolve);
                    r.state = Some(State::Resolved);
                    r.resolution = Some(*resolution);
                    r.resolved_by = Some(who.clone());
                    // The vote that reached `resolve_quorum` is kept with the resolution's time.
                    if *resolution == Resolution::FalseAlarm {
                        r.votes
                            .push((VoteAction::FalseAlarm, who.clone(), rec.at, None));
                    }
                }
                Action::FalseAlarmVote { .. } => {
                    r.votes
                        .push((VoteAction::FalseAlarm, who.clone(), rec.at, None))
                }
                Action::ApprovalVote { seen, .. } => {
                    r.votes
                        .push((VoteAction::Approve, who.clone(), rec.at, *seen))
                }
                Action::ResolveVote { .. } => {
                    r.votes
                        .push((VoteAction::Resolve, who.clone(), rec.at, None))
                }
                Action::TakedownVote { seen, .. } => {
                    r.votes
                        .push((VoteAction::Takedown, who.clone(), rec.at, *seen))
                }
                Action::TakedownStarted { .. } => {
                    r.takedown_started = Some(rec.at);
                    r.votes.retain(|(a, ..)| *a != VoteAction::Takedown);
                }
                Action::TakedownResult { .. } => r.takedown_started = None,
                Action::Reminded { .. }
                | Action::Rang { .. }
                | Action::DeadLettered { .. }
                | Action::HeldMail { .. }
                | Action::PauseRequested
                | Action::MailerCalled { .. }
                | Action::Muted { .. }
                | Action::Unmuted
                | Action::ApprovedPostDeleted { .. }
                | Action::PostSeen { .. } => {}
            }
        }
        r
    }
}

fn or_none<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

/// Checks one incident against its chained events (`records`, oldest first). `waiting`: a page
/// update of it is queued on Telegram or held by a mute.
fn check_incident(
    inc: &Incident,
    records: &[TimelineRecord],
    waiting: bool,
    problems: &mut Vec<String>,
) {
    let id = inc.id;
    let mut say = |p: String| problems.push(format!("incident #{id}: {p}"));
    if records.is_empty() {
        say(
            "not in the timeline chain (an older build's incident: `tocsin log adopt`; \
             otherwise its events were deleted)"
                .into(),
        );
        return;
    }
    let events: Vec<_> = records.iter().map(TimelineRecord::as_event).collect();
    if inc.timeline != events {
        say("its timeline does not match the timeline chain".into());
    }
    if !matches!(records[0].entry.action, Action::Opened) {
        say("its first chained event is not its opening".into());
    }
    if records.iter().any(|r| r.entry.account != inc.account) {
        say(format!(
            "its account {} is not the one its chained events name",
            inc.account
        ));
    }
    let r = Replay::of(records);
    if r.state != Some(inc.state) {
        say(format!(
            "its state is {} but its chained events say {}",
            inc.state.as_str(),
            or_none(r.state.map(State::as_str))
        ));
    }
    if r.resolution != inc.resolution {
        say(format!(
            "its resolution is {} but its chained events say {}",
            or_none(inc.resolution.map(Resolution::as_str)),
            or_none(r.resolution.map(Resolution::as_str))
        ));
    }
    let acked_by = inc.acked_by.as_ref().map(ToString::to_string);
    if r.acked_by != acked_by {
        say(format!(
            "acknowledged by {} but its chained events say {}",
            or_none(acked_by),
            or_none(r.acked_by.clone())
        ));
    }
    let resolved_by = inc.resolved_by.as_ref().map(ToString::to_string);
    if r.resolved_by != resolved_by {
        say(format!(
            "resolved by {} but its chained events say {}",
            or_none(resolved_by),
            or_none(r.resolved_by.clone())
        ));
    }
    if r.takedown_started != inc.takedown_started {
        say(format!(
            "its takedown marker is {} but its chained events say {}",
            or_none(inc.takedown_started),
            or_none(r.takedown_started)
        ));
    }
    for v in &inc.votes {
        let vote = (v.action, v.who.to_string(), v.at, v.seen);
        if !r.votes.contains(&vote) {
            let what = match v.action {
                VoteAction::Approve => "approve",
                VoteAction::Takedown => "take down",
                VoteAction::FalseAlarm => "resolve as a false alarm",
                VoteAction::Resolve => "resolve while its source is blind",
            };
            say(format!(
                "a vote by {} to {what} at {} is not in the timeline chain",
                v.who, v.at
            ));
        }
    }
    if inc.evidence.digest() != inc.evidence_digest {
        say("its evidence does not match its digest".into());
    }
    if let Some(chained) = records.iter().rev().find_map(|r| r.entry.subject.as_ref()) {
        let now = Subject::of(inc);
        // A mail burst grows without an event per message (see `incidents::mail`): until it
        // is resolved only its severity, which never falls, can be held to the chain.
        let open_mail = matches!(inc.evidence, Evidence::Mail(_)) && inc.state != State::Resolved;
        if open_mail {
            if now.severity < chained.severity {
                say(format!(
                    "its severity is {} but its chained events say {}",
                    now.severity.as_str(),
                    chained.severity.as_str()
                ));
            }
        } else if now != *chained {
            say(
                "what it is about (rule, object, severity, evidence or burst members) is not \
                 what its last chained event recorded"
                    .into(),
            );
        }
    }
    let pages_chat = inc.rule != Rule::TelegramDown;
    if inc.state != State::Resolved && pages_chat && !r.paged && !waiting {
        say("it never reached the chat, and no page is queued or held for it".into());
    }
}
