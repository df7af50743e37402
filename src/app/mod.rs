//! Start-up and shutdown: build everything that can fail first, then run.
//!
//! [`App::build`] opens the store and binds the listeners (port 0 works; the bound addresses
//! are kept), so a bad state dir or a taken port stops start-up with a clear error before any
//! polling begins. [`App::run_until`] runs the tasks until the given token is cancelled, then
//! lets sources stop between polls, the pipeline commit what it already received, and the outbox
//! worker finish the send in flight.

pub mod check;
pub mod integrity;
mod lanes;
mod pipeline;

use std::{collections::HashSet, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use teloxide::Bot;
use tokio::sync::{Notify, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    bot::{self, BotContext},
    config::{Config, Email},
    contain::mailer::Mailer,
    http::{self, HttpState, Serves, health::Readiness, hooks::Hooks},
    incidents::{Incidents, PagingPolicy, PauseMailer, escalation},
    mail::{
        self, journal, milter,
        webhooks::{
            Inbox,
            mailgun::Mailgun,
            postmark::Postmark,
            sendgrid::SendGrid,
            ses::{self, Ses},
        },
    },
    metrics::Metrics,
    model::SharedClock,
    notify::{
        self, Fallback, PagerDuty, TelegramPager, TelegramStatus, TelegramWatch, Webhook,
        heads::HeadsPublisher,
        heartbeat::{self, HeartbeatContext},
    },
    platforms::{self, WatchContext},
    store::{Route, Store, StoreError, TELEGRAM},
    watch::{Health, SourceContext},
};

/// How long shutdown waits for tasks before giving up on them.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// A page queued longer than this means delivery is stuck: not ready.
const OUTBOX_MAX_AGE: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("cannot set up the {hook} webhook: {detail}")]
    Hook { hook: &'static str, detail: String },
}

pub struct App {
    config: Config,
    store: Store,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    /// `general.hooks_listen`, bound, when set: the webhooks are served there alone.
    hooks_listener: Option<(tokio::net::TcpListener, SocketAddr)>,
    health: Health,
    /// Fetches SNS signing certificates and confirms subscriptions; see [`App::with_sns_client`].
    sns_client: Option<reqwest::Client>,
    /// The SMTP journal listener, bound with the HTTP one so port 0 is known before running.
    journal: Option<(tokio::net::TcpListener, SocketAddr)>,
    /// What time it is for what is due at a time of day and for readiness's ages; see
    /// [`App::with_clock`].
    clock: SharedClock,
    /// What verifying the store found before anything ran; paged and published by `run_until`.
    integrity: integrity::StartCheck,
    /// The milter listener, bound likewise.
    milter: Option<(tokio::net::TcpListener, SocketAddr)>,
}

impl App {
    pub async fn build(config: Config) -> Result<App, AppError> {
        std::fs::create_dir_all(&config.general.state_dir).map_err(|e| {
            StoreError::Rejected(format!(
                "cannot create state dir {}: {e}",
                config.general.state_dir.display()
            ))
        })?;
        let store = Store::open(&config.general.state_dir)?;
        App::build_with_store(config, store).await
    }

