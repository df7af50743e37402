//! One watched Bluesky account's state, shared by the poller ([`super::watch`]) and the
//! Jetstream push ([`super::jetstream`]): what the account looks like and where each stopped.

use std::collections::BTreeMap;

use tokio::sync::Mutex;
use url::Url;

use super::{api::cmp_rkey, identity::Identity};
use crate::{
    config::Account,
    model::{ObservationKind, Profile},
    watch::SourceContext,
};

/// What the account looks like, assembled from its three origins.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) identity: BTreeMap<String, String>,
    pub(super) record: BTreeMap<String, String>,
    pub(super) status: String,
    /// The newest post of the first poll: anything at or before it is history.
    pub(super) origin: Option<String>,
    pub(super) pds: Option<Url>,
    /// The stream's last `time_us`.
    pub(super) stream_cursor: Option<i64>,
}

impl State {
    fn profile(&self) -> Profile {
        let mut fields = self.identity.clone();
        fields.extend(self.record.clone());
        fields.insert("account_status".into(), self.status.clone());
        Profile { fields }
    }

    pub(super) fn set_identity(&mut self, id: &Identity) {
        self.pds = Some(id.pds.clone());
        self.identity = BTreeMap::from([
            ("handle".to_owned(), id.handle.clone()),
            ("pds".to_owned(), id.pds.to_string()),
            ("signing_key".to_owned(), id.signing_key.clone()),
            ("rotation_keys".to_owned(), id.rotation_keys.join(", ")),
        ]);
    }

    pub(super) fn history(&self, rkey: &str) -> bool {
        self.origin
            .as_deref()
            .is_some_and(|o| cmp_rkey(rkey, o) != std::cmp::Ordering::Greater)
    }
}

/// One watched Bluesky account: the poller and the stream share it.
pub(super) struct Watch {
    pub(super) account: Account,
    pub(super) ctx: SourceContext,
    pub(super) did: String,
    pub(super) state: Mutex<State>,
    pub(super) origin_key: String,
    pub(super) cursor_key: String,
    pub(super) stream_key: String,
}

impl Watch {
    pub(super) fn name(&self) -> &str {
        &self.account.name
    }

    /// Emits the merged profile under the lock, so it reaches the pipeline in the order built.
    pub(super) async fn emit_profile(&self, state: &State) -> bool {
        self.ctx
            .emit(self.name(), ObservationKind::Profile(state.profile()))
            .await
    }

    pub(super) async fn checkpoint(&self, cursor: &str, value: String) -> bool {
        self.ctx
            .emit(
                self.name(),
                ObservationKind::Checkpoint {
                    cursor: cursor.into(),
                    value,
                },
            )
            .await
    }
}
