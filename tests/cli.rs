//! The command line: check-config names the bad key, log verify catches tampering, approve works.

use std::process::Command;

use crate::support::*;

const GOOD: &str = r#"
[general]
api_token = "t"

[telegram]
bot_token = "1:x"
chat_id = -100
responders = [1]

[[accounts]]
name = "main"
platform = "mastodon"
base_url = "https://mastodon.example"
account_id = "1"
poll_interval = "15s"
"#;

fn check_config(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_config_prints_what_is_watched_or_names_the_key() {
    let (code, out, _) = check_config(GOOD);
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "watch         main · mastodon https://mastodon.example/ account 1 · every 15s"
        ),
        "{out}"
    );

    let (code, _, err) = check_config(&GOOD.replace("chat_id = -100\n", ""));
    assert_eq!(code, 2);
    assert!(
        err.contains("key `telegram.chat_id`: missing field `chat_id`"),
        "{err}"
    );
    let (code, _, err) = check_config(&GOOD.replace("poll_interval", "poll_intervall"));
    assert_eq!(code, 2);
    assert!(
        err.contains("key `accounts[0].poll_intervall`: unknown field `poll_intervall`"),
        "{err}"
    );
    assert!(err.contains("c.toml:15:1: "), "the line is given: {err}");
    let (code, _, err) = check_config(&GOOD.replace("\"15s\"", "\"15 sec0nds\""));
    assert_eq!(code, 2);
    assert!(
        err.contains("key `accounts[0].poll_interval`: invalid duration"),
        "{err}"
    );
    let (code, _, err) = check_config(&GOOD.replace(
        "api_token = \"t\"",
        "api_token = \"env:TOCSIN_TEST_UNSET_VARIABLE\"",
    ));
    assert_eq!(code, 2);
    assert!(
        err.contains("key `general.api_token`") && err.contains("TOCSIN_TEST_UNSET_VARIABLE"),
        "{err}"
    );
}

#[tokio::test]
async fn approve_cli_then_log_verify_catches_a_hand_edit() {
    let app = spawn_app().await;
    // Async: the daemon answering it runs on this test's runtime.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args([
            "approve",
            "--account",
            ACCOUNT,
            "--text",
            "Launch day! https://example.com/launch",
            "--url",
            &app.api,
            "--token",
            API_TOKEN,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&format!("approved for {ACCOUNT}: entry"))
    );
    let (_, _, state) = app.stop().await;

    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["log", "verify", "--state"])
            .arg(state.path())
            .output()
            .unwrap()
    };
    let out = verify();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Edit the newest approval by hand, as someone with the file would, keeping valid JSON.
    {
        let db = sled::open(state.path()).unwrap();
        let log = db.open_tree("approved_log").unwrap();
        let (key, value) = log.last().unwrap().unwrap();
        let mut record: serde_json::Value = serde_json::from_slice(&value).unwrap();
        record["entry"]["fingerprint"] = "0".repeat(64).into();
        log.insert(key, serde_json::to_vec(&record).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("content does not match its hash"),
        "{stdout}"
    );
}
