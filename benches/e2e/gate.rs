//! The regression gate: each headline figure against a threshold for the profile the bench was
//! built in. A figure ten times worse than its threshold fails the run, so CI's smoke run (test
//! profile, `--quick`) catches an order-of-magnitude regression without flaking on a loaded
//! machine. The thresholds are the figures measured on 2 shared cores, rounded up: the debug
//! build's from `cargo test --bench e2e -- --quick`, the release build's from `cargo bench`.

/// How far past its threshold a figure may fall before the run fails.
const SLACK: f64 = 10.0;

#[derive(Clone, Copy)]
enum Better {
    Lower,
    Higher,
}

/// (figure, better, debug threshold, release threshold).
const THRESHOLDS: &[(&str, Better, f64, f64)] = &[
    ("polled.over_interval.p99", Better::Lower, 50.0, 20.0),
    ("push_event_to_page_ms_p99", Better::Lower, 100.0, 20.0),
    ("push_event_to_incident_ms_p99", Better::Lower, 500.0, 600.0),
    ("jetstream_event_to_page_ms_p99", Better::Lower, 100.0, 20.0),
    ("smtp_messages_per_s", Better::Higher, 30.0, 300.0),
    (
        "webhook_events_per_s[sendgrid]",
        Better::Higher,
        2000.0,
        15000.0,
    ),
    ("webhook_events_per_s[ses]", Better::Higher, 200.0, 4000.0),
    ("startup.to_healthz", Better::Lower, 500.0, 200.0),
    (
        "startup.first_after_bulk_write",
        Better::Lower,
        500.0,
        1000.0,
    ),
    (
        "idle.first_poll_of_all_accounts",
        Better::Lower,
        1000.0,
        500.0,
    ),
    ("idle.rss_peak", Better::Lower, 100.0, 30.0),
    ("idle.cpu", Better::Lower, 10.0, 1.0),
    ("idle.shutdown_after_sigterm", Better::Lower, 200.0, 50.0),
    ("isolation.flooded.judged.p99", Better::Lower, 300.0, 250.0),
];

/// Prints one verdict line per figure that has a threshold; whether all of them held.
pub fn check(figures: &[(String, f64)]) -> bool {
    let mut ok = true;
    for (name, value) in figures {
        let Some(&(_, better, debug, release)) = THRESHOLDS.iter().find(|t| t.0 == name) else {
            continue;
        };
        let threshold = if cfg!(debug_assertions) {
            debug
        } else {
            release
        };
        let (held, limit) = match better {
            Better::Lower => (*value <= threshold * SLACK, threshold * SLACK),
            Better::Higher => (*value >= threshold / SLACK, threshold / SLACK),
        };
        ok &= held;
        eprintln!(
            "gate: {name} = {value:.3} (threshold {threshold}, fails past {limit}): {}",
            if held { "ok" } else { "FAILED" }
        );
    }
    ok
}
