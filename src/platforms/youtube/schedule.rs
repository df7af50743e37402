//! The Data API's daily quota spent by plan. Every request costs units (developers.google.com/
//! youtube/v3/determine_quota_cost: each `list` 1, `videos.delete` 50, a refused request at
//! least 1), a Google Cloud project has 10,000 a day by default, and the day resets at midnight
//! Pacific time. Every watched channel shares the project's key, so the plan divides what is
//! left after a reserve (pushes, takedowns) among the channels' polls, and stretches a
//! `poll_interval` that would overspend.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};

use super::api::until_quota_reset;
use crate::{config::Account, watch::RateBudget};

/// `channels.list`, `playlistItems.list`, `videos.list`: one unit each.
pub const LIST_UNITS: u32 = 1;
/// `videos.delete`.
pub const DELETE_UNITS: u32 = 50;
/// One poll of a channel: `channels.list` (profile), `playlistItems.list` (uploads) and
/// `videos.list` (live state of the listed videos).
pub const POLL_UNITS: u32 = 3 * LIST_UNITS;

/// How the day's units are spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub daily_quota: u32,
    /// Kept for pushed videos (`videos.list`, one unit a delivery) and takedowns.
    pub reserve: u32,
    /// Each channel's interval and whether the quota stretched its `poll_interval`.
    pub intervals: Vec<(String, Duration, bool)>,
}

const DAY_MS: u64 = 86_400_000;

impl Plan {
    /// Shares the polls the quota allows among the channels: a channel polled less often than
    /// its fair share leaves the rest to the others; the fastest are stretched evenly.
    pub fn new(daily_quota: u32, accounts: &[&Account]) -> Plan {
        // A tenth for pushes and takedowns, at least two takedowns, at most half the quota.
        let reserve = (daily_quota / 10)
            .max(2 * DELETE_UNITS)
            .min(daily_quota / 2);
        let mut polls_left = f64::from((daily_quota - reserve) / POLL_UNITS);
        let wanted = |a: &Account| DAY_MS as f64 / (a.poll_interval.as_millis().max(1) as f64);
        let mut order: Vec<&Account> = accounts.to_vec();
        order.sort_by(|a, b| wanted(a).total_cmp(&wanted(b)));
        let mut given = std::collections::HashMap::new();
        for (i, a) in order.iter().enumerate() {
            let fair = polls_left / (order.len() - i) as f64;
            let polls = wanted(a).min(fair).max(f64::MIN_POSITIVE);
            polls_left -= polls;
            given.insert(a.name.as_str(), polls);
        }
        let intervals = accounts
            .iter()
            .map(|a| {
                let polls = given[a.name.as_str()];
                let ms = (DAY_MS as f64 / polls).ceil() as u64;
                let d = Duration::from_millis(ms).max(a.poll_interval);
                (a.name.clone(), d, d > a.poll_interval)
            })
            .collect();
        Plan {
            daily_quota,
            reserve,
            intervals,
        }
    }

    /// The interval of the channel `name`.
    pub fn interval(&self, name: &str) -> Duration {
        self.intervals
            .iter()
            .find(|(n, ..)| n == name)
            .map_or(Duration::from_secs(86_400), |(_, d, _)| *d)
    }

    /// Units the polls spend a day at this plan.
    pub fn poll_units_per_day(&self) -> u64 {
        self.intervals
            .iter()
            .map(|(_, d, _)| DAY_MS / (d.as_millis().max(1) as u64) * u64::from(POLL_UNITS))
            .sum()
    }

    /// `check-config`'s schedule.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "youtube quota {} units/day (resets midnight Pacific): {} kept for pushes \
             (videos.list, {LIST_UNITS} unit each) and takedowns (videos.delete, {DELETE_UNITS} \
             units each); each poll spends {POLL_UNITS} (channels.list + playlistItems.list + \
             videos.list); polls spend {} units/day\n",
            self.daily_quota,
            self.reserve,
            self.poll_units_per_day(),
        );
        for (name, d, stretched) in &self.intervals {
            out.push_str(&format!(
                "youtube poll  {name} every {}{}\n",
                humantime::format_duration(*d),
                if *stretched {
                    " (stretched to fit the quota)"
                } else {
                    ""
                }
            ));
        }
        out
    }
}

/// Units spent today, shared by every channel's watcher (for `/status` and the logs; the plan
/// is what keeps the spending under the quota).
#[derive(Debug, Clone)]
pub struct Quota(Arc<Mutex<QuotaDay>>);

#[derive(Debug)]
struct QuotaDay {
    limit: u32,
    reset: DateTime<Utc>,
    spent: u64,
}

impl Quota {
    pub fn new(limit: u32) -> Quota {
        let now = Utc::now();
        Quota(Arc::new(Mutex::new(QuotaDay {
            limit,
            reset: now + until_quota_reset(now),
            spent: 0,
        })))
    }

    pub fn spend(&self, units: u32) {
        let mut day = self.0.lock().expect("quota lock");
        let now = Utc::now();
        if now >= day.reset {
            day.reset = now + until_quota_reset(now);
            day.spent = 0;
        }
        day.spent += u64::from(units);
    }

    pub fn budget(&self) -> RateBudget {
        let day = self.0.lock().expect("quota lock");
        RateBudget {
            limit: Some(u64::from(day.limit)),
            remaining: u64::from(day.limit).saturating_sub(day.spent),
            reset: Some(day.reset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(n: usize, poll: Duration) -> Vec<Account> {
        (0..n)
            .map(|i| {
                let mut a: Account = toml::from_str(&format!(
                    r#"
name = "yt{i}"
platform = "youtube"
base_url = "https://www.googleapis.com"
account_id = "UC_x5XG1OV2P6uZZ5FSM9Ttw"
"#
                ))
                .unwrap();
                a.poll_interval = poll;
                a
            })
            .collect()
    }

    #[test]
    fn the_default_quota_polls_one_channel_every_29_seconds() {
        let a = accounts(1, Duration::from_secs(5));
        let refs: Vec<&Account> = a.iter().collect();
        let plan = Plan::new(10_000, &refs);
        assert_eq!(plan.reserve, 1_000);
        assert_eq!(plan.interval("yt0"), Duration::from_millis(28_800));
        assert!(plan.poll_units_per_day() <= 9_000);
    }

    #[test]
    fn more_channels_stretch_every_interval_and_never_overspend() {
        for n in [1, 7, 50, 300] {
            let a = accounts(n, Duration::from_secs(60));
            let refs: Vec<&Account> = a.iter().collect();
            let plan = Plan::new(10_000, &refs);
            assert!(
                plan.poll_units_per_day() + u64::from(plan.reserve) <= 10_000,
                "{n} channels: {plan:?}"
            );
        }
        let a = accounts(10, Duration::from_secs(600));
        let refs: Vec<&Account> = a.iter().collect();
        // Slow enough already: left as configured.
        assert_eq!(
            Plan::new(10_000, &refs).interval("yt3"),
            Duration::from_secs(600)
        );
        // A slow channel leaves its share to a fast one.
        let mut a = accounts(2, Duration::from_secs(5));
        a[1].poll_interval = Duration::from_secs(3600);
        let refs: Vec<&Account> = a.iter().collect();
        let plan = Plan::new(10_000, &refs);
        assert_eq!(plan.interval("yt1"), Duration::from_secs(3600));
        // 3,000 polls a day, 24 of them the slow channel's.
        assert_eq!(plan.interval("yt0"), Duration::from_millis(29_033));
        assert!(plan.poll_units_per_day() + u64::from(plan.reserve) <= 10_000);
    }
}
