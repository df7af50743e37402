//! The genesis record: when this store's chains began, and since when (and by which key) their
//! heads are signed.
//!
//! A store is begun empty (the record is written when a database holding nothing is opened),
//! or adopted from an older build by `tocsin log adopt`, which chains what that build left
//! unchained (incident timelines, seen posts, mutes). Adoption is refused once the record exists:
//! from then on anything missing from a chain was removed, and chaining it again would launder
//! the removal. The daemon itself never adopts, at start or on reload.
//!
//! The record also says whether the heads were ever signed. Signing starts the first time the
//! daemon verifies the store with a key configured ("first signing", announced with the heads);
//! from then on heads without a valid signature are tampering, not an older state.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    GENESIS_KEY, MUTE, SIGNED_HEADS, SeenPostKey, Store, StoreError, TIMELINE, TIMELINE_HEAD,
    TimelineEntry, TimelineRecord, Tx, TxResult, decode, encode,
    signing::{PublicKey, SignedHeads, SigningKey},
};
use crate::model::{Action, Mute};

/// When the chains began, and whether their heads are signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub at: DateTime<Utc>,
    /// Begun by `tocsin log adopt` on a store an older build kept, rather than empty.
    #[serde(default)]
    pub adopted: bool,
    /// Since when the heads are signed, and by which key; None while never signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<SignedSince>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedSince {
    pub at: DateTime<Utc>,
    pub key: PublicKey,
}

/// Why `tocsin log adopt` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error(
        "refused: this store's chains began at {0} (its genesis record says so); anything missing from them now was removed, and adopting would chain whatever the store holds, edits included"
    )]
    Began(DateTime<Utc>),
    #[error(
        "refused: the chain heads are signed, so a signing build kept this store, yet its genesis record is missing: it was deleted"
    )]
    Signed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `tocsin log adopt` chained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Incidents whose timelines were not in the chain, and their events.
    pub incidents: usize,
    pub events: usize,
    pub seen_posts: usize,
    pub mutes: usize,
    /// Whether the heads were signed with the key given.
    pub signed: bool,
}

impl Store {
    pub fn genesis(&self) -> Result<Option<Genesis>, StoreError> {
        self.meta
            .get(GENESIS_KEY)?
            .map(|v| decode("meta", &v))
            .transpose()
    }

    /// Whether the store holds anything a chain covers (or a chain itself).
    pub(super) fn holds_chained_data(&self) -> Result<bool, StoreError> {
        Ok(!self.approved_log.is_empty()
            || !self.incidents.is_empty()
            || !self.seen_posts.is_empty()
            || self.meta.contains_key(TIMELINE_HEAD)?
            || self.meta.scan_prefix(TIMELINE).next().is_some()
            || self.meta.scan_prefix(MUTE).next().is_some())
    }

    /// Writes the genesis record of a database that holds nothing yet. A database that holds
    /// data without one was kept by an older build (or had the record deleted): it is left for
    /// `tocsin log adopt`, and verification says so.
    pub(super) fn begin_if_new(&self) -> Result<(), StoreError> {
        if self.meta.contains_key(GENESIS_KEY)? || self.holds_chained_data()? {
            return Ok(());
        }
        let genesis = Genesis {
            at: Utc::now(),
            adopted: false,
            signed: None,
        };
        self.meta
            .compare_and_swap(GENESIS_KEY, None as Option<&[u8]>, Some(encode(&genesis)))?
            .ok();
        Ok(())
    }

    /// The signed statement of both heads, if any.
    pub fn signed_heads(&self) -> Result<Option<SignedHeads>, StoreError> {
        self.meta
            .get(SIGNED_HEADS)?
            .map(|v| decode("meta", &v))
            .transpose()
    }

    /// Sets the key that signs the heads from now on (none: they stay unsigned). Signing waits
    /// for [`Store::start_signing`].
    pub fn set_signing_key(&self, key: Option<Arc<SigningKey>>) {
        let mut signing = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        signing.key = key;
        signing.enabled = false;
        signing.known_valid = None;
    }

    /// The public half of the signing key in use, if any.
    pub fn public_key(&self) -> Option<PublicKey> {
        let signing = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        signing.key.as_ref().map(|k| k.public_key())
    }

    /// Allows signing, once the store verified. With a key and heads never signed before, signs
    /// the current heads first and records it in the genesis record ("first signing"): true
    /// then, so that the daemon announces it. Without a genesis record nothing is signed.
    pub fn start_signing(&self) -> Result<bool, StoreError> {
        let key = {
            let signing = self.signing.lock().unwrap_or_else(|p| p.into_inner());
            signing.key.clone()
        };
        let Some(key) = key else {
            return Ok(false);
        };
        let now = Utc::now();
        let first = self.transact(|tx| {
            let Some(mut genesis) = tx.genesis()? else {
                return Ok(false);
            };
            if genesis.signed.is_some() {
                return Ok(false);
            }
            tx.sign_heads_with(&key)?;
            genesis.signed = Some(SignedSince {
                at: now,
                key: key.public_key(),
            });
            tx.meta.insert(GENESIS_KEY, encode(&genesis))?;
            Ok(true)
        })?;
        let mut signing = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        signing.enabled = self.genesis()?.is_some();
        Ok(first)
    }

