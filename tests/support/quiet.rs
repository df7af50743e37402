//! "It did not happen", proven on state instead of on time.
//!
//! Pages leave at most one a second, so "no page 500 ms later" proves nothing: a wrong page
//! may still wait for its slot. [`settle`] first proves the daemon looked and judged (polls of
//! the account whose observations are all committed, every button press and command handled),
//! then that nothing is left to send (the outbox empty: every queued page, edit, reminder and
//! ring was sent or dropped), and only then reads what happened: the incidents in the store
//! and every message and edit the fake Bot API took. Anything wrongly found is in the store by
//! then, and anything wrongly queued has reached the fake.

use tocsin::model::Incident;
use tocsin_fakes::telegram::{EditedMessage, FakeBotApi, SentMessage};

use super::*;

/// A running daemon as a test reads it: in this process ([`TestApp`]: its store and health)
/// or a child process ([`Remote`]: `/metrics` and the API).
#[allow(async_fn_in_trait)]
pub trait Observed {
    /// Polls of `account` whose observations the pipeline has all judged.
    async fn judged_polls(&self, account: &str) -> u64;
    /// Pages, edits, reminders and rings waiting on every channel.
    async fn outbox_depth(&self) -> usize;
    async fn incidents(&self) -> Vec<Incident>;
    fn bot(&self) -> &FakeBotApi;
}

impl Observed for TestApp {
    async fn judged_polls(&self, account: &str) -> u64 {
        self.health
            .snapshot()
            .get(account)
            .map_or(0, |h| h.judged_polls)
    }

    async fn outbox_depth(&self) -> usize {
        self.store.outbox_depth().unwrap().0
    }

    async fn incidents(&self) -> Vec<Incident> {
        self.store.incidents().unwrap()
    }

    fn bot(&self) -> &FakeBotApi {
        &self.bot
    }
}

/// A daemon in another process, read through its HTTP server.
pub struct Remote<'a> {
    pub api: String,
    pub bot: &'a FakeBotApi,
}

impl Remote<'_> {
    async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.api))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

impl Observed for Remote<'_> {
    async fn judged_polls(&self, account: &str) -> u64 {
        let name = format!("tocsin_source_judged_polls{{account=\"{account}\"}}");
        self.metric(&name).await.unwrap_or(0.0) as u64
    }

    async fn outbox_depth(&self) -> usize {
        self.metric("tocsin_outbox_depth").await.unwrap_or(f64::MAX) as usize
    }

    async fn incidents(&self) -> Vec<Incident> {
        api_incidents(&self.api).await
    }

    fn bot(&self) -> &FakeBotApi {
        self.bot
    }
}

/// What the daemon did, read once it had judged and sent everything.
pub struct Settled {
    pub incidents: Vec<Incident>,
    pub sent: Vec<SentMessage>,
    pub edits: Vec<EditedMessage>,
}

/// Waits until `polls` more polls of `account` are judged, every update the fake Bot API
/// queued was handled, and the outbox is empty; then reads the store and the fake.
pub async fn settle(d: &impl Observed, account: &str, polls: u64) -> Settled {
    let target = d.judged_polls(account).await + polls;
    until_async(
        || async { d.judged_polls(account).await >= target },
        "judged polls",
    )
    .await;
    // The bot confirms an update (and the fake forgets it) with the next getUpdates, which it
    // sends only once it has handled the batch: replies sent, actions committed (takedowns and
    // pauses run beside the loop: a test waits on their answer).
    until(|| d.bot().pending_updates() == 0, "every update handled").await;
    until_async(
        || async { d.outbox_depth().await == 0 },
        "every queued page sent or dropped",
    )
    .await;
    Settled {
        incidents: d.incidents().await,
        sent: d.bot().sent(),
        edits: d.bot().edits(),
    }
}

impl Settled {
    /// The incident that holds `object`: as its own, or as a member of its burst.
    pub fn holding(&self, object: &str) -> Option<&Incident> {
        self.incidents
            .iter()
            .find(|i| i.object == object || i.members.iter().any(|m| m.object == object))
    }

    /// No incident holds `object`.
    pub fn assert_not_held(&self, object: &str, why: &str) {
        if let Some(inc) = self.holding(object) {
            panic!("{why}: incident #{} holds {object}: {inc:?}", inc.id);
        }
    }

    /// Every message and edit text the chat got that contains `needle`.
    pub fn mentions(&self, needle: &str) -> Vec<String> {
        self.sent
            .iter()
            .map(|m| &m.text)
            .chain(self.edits.iter().map(|e| &e.text))
            .filter(|t| t.contains(needle))
            .cloned()
            .collect()
    }

    /// No message or edit contains `needle`.
    pub fn assert_not_mentioned(&self, needle: &str, why: &str) {
        let found = self.mentions(needle);
        assert!(found.is_empty(), "{why}: {needle:?} in {found:?}");
    }

    /// Incident pages (messages with buttons) that contain `needle`.
    pub fn pages_with(&self, needle: &str) -> Vec<&SentMessage> {
        self.sent
            .iter()
            .filter(|m| m.reply_markup.is_some() && m.text.contains(needle))
            .collect()
    }
}

/// [`until`] for a condition that must await.
pub async fn until_async<F, Fut>(f: F, what: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every incident, as the daemon at `api` (`http://HOST:PORT`) serves them.
pub async fn api_incidents(api: &str) -> Vec<Incident> {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{api}/api/v1/incidents"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_value(body["incidents"].clone()).unwrap()
}
