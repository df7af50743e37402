//! X's rate-limit schedule. X budgets requests per app and endpoint in 15-minute windows, so
//! the accounts of one app share one budget: [`Plan`] derives each account's effective
//! interval from it, and [`Scheduler`] decides which request goes next.

use std::{
    collections::{BTreeMap, VecDeque},
    time::Duration,
};

use crate::config::{Account, Config, Platform, Secret, XLimits};

/// The longest wait after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The length of X's rate-limit windows.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Ids per `GET /2/users` request: X's maximum.
pub const IDS_PER_LOOKUP: usize = 100;

/// The two endpoints the source reads; each has its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /2/users/:id/tweets`
    Timeline,
    /// `GET /2/users?ids=`
    Users,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Timeline => "GET /2/users/:id/tweets",
            Endpoint::Users => "GET /2/users",
        }
    }
}

/// The polling schedule of one app's accounts, derived from their intervals and the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Each account: name, configured `poll_interval`, effective timeline interval.
    pub accounts: Vec<(String, Duration, Duration)>,
    pub limits: XLimits,
    /// The least time between two requests to the same endpoint.
    pub timeline_gap: Duration,
    pub users_gap: Duration,
    /// How often each account's profile is read (one lookup round of `batches` requests).
    pub profile_interval: Duration,
    pub batches: usize,
}

