//! The README's first command, run as a user runs it: the `tocsin demo` binary, its exit code
//! and what it prints.

use std::process::{Command, Output};

fn demo(args: &[&str]) -> (Output, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("demo")
        .args(args)
        .env("TOCSIN_DEMO_LOG", dir.path().join("demo.log"))
        .env_remove("TOCSIN_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout, dir)
}

#[test]
fn the_demo_passes_every_check_and_keeps_the_log_out_of_the_story() {
    let (out, stdout, dir) = demo(&[]);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\ndemo passed\n"), "{stdout}");
    assert!(!stdout.contains("[FAILED]"), "{stdout}");
    for check in [
        "[ok] approved post: no incident, no page",
        "[ok] outsider refused",
        "[ok] the rogue post is deleted on Mastodon",
        "[ok] leak page counts 1,000 exposed addresses over 40 domains",
        "[ok] incident timeline chain verifies",
        "[ok] the live giveaway pages critical",
        "[ok] the live giveaway is deleted on YouTube",
    ] {
        assert!(stdout.contains(check), "{check} missing:\n{stdout}");
    }
    // Each of the four pages was told apart by its incident's rule, not its position.
    for rule in [
        "social.unapproved_post",
        "social.profile_changed",
        "mailbox.risky_setting",
        "email.exposed_recipients",
    ] {
        assert!(stdout.contains(&format!("· {rule}")), "{rule}:\n{stdout}");
    }
    // The leak's "after the change's own time" is the journal's delay, not a fixture's age.
    let since_change: Vec<i64> = stdout
        .lines()
        .filter_map(|l| {
            let (before, _) = l.split_once(" ms after the change's own time)")?;
            before.rsplit(", ").next()
        })
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert!(!since_change.is_empty(), "{stdout}");
    assert!(
        since_change.iter().all(|ms| (0..60_000).contains(ms)),
        "{since_change:?}"
    );
    // No log line in the story: they are in the log file.
    assert!(
        !stdout.lines().any(|l| l.trim_start().starts_with('{')),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).trim().is_empty());
    let log = std::fs::read_to_string(dir.path().join("demo.log")).unwrap();
    assert!(log.lines().count() > 5, "{log}");
}

#[test]
fn a_step_that_does_not_happen_fails_the_demo() {
    // Without the pre-approval the announcement is paged: the demo must say so and exit 1.
    let (out, stdout, _dir) = demo(&["--omit", "approval"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("[FAILED] approved post: no incident, no page"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("\ndemo FAILED\n"), "{stdout}");
}
