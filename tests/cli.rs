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

#[test]
fn check_config_suggests_the_key_that_was_meant() {
    let (code, _, err) = check_config(&GOOD.replace("poll_interval", "pol_interval"));
    assert_eq!(code, 2);
    assert!(err.contains("c.toml:15:1: key `accounts[0].pol_interval`: unknown field `pol_interval`, expected one of"), "{err}");
    assert!(
        err.trim_end().ends_with("did you mean `poll_interval`?"),
        "{err}"
    );
}

#[test]
fn init_writes_an_example_that_check_config_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config").join("tocsin.toml");
    let tocsin = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(args)
            .env_remove("TOCSIN_API_TOKEN")
            .env_remove("TOCSIN_TELEGRAM_TOKEN")
            .env_remove("TOCSIN_MASTODON_TOKEN")
            .output()
            .unwrap()
    };
    let p = path.to_str().unwrap();
    let out = tocsin(&["init", "--path", p]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        tocsin::config::EXAMPLE
    );

    std::fs::write(&path, "# mine\n").unwrap();
    let out = tocsin(&["init", "--path", p]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists; pass --force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# mine\n",
        "not overwritten"
    );
    let out = tocsin(&["init", "--path", p, "--force"]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        tocsin::config::EXAMPLE
    );

    // Without the secrets it names, the example is refused with the key.
    let out = tocsin(&["check-config", "--config", p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key `general.api_token`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Set on the child only: the test process's environment is shared by every test.
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check-config", "--config", p])
        .env("TOCSIN_API_TOKEN", "api-secret")
        .env("TOCSIN_TELEGRAM_TOKEN", "1:tg-secret")
        .env("TOCSIN_MASTODON_TOKEN", "masto-secret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("watch         mastodon-main · mastodon"),
        "{stdout}"
    );
    assert!(!stdout.contains("secret"), "no secret is printed: {stdout}");
}

#[tokio::test]
async fn cli_lists_revokes_shows_incidents_and_status() {
    let app = spawn_app().await;
    let text = "Spring sale https://example.com/sale";
    let (ok, out, err) = app
        .cli(&[
            "approve",
            "--account",
            ACCOUNT,
            "--text",
            text,
            "--note",
            "sale",
        ])
        .await;
    assert!(ok, "{err}");
    let seq: u64 = out
        .split("entry ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no entry number in {out}"));

    let (ok, out, err) = app.cli(&["approvals", "--account", ACCOUNT]).await;
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("#{seq} ")))
        .unwrap_or_else(|| panic!("entry {seq} not listed: {out}"));
    assert!(
        line.contains(&format!("post {ACCOUNT} fingerprint ")) && line.contains("(sale)"),
        "{line}"
    );
    assert!(!line.contains("REVOKED"), "{line}");
    assert!(out.contains(&format!("baseline {ACCOUNT} ")), "{out}");

    let seq_s = seq.to_string();
    let (ok, out, err) = app
        .cli(&["revoke", &seq_s, "--reason", "sale cancelled"])
        .await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("revoked entry {seq}: recorded as entry ")),
        "{out}"
    );
    let (ok, _, err) = app.cli(&["revoke", &seq_s, "--reason", "again"]).await;
    assert!(!ok);
    assert!(
        err.contains("409") && err.contains("already revoked"),
        "{err}"
    );
    let (ok, _, err) = app.cli(&["revoke", "0", "--reason", ""]).await;
    assert!(!ok);
    assert!(err.contains("field `reason`"), "{err}");
    let (_, out, _) = app.cli(&["approvals"]).await;
    assert!(
        out.contains(&format!("revokes #{seq}: sale cancelled")),
        "{out}"
    );
    assert!(out.contains("REVOKED by #"), "{out}");

    let (ok, out, _) = app.cli(&["incidents"]).await;
    assert!(ok);
    assert_eq!(out.trim(), "no incidents");
    app.publish(text);
    until(|| !app.bot.sent().is_empty(), "the page").await;
    let (ok, out, err) = app.cli(&["incidents", "--state", "open"]).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!(
            "#1 critical social.unapproved_post {ACCOUNT} open "
        )),
        "{out}"
    );
    let (_, out, _) = app.cli(&["incidents", "--state", "resolved"]).await;
    assert_eq!(out.trim(), "no incidents");
    let (ok, out, err) = app.cli(&["incidents", "--id", "1"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("  text: Spring sale https://example.com/sale"),
        "the evidence is shown: {out}"
    );
    assert!(
        out.contains(" opened by tocsin"),
        "the timeline is shown: {out}"
    );
    let (ok, _, err) = app.cli(&["incidents", "--id", "99"]).await;
    assert!(!ok);
    assert!(
        err.contains("404") && err.contains("there is no incident #99"),
        "{err}"
    );

    let (ok, out, err) = app.cli(&["status"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(&format!(
            "{ACCOUNT} mastodon {} · last ok ",
            app.masto.url()
        )),
        "{out}"
    );
    assert!(
        out.contains("0 errors") && out.contains("1 open, 0 acked incident(s)"),
        "{out}"
    );

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["status", "--url", &app.api, "--token", "wrong"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}

#[test]
fn check_config_refuses_plain_http_where_a_secret_travels_except_on_loopback() {
    let with_telegram_url = |url: &str| {
        GOOD.replace(
            "chat_id = -100",
            &format!("chat_id = -100\napi_url = \"{url}\""),
        )
    };
    let (code, _, err) = check_config(&with_telegram_url("http://telegram-proxy.example/tg/"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("key `telegram.api_url`") && err.contains("use https"),
        "{err}"
    );
    let (code, _, err) = check_config(&with_telegram_url("http://127.0.0.1:8081/"));
    assert_eq!(code, 0, "loopback is allowed: {err}");

    // A read token on the account: its base_url carries it.
    let tokened = GOOD
        .replace("https://mastodon.example", "http://mastodon.example")
        .replace("account_id = \"1\"", "account_id = \"1\"\ntoken = \"read\"");
    let (code, _, err) = check_config(&tokened);
    assert_eq!(code, 2);
    assert!(err.contains("key `accounts[0].base_url`"), "{err}");
    // Without a token the same URL carries nothing secret.
    let (code, _, err) =
        check_config(&GOOD.replace("https://mastodon.example", "http://mastodon.example"));
    assert_eq!(code, 0, "{err}");

    let pagerduty = format!(
        "{GOOD}\n[[channels.pagerduty]]\nname = \"ops\"\nrouting_key = \"k\"\napi_url = \"http://events.pagerduty.example\"\n"
    );
    let (code, _, err) = check_config(&pagerduty);
    assert_eq!(code, 2);
    assert!(err.contains("key `channels.pagerduty[0].api_url`"), "{err}");

    let bluesky = format!(
        "{GOOD}\n[[accounts]]\nname = \"sky\"\nplatform = \"bluesky\"\nbase_url = \"https://bsky.social\"\naccount_id = \"example.bsky.social\"\nwrite_token = \"app-pass\"\npds_url = \"http://pds.example\"\n"
    );
    let (code, _, err) = check_config(&bluesky);
    assert_eq!(code, 2);
    assert!(err.contains("key `accounts[1].pds_url`"), "{err}");
    let (code, out, err) =
        check_config(&bluesky.replace("http://pds.example", "https://pds.example"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("on https://pds.example/ only"), "{out}");
}
