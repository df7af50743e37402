//! What time it is, as the daemon sees it: the system's clock, unless a test sets another.
//!
//! Behaviour that hangs on the calendar (the daily summary's time of day) reads the time from
//! a [`Clock`] the application context holds, so a test can put the daemon at any hour
//! without waiting for it (or failing across midnight).

use std::{fmt, sync::Arc};

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock: what the daemon uses unless told otherwise.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock shared by the tasks that read it.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock, shared.
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}