    /// Builds on a store that is already open: a reload keeps the database (and its lock) while
    /// the tasks around it are replaced.
    pub async fn build_with_store(config: Config, store: Store) -> Result<App, AppError> {
        check::check(&config)?;
        // Verified before anything can write: a record appended first would be signed on top
        // of whatever an intruder left. Nothing missing from a chain is re-chained here.
        store.set_signing_key(check::signing_key(&config)?.map(Arc::new));
        let integrity = integrity::at_start(&store)?;
        let addr = config.general.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| AppError::Bind { addr, source })?;
        let hooks_listener = match config.general.hooks_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| AppError::Bind { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| AppError::Bind { addr, source })?;
                Some((listener, bound))
            }
            None => None,
        };
        let journal = match config.email.as_ref().and_then(|e| e.journal.as_ref()) {
            Some(j) => {
                let listener = journal::bind(j).await.map_err(|source| AppError::Bind {
                    addr: j.listen,
                    source,
                })?;
                let addr = listener.local_addr().map_err(|source| AppError::Bind {
                    addr: j.listen,
                    source,
                })?;
                Some((listener, addr))
            }
            None => None,
        };
        let milter = match config.email.as_ref().and_then(|e| e.milter.as_ref()) {
            Some(m) => {
                let bind_err = |source| AppError::Bind {
                    addr: m.listen,
                    source,
                };
                let listener = milter::bind(m).await.map_err(bind_err)?;
                let addr = listener.local_addr().map_err(bind_err)?;
                Some((listener, addr))
            }
            None => None,
        };
        Ok(App {
            config,
            store,
            listener,
            addr,
            hooks_listener,
            health: Health::default(),
            sns_client: None,
            journal,
            clock: crate::model::clock::system_clock(),
            integrity,
            milter,
        })
    }

    /// Replaces the system clock for what is due at a time of day (the daily summary) and for
    /// the ages `/readyz` judges (a queued page's, the last `getUpdates`'s): tests put the
    /// daemon at the hour they need instead of waiting for it.
    pub fn with_clock(mut self, clock: SharedClock) -> App {
        self.clock = clock;
        self
    }

    /// Replaces the client the SES webhook fetches SNS signing certificates with. Only the
    /// library offers this (the config cannot): tests give a client that resolves the SNS host
    /// to a loopback TLS fake and trusts the fake's CA, so the real host check and the real
    /// fetch path run without leaving 127.0.0.1.
    pub fn with_sns_client(mut self, client: reqwest::Client) -> App {
        self.sns_client = Some(client);
        self
    }

    /// Where the HTTP server really listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the webhooks are really served: `general.hooks_listen` when set, else
    /// [`App::http_addr`].
    pub fn hooks_addr(&self) -> SocketAddr {
        self.hooks_listener.as_ref().map_or(self.addr, |(_, a)| *a)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where the SMTP journal listener really listens, when `[email.journal]` is configured.
    pub fn journal_addr(&self) -> Option<SocketAddr> {
        self.journal.as_ref().map(|(_, a)| *a)
    }

    /// Where the milter really listens, when `[email.milter]` is configured.
    pub fn milter_addr(&self) -> Option<SocketAddr> {
        self.milter.as_ref().map(|(_, a)| *a)
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Runs until `shutdown` is cancelled or a task fails for good.
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let App {
            config,
            store,
            listener,
            addr,
            hooks_listener,
            health,
            sns_client,
            journal: journal_listener,
            clock,
            integrity: start_check,
            milter: milter_listener,
        } = self;
        let tasks = TaskTracker::new();
        let mailer = match config.email.as_ref().and_then(|e| e.kill_switch.clone()) {
            Some(k) => Some(Arc::new(Mailer::new(k)?)),
            None => None,
        };
        let incidents = Incidents::new(store.clone(), Arc::new(Notify::new()))
            .with_auto_pause(
                mailer
                    .clone()
                    .filter(|m| m.auto_pause())
                    .map(|m| m as Arc<dyn PauseMailer>),
            )
            .with_group_window(config.grouping.window)
            .with_policy(PagingPolicy::from_config(&config))
            .with_sight({
                let health = health.clone();
                Arc::new(move |account, since| {
                    health
                        .snapshot()
                        .get(account)
                        .is_some_and(|h| crate::detect::blind::sees_again(h, since))
                })
            });
        let metrics = Arc::new(Metrics::new(store.clone(), health.clone()));
        let tg = &config.telegram;
        let send_client = teloxide::net::default_reqwest_settings()
            .timeout(tg.request_timeout)
            .build()?;
        // getUpdates holds the request open for `long_poll`; its client must wait longer.
        let poll_client = teloxide::net::default_reqwest_settings()
            .timeout(tg.long_poll + Duration::from_secs(15))
            .build()?;
        let bot_for = |client| {
            Bot::with_client(tg.bot_token.expose(), client).set_api_url(tg.api_url.clone())
        };
        let send_bot = bot_for(send_client);
        let poll_bot = bot_for(poll_client);

        // Stops what produces work first; the outbox worker and HTTP server stop on `shutdown`.
        let sources_stop = shutdown.child_token();
        // Two lanes into detect: the social watchers send to one, the mail inputs to the other.
        let (social_tx, social_rx) = mpsc::channel(lanes::SOCIAL_DEPTH);
        let (mail_tx, mail_rx) = mpsc::channel(lanes::MAIL_DEPTH);
        let http_client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(config.general.source_timeout)
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let source_ctx = SourceContext {
            store: store.clone(),
            out: social_tx,
            health: health.clone(),
            shutdown: sources_stop.clone(),
            http: http_client.clone(),
        };
        let mail_ctx = SourceContext {
            out: mail_tx,
            ..source_ctx.clone()
        };
        let mut channel_routes = std::collections::HashMap::new();
        // The trusted clients are in force before the first post is judged.
        for account in &config.accounts {
            let outcome = crate::detect::trusted_clients(
                &store,
                &account.name,
                &account.trusted_clients,
                chrono::Utc::now(),
            )?;
            incidents.record(&outcome).await?;
        }
        let mut hook_routes = Vec::new();
        // Every context holds a sender of a lane: each is dropped once its watchers are built,
        // so that each lane ends when its watchers do.
        let watchers = platforms::watch_all(&mut WatchContext {
            config: &config,
            source: source_ctx.clone(),
            bot_updates: &mut channel_routes,
            metrics: metrics.clone(),
            hook_routes: &mut hook_routes,
        });
        for source in watchers {
            tasks.spawn(source);
        }
        for feed in mail::build_feeds(config.email.as_ref(), &mail_ctx) {
            tasks.spawn(feed);
        }
        let hooks = match config.email.as_ref().filter(|e| e.has_webhooks()) {
            Some(email) => {
                let (inbox, writer) =
                    Inbox::start(store.clone(), mail_ctx.out.clone(), shutdown.clone());
                tasks.spawn(writer);
                Some(Arc::new(build_hooks(
                    email,
                    inbox,
                    metrics.clone(),
                    sns_client,
                )?))
            }
            None => None,
        };
        // The journal and the milter share one durable queue and its feed to the pipeline.
        let journal_config = config.email.as_ref().and_then(|e| e.journal.clone());
        let milter_config = config.email.as_ref().and_then(|e| e.milter.clone());
        let queue_name = journal_config
            .as_ref()
            .map(|j| j.name.clone())
            .or_else(|| milter_config.as_ref().map(|m| m.name.clone()));
        let committer = queue_name.map(|name| {
            let queued = Arc::new(Notify::new());
            let committer = journal::Committer::spawn(store.clone(), queued.clone(), &tasks);
            tasks.spawn(journal::feed(name, store.clone(), queued, mail_ctx.clone()));
            committer
        });
        if let (Some((listener, _)), Some(j), Some(committer)) =
            (journal_listener, journal_config, committer.clone())
        {
            let parts = journal::Listener {
                committer,
                key: store.address_key()?,
                metrics: metrics.clone(),
                tls: journal::tls_acceptor(&j).map_err(|e| AppError::Hook {
                    hook: "journal",
                    detail: e.to_string(),
                })?,
            };
            tasks.spawn(journal::serve(listener, j, parts, mail_ctx.clone()));
        }
        if let (Some((listener, _)), Some(m), Some(committer)) =
            (milter_listener, milter_config, committer)
        {
            let rules = Arc::new(config.email.clone().unwrap_or_default());
            let (judge_store, feed) = (store.clone(), m.name.clone());
            let judge: milter::Judge = Arc::new(move |summary| {
                crate::detect::email::evaluate(
                    &judge_store,
                    &rules,
                    &feed,
                    summary,
                    chrono::Utc::now(),
                )
                .map_err(|e| tracing::error!(error = %e, "milter: cannot judge in line"))
                .ok()
                .and_then(|o| o.finding)
                .map(|f| f.rule)
            });
            let parts = milter::Listener {
                committer,
                key: store.address_key()?,
                judge,
            };
            tasks.spawn(milter::serve(listener, m, parts, shutdown.clone()));
        }
        drop(source_ctx);
        drop(mail_ctx);
        let judge = pipeline::Judge {
            incidents: incidents.clone(),
            email_rules: Arc::new(
                config
                    .email
                    .clone()
                    .map(crate::mail::imap::link_accounts)
                    .unwrap_or_default(),
            ),
            metrics: metrics.clone(),
        };
        let priority = Arc::new(lanes::Priority::default());
        tasks.spawn(pipeline::social(social_rx, judge.clone(), priority.clone()));
        tasks.spawn(pipeline::mail(mail_rx, judge, priority.clone()));
        tasks.spawn(pipeline::release_held(incidents.clone(), shutdown.clone()));
        if let Some(email) = &config.email {
            tasks.spawn(crate::incidents::prune_loop(
                store.clone(),
                email.bulk_window,
                shutdown.clone(),
            ));
        }
        let graces = source_graces(&config);
        tasks.spawn(pipeline::watch_blind(
            incidents.clone(),
            health.clone(),
            graces,
            priority,
            shutdown.clone(),
        ));
        if let Some(policy) = config.escalation.clone() {
            tasks.spawn(escalation::run(incidents.clone(), policy, shutdown.clone()));
        }

        // One worker per channel, each woken by every queued page.
        let severities = config
            .channels
            .pagerduty
            .iter()
            .map(|c| c.severities.clone())
            .chain(config.channels.webhook.iter().map(|c| c.severities.clone()));
        let fallbacks: Vec<(Fallback, Option<Vec<crate::model::Severity>>)> =
            fallback_channels(&config, &http_client)
                .into_iter()
                .zip(severities)
                .collect();
        let routes: Vec<Route> = fallbacks
            .iter()
            .map(|(ch, severities)| Route {
                channel: ch.channel().to_owned(),
                severities: severities.clone(),
            })
            .collect();
        let mut channels: Vec<&str> = routes.iter().map(|r| r.channel.as_str()).collect();
        channels.push(TELEGRAM);
        store.drop_unrouted(&channels)?;
        store.set_routes(routes);
        let telegram_status = TelegramStatus::default();
        let watch = TelegramWatch {
            chat_id: tg.chat_id,
            failure_grace: tg.failure_grace,
            has_fallback: !fallbacks.is_empty(),
            status: telegram_status.clone(),
        };
        let mut wakes = Vec::new();
        let pager =
            TelegramPager::new(send_bot.clone(), tg.chat_id).with_pause_button(mailer.is_some());
        let wake = Arc::new(Notify::new());
        wakes.push(wake.clone());
        tasks.spawn(notify::run(
            pager,
            incidents.clone(),
            metrics.clone(),
            watch,
            wake,
            shutdown.clone(),
        ));
        let has_fallback = !fallbacks.is_empty();
        for (channel, _) in fallbacks {
            let wake = Arc::new(Notify::new());
            wakes.push(wake.clone());
            tasks.spawn(notify::run_fallback(
                channel,
                incidents.clone(),
                metrics.clone(),
                wake,
                shutdown.clone(),
            ));
        }
        tasks.spawn(notify::fan_out(
            incidents.wake_handle(),
            wakes,
            shutdown.clone(),
        ));
        let publisher = HeadsPublisher {
            store: store.clone(),
            bot: send_bot.clone(),
            chat_id: tg.chat_id,
            fallbacks: fallback_channels(&config, &http_client),
        };
        let publisher = Arc::new(publisher);
        tasks.spawn(integrity::run(
            incidents.clone(),
            publisher.clone(),
            config.general.publish_heads,
            start_check,
            shutdown.clone(),
        ));
        tasks.spawn(notify::store_alarm::run(
            store.clone(),
            send_bot.clone(),
            tg.chat_id,
            shutdown.clone(),
        ));
        if let Some(hb) = &config.heartbeat {
            let ctx = HeartbeatContext {
                config: hb.clone(),
                http: http_client.clone(),
                bot: send_bot.clone(),
                chat_id: tg.chat_id,
                store: store.clone(),
                metrics: metrics.clone(),
                clock: clock.clone(),
                heads: Some(publisher.clone()),
            };
            tasks.spawn(heartbeat::run(ctx, shutdown.clone()));
        }
        let bot_ctx = BotContext {
            incidents: incidents.clone(),
            health: health.clone(),
            chat_id: tg.chat_id,
            responders: Arc::new(tg.responders.clone()),
            refused: metrics.refusals.unauthorized_actions.clone(),
            mailer: mailer.clone(),
            hold: config
                .email
                .as_ref()
                .and_then(|e| e.milter.as_ref())
                .and_then(|m| crate::contain::held::HoldHelper::new(&m.hold_helper))
                .map(Arc::new),
            last_ok: metrics.refusals.bot_last_ok.clone(),
            accounts: Arc::new(config.accounts.clone()),
            http: http_client.clone(),
            channels: Arc::new(channel_routes),
            metrics: metrics.clone(),
        };
        // Replies go through the short-timeout bot; only getUpdates uses the long one.
        tasks.spawn(bot::run(
            poll_bot,
            send_bot,
            bot_ctx,
            tg.long_poll,
            shutdown.clone(),
        ));
        let webhook_inbox = hooks.as_ref().map(|h| h.inbox.health());
        let readiness = Readiness {
            store: store.clone(),
            metrics: metrics.clone(),
            sources: source_graces(&config),
            bot_grace: tg.long_poll * 3 + Duration::from_secs(30),
            outbox_max_age: OUTBOX_MAX_AGE,
            telegram_down: telegram_status,
            has_fallback,
            webhook_inbox,
            clock: clock.clone(),
        };
        let http_state = HttpState {
            store: store.clone(),
            readiness: Arc::new(readiness),
            health: health.clone(),
            api_tokens: Arc::new(config.general.all_api_tokens()),
            accounts: Arc::new(
                config
                    .accounts
                    .iter()
                    .map(|a| a.name.clone())
                    .collect::<HashSet<_>>(),
            ),
            watched: Arc::new(config.accounts.clone()),
            rejected: metrics.refusals.api_rejected.clone(),
            hooks,
            platform_hooks: hook_routes,
        };
        let max_connections = config.general.max_connections;
        if let Some((hooks_listener, hooks_addr)) = hooks_listener {
            let app = http::router(http_state.clone(), Serves::Hooks);
            let stop = shutdown.clone();
            tracing::info!(addr = %hooks_addr, "provider webhooks served apart");
            tasks.spawn(http::serve(
                hooks_listener,
                app,
                max_connections,
                Serves::Hooks,
                metrics.clone(),
                async move { stop.cancelled().await },
            ));
        }
        let main = Serves::Main {
            hooks: config.general.hooks_listen.is_none(),
        };
        let http_stop = shutdown.clone();
        let server = tasks.spawn(http::serve(
            listener,
            http::router(http_state, main),
            max_connections,
            main,
            metrics.clone(),
            async move { http_stop.cancelled().await },
        ));
        tasks.close();
        tracing::info!(%addr, accounts = config.accounts.len(), "tocsin running");

        shutdown.cancelled().await;
        tracing::info!("shutting down");
        sources_stop.cancel();
        if tokio::time::timeout(SHUTDOWN_DEADLINE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("tasks still running after {SHUTDOWN_DEADLINE:?}; stopping anyway");
        }
        store.flush().await?;
        match server.await {
            Ok(Err(e)) => Err(AppError::Serve(e)),
            _ => Ok(()),
        }
    }
}

