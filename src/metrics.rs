//! What an operator graphs and alerts on, in Prometheus text format at `/metrics`.
//!
//! Counters and histograms are updated where things happen (a page delivered, a finding made).
//! Values that already live elsewhere — incidents by state and the outbox in sled, each source's
//! health, the refusal counters of the bot and the HTTP server — are read at scrape time rather
//! than mirrored, so the two can never disagree.

use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64, Ordering},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{model::State, store::Store, watch::Health};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabel {
    pub account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObservationLabels {
    pub account: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelReasonLabels {
    pub channel: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderReasonLabels {
    pub provider: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Refusal counters owned by the bot and the HTTP server; read at scrape time.
#[derive(Clone, Debug, Default)]
pub struct Refusals {
    /// Commands and button presses from outside the allowlist or the on-call chat.
    pub unauthorized_actions: Arc<AtomicU64>,
    /// API requests refused (missing or wrong token, bad body).
    pub api_rejected: Arc<AtomicU64>,
    /// Unix time (s) of the last successful `getUpdates`; 0 before the first.
    pub bot_last_ok: Arc<AtomicI64>,
}

/// Notices from a platform's sender in a registered mailbox (`[[email.imap]]`) that the mail
/// provider did not vouch for, since start: `tocsin_imap_unvouched_notices`. Kept here, where
/// the IMAP feeds count and the scrape reads, so that the registry imports nothing of the feeds.
pub static IMAP_UNVOUCHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub struct Metrics {
    registry: Registry,
    observations: Family<ObservationLabels, Counter>,
    findings: Family<RuleLabel, Counter>,
    pages_delivered: Counter,
    page_failures: Family<ReasonLabel, Counter>,
    /// Successes whose body was not what the Bot API method documents, by method.
    page_unexpected_answers: Family<MethodLabel, Counter>,
    /// Pages and messages Telegram's worker gave up on (paged to the fallbacks instead).
    page_dead_letters: Counter,
    /// Updates from `getUpdates` that could not be parsed, by update kind.
    bot_updates_unparsed: Family<KindLabel, Counter>,
    /// Commands the bot did not run: addressed to another bot, or forwarded.
    bot_commands_ignored: Family<ReasonLabel, Counter>,
    /// Queued → confirmed by Telegram.
    page_delivery_seconds: Histogram,
    /// Platform timestamp of the change → page confirmed (posts, where the platform says when).
    change_to_page_seconds: Histogram,
    /// Detection → page confirmed.
    detect_to_page_seconds: Histogram,
    /// Per channel (telegram, pagerduty:NAME, webhook:NAME).
    channel_deliveries: Family<ChannelLabel, Counter>,
    channel_failures: Family<ChannelReasonLabels, Counter>,
    heartbeats: Counter,
    heartbeat_failures: Counter,
    /// Mail summaries committed by the provider webhooks (a SendGrid batch folds its events per message).
    webhook_summaries: Family<ProviderLabel, Counter>,
    /// Provider webhook requests refused, by provider and reason.
    webhook_rejected: Family<ProviderReasonLabels, Counter>,
    /// SMTP journal connections and commands refused: `peer` (outside `allow_from`), `auth`
    /// (wrong credentials), `sessions` (over `max_sessions`), `timeout` (transaction_timeout).
    journal_refused: Family<ReasonLabel, Counter>,
    /// Provider events already accepted once (a retry or a replay): answered 200, not judged.
    webhook_duplicates: Family<ProviderLabel, Counter>,
    /// Connections answered 503 because their listener was at `max_connections`.
    connections_refused: Family<ListenerLabel, Counter>,
    // Scrape-time values.
    incidents: Family<StateLabel, Gauge>,
    outbox_depth: Gauge,
    outbox_oldest_age_seconds: Gauge,
    polls: Family<AccountLabel, Gauge>,
    judged_polls: Family<AccountLabel, Gauge>,
    poll_errors: Family<AccountLabel, Gauge>,
    rate_limit_remaining: Family<AccountLabel, Gauge>,
    unauthorized_actions: Gauge,
    /// Unix time (s) of the last successful `getUpdates`: what `/readyz` ages the bot by.
    bot_updates_last_ok: Gauge,
    imap_unvouched_notices: Gauge,
    /// By reason; the provider webhooks will add their own reasons.
    rejected_requests: Family<ReasonLabel, Gauge>,
    store: Store,
    health: Health,
    pub refusals: Refusals,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ]
    .into_iter()
}

impl Metrics {
    pub fn new(store: Store, health: Health) -> Metrics {
        let mut registry = Registry::with_prefix("tocsin");
        let m = Metrics {
            observations: Family::default(),
            findings: Family::default(),
            pages_delivered: Counter::default(),
            page_failures: Family::default(),
            page_unexpected_answers: Family::default(),
            page_dead_letters: Counter::default(),
            bot_updates_unparsed: Family::default(),
            bot_commands_ignored: Family::default(),
            page_delivery_seconds: Histogram::new(latency_buckets()),
            change_to_page_seconds: Histogram::new(latency_buckets()),
            detect_to_page_seconds: Histogram::new(latency_buckets()),
            channel_deliveries: Family::default(),
            channel_failures: Family::default(),
            heartbeats: Counter::default(),
            heartbeat_failures: Counter::default(),
            webhook_summaries: Family::default(),
            webhook_rejected: Family::default(),
            journal_refused: Family::default(),
            webhook_duplicates: Family::default(),
            connections_refused: Family::default(),
            incidents: Family::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_age_seconds: Gauge::default(),
            polls: Family::default(),
            judged_polls: Family::default(),
            poll_errors: Family::default(),
            rate_limit_remaining: Family::default(),
            unauthorized_actions: Gauge::default(),
            bot_updates_last_ok: Gauge::default(),
            imap_unvouched_notices: Gauge::default(),
            rejected_requests: Family::default(),
            store,
            health,
            refusals: Refusals::default(),
            registry: Registry::default(),
        };
        registry.register(
            "observations",
            "Observations reported by sources",
            m.observations.clone(),
        );
        registry.register("findings", "Findings by rule", m.findings.clone());
        registry.register(
            "pages_delivered",
            "Pages and page edits confirmed by Telegram",
            m.pages_delivered.clone(),
        );
        registry.register(
            "page_failures",
            "Failed delivery attempts by kind",
            m.page_failures.clone(),
        );
        registry.register(
            "page_unexpected_answers",
            "Bot API successes whose body is not what the method documents, taken as delivered",
            m.page_unexpected_answers.clone(),
        );
        registry.register(
            "page_dead_letters",
            "Pages and messages Telegram's worker gave up on after its retries (paged to the fallbacks)",
            m.page_dead_letters.clone(),
        );
        registry.register(
            "bot_updates_unparsed",
            "Updates from getUpdates that could not be parsed, by kind",
            m.bot_updates_unparsed.clone(),
        );
        registry.register(
            "bot_commands_ignored",
            "Commands not run, by reason (other_bot: addressed to another bot; forwarded)",
            m.bot_commands_ignored.clone(),
        );
        registry.register(
            "page_delivery_seconds",
            "Time from queueing a page to Telegram's confirmation",
            m.page_delivery_seconds.clone(),
        );
        registry.register(
            "change_to_page_seconds",
            "Time from the platform's timestamp of a change to the first page",
            m.change_to_page_seconds.clone(),
        );
        registry.register(
            "detect_to_page_seconds",
            "Time from detection to the first page",
            m.detect_to_page_seconds.clone(),
        );
        registry.register(
            "channel_deliveries",
            "Pages and page updates confirmed, by channel",
            m.channel_deliveries.clone(),
        );
        registry.register(
            "channel_failures",
            "Failed delivery attempts by channel and kind",
            m.channel_failures.clone(),
        );
        registry.register(
            "heartbeats",
            "Heartbeat pings accepted by the monitor",
            m.heartbeats.clone(),
        );
        registry.register(
            "heartbeat_failures",
            "Heartbeat pings that failed or were refused",
            m.heartbeat_failures.clone(),
        );
        registry.register(
            "webhook_summaries",
            "Mail summaries (one per message) committed by the provider webhooks",
            m.webhook_summaries.clone(),
        );
        registry.register(
            "webhook_rejected",
            "Provider webhook requests refused, by provider and reason",
            m.webhook_rejected.clone(),
        );
        registry.register(
            "journal_refused",
            "SMTP journal refusals by reason (peer, auth, sessions, timeout)",
            m.journal_refused.clone(),
        );
        registry.register(
            "webhook_duplicates",
            "Provider events already accepted once (retries, replays): answered 200, not judged again",
            m.webhook_duplicates.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Connections refused because their listener was at general.max_connections",
            m.connections_refused.clone(),
        );
        registry.register("incidents", "Incidents by state", m.incidents.clone());
        registry.register(
            "outbox_depth",
            "Pages waiting for delivery",
            m.outbox_depth.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest page waiting for delivery",
            m.outbox_oldest_age_seconds.clone(),
        );
        registry.register(
            "source_polls",
            "Polls per source since start",
            m.polls.clone(),
        );
        registry.register(
            "source_judged_polls",
            "Polls per source whose observations the pipeline has all committed",
            m.judged_polls.clone(),
        );
        registry.register(
            "source_poll_errors",
            "Failed polls per source since start",
            m.poll_errors.clone(),
        );
        registry.register(
            "source_rate_limit_remaining",
            "Requests left in the platform's rate-limit window",
            m.rate_limit_remaining.clone(),
        );
        registry.register(
            "unauthorized_actions",
            "Refused commands and button presses since start",
            m.unauthorized_actions.clone(),
        );
        registry.register(
            "bot_updates_last_ok_seconds",
            "Unix time of the last successful getUpdates (0 before the first)",
            m.bot_updates_last_ok.clone(),
        );
        registry.register(
            "imap_unvouched_notices",
            "Platform mail in a registered mailbox without the provider's dkim=pass, since start",
            m.imap_unvouched_notices.clone(),
        );
        registry.register(
            "rejected_requests",
            "Refused HTTP API requests since start by reason",
            m.rejected_requests.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn observation(&self, account: &str, kind: &str) {
        self.observations
            .get_or_create(&ObservationLabels {
                account: account.into(),
                kind: kind.into(),
            })
            .inc();
    }

    pub fn finding(&self, rule: &str) {
        self.findings
            .get_or_create(&RuleLabel { rule: rule.into() })
            .inc();
    }

    /// A page confirmed: `queued_s` since it was queued; the first page of an incident also
    /// carries the change and detection latencies.
    pub fn page_delivered(&self, queued_s: f64, first: Option<(Option<f64>, f64)>) {
        self.pages_delivered.inc();
        self.channel_delivered(crate::store::TELEGRAM);
        self.page_delivery_seconds.observe(queued_s.max(0.0));
        if let Some((since_change, since_detect)) = first {
            if let Some(c) = since_change {
                self.change_to_page_seconds.observe(c.max(0.0));
            }
            self.detect_to_page_seconds.observe(since_detect.max(0.0));
        }
    }

    pub fn page_failed(&self, reason: &str) {
        self.page_failures
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
        self.channel_failed(crate::store::TELEGRAM, reason);
    }

    /// Telegram answered success with a body the method does not document.
    pub fn page_unexpected_answer(&self, method: &str) {
        self.page_unexpected_answers
            .get_or_create(&MethodLabel {
                method: method.into(),
            })
            .inc();
    }

    pub fn page_dead_letter(&self) {
        self.page_dead_letters.inc();
    }

    /// An update the bot could not parse.
    pub fn update_unparsed(&self, kind: &str) {
        self.bot_updates_unparsed
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// A command the bot did not run (see `bot`).
    pub fn command_ignored(&self, reason: &str) {
        self.bot_commands_ignored
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn channel_delivered(&self, channel: &str) {
        self.channel_deliveries
            .get_or_create(&ChannelLabel {
                channel: channel.into(),
            })
            .inc();
    }

    pub fn channel_failed(&self, channel: &str, reason: &str) {
        self.channel_failures
            .get_or_create(&ChannelReasonLabels {
                channel: channel.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn webhook_accepted(&self, provider: &str, events: usize) {
        self.webhook_summaries
            .get_or_create(&ProviderLabel {
                provider: provider.into(),
            })
            .inc_by(events as u64);
    }

    pub fn webhook_rejected(&self, provider: &str, reason: &str) {
        self.webhook_rejected
            .get_or_create(&ProviderReasonLabels {
                provider: provider.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn journal_refused(&self, reason: &str) {
        self.journal_refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn webhook_duplicates(&self, provider: &str, events: usize) {
        self.webhook_duplicates
            .get_or_create(&ProviderLabel {
                provider: provider.into(),
            })
            .inc_by(events as u64);
    }

    pub fn connection_refused(&self, listener: &str) {
        self.connections_refused
            .get_or_create(&ListenerLabel {
                listener: listener.into(),
            })
            .inc();
    }

    pub fn heartbeat(&self, ok: bool) {
        if ok {
            self.heartbeats.inc();
        } else {
            self.heartbeat_failures.inc();
        }
    }

    /// The text exposition, with scrape-time values refreshed.
    pub fn render(&self) -> String {
        if let Ok(all) = self.store.incidents() {
            for state in [State::Open, State::Acked, State::Resolved] {
                let n = all.iter().filter(|i| i.state == state).count();
                self.incidents
                    .get_or_create(&StateLabel {
                        state: state.as_str().into(),
                    })
                    .set(n as i64);
            }
        }
        if let Ok((depth, oldest)) = self.store.outbox_depth() {
            self.outbox_depth.set(depth as i64);
            let age = oldest.map_or(0, |t| (chrono::Utc::now() - t).num_seconds().max(0));
            self.outbox_oldest_age_seconds.set(age);
        }
        for (account, h) in self.health.snapshot() {
            let label = AccountLabel { account };
            self.polls.get_or_create(&label).set(h.polls as i64);
            self.judged_polls
                .get_or_create(&label)
                .set(h.judged_polls as i64);
            self.poll_errors.get_or_create(&label).set(h.errors as i64);
            if let Some(rl) = &h.rate_limit {
                self.rate_limit_remaining
                    .get_or_create(&label)
                    .set(rl.remaining as i64);
            }
        }
        let r = &self.refusals;
        self.unauthorized_actions
            .set(r.unauthorized_actions.load(Ordering::Relaxed) as i64);
        self.bot_updates_last_ok
            .set(r.bot_last_ok.load(Ordering::Relaxed));
        self.imap_unvouched_notices
            .set(IMAP_UNVOUCHED.load(Ordering::Relaxed) as i64);
        self.rejected_requests
            .get_or_create(&ReasonLabel {
                reason: "api".into(),
            })
            .set(r.api_rejected.load(Ordering::Relaxed) as i64);
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
