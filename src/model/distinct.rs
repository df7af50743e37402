//! Counting distinct addresses in bounded space.
//!
//! A leaked customer list must be counted, never kept: addresses are reduced to 64-bit hashes
//! keyed with a random per-install salt ([`AddressKey`]), so the store holds nothing that could
//! be matched against a list of known addresses elsewhere. [`Distinct`] keeps the hashes
//! exactly up to [`EXACT_LIMIT`], then folds them into a HyperLogLog (16 KiB, about 0.8 %
//! standard error) and says so ([`Distinct::is_estimate`]): one message with 850,000 addresses
//! in `To:` costs the same as one with 100,001.

use std::collections::HashSet;

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Distinct values counted exactly; one more turns the set into an estimate.
pub const EXACT_LIMIT: usize = 100_000;
/// HyperLogLog precision: 2^14 one-byte registers.
const P: u32 = 14;
const M: usize = 1 << P;

/// Hashes addresses (and domains) with the install's salt. Built once per listener or
/// judgement; hashing clones a prepared SHA-256 state, one compression per address.
#[derive(Clone)]
pub struct AddressKey {
    prepared: Sha256,
}

impl AddressKey {
    /// `salt`: random bytes kept in the state dir (one block, so hashing costs one more).
    pub fn new(salt: &[u8; 64]) -> AddressKey {
        AddressKey {
            prepared: Sha256::new_with_prefix(salt),
        }
    }

    /// The keyed 64-bit hash of an already normalised (lowercased) address or domain.
    pub fn hash(&self, value: &str) -> u64 {
        let d = self
            .prepared
            .clone()
            .chain_update(value.as_bytes())
            .finalize();
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes of a 32-byte digest"))
    }
}

impl std::fmt::Debug for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddressKey([salted])")
    }
}

/// A set of keyed hashes: exact, then a HyperLogLog past [`EXACT_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Distinct {
    Exact(HashSet<u64>),
    Estimate(Box<[u8; M]>),
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Exact(HashSet::new())
    }
}

impl Distinct {
    /// Adds a hash; true if it was (or, estimated, may have been) new.
    pub fn insert(&mut self, hash: u64) -> bool {
        match self {
            Distinct::Exact(set) => {
                let new = set.insert(hash);
                if set.len() > EXACT_LIMIT {
                    self.fold();
                }
                new
            }
            Distinct::Estimate(regs) => hll_insert(regs, hash),
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Distinct) {
        match other {
            Distinct::Exact(set) => {
                for h in set {
                    self.insert(*h);
                }
            }
            Distinct::Estimate(theirs) => {
                self.fold();
                if let Distinct::Estimate(ours) = self {
                    for (o, t) in ours.iter_mut().zip(theirs.iter()) {
                        *o = (*o).max(*t);
                    }
                }
            }
        }
    }

    /// How many distinct values were added (estimated past [`EXACT_LIMIT`]).
    pub fn count(&self) -> u64 {
        match self {
            Distinct::Exact(set) => set.len() as u64,
            Distinct::Estimate(regs) => hll_count(regs),
        }
    }

    pub fn is_estimate(&self) -> bool {
        matches!(self, Distinct::Estimate(_))
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Distinct::Exact(s) if s.is_empty())
    }

    /// Turns the exact set into the estimate (keeping what it counted).
    fn fold(&mut self) {
        if let Distinct::Exact(set) = self {
            let mut regs = Box::new([0u8; M]);
            for h in set.iter() {
                hll_insert(&mut regs, *h);
            }
            *self = Distinct::Estimate(regs);
        }
    }

