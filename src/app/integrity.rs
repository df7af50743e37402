//! The daemon's watch over its own state: verify the store at start (and on every reload) and
//! every hour, page `store.tampered` when it does not verify, and publish the chain heads.
//!
//! Nothing is re-chained automatically: whatever is missing from a chain at start is reported,
//! never adopted (adopting an older build's store is `tocsin log adopt`, by hand, with the
//! daemon stopped). A store that does not verify is not signed any more (see
//! `store::signing`), and `/readyz` fails until it is restored.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::{
    detect::Outcome,
    incidents::Incidents,
    model::{Evidence, Finding, Rule, Severity, cut, dedup_key},
    notify::heads::HeadsPublisher,
    store::{SignatureCheck, Store, StoreError, Verification},
};

/// The account and object of the `store.tampered` incident.
pub const TAMPERED_ACCOUNT: &str = "tocsin";
pub const TAMPERED_OBJECT: &str = "state";
/// The longest the daemon goes without verifying, whatever `general.publish_heads` says.
pub const VERIFY_EVERY: Duration = Duration::from_secs(3600);
/// How much of the problem list the page shows.
const PROBLEMS_SHOWN: usize = 3000;

/// What the start-up verification found, carried to [`run`] (which pages and publishes it).
pub struct StartCheck {
    pub verification: Verification,
    /// The heads were signed for the first time: the start publication says so.
    pub first_signing: bool,
}

/// Verifies the store before anything runs, and says in the log what the operator must know.
pub fn at_start(store: &Store) -> Result<StartCheck, StoreError> {
    let (verification, first_signing) = store.check_integrity()?;
    let key = store.public_key();
    if !verification.is_ok() {
        tracing::error!(
            problems = ?verification.problems(),
            "the state database does not verify against its chains: store.tampered is paged and /readyz fails"
        );
    } else if key.is_none() {
        let signed_before = store.genesis()?.and_then(|g| g.signed);
        match signed_before {
            Some(since) => tracing::warn!(
                key = %since.key,
                since = %since.at,
                "general.signing_key is not set, but the chains have been signed: new records are not, and `tocsin log verify --public-key` will report them"
            ),
            None => tracing::warn!(
                "general.signing_key is not set: the chain heads are unsigned, so someone who can write the state dir can rewrite the approved log and the timeline unseen (`tocsin keygen` makes a key)"
            ),
        }
    } else if first_signing {
        tracing::warn!(
            key = %key.map(|k| k.to_string()).unwrap_or_default(),
            "chain heads signed for the first time: an edit made before now cannot be found"
        );
    } else if verification.signature == SignatureCheck::Valid {
        tracing::info!("the state database verifies against its signed chain heads");
    }
    Ok(StartCheck {
        verification,
        first_signing,
    })
}

/// Opens (or updates) the critical `store.tampered` incident when `verification` failed. The
/// same problems as the last incident's, open or resolved, record nothing new.
pub async fn page_if_tampered(incidents: &Incidents, verification: &Verification) {
    if verification.is_ok() {
        return;
    }
    let problems = verification.problems();
    let mut problem = format!("{} problem(s): ", problems.len());
    problem += &cut(&problems.join("; "), PROBLEMS_SHOWN);
    let key = dedup_key(TAMPERED_ACCOUNT, Rule::StoreTampered, TAMPERED_OBJECT);
    let since = match incidents.store().incident_by_key(&key) {
        Ok(Some(inc)) => match inc.evidence {
            Evidence::Channel {
                problem: p, since, ..
            } if p == problem => since,
            _ => Utc::now(),
        },
        _ => Utc::now(),
    };
    let finding = Finding {
        rule: Rule::StoreTampered,
        severity: Severity::Critical,
        account: TAMPERED_ACCOUNT.into(),
        object: TAMPERED_OBJECT.into(),
        evidence: Evidence::Channel {
            channel: "state database".into(),
            problem,
            since,
        },
        changed_at: None,
        seen_at: Utc::now(),
    };
    let outcome = Outcome {
        finding: Some(finding),
        writes: Vec::new(),
    };
    match incidents.record(&outcome).await {
        Ok(recorded) => tracing::error!(?recorded, "store.tampered"),
        Err(e) => tracing::error!(error = %e, "cannot record that the store is tampered with"),
    }
}

/// Pages what the start-up check found and publishes the heads; then verifies at least every
/// hour (and before each publication) and publishes every `every`, until shutdown.
pub async fn run(
    incidents: Incidents,
    publisher: Arc<HeadsPublisher>,
    every: Duration,
    start: StartCheck,
    shutdown: CancellationToken,
) {
    page_if_tampered(&incidents, &start.verification).await;
    publisher.publish("start", start.first_signing).await;
    let tick = every.min(VERIFY_EVERY);
    let occasion = format!("every {}", humantime::format_duration(every));
    let mut published_at = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let store = incidents.store().clone();
        match tokio::task::spawn_blocking(move || store.check_integrity()).await {
            Ok(Ok((verification, _))) => {
                if !verification.is_ok() {
                    tracing::error!(problems = ?verification.problems(), "the state database does not verify");
                }
                page_if_tampered(&incidents, &verification).await;
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot verify the state database"),
            Err(e) => tracing::error!(error = %e, "the verification task failed"),
        }
        if published_at.elapsed() + Duration::from_millis(10) >= every {
            publisher.publish(&occasion, false).await;
            published_at = Instant::now();
        }
    }
}
