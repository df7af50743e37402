//! Bluesky: one account (a DID) read from its PDS, with Jetstream pushing its commits.
//!
//! Identity first: a handle in `account_id` is resolved once with
//! `com.atproto.identity.resolveHandle` at `base_url`; the DID document (PLC directory for
//! `did:plc:`, `/.well-known/did.json` for `did:web:`) names the PDS, the handle and the signing
//! key, and the PLC audit data the rotation keys. Those are profile fields, so a handle change, a
//! PDS move or a key rotation is a profile drift like a new bio, paged as critical by detect.
//!
//! The poller reads the profile record (`app.bsky.actor.profile/self`, with its CID), the repo
//! status and the newest posts (`listRecords`, newest first, paged back to the last post seen).
//! It is the backstop: Jetstream (`wantedDids` = this DID) pushes creates, updates and deletes
//! of posts and of the profile record, and `identity` and `account` events, which become the same
//! observations the moment they arrive. The stream's `time_us` cursor is checkpointed like the
//! poll cursor and resumed (a few seconds back: replays are judged "already seen") on reconnect.
//! A stream down past the account's grace reports as blind.
//!
//! Both halves share one state behind an async lock held across the emit, so the merged profile
//! they report reaches the pipeline in the order it was built.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::Mutex;
use tracing::Instrument;

use super::{
    api::{
        POST, PROFILE, RecordEntry, RecordPage, RepoStatus, cmp_rkey, post, profile_fields,
        rkey_of, status_text, xrpc_get,
    },
    identity::{resolve_did, resolve_identity},
    jetstream::stream,
    state::{State, Watch},
};
use crate::{
    config::Account,
    model::ObservationKind,
    platforms::check_data_endpoint_resolved,
    watch::{RateBudget, SourceContext, SourceError},
};

/// Records per `listRecords` page; the lexicon's maximum.
pub(super) const PAGE: usize = 100;
/// Pages read back in one poll to reach the last post seen.
pub(super) const MAX_GAP_PAGES: usize = 10;
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Watches one account until shutdown.
pub async fn run(account: Account, ctx: SourceContext) {
    let name = account.name.clone();
    let mut budget = None;
    let mut failures = 0u32;
    // The DID first: nothing else can be read without it.
    let did = loop {
        match resolve_did(&ctx.http, &account.base_url, &account.account_id).await {
            Ok(did) => break did,
            Err(e) => {
                failures += 1;
                tracing::warn!(account = %name, error = %e, "cannot resolve the Bluesky handle");
                let refused = matches!(e, SourceError::Unauthorized { .. });
                ctx.health.failure(&name, e.to_string(), refused, None);
                if !ctx.sleep(backoff(account.poll_interval, failures)).await {
                    return;
                }
            }
        }
    };
    let store = ctx.store.clone();
    let origin_key = format!("bluesky:{name}:origin");
    let cursor_key = format!("bluesky:{name}:since");
    let stream_key = format!("bluesky:{name}:jetstream");
    let state = State {
        origin: store.cursor(&origin_key).ok().flatten(),
        stream_cursor: store
            .cursor(&stream_key)
            .ok()
            .flatten()
            .and_then(|c| c.parse().ok()),
        ..State::default()
    };
    let watch = Arc::new(Watch {
        account,
        ctx,
        did,
        state: Mutex::new(state),
        origin_key,
        cursor_key,
        stream_key,
    });
    let mut since = watch.ctx.store.cursor(&watch.cursor_key).ok().flatten();
    let mut stream_started = false;
    failures = 0;
    loop {
        let span = tracing::info_span!("poll", account = %name, platform = "bluesky");
        let result = poll(&watch, &mut since, &mut budget).instrument(span).await;
        let interval = watch.account.poll_interval;
        let wait = match result {
            Ok(true) => {
                failures = 0;
                watch.ctx.health.success(&name, budget.clone());
                // History is known now: the stream may report new posts as new.
                if !stream_started {
                    stream_started = true;
                    tokio::spawn(stream(watch.clone()));
                }
                match &budget {
                    Some(RateBudget {
                        remaining: 0,
                        reset: Some(reset),
                        ..
                    }) => (*reset - Utc::now())
                        .to_std()
                        .unwrap_or_default()
                        .max(interval),
                    _ => interval,
                }
            }
            Ok(false) => return,
            Err(e) => {
                failures += 1;
                tracing::warn!(account = %name, error = %e, failures, "bluesky poll failed");
                let refused = matches!(
                    e,
                    SourceError::Unauthorized { .. } | SourceError::Refused { .. }
                );
                watch
                    .ctx
                    .health
                    .failure(&name, e.to_string(), refused, budget.clone());
                match e {
                    SourceError::RateLimited(d) => d.max(interval),
                    _ => backoff(interval, failures),
                }
            }
        };
        if !watch.ctx.sleep(wait).await {
            return;
        }
    }
}

