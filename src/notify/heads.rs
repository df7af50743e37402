//! Publishing the signed chain heads: a copy of where the chains end, kept where someone with
//! the state dir cannot reach it.
//!
//! A signature proves that the heads are tocsin's; it cannot prove that they are the newest.
//! Someone who copied the state dir yesterday holds yesterday's validly signed heads, and could
//! put yesterday's chains back (an approval revoked since is approved again). The heads are
//! therefore published, at start, every `general.publish_heads` and in the daily summary, to
//! the chat, every fallback channel (PagerDuty as a change event, which pages nobody; webhooks
//! as a signed `chain_heads` document) and the log; `tocsin log verify --expect-head` checks
//! that the chain still holds a published head, and the daemon checks the heads it published
//! itself every time it verifies.
//!
//! Without a signing key nothing is published outside the log: unsigned heads vouch for
//! nothing, and the missing key is what the warnings are about.

use chrono::{DateTime, Utc};
use teloxide::{prelude::*, types::ChatId};

use super::Fallback;
use crate::store::{ChainHead, Heads, PublicKey, Store, StoreError};

/// One publication of the heads.
#[derive(Debug, Clone)]
pub struct Publication {
    /// "start", "every 1h", "daily summary".
    pub occasion: String,
    pub at: DateTime<Utc>,
    pub heads: Heads,
    /// The signature over [`Heads::message`], when the store's signed statement names exactly
    /// these heads (it does not once a verification failed).
    pub signature: Option<String>,
    pub key: Option<PublicKey>,
    /// These heads were signed for the first time now: edits made before cannot be found.
    pub first_signing: bool,
}

impl Publication {
    /// The heads as they stand now, with their signature when they have a valid one.
    pub fn now(
        store: &Store,
        occasion: &str,
        first_signing: bool,
    ) -> Result<Publication, StoreError> {
        let heads = store.heads()?;
        let key = store.public_key();
        let signature = match (store.signed_heads()?, key) {
            (Some(s), Some(k))
                if s.heads == heads && k.verifies(&heads.message(), &s.signature) =>
            {
                Some(s.signature)
            }
            _ => None,
        };
        Ok(Publication {
            occasion: occasion.to_owned(),
            at: Utc::now(),
            heads,
            signature,
            key,
            first_signing,
        })
    }

    pub fn named(&self) -> Vec<ChainHead> {
        self.heads.named()
    }

    /// The lines of the chat message (and of the daily summary's postscript).
    pub fn text(&self) -> String {
        let mut t = format!("🔏 tocsin chain heads ({})\n", self.occasion);
        let named = self.named();
        if named.is_empty() {
            t += "both chains are empty\n";
        }
        for h in &named {
            t += &format!("{h}\n");
        }
        match (&self.signature, &self.key) {
            (Some(sig), Some(key)) => {
                t += &format!("signature {sig}\nkey {key}\n");
                if self.first_signing {
                    t += "First signature of these chains: an edit made before now cannot be \
                          found.\n";
                }
                let expect: String = named
                    .iter()
                    .map(|h| format!(" --expect-head {h}"))
                    .collect();
                t += &format!(
                    "Check a copy of the state dir: tocsin log verify --state DIR --public-key \
                     {key}{expect}\n"
                );
            }
            (None, Some(_)) => {
                t += "⚠️ NOT SIGNED: the store does not verify (see the store.tampered incident); \
                      these heads are not vouched for.\n";
            }
            (_, None) => t += "unsigned: no general.signing_key\n",
        }
        t
    }

    /// The document a webhook receives, and PagerDuty's change event details.
    pub fn document(&self) -> serde_json::Value {
        serde_json::json!({
            "event": "chain_heads",
            "occasion": self.occasion,
            "at": self.at,
            "heads": self.named().iter().map(ChainHead::to_string).collect::<Vec<_>>(),
            "signed_message": String::from_utf8_lossy(&self.heads.message()),
            "signature": self.signature,
            "public_key": self.key.map(|k| k.to_string()),
        })
    }

    /// One line for the log and for titles.
    pub fn summary(&self) -> String {
        let heads = self
            .named()
            .iter()
            .map(|h| format!("{}:{}", h.chain, h.seq))
            .collect::<Vec<_>>()
            .join(" ");
        let signed = if self.signature.is_some() {
            "signed"
        } else {
            "NOT signed"
        };
        format!("tocsin chain heads ({}): {heads} {signed}", self.occasion)
    }
}

/// Where the heads go besides the log.
pub struct HeadsPublisher {
    pub store: Store,
    pub bot: Bot,
    pub chat_id: i64,
    pub fallbacks: Vec<Fallback>,
}

impl HeadsPublisher {
    /// Publishes the heads as they stand: the log always; with a signing key the chat and every
    /// fallback channel too. Remembered by the store as published once logged, so that the
    /// next verification checks the chains still hold them. Failures are logged; the next
    /// publication comes soon enough.
    pub async fn publish(&self, occasion: &str, first_signing: bool) -> Option<Publication> {
        let p = match Publication::now(&self.store, occasion, first_signing) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the chain heads to publish them");
                return None;
            }
        };
        if p.key.is_some()
            && let Err(e) = self.bot.send_message(ChatId(self.chat_id), p.text()).await
        {
            tracing::warn!(error = %e, "chain heads not published to the chat");
        }
        self.beyond_chat(&p).await;
        Some(p)
    }

    /// The log and (with a key) the fallback channels: the daily summary carries the heads to
    /// the chat itself.
    pub async fn beyond_chat(&self, p: &Publication) {
        let heads: Vec<String> = p.named().iter().map(ChainHead::to_string).collect();
        tracing::info!(
            occasion = %p.occasion,
            heads = ?heads,
            signature = p.signature.as_deref().unwrap_or("none"),
            key = %p.key.map_or_else(|| "none".to_owned(), |k| k.to_string()),
            first_signing = p.first_signing,
            "chain heads"
        );
        self.store.note_published(p.named());
        if p.key.is_none() {
            return;
        }
        for f in &self.fallbacks {
            if let Err(e) = f.publish_heads(p).await {
                tracing::warn!(channel = f.channel(), error = %e, "chain heads not published");
            }
        }
    }
}