/// The webhooks of `[email]`, each with its provider's verifier and body limit.
fn build_hooks(
    email: &Email,
    inbox: Inbox,
    metrics: Arc<Metrics>,
    sns_client: Option<reqwest::Client>,
) -> Result<Hooks, AppError> {
    let ses = match &email.ses {
        Some(c) => {
            let client = match sns_client {
                Some(c) => c,
                None => ses::default_fetch_client()?,
            };
            let hook = Ses::new(c, client).map_err(|detail| AppError::Hook {
                hook: "ses",
                detail,
            })?;
            Some((hook, c.max_body))
        }
        None => None,
    };
    let sendgrid = match &email.sendgrid {
        Some(c) => Some((
            SendGrid::new(c).map_err(|detail| AppError::Hook {
                hook: "sendgrid",
                detail,
            })?,
            c.max_body,
        )),
        None => None,
    };
    let mailgun = match &email.mailgun {
        Some(c) => Some((
            Mailgun::new(c).map_err(|detail| AppError::Hook {
                hook: "mailgun",
                detail,
            })?,
            c.max_body,
        )),
        None => None,
    };
    let postmark = email
        .postmark
        .as_ref()
        .map(|c| (Postmark::new(c), c.max_body));
    Ok(Hooks {
        inbox,
        metrics,
        ses,
        sendgrid,
        mailgun,
        postmark,
    })
}

