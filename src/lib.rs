//! tocsin watches a company's official accounts, compares what it sees with an approved log kept
//! in sled, and pages responders in a Telegram chat within seconds of an unapproved change.
//!
//! The modules follow the data flow (see `ARCHITECTURE.md`):
//!
//! - [`sources`] turn platform APIs into observations; they never decide.
//! - [`detect`] compares observations with the [`store`] (approved log, baselines, seen posts).
//! - [`incidents`] dedups findings into incidents and queues pages in the same transaction.
//! - [`notify`] drains the outbox, one worker per channel (Telegram, PagerDuty, webhooks), and
//!   sends the heartbeat; [`bot`] turns the chat's commands and buttons into
//!   incident actions; [`http`] serves `/healthz` and the approvals API.
//! - [`app`] wires them and runs them until shutdown; [`demo`] plays the whole story against the
//!   loopback [`fakes`].

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
