//! Signed chain heads: what makes the hash chains hold against someone who can write the sled
//! file.
//!
//! A hash chain alone shows that no record was edited *on its own*; whoever can write the state
//! dir can also recompute every hash after an edit. What they cannot do without the signing key
//! (`general.signing_key`, kept outside the state dir) is sign the new heads. Both chains' heads
//! are signed together, as one statement, so that deleting or rolling back one chain while the
//! other stays breaks the signature too. The statement is signed again in the transaction of
//! every append, but only on top of a statement that verifies: a tampered store is never
//! vouched for afterwards, not even by the records its own `store.tampered` incident writes.
//!
//! Key text formats:
//! - the signing key is the base64 of an Ed25519 PKCS#8 document (v2, as `tocsin keygen` and
//!   ring write it; v1 as `openssl genpkey -algorithm ed25519` writes it is read too, PEM
//!   armour allowed). A PKCS#8 document cannot be mistaken for a public key: pasting one where
//!   the other belongs fails instead of signing with a wrong key.
//! - the public key is the base64 of the raw 32 bytes, what `tocsin log verify --public-key`
//!   takes and the published heads name.

use std::{fmt, str::FromStr, sync::Arc};

use base64::{Engine, engine::general_purpose::STANDARD};
use ring::{
    rand::SystemRandom,
    signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey},
};
use serde::{Deserialize, Serialize};

/// Why a key text was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not base64 ({0})")]
    NotBase64(String),
    #[error("not an Ed25519 PKCS#8 private key ({0}); `tocsin keygen` prints one")]
    NotPkcs8(String),
    #[error("not an Ed25519 public key: it must be the base64 of 32 bytes, got {0} bytes")]
    PublicLength(usize),
    #[error("cannot generate a key: the system's random source failed")]
    Random,
}

/// The key that signs the chain heads. Not `Debug`: it must never reach a log.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Reads the signing key's text (see the module docs).
    pub fn parse(text: &str) -> Result<SigningKey, KeyError> {
        let body: String = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|e| KeyError::NotBase64(e.to_string()))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| KeyError::NotPkcs8(e.to_string()))?;
        Ok(SigningKey { pair })
    }

    /// A new key: its text (for `general.signing_key`) and its public half.
    pub fn generate() -> Result<(String, PublicKey), KeyError> {
        let doc =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
        let text = STANDARD.encode(doc.as_ref());
        let key = SigningKey::parse(&text)?;
        Ok((text, key.public_key()))
    }

    pub fn public_key(&self) -> PublicKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(raw)
    }

    /// The base64 signature of `message`.
    pub(super) fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.pair.sign(message).as_ref())
    }
}

/// The public half of a [`SigningKey`]: what verifies the published heads.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Whether `signature` (base64) is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(sig) = STANDARD.decode(signature.as_bytes()) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, &sig)
            .is_ok()
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<PublicKey, KeyError> {
        let raw = STANDARD
            .decode(s.trim().as_bytes())
            .map_err(|e| KeyError::NotBase64(e.to_string()))?;
        let raw: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::PublicLength(raw.len()))?;
        Ok(PublicKey(raw))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The two chains of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chain {
    /// The approved log.
    ApprovedLog,
    /// The incident timeline.
    Timeline,
}

impl Chain {
    pub const ALL: [Chain; 2] = [Chain::ApprovedLog, Chain::Timeline];

    pub fn as_str(self) -> &'static str {
        match self {
            Chain::ApprovedLog => "approved_log",
            Chain::Timeline => "timeline",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Chain {
    type Err = String;
    fn from_str(s: &str) -> Result<Chain, String> {
        match s {
            "approved_log" => Ok(Chain::ApprovedLog),
            "timeline" => Ok(Chain::Timeline),
            _ => Err(format!(
                "unknown chain `{s}`: it is `approved_log` or `timeline`"
            )),
        }
    }
}

/// Where a chain ends: its last record's seq and hash (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadRef {
    pub seq: u64,
    pub hash: String,
}

/// One chain's head as it is published and as `--expect-head` names it: `CHAIN:SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub chain: Chain,
    pub seq: u64,
    pub hash: String,
}

impl fmt::Display for ChainHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.chain, self.seq, self.hash)
    }
}

