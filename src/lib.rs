//! tocsin watches a company's official accounts, compares what it sees with an approved log kept
//! in sled, and pages responders in a Telegram chat within seconds of an unapproved change.
//!
//! The modules follow the data flow (see `ARCHITECTURE.md`), floor by floor; none imports a
//! higher floor:
//!
//! - [`model`] holds the words every room uses; [`config`] is the TOML contract, data only.
//! - [`store`] owns sled: the approved log, incidents, the outbox, the timeline chain.
//! - [`watch`] is what every watcher shares; [`platforms`] (one folder per platform behind the
//!   [`platforms::Platform`] seam) and [`mail`] (journal, webhooks, audit logs) turn the outside
//!   into observations; they never decide. [`detect`] compares observations with the store.
//! - [`incidents`] dedups findings into incidents and queues pages in the same transaction.
//! - [`notify`] drains the outbox, one worker per channel, and sends the heartbeat; [`bot`] turns
//!   the chat's commands and buttons into incident actions; [`contain`] takes posts down and
//!   pauses the mailer; [`http`] serves the webhooks, the operator API and the probes.
//! - [`app`] wires them and runs them until shutdown. The loopback fakes the demo and the tests
//!   play against are the `tocsin-fakes` crate.

pub mod app;
pub mod bot;
pub mod config;
pub mod contain;
pub mod detect;
pub mod fuzzing;
pub mod http;
pub mod incidents;
pub mod mail;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod platforms;
pub mod store;
pub mod telemetry;
pub mod watch;

pub use app::{App, AppError};
pub use config::Config;
