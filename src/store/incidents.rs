//! Incident records, their dedup index, and the account mutes that hold pages back.

use sled::transaction::ConflictableTransactionError;

use super::{
    HELD, INCIDENT_SEQ, MUTE, Store, StoreError, Tx, TxResult, be, decode, encode, from_be,
    prefixed,
};
use crate::model::{Incident, Mute};

impl Store {
    pub fn incident(&self, id: u64) -> Result<Option<Incident>, StoreError> {
        self.incidents
            .get(be(id))?
            .map(|v| decode("incidents", &v))
            .transpose()
    }

    /// All incidents, oldest first.
    pub fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.incidents
            .iter()
            .values()
            .map(|v| decode("incidents", &v?))
            .collect()
    }

    pub fn incident_by_key(&self, key: &str) -> Result<Option<Incident>, StoreError> {
        match self.incident_keys.get(key.as_bytes())? {
            Some(id) => self.incident(from_be("incident_keys", &id)?),
            None => Ok(None),
        }
    }

    /// Every recorded mute, expired or not: expiry is a comparison with now, never a write.
    pub fn mutes(&self) -> Result<Vec<Mute>, StoreError> {
        self.meta
            .scan_prefix(MUTE)
            .values()
            .map(|v| decode("meta/mute", &v?))
            .collect()
    }

    /// Incidents whose first page a mute held back, by id.
    pub fn held(&self) -> Result<Vec<u64>, StoreError> {
        self.meta
            .scan_prefix(HELD)
            .keys()
            .map(|k| from_be("meta/held", &k?[HELD.len()..]))
            .collect()
    }
}

impl Tx<'_> {
    pub fn incident(&self, id: u64) -> TxResult<Option<Incident>> {
        self.incidents
            .get(be(id))?
            .map(|v| decode("incidents", &v))
            .transpose()
            .map_err(ConflictableTransactionError::Abort)
    }

    pub fn incident_by_key(&self, key: &str) -> TxResult<Option<Incident>> {
        match self.keys.get(key.as_bytes())? {
            Some(id) => self.incident(
                from_be("incident_keys", &id).map_err(ConflictableTransactionError::Abort)?,
            ),
            None => Ok(None),
        }
    }

    /// Points another key (a burst member, a group) at an incident.
    pub fn index_incident(&self, key: &str, id: u64) -> TxResult<()> {
        self.keys.insert(key.as_bytes(), &be(id))?;
        Ok(())
    }

    /// Allocates the next incident id: small numbers, because responders type them (`/ack 3`).
    pub fn next_incident_id(&self) -> TxResult<u64> {
        self.next(INCIDENT_SEQ)
    }

    /// Stores an incident and points its dedup key at it.
    pub fn put_incident(&self, incident: &Incident) -> TxResult<()> {
        self.incidents.insert(&be(incident.id), encode(incident))?;
        self.keys
            .insert(incident.dedup_key().as_bytes(), &be(incident.id))?;
        Ok(())
    }

    pub fn mute(&self, account: &str) -> TxResult<Option<Mute>> {
        self.meta
            .get(prefixed(MUTE, account.as_bytes()))?
            .map(|v| decode("meta/mute", &v))
            .transpose()
            .map_err(ConflictableTransactionError::Abort)
    }

    pub fn put_mute(&self, mute: &Mute) -> TxResult<()> {
        self.meta
            .insert(prefixed(MUTE, mute.account.as_bytes()), encode(mute))?;
        Ok(())
    }

    pub fn remove_mute(&self, account: &str) -> TxResult<()> {
        self.meta.remove(prefixed(MUTE, account.as_bytes()))?;
        Ok(())
    }

    /// Marks an incident's page as held back by a mute, to be sent when the mute ends.
    pub fn hold(&self, incident_id: u64) -> TxResult<()> {
        self.meta.insert(prefixed(HELD, &be(incident_id)), &[])?;
        Ok(())
    }

    pub fn is_held(&self, incident_id: u64) -> TxResult<bool> {
        Ok(self.meta.get(prefixed(HELD, &be(incident_id)))?.is_some())
    }

    /// Clears the mark set by [`Tx::hold`]; true if it was set.
    pub fn unhold(&self, incident_id: u64) -> TxResult<bool> {
        Ok(self
            .meta
            .remove(prefixed(HELD, &be(incident_id)))?
            .is_some())
    }
}