impl FromStr for ChainHead {
    type Err = String;
    fn from_str(s: &str) -> Result<ChainHead, String> {
        let mut parts = s.trim().splitn(3, ':');
        let (Some(chain), Some(seq), Some(hash)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "`{s}` is not CHAIN:SEQ:HASH (e.g. approved_log:41:9f2c…, as published)"
            ));
        };
        let seq = seq
            .parse()
            .map_err(|_| format!("`{seq}` in `{s}` is not a sequence number"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{hash}` in `{s}` is not a SHA-256 in hex"));
        }
        Ok(ChainHead {
            chain: chain.parse()?,
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// Both heads, as one statement: what is signed and published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heads {
    pub approved_log: Option<HeadRef>,
    pub timeline: Option<HeadRef>,
}

impl Heads {
    pub fn get(&self, chain: Chain) -> Option<&HeadRef> {
        match chain {
            Chain::ApprovedLog => self.approved_log.as_ref(),
            Chain::Timeline => self.timeline.as_ref(),
        }
    }

    pub(super) fn set(&mut self, chain: Chain, head: HeadRef) {
        match chain {
            Chain::ApprovedLog => self.approved_log = Some(head),
            Chain::Timeline => self.timeline = Some(head),
        }
    }

    /// The heads as `CHAIN:SEQ:HASH`, empty chains left out.
    pub fn named(&self) -> Vec<ChainHead> {
        Chain::ALL
            .into_iter()
            .filter_map(|chain| {
                self.get(chain).map(|h| ChainHead {
                    chain,
                    seq: h.seq,
                    hash: h.hash.clone(),
                })
            })
            .collect()
    }

    /// The bytes signed: versioned and line-based, so that the signature can be checked by
    /// hand (`openssl pkeyutl -verify -rawin`) without tocsin.
    pub fn message(&self) -> Vec<u8> {
        let line = |chain: Chain| match self.get(chain) {
            Some(h) => format!("{chain} {} {}\n", h.seq, h.hash),
            None => format!("{chain} empty\n"),
        };
        format!(
            "tocsin chain heads v1\n{}{}",
            line(Chain::ApprovedLog),
            line(Chain::Timeline)
        )
        .into_bytes()
    }
}

/// The signed statement kept in `meta` (and published).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHeads {
    #[serde(flatten)]
    pub heads: Heads,
    /// Base64 Ed25519 signature of [`Heads::message`].
    pub signature: String,
}

/// The store's signing state: the key, whether signing is allowed yet, and the last statement
/// known to verify (so an append need not verify the previous signature again).
#[derive(Default)]
pub(super) struct Signing {
    pub key: Option<Arc<SigningKey>>,
    /// Off until the store verified at start: signing before that would vouch for whatever an
    /// intruder left. Off again once a verification fails.
    pub enabled: bool,
    pub known_valid: Option<SignedHeads>,
}

impl Signing {
    /// Whether `signed` verifies under the key; remembered when it does.
    pub fn verifies(&mut self, signed: &SignedHeads) -> bool {
        if self.known_valid.as_ref() == Some(signed) {
            return true;
        }
        let Some(key) = &self.key else {
            return false;
        };
        let ok = key
            .public_key()
            .verifies(&signed.heads.message(), &signed.signature);
        if ok {
            self.known_valid = Some(signed.clone());
        }
        ok
    }

    /// Signs `heads` with the key (which the caller checked is there).
    pub fn sign(&mut self, heads: Heads) -> Option<SignedHeads> {
        let key = self.key.as_ref()?;
        let signature = key.sign(&heads.message());
        let signed = SignedHeads { heads, signature };
        self.known_valid = Some(signed.clone());
        Some(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify_and_texts_round_trip() {
        let (text, public) = SigningKey::generate().unwrap();
        let key = SigningKey::parse(&text).unwrap();
        assert_eq!(key.public_key(), public);
        let heads = Heads {
            approved_log: Some(HeadRef {
                seq: 3,
                hash: "ab".repeat(32),
            }),
            timeline: None,
        };
        let sig = key.sign(&heads.message());
        let public: PublicKey = public.to_string().parse().unwrap();
        assert!(public.verifies(&heads.message(), &sig));
        let mut other = heads.clone();
        other.timeline = Some(HeadRef {
            seq: 0,
            hash: "cd".repeat(32),
        });
        assert!(!public.verifies(&other.message(), &sig));
        assert_eq!(
            String::from_utf8(heads.message()).unwrap(),
            format!(
                "tocsin chain heads v1\napproved_log 3 {}\ntimeline empty\n",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn a_public_key_is_not_taken_for_a_signing_key_nor_the_reverse() {
        let (text, public) = SigningKey::generate().unwrap();
        assert!(matches!(
            SigningKey::parse(&public.to_string()),
            Err(KeyError::NotPkcs8(_))
        ));
        assert!(matches!(
            text.parse::<PublicKey>(),
            Err(KeyError::PublicLength(_))
        ));
    }

    #[test]
    fn openssl_pem_keys_are_read() {
        // `openssl genpkey -algorithm ed25519` (PKCS#8 v1, no public key inside).
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEICpFAjTjJB2/BeaqK6IwnkJRzxAj22r68ovasvd6yNKv\n\
                   -----END PRIVATE KEY-----\n";
        let key = SigningKey::parse(pem).unwrap();
        let sig = key.sign(b"x");
        assert!(key.public_key().verifies(b"x", &sig));
    }

    #[test]
    fn expected_heads_parse_as_published() {
        let h: ChainHead = format!("timeline:7:{}", "AB".repeat(32)).parse().unwrap();
        assert_eq!(h.chain, Chain::Timeline);
        assert_eq!(h.seq, 7);
        assert_eq!(h.to_string(), format!("timeline:7:{}", "ab".repeat(32)));
        assert!("timeline:7".parse::<ChainHead>().is_err());
        assert!("log:7:00".parse::<ChainHead>().is_err());
        assert!(
            format!("timeline:x:{}", "ab".repeat(32))
                .parse::<ChainHead>()
                .is_err()
        );
    }
}