/// The fallback channels of the configuration, PagerDuty first, then webhooks.
fn fallback_channels(config: &Config, http: &reqwest::Client) -> Vec<Fallback> {
    let pagerduty = config
        .channels
        .pagerduty
        .iter()
        .map(|c| Fallback::PagerDuty(PagerDuty::new(c, http.clone())));
    let webhook = config
        .channels
        .webhook
        .iter()
        .map(|c| Fallback::Webhook(Webhook::new(c, http.clone())));
    pagerduty.chain(webhook).collect()
}

/// Every source (social accounts and mail audit feeds) with how long it may fail before it is
/// blind.
fn source_graces(config: &Config) -> Vec<(String, Duration)> {
    use crate::config::AuditFeed;
    let mut out = platforms::graces(config);
    if let Some(e) = &config.email {
        out.extend(e.google.iter().map(|g| (g.name.clone(), g.grace())));
        out.extend(e.m365.iter().map(|m| (m.name.clone(), m.grace())));
        out.extend(e.imap.iter().map(|f| (f.name.clone(), f.grace())));
    }
    out
}

/// Runs the daemon and reloads it on each message from `reload` (SIGHUP in `main`).
///
/// A reload reads the file again and validates it first: a bad file is logged with its key and
/// line, and the running daemon keeps going unchanged. A good one stops the current tasks the
/// way shutdown does (sources between polls, the send in flight finished, the rest of the
/// outbox kept in sled) and starts new ones on the same open store, so incidents, approvals,
/// cursors and queued pages carry over. `state_dir` cannot change on reload: that needs a
/// restart.
pub async fn run_reloading(
    path: &Path,
    mut config: Config,
    shutdown: CancellationToken,
    mut reload: mpsc::Receiver<()>,
) -> Result<(), AppError> {
    let dir = &config.general.state_dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        StoreError::Rejected(format!("cannot create state dir {}: {e}", dir.display()))
    })?;
    let store = Store::open(dir)?;
    loop {
        let app = App::build_with_store(config.clone(), store.clone()).await?;
        let generation = shutdown.child_token();
        let mut running = tokio::spawn(app.run_until(generation.clone()));
        let next = loop {
            tokio::select! {
                ended = &mut running => {
                    return ended.unwrap_or_else(|e| Err(AppError::Serve(std::io::Error::other(e))));
                }
                Some(()) = reload.recv() => match Config::load(path).and_then(|c| check::check(&c).map(|()| c)) {
                    Err(e) => tracing::error!(error = %e, "reload refused; still running the previous configuration"),
                    Ok(new) if new.general.state_dir != config.general.state_dir => tracing::error!(
                        "reload refused: general.state_dir cannot change while running; restart instead"
                    ),
                    Ok(new) => break new,
                },
            }
        };
        generation.cancel();
        running
            .await
            .unwrap_or_else(|e| Err(AppError::Serve(std::io::Error::other(e))))?;
        tracing::info!(accounts = next.accounts.len(), "configuration reloaded");
        config = next;
    }
}