    /// Stops signing: a verification failed, and nothing written from now on may be vouched for.
    pub fn stop_signing(&self) {
        let mut signing = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        signing.enabled = false;
    }

    /// `tocsin log adopt`: chains what a store kept by an older build left unchained, writes the
    /// genesis record, and signs the heads when `key` is given. Refused once the store has a
    /// genesis record (or signed heads). Run with the daemon stopped.
    ///
    /// Only what is absent from the chain is chained: an incident with no chained event at all,
    /// a seen post or a mute the chain does not mention. An incident whose timeline disagrees
    /// with its chained events is left as it is, and verification keeps reporting it.
    pub fn adopt(&self, key: Option<&SigningKey>) -> Result<Adopted, AdoptError> {
        if let Some(g) = self.genesis()? {
            return Err(AdoptError::Began(g.at));
        }
        if self.signed_heads()?.is_some() {
            return Err(AdoptError::Signed);
        }
        let records = self.timeline_records()?;
        let chained_incidents: std::collections::HashSet<u64> =
            records.iter().filter_map(|r| r.entry.incident).collect();
        let mut seen_chained = std::collections::HashMap::new();
        let mut mutes_chained = std::collections::HashMap::new();
        for r in &records {
            match &r.entry.action {
                Action::PostSeen {
                    post_id,
                    fingerprint,
                } => {
                    let key = SeenPostKey::new(&r.entry.account, post_id);
                    seen_chained.insert(key, fingerprint.clone());
                }
                Action::Muted { .. } | Action::Unmuted if r.entry.incident.is_none() => {
                    mutes_chained.insert(r.entry.account.clone(), r.clone());
                }
                _ => {}
            }
        }
        let incidents: Vec<_> = self
            .incidents()?
            .into_iter()
            .filter(|i| !chained_incidents.contains(&i.id))
            .collect();
        let seen: Vec<(SeenPostKey, String)> = self
            .seen_posts()?
            .into_iter()
            .filter(|(k, fp)| seen_chained.get(k) != Some(fp))
            .collect();
        let mutes: Vec<Mute> = self
            .mutes()?
            .into_iter()
            .filter(|m| !mute_is_chained(m, mutes_chained.get(&m.account)))
            .collect();
        let now = Utc::now();
        let adopted = self.transact(|tx| {
            if tx.genesis()?.is_some() {
                return Ok(None);
            }
            let mut adopted = Adopted::default();
            for inc in &incidents {
                let subject = Some(super::Subject::of(inc));
                for e in &inc.timeline {
                    let entry = TimelineEntry {
                        incident: Some(inc.id),
                        account: inc.account.clone(),
                        who: e.who.clone(),
                        action: e.action.clone(),
                        subject: subject.clone(),
                    };
                    tx.append_timeline(entry, e.at)?;
                    adopted.events += 1;
                }
                adopted.incidents += 1;
            }
            for (key, fingerprint) in &seen {
                let entry = TimelineEntry {
                    incident: None,
                    account: key.account.clone(),
                    who: "tocsin".into(),
                    action: Action::PostSeen {
                        post_id: key.post_id.clone(),
                        fingerprint: fingerprint.clone(),
                    },
                    subject: None,
                };
                tx.append_timeline(entry, now)?;
                adopted.seen_posts += 1;
            }
            for m in &mutes {
                let entry = TimelineEntry {
                    incident: None,
                    account: m.account.clone(),
                    who: m.by.to_string(),
                    action: Action::Muted { until: m.until },
                    subject: None,
                };
                tx.append_timeline(entry, m.at)?;
                adopted.mutes += 1;
            }
            let mut genesis = Genesis {
                at: now,
                adopted: true,
                signed: None,
            };
            if let Some(key) = key {
                tx.sign_heads_with(key)?;
                genesis.signed = Some(SignedSince {
                    at: now,
                    key: key.public_key(),
                });
                adopted.signed = true;
            }
            tx.meta.insert(GENESIS_KEY, encode(&genesis))?;
            Ok(Some(adopted))
        })?;
        match adopted {
            Some(a) => {
                self.db.flush().map_err(StoreError::from)?;
                Ok(a)
            }
            None => Err(AdoptError::Began(self.genesis()?.map_or(now, |g| g.at))),
        }
    }
}

/// Whether `mute` is what the chain's last mute event of its account says.
pub(super) fn mute_is_chained(mute: &Mute, last: Option<&TimelineRecord>) -> bool {
    last.is_some_and(|r| {
        matches!(r.entry.action, Action::Muted { until } if until == mute.until)
            && r.at == mute.at
            && r.entry.who == mute.by.to_string()
    })
}

impl Tx<'_> {
    pub(super) fn genesis(&self) -> TxResult<Option<Genesis>> {
        self.meta
            .get(GENESIS_KEY)?
            .map(|v| decode("meta", &v))
            .transpose()
            .map_err(sled::transaction::ConflictableTransactionError::Abort)
    }

    /// Signs the heads as they stand, whatever signed them before: for adoption and the first
    /// signing only, both of which begin the signatures.
    fn sign_heads_with(&self, key: &SigningKey) -> TxResult<()> {
        let heads = self.heads()?;
        let signature = key.sign(&heads.message());
        let signed = SignedHeads { heads, signature };
        self.meta.insert(SIGNED_HEADS, encode(&signed))?;
        Ok(())
    }
}