    /// The stored form: a tag byte, then the sorted hashes (little-endian) or the registers.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Distinct::Exact(set) => {
                let mut sorted: Vec<u64> = set.iter().copied().collect();
                sorted.sort_unstable();
                let mut out = Vec::with_capacity(1 + sorted.len() * 8);
                out.push(b'e');
                for h in sorted {
                    out.extend_from_slice(&h.to_le_bytes());
                }
                out
            }
            Distinct::Estimate(regs) => {
                let mut out = Vec::with_capacity(1 + M);
                out.push(b'h');
                out.extend_from_slice(&regs[..]);
                out
            }
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Distinct, String> {
        match bytes.split_first() {
            None => Ok(Distinct::default()),
            Some((b'e', rest)) if rest.len() % 8 == 0 && rest.len() / 8 <= EXACT_LIMIT => {
                Ok(Distinct::Exact(
                    rest.chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                        .collect(),
                ))
            }
            Some((b'h', rest)) if rest.len() == M => {
                let mut regs = Box::new([0u8; M]);
                regs.copy_from_slice(rest);
                Ok(Distinct::Estimate(regs))
            }
            _ => Err("not a distinct-count sketch".into()),
        }
    }
}

fn hll_insert(regs: &mut [u8; M], hash: u64) -> bool {
    let index = (hash >> (64 - P)) as usize;
    // The rank of the first set bit of the remaining 50 bits (a sentinel bit bounds it).
    let rank = ((hash << P) | (1 << (P - 1))).leading_zeros() as u8 + 1;
    if rank > regs[index] {
        regs[index] = rank;
        true
    } else {
        false
    }
}

/// The HyperLogLog estimate with the small-range (linear counting) correction of Flajolet et
/// al.; 64-bit hashes need no large-range correction.
fn hll_count(regs: &[u8; M]) -> u64 {
    let m = M as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let sum: f64 = regs.iter().map(|r| 2f64.powi(-i32::from(*r))).sum();
    let raw = alpha * m * m / sum;
    let zeros = regs.iter().filter(|r| **r == 0).count();
    let estimate = if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    };
    estimate.round() as u64
}

impl Serialize for Distinct {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for Distinct {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)?;
        Distinct::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AddressKey {
        AddressKey::new(&[7; 64])
    }

    #[test]
    fn exact_to_the_limit_then_an_estimate_within_two_percent() {
        let k = key();
        let mut d = Distinct::default();
        for i in 0..EXACT_LIMIT {
            d.insert(k.hash(&format!("c{i}@cust.example")));
        }
        assert!(!d.is_estimate());
        assert_eq!(d.count(), EXACT_LIMIT as u64);
        assert!(!d.insert(k.hash("c0@cust.example")), "a repeat is not new");
        for i in EXACT_LIMIT..850_000 {
            d.insert(k.hash(&format!("c{i}@cust.example")));
        }
        assert!(d.is_estimate());
        let n = d.count() as f64;
        assert!((n - 850_000.0).abs() / 850_000.0 < 0.02, "{n}");
        let back = Distinct::from_bytes(&d.to_bytes()).unwrap();
        assert_eq!(back, d);
        assert_eq!(d.to_bytes().len(), 1 + M, "bounded whatever was counted");
    }

    #[test]
    fn merging_counts_the_union() {
        let k = key();
        let mut a = Distinct::default();
        let mut b = Distinct::default();
        for i in 0..1000 {
            a.insert(k.hash(&format!("a{i}")));
            b.insert(k.hash(&format!("a{}", i + 500)));
        }
        a.merge(&b);
        assert_eq!(a.count(), 1500);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Distinct>(&json).unwrap(), a);
        // An estimate merged into an exact set makes an estimate of the union.
        let mut big = Distinct::default();
        for i in 0..150_000 {
            big.insert(k.hash(&format!("b{i}")));
        }
        a.merge(&big);
        assert!(a.is_estimate());
        let n = a.count() as f64;
        assert!((n - 151_500.0).abs() / 151_500.0 < 0.02, "{n}");
    }

    #[test]
    fn the_salt_keys_the_hash() {
        assert_ne!(
            AddressKey::new(&[1; 64]).hash("a@b.example"),
            AddressKey::new(&[2; 64]).hash("a@b.example")
        );
        assert!(Distinct::from_bytes(b"x").is_err());
    }
}