/// `WINDOW / n`, rounded up to the nanosecond so that `n` gaps never fit in less than a window.
pub(super) fn window_over(n: u32) -> Duration {
    let n = u128::from(n.max(1));
    let nanos = WINDOW.as_nanos().div_ceil(n);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The smallest interval floor `f` such that polling every account at `max(own, f)` spends at
/// most `budget` requests per window: fast accounts are slowed first, slow ones keep theirs.
pub(super) fn floor_for(intervals: &[Duration], budget: u32) -> Duration {
    let w = WINDOW.as_secs_f64();
    let budget = f64::from(budget.max(1));
    let demand = |f: f64| -> f64 {
        intervals
            .iter()
            .map(|p| w / p.as_secs_f64().max(f).max(1e-9))
            .sum()
    };
    if demand(0.0) <= budget {
        return Duration::ZERO;
    }
    let (mut lo, mut hi) = (0.0_f64, w * intervals.len() as f64 / budget);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if demand(mid) <= budget {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    // Whole milliseconds, rounded up: longer intervals only spend less.
    Duration::from_millis((hi * 1000.0).ceil() as u64)
}

impl Plan {
    pub fn new(accounts: &[(String, Duration)], limits: XLimits) -> Plan {
        let intervals: Vec<Duration> = accounts.iter().map(|(_, p)| *p).collect();
        let floor = floor_for(&intervals, limits.timeline_requests_per_window);
        let batches = accounts.len().div_ceil(IDS_PER_LOOKUP);
        let fastest = intervals.iter().min().copied().unwrap_or(WINDOW);
        // One round of `batches` requests per profile interval within the users budget.
        let round = window_over(limits.users_requests_per_window)
            .saturating_mul(u32::try_from(batches).unwrap_or(u32::MAX));
        Plan {
            accounts: accounts
                .iter()
                .map(|(n, p)| (n.clone(), *p, (*p).max(floor)))
                .collect(),
            timeline_gap: window_over(limits.timeline_requests_per_window),
            users_gap: window_over(limits.users_requests_per_window),
            limits,
            profile_interval: fastest.max(round),
            batches,
        }
    }

    /// The plan of every X account in `config`, one per app.
    pub fn for_config(config: &Config) -> Vec<Plan> {
        groups(config)
            .iter()
            .map(|g| {
                let accounts: Vec<_> = g
                    .iter()
                    .map(|a| (a.name.clone(), a.poll_interval))
                    .collect();
                Plan::new(&accounts, config.x.clone())
            })
            .collect()
    }

    pub fn interval(&self, account: &str) -> Option<Duration> {
        self.accounts
            .iter()
            .find(|(n, ..)| n == account)
            .map(|(.., e)| *e)
    }

    /// Timeline requests the plan spends per window (at most the budget).
    pub fn timeline_per_window(&self) -> f64 {
        self.accounts
            .iter()
            .map(|(.., e)| WINDOW.as_secs_f64() / e.as_secs_f64().max(1e-9))
            .sum()
    }

    pub fn users_per_window(&self) -> f64 {
        self.batches as f64 * WINDOW.as_secs_f64() / self.profile_interval.as_secs_f64()
    }

    /// Accounts polled less often than their `poll_interval` asks.
    pub fn stretched(&self) -> usize {
        self.accounts.iter().filter(|(_, p, e)| e > p).count()
    }

    /// What `check-config` and the start-up log say about the schedule.
    pub fn describe(&self) -> String {
        let fmt = |d: Duration| humantime::format_duration(round_ms(d)).to_string();
        let mut out = format!(
            "x schedule    {} account(s) in one scheduler · {} budget {}/15min, plan spends {:.0} · {} budget {}/15min ({} id batch(es) of ≤{IDS_PER_LOOKUP}), plan spends {:.0}, profiles every {}\n",
            self.accounts.len(),
            Endpoint::Timeline.as_str(),
            self.limits.timeline_requests_per_window,
            self.timeline_per_window(),
            Endpoint::Users.as_str(),
            self.limits.users_requests_per_window,
            self.batches,
            self.users_per_window(),
            fmt(self.profile_interval),
        );
        // Accounts grouped by (configured, effective) so 1,000 accounts read as a few lines.
        let mut by: BTreeMap<(Duration, Duration), Vec<&str>> = BTreeMap::new();
        for (n, p, e) in &self.accounts {
            by.entry((*p, *e)).or_default().push(n);
        }
        for ((p, e), names) in by {
            let who = if names.len() <= 3 {
                names.join(", ")
            } else {
                format!(
                    "{} … {} ({} accounts)",
                    names[0],
                    names[names.len() - 1],
                    names.len()
                )
            };
            if e > p {
                out.push_str(&format!(
                    "x interval    {who}: every {} (poll_interval {} stretched: the budget allows no more)\n",
                    fmt(e),
                    fmt(p)
                ));
            } else {
                out.push_str(&format!("x interval    {who}: every {}\n", fmt(e)));
            }
        }
        out
    }
}

pub(super) fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// X accounts grouped by app (server and bearer token): each group shares one budget.
pub fn groups(config: &Config) -> Vec<Vec<Account>> {
    let mut groups: Vec<Vec<Account>> = Vec::new();
    for a in config.accounts.iter().filter(|a| a.platform == Platform::X) {
        let same_app = |g: &&mut Vec<Account>| {
            g[0].base_url == a.base_url
                && g[0].token.as_ref().map(Secret::expose) == a.token.as_ref().map(Secret::expose)
        };
        match groups.iter_mut().find(same_app) {
            Some(g) => g.push(a.clone()),
            None => groups.push(vec![a.clone()]),
        }
    }
    groups
}

/// One endpoint's spacing: the planned gap, and a later start when X asked for one.
#[derive(Debug, Clone)]
pub(super) struct Gate {
    pub(super) gap: Duration,
    pub(super) last: Option<Duration>,
    pub(super) not_before: Duration,
}

impl Gate {
    fn earliest(&self) -> Duration {
        self.last
            .map_or(Duration::ZERO, |l| l + self.gap)
            .max(self.not_before)
    }
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read account `i`'s timeline.
    Timeline(usize),
    /// Read the profiles of batch `b` (accounts `b*100 .. b*100+100`).
    Users(usize),
}

impl Action {
    pub fn endpoint(self) -> Endpoint {
        match self {
            Action::Timeline(_) => Endpoint::Timeline,
            Action::Users(_) => Endpoint::Users,
        }
    }
}

/// The scheduler's decisions, on a clock measured from its start, so that a test can run it
/// for hours of virtual time and count every request.
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub(super) configured: Vec<Duration>,
    pub(super) effective: Vec<Duration>,
    pub(super) due: Vec<Duration>,
    pub(super) failures: Vec<u32>,
    pub(super) profile_interval: Duration,
    pub(super) profile_due: Duration,
    /// Batches still to read in the current profile round.
    pub(super) round: VecDeque<usize>,
    pub(super) batches: usize,
    pub(super) users_failures: u32,
    pub(super) timeline: Gate,
    pub(super) users: Gate,
}

impl Scheduler {
    pub fn new(plan: &Plan) -> Scheduler {
        let n = plan.accounts.len();
        Scheduler {
            configured: plan.accounts.iter().map(|(_, p, _)| *p).collect(),
            effective: plan.accounts.iter().map(|(.., e)| *e).collect(),
            // Spread the first polls over the first interval rather than all at once.
            due: plan
                .accounts
                .iter()
                .enumerate()
                .map(|(i, (.., e))| e.mul_f64(i as f64 / n.max(1) as f64) / 2)
                .collect(),
            failures: vec![0; n],
            profile_interval: plan.profile_interval,
            profile_due: Duration::ZERO,
            round: VecDeque::new(),
            batches: plan.batches,
            users_failures: 0,
            timeline: Gate {
                gap: plan.timeline_gap,
                last: None,
                not_before: Duration::ZERO,
            },
            users: Gate {
                gap: plan.users_gap,
                last: None,
                not_before: Duration::ZERO,
            },
        }
    }

    fn gate(&mut self, e: Endpoint) -> &mut Gate {
        match e {
            Endpoint::Timeline => &mut self.timeline,
            Endpoint::Users => &mut self.users,
        }
    }

    /// The next request and when it may start. Profiles go first on a tie: a handle change is
    /// critical and a round is a handful of requests.
    pub fn next(&self) -> Option<(Duration, Action)> {
        let users = if self.batches == 0 {
            None
        } else {
            let batch = self.round.front().copied().unwrap_or(0);
            let due = if self.round.is_empty() {
                self.profile_due
            } else {
                Duration::ZERO
            };
            Some((due.max(self.users.earliest()), Action::Users(batch)))
        };
        let timeline = self
            .due
            .iter()
            .enumerate()
            .min_by_key(|(_, d)| **d)
            .map(|(i, d)| ((*d).max(self.timeline.earliest()), Action::Timeline(i)));
        match (users, timeline) {
            (Some(u), Some(t)) => Some(if u.0 <= t.0 { u } else { t }),
            (u, t) => u.or(t),
        }
    }

    /// The request is being sent at `at`.
    pub fn start(&mut self, action: Action, at: Duration) {
        self.gate(action.endpoint()).last = Some(at);
        match action {
            Action::Timeline(i) => self.due[i] = at + self.effective[i],
            Action::Users(b) => {
                if self.round.is_empty() {
                    self.round = (0..self.batches).collect();
                    self.profile_due = at + self.profile_interval;
                }
                if self.round.front() == Some(&b) {
                    self.round.pop_front();
                }
            }
        }
    }

    /// X's rate-limit headers on an answer: `remaining` requests until `reset_in` from `at`.
    /// Zero waits for the reset; a few left are spread until it, so the budget outlasts the
    /// window even when something else (another process on the same app) spends it too.
    pub fn budget(&mut self, e: Endpoint, at: Duration, remaining: u64, reset_in: Duration) {
        let gate = self.gate(e);
        let wait = if remaining == 0 {
            reset_in
        } else {
            reset_in.div_f64(remaining as f64)
        };
        if wait > gate.gap {
            gate.not_before = gate.not_before.max(at + wait);
        }
    }

    /// A 429: nothing more on this endpoint until the reset; the refused request is retried
    /// first.
    pub fn rate_limited(&mut self, action: Action, at: Duration, reset_in: Duration) {
        let gate = self.gate(action.endpoint());
        gate.not_before = gate.not_before.max(at + reset_in);
        self.retry_soon(action);
    }

    fn retry_soon(&mut self, action: Action) {
        match action {
            // Due since the start of time: ahead of every other account.
            Action::Timeline(i) => self.due[i] = Duration::ZERO,
            Action::Users(b) => {
                if self.round.front() != Some(&b) {
                    self.round.push_front(b);
                }
            }
        }
    }

    /// Any other failure: retry after a backoff from the account's own `poll_interval`
    /// (not the stretched one: a source failing is paged after its grace, and one retry more
    /// than planned only delays the next account by one gap).
    pub fn failed(&mut self, action: Action, at: Duration) {
        match action {
            Action::Timeline(i) => {
                self.failures[i] += 1;
                self.due[i] = at + backoff(self.configured[i], self.failures[i]);
            }
            Action::Users(_) => {
                self.users_failures += 1;
                let base = self.configured.iter().min().copied().unwrap_or(WINDOW);
                let wait = backoff(base, self.users_failures);
                self.retry_soon(action);
                self.users.not_before = self.users.not_before.max(at + wait);
            }
        }
    }

    pub fn succeeded(&mut self, action: Action) {
        match action {
            Action::Timeline(i) => self.failures[i] = 0,
            Action::Users(_) => self.users_failures = 0,
        }
    }

    /// More pages of account `i` wait: read them at the next slot.
    pub fn continue_now(&mut self, i: usize) {
        self.due[i] = Duration::ZERO;
    }
}

/// The wait after `failures` consecutive failures: the interval doubled per failure, capped.
pub(super) fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(timeline: u32, users: u32) -> XLimits {
        XLimits {
            timeline_requests_per_window: timeline,
            users_requests_per_window: users,
            ..XLimits::default()
        }
    }

    fn accounts(n: usize, every: Duration) -> Vec<(String, Duration)> {
        (0..n).map(|i| (format!("x-{i:04}"), every)).collect()
    }

    /// Runs the scheduler on a virtual clock, every request answered at once; the start times
    /// of each endpoint's requests.
    fn simulate(s: &mut Scheduler, span: Duration) -> (Vec<Duration>, Vec<Duration>, Vec<usize>) {
        let (mut timeline, mut users) = (Vec::new(), Vec::new());
        let mut per_account = vec![0usize; s.due.len()];
        let mut now = Duration::ZERO;
        while let Some((at, action)) = s.next() {
            assert!(at >= now, "time runs forward");
            if at > span {
                break;
            }
            now = at;
            s.start(action, at);
            match action {
                Action::Timeline(i) => {
                    timeline.push(at);
                    per_account[i] += 1;
                }
                Action::Users(_) => users.push(at),
            }
            s.succeeded(action);
        }
        (timeline, users, per_account)
    }

    /// The most requests any window [t, t + 15 min) holds.
    fn busiest_window(times: &[Duration]) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] >= times[lo] + WINDOW {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[test]
    fn a_thousand_accounts_never_exceed_the_budget_in_any_window() {
        let limits = limits(1500, 300);
        let plan = Plan::new(&accounts(1000, Duration::from_secs(15)), limits);
        // 1,000 accounts at 15 s would need 60,000 requests a window: stretched to 10 min.
        assert_eq!(plan.interval("x-0000"), Some(Duration::from_secs(600)));
        assert_eq!(plan.stretched(), 1000);
        assert_eq!(plan.batches, 10);
        assert!(plan.timeline_per_window() <= 1500.0 + 1e-6);
        assert!(plan.users_per_window() <= 300.0 + 1e-6);
        let mut s = Scheduler::new(&plan);
        let (timeline, users, per_account) = simulate(&mut s, Duration::from_secs(3 * 3600));
        let busiest = busiest_window(&timeline);
        eprintln!(
            "1000 accounts, 3 h simulated: {} timeline requests (busiest 15-min window {busiest}/1500), {} users lookups (busiest {}/300); per account {}..={} polls\n{}",
            timeline.len(),
            users.len(),
            busiest_window(&users),
            per_account.iter().min().unwrap(),
            per_account.iter().max().unwrap(),
            plan.describe()
        );
        assert!(busiest <= 1500, "timeline window held {busiest}");
        assert!(busiest >= 1400, "the budget is used, not wasted: {busiest}");
        assert!(busiest_window(&users) <= 300, "users");
        // Every account is polled, each about every 10 minutes (18 times in 3 hours).
        assert!(
            per_account.iter().all(|n| (17..=19).contains(n)),
            "{per_account:?}"
        );
    }

    #[test]
    fn mixed_intervals_slow_the_fast_accounts_and_keep_the_slow_ones() {
        let mut list = accounts(900, Duration::from_secs(30));
        list.extend((0..100).map(|i| (format!("slow-{i}"), Duration::from_secs(3600))));
        let plan = Plan::new(&list, limits(1500, 300));
        assert_eq!(plan.interval("slow-0"), Some(Duration::from_secs(3600)));
        let fast = plan.interval("x-0000").unwrap();
        assert!(
            fast > Duration::from_secs(30) && fast < Duration::from_secs(600),
            "{fast:?}"
        );
        assert!(plan.timeline_per_window() <= 1500.0);
        let mut s = Scheduler::new(&plan);
        let (timeline, ..) = simulate(&mut s, Duration::from_secs(2 * 3600));
        assert!(busiest_window(&timeline) <= 1500);
    }

    #[test]
    fn within_budget_nothing_is_stretched() {
        let plan = Plan::new(&accounts(10, Duration::from_secs(60)), limits(1500, 300));
        assert_eq!(plan.stretched(), 0);
        assert_eq!(plan.interval("x-0003"), Some(Duration::from_secs(60)));
        assert_eq!(plan.profile_interval, Duration::from_secs(60));
        assert!(plan.describe().contains("every 1m"), "{}", plan.describe());
    }

    /// The next timeline request, profile lookups on the way taken as sent.
    fn next_timeline(s: &mut Scheduler) -> (Duration, Action) {
        loop {
            let (t, a) = s.next().unwrap();
            if a.endpoint() == Endpoint::Timeline {
                return (t, a);
            }
            s.start(a, t);
        }
    }

    #[test]
    fn low_remaining_spreads_and_a_429_waits_for_the_reset() {
        let plan = Plan::new(&accounts(5, Duration::from_secs(1)), limits(1500, 300));
        let mut s = Scheduler::new(&plan);
        let t0 = Duration::from_secs(10);
        // Two left for the next 60 s: no sooner than 30 s apart.
        s.budget(Endpoint::Timeline, t0, 2, Duration::from_secs(60));
        let (at, a) = next_timeline(&mut s);
        assert!(at >= t0 + Duration::from_secs(30), "{at:?} {a:?}");
        s.start(a, at);
        s.rate_limited(a, at, Duration::from_secs(120));
        let (next, again) = next_timeline(&mut s);
        assert_eq!(again, a, "the refused request goes first");
        assert_eq!(next, at + Duration::from_secs(120));
    }

    #[test]
    fn failures_back_off_from_the_configured_interval() {
        let plan = Plan::new(&accounts(1, Duration::from_secs(10)), limits(1500, 300));
        let mut s = Scheduler::new(&plan);
        s.start(Action::Timeline(0), Duration::ZERO);
        s.failed(Action::Timeline(0), Duration::ZERO);
        assert_eq!(s.due[0], Duration::from_secs(20));
        s.failed(Action::Timeline(0), Duration::ZERO);
        assert_eq!(s.due[0], Duration::from_secs(40));
        s.succeeded(Action::Timeline(0));
        assert_eq!(s.failures[0], 0);
    }
}