pub(super) fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}

/// One poll of identity, repo status, profile record and posts. Ok(false): pipeline closed.
pub(super) async fn poll(
    watch: &Watch,
    since: &mut Option<String>,
    budget: &mut Option<RateBudget>,
) -> Result<bool, SourceError> {
    let http = &watch.ctx.http;
    let did = watch.did.as_str();
    let identity = resolve_identity(http, &watch.account, did).await?;
    let pds = identity.pds.clone();
    if let Err(e) = check_data_endpoint_resolved(&watch.account, &pds).await {
        // The move is still reported (a profile drift, paged), from what was read before; the
        // new PDS is not called. Before a first full read there is nothing to report it with.
        let mut state = watch.state.lock().await;
        if state.pds.is_some() {
            state.set_identity(&identity);
            if !watch.emit_profile(&state).await {
                return Ok(false);
            }
        }
        return Err(SourceError::Refused {
            what: format!("the PDS in the DID document of {did}"),
            detail: e.to_string(),
        });
    }
    let status: Option<RepoStatus> = xrpc_get(
        http,
        &pds,
        "com.atproto.sync.getRepoStatus",
        &[("did", did)],
        budget,
    )
    .await?;
    let status = match status {
        Some(s) => status_text(s.active, s.status.as_deref()),
        None => "not found".into(),
    };
    let profile: Option<RecordEntry> = xrpc_get(
        http,
        &pds,
        "com.atproto.repo.getRecord",
        &[("repo", did), ("collection", PROFILE), ("rkey", "self")],
        budget,
    )
    .await?;

    // Newest first; back through pages until the last post seen (or the first poll's page).
    let limit = PAGE.to_string();
    let mut records: Vec<RecordEntry> = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_GAP_PAGES {
        let mut query = vec![
            ("repo", did),
            ("collection", POST),
            ("limit", limit.as_str()),
        ];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let page: Option<RecordPage> =
            xrpc_get(http, &pds, "com.atproto.repo.listRecords", &query, budget).await?;
        let Some(page) = page else { break };
        let full = page.records.len() == PAGE;
        let reached = since.as_deref().is_none_or(|s| {
            page.records
                .iter()
                .filter_map(|r| rkey_of(&r.uri))
                .any(|k| cmp_rkey(k, s) != std::cmp::Ordering::Greater)
        });
        records.extend(page.records);
        cursor = page.cursor;
        if reached || !full || cursor.is_none() {
            break;
        }
    }
    records.reverse();

    let mut state = watch.state.lock().await;
    state.set_identity(&identity);
    state.status = status;
    state.record = profile_fields(
        profile.as_ref().map(|p| &p.value),
        profile.as_ref().and_then(|p| p.cid.as_deref()),
    );
    if !watch.emit_profile(&state).await {
        return Ok(false);
    }
    let first_poll = state.origin.is_none();
    if first_poll {
        let origin = records
            .last()
            .and_then(|r| rkey_of(&r.uri))
            .unwrap_or_default()
            .to_owned();
        if !watch.checkpoint(&watch.origin_key, origin.clone()).await {
            return Ok(false);
        }
        state.origin = Some(origin);
    }
    let mut newest = since.clone();
    for r in &records {
        let Some(rkey) = rkey_of(&r.uri) else {
            continue;
        };
        let history = first_poll || state.history(rkey);
        let p = post(did, rkey, &r.value, history, None);
        if !watch.ctx.emit(watch.name(), ObservationKind::Post(p)).await {
            return Ok(false);
        }
        if newest
            .as_deref()
            .is_none_or(|n| cmp_rkey(rkey, n) == std::cmp::Ordering::Greater)
        {
            newest = Some(rkey.to_owned());
        }
    }
    if let Some(n) = newest
        && since.as_deref() != Some(n.as_str())
    {
        if !watch.checkpoint(&watch.cursor_key, n.clone()).await {
            return Ok(false);
        }
        *since = Some(n);
    }
    Ok(true)
}
