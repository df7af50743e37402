//! The loader: defaults, and errors that name the key.

use super::{error::levenshtein, *};

pub(crate) const GOOD: &str = r#"
[general]
api_token = "literal-token"

[telegram]
bot_token = "123:abc"
chat_id = -100
responders = [1, 2]

[[accounts]]
name = "main"
platform = "mastodon"
base_url = "https://mastodon.example"
account_id = "109302"
poll_interval = "2m"
"#;

fn err(text: &str) -> ConfigError {
    Config::parse(text, "t.toml").expect_err("config should be refused")
}

#[test]
fn good_config_parses_with_defaults() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.accounts[0].poll_interval, Duration::from_secs(120));
    assert_eq!(c.general.listen.port(), 8080);
    assert_eq!(
        c.general.hooks_listen, None,
        "webhooks on `listen` by default"
    );
    assert_eq!(c.general.max_connections, 512);
    assert_eq!(c.telegram.api_url.as_str(), "https://api.telegram.org/");
}

#[test]
fn listener_keys_are_checked() {
    let general = |extra: &str| GOOD.replacen("[general]\n", &format!("[general]\n{extra}\n"), 1);
    let c = Config::parse(&general("hooks_listen = \"0.0.0.0:8443\""), "t.toml").unwrap();
    assert_eq!(c.general.hooks_listen.unwrap().port(), 8443);
    let c = Config::parse(
        &general("public_url = \"https://hooks.example.com/tocsin\""),
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        c.general.public_url.unwrap().as_str(),
        "https://hooks.example.com/tocsin"
    );
    for (extra, key) in [
        ("max_connections = 0", "general.max_connections"),
        ("hooks_listen = \"127.0.0.1:8080\"", "general.hooks_listen"),
        ("hooks_listen = \"nowhere\"", "general.hooks_listen"),
        (
            "public_url = \"http://tocsin.example.com\"",
            "general.public_url",
        ),
        (
            "public_url = \"ftp://tocsin.example.com\"",
            "general.public_url",
        ),
    ] {
        let e = err(&general(extra));
        assert_eq!(e.key(), Some(key), "{extra}: {e}");
    }
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e = err(&GOOD.replace("poll_interval", "pol_interval"));
    assert_eq!(e.key(), Some("accounts[0].pol_interval"));
    let msg = e.to_string();
    assert!(msg.contains("pol_interval"), "{msg}");
    assert!(msg.starts_with("t.toml:15:1: "), "{msg}");
    assert!(msg.ends_with(" — did you mean `poll_interval`?"), "{msg}");
}

#[test]
fn unknown_key_far_from_every_key_gets_no_suggestion() {
    let e = err(&GOOD.replace("poll_interval", "frobnicate"));
    let msg = e.to_string();
    assert!(msg.contains("unknown field `frobnicate`"), "{msg}");
    assert!(!msg.contains("did you mean"), "{msg}");
    let e = err(&GOOD.replace("[general]", "[generl]"));
    assert!(e.to_string().ends_with("did you mean `general`?"), "{e}");
}

#[test]
fn levenshtein_counts_edits() {
    assert_eq!(levenshtein("pol_interval", "poll_interval"), 1);
    assert_eq!(levenshtein("", "abc"), 3);
    assert_eq!(levenshtein("kitten", "sitting"), 3);
    assert_eq!(levenshtein("same", "same"), 0);
}

/// The embedded example with its secrets set, as written (the optional sections commented out).
pub(crate) fn example() -> Config {
    // The example reads its secrets from the environment; swap in literals to parse it here.
    Config::parse(&example_text(), "example").unwrap()
}

fn example_text() -> String {
    EXAMPLE
        .replace("env:TOCSIN_API_TOKEN", "a")
        .replace("env:TOCSIN_TELEGRAM_TOKEN", "b")
        .replace("env:TOCSIN_MASTODON_TOKEN", "c")
}

/// The embedded example with every optional section uncommented and every secret set; the
/// service-account file lives as long as the returned handle.
pub(crate) fn full_example() -> (Config, tempfile::NamedTempFile) {
    let text: String = example_text()
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
            {
                rest.to_owned() + "\n"
            }
            _ => l.to_owned() + "\n",
        })
        .collect();
    let text = text
        .replace("env:TOCSIN_WEBHOOK_SECRET", "s")
        .replace(
            "env:TOCSIN_PAGERDUTY_ROUTING_KEY",
            "0123456789abcdef0123456789abcdef",
        )
        .replace("env:TOCSIN_HEARTBEAT_URL", "https://monitor.example/ping/x")
        .replace("env:TOCSIN_MASTODON_WRITE_TOKEN", "w")
        .replace("env:TOCSIN_X_BEARER_TOKEN", "xb")
        .replace("env:TOCSIN_CI_API_TOKEN", "ci")
        .replace("env:TOCSIN_X_USER_TOKEN", "xu")
        .replace("env:TOCSIN_X_CONSUMER_SECRET", "xc")
        .replace("env:TOCSIN_M365_CLIENT_SECRET", "m")
        .replace("env:TOCSIN_IMAP_PASSWORD", "imap-pass")
        .replace("env:TOCSIN_MAILER_SECRET", "k")
        .replace("env:TOCSIN_BLUESKY_APP_PASSWORD", "app-pass")
        .replace("env:TOCSIN_META_APP_SECRET", "meta-app-secret")
        .replace("env:TOCSIN_META_VERIFY_TOKEN", "meta-verify")
        .replace("env:TOCSIN_META_PAGE_TOKEN", "page-token")
        .replace("env:TOCSIN_META_PAGE_WRITE_TOKEN", "page-write")
        .replace("env:TOCSIN_META_INSTAGRAM_TOKEN", "ig-token")
        .replace("env:TOCSIN_YOUTUBE_API_KEY", "yt-key")
        .replace("env:TOCSIN_YOUTUBE_OWNER_TOKEN", "yt-owner")
        .replace("env:TOCSIN_SENDGRID_VERIFICATION_KEY", "sendgrid-key")
        .replace("env:TOCSIN_MAILGUN_SIGNING_KEY", "k")
        .replace("env:TOCSIN_MAILGUN_WEBHOOK_PASSWORD", "mp")
        .replace(
            "file:/etc/tocsin/sns/",
            &format!(
                "file:{}/tests/fixtures/providers/sns/certs/",
                env!("CARGO_MANIFEST_DIR")
            ),
        )
        .replace("env:TOCSIN_POSTMARK_WEBHOOK_PASSWORD", "p")
        .replace("env:TOCSIN_JOURNAL_PASSWORD", "journal-pass")
        // A throwaway Ed25519 key (`tocsin keygen`), a test fixture only.
        .replace(
            "env:TOCSIN_SIGNING_KEY",
            "MFECAQEwBQYDK2VwBCIEIMWPPWJt2FB+QD9hQUEtfQuwYrH8z4WmThC7kStIuX/dgSEAMP73linpLLxD1pUGy7i5ajOduU57ismgq/h20yuqYsE=",
        );
    // A real certificate and key: the journal's STARTTLS is built from them (`app::check`).
    let tls = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let escaped = |pem: String| pem.replace('\n', "\\n");
    let text = text
        .replace("env:TOCSIN_JOURNAL_TLS_CERT", &escaped(tls.cert.pem()))
        .replace(
            "env:TOCSIN_JOURNAL_TLS_KEY",
            &escaped(tls.key_pair.serialize_pem()),
        );
    // The keys are parsed when their components are built (`app::check`), not at load.
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), test_service_account()).unwrap();
    let text = text.replace(
        "file:/etc/tocsin/google-service-account.json",
        &format!("file:{}", key.path().display()),
    );
    (Config::parse(&text, "example").unwrap(), key)
}

#[test]
fn the_embedded_example_parses_when_its_secrets_are_set() {
    let c = example();
    assert_eq!(c.accounts.len(), 2);
    assert_eq!(c.accounts[1].platform, Platform::TelegramChannel);
    assert!(c.accounts[1].write_token.is_some());
    assert_eq!(c.paging.takedown_quorum, 1);
    assert!(
        c.channels.is_empty() && c.heartbeat.is_none(),
        "optional: off"
    );
    // The optional sections, commented out in the file, parse once uncommented.
    let (c, _key) = full_example();
    let email = c.email.as_ref().unwrap();
    assert_eq!(email.google[0].applications.len(), 3);
    assert_eq!(email.m365[0].api_url.as_str(), "https://manage.office.com/");
    let k = email.kill_switch.as_ref().unwrap();
    assert!(!k.auto_pause && k.secret_header.as_deref() == Some("X-Api-Key"));
    assert_eq!(email.ses.as_ref().unwrap().topic_arns.len(), 1);
    assert_eq!(
        email.sendgrid.as_ref().unwrap().tolerance,
        Duration::from_secs(300)
    );
    assert_eq!(email.mailgun.as_ref().unwrap().name, "mailgun");
    assert_eq!(email.mailgun.as_ref().unwrap().password.expose(), "mp");
    assert_eq!(email.ses.as_ref().unwrap().certificates.len(), 1);
    assert!(c.general.hooks_listen.is_some());
    assert_eq!(email.postmark.as_ref().unwrap().username, "postmark");
    let sky = c.account("bluesky-main").expect("the Bluesky example");
    assert_eq!(sky.platform, Platform::Bluesky);
    assert_eq!(sky.jetstream_url().as_str(), DEFAULT_JETSTREAM_URL);
    assert_eq!(c.channels.pagerduty[0].name, "ops");
    assert_eq!(c.telegram.failure_grace, Duration::from_secs(120));
    assert!(c.heartbeat.is_some());
    assert_eq!(c.channels.webhook[0].name, "soc");
    assert_eq!(c.paging.unmutable, DEFAULT_UNMUTABLE.to_vec());
    assert_eq!(c.paging.approve_quorum[&Severity::Critical], 2);
    assert_eq!(c.paging.resolve_quorum[&Severity::Critical], 2);
    assert_eq!(c.paging.mute_without_quorum, Duration::from_secs(3600));
    assert_eq!(c.general.api_tokens[0].role, ApiRole::Approve);
    let x = c.account("x-main").expect("the X example account");
    assert_eq!(x.base_url.as_str(), "https://api.x.com/");
    assert_eq!(c.x.timeline_requests_per_window, 1500);
    assert_eq!(c.x.consumer_secret.as_ref().unwrap().expose(), "xc");
    assert_eq!(c.x.webhook_id.as_deref(), Some("1146654567674912769"));
    let email = c.email.as_ref().expect("[email] parses");
    assert_eq!(email.max_visible_recipients, 25);
    assert_eq!(email.bulk_window, Duration::from_secs(3600));
    assert_eq!(email.journal.as_ref().unwrap().listen.port(), 2525);
    assert_eq!(email.security_notices.accounts[0].account, "x-main");
    assert_eq!(email.security_notices.patterns.len(), 5, "the defaults");
}

#[test]
fn email_errors_name_the_dotted_key() {
    let e = err(&format!("{GOOD}\n[email]\nmax_visible_recipients = 0\n"));
    assert_eq!(e.key(), Some("email.max_visible_recipients"));
    let e = err(&format!("{GOOD}\n[email]\ninternal_domains = [\"a@b\"]\n"));
    assert_eq!(e.key(), Some("email.internal_domains[0]"));
    let e = err(&format!("{GOOD}\n[email.journal]\nlisten = \"nowhere\"\n"));
    assert_eq!(e.key(), Some("email.journal.listen"));
    let e = err(&format!("{GOOD}\n[email.journal]\nmax_mesage_size = 1\n"));
    assert!(
        e.to_string().contains("did you mean `max_message_size`"),
        "{e}"
    );
    let e = err(&format!(
        "{GOOD}\n[[email.security_notices.accounts]]\naccount = \"a\"\nplatform = \"myspace\"\naddress = \"a@b.example\"\n"
    ));
    assert_eq!(e.key(), Some("email.security_notices.accounts[0].platform"));
}

#[test]
fn email_webhook_errors_name_the_key() {
    let base = GOOD.to_owned();
    let cases = [
        ("[email.ses]\ntopic_arns = []\n", "email.ses.topic_arns"),
        (
            "[email.ses]\ntopic_arns = [\"arn:aws:sqs:us-east-1:1:q\"]\n",
            "email.ses.topic_arns[0]",
        ),
        (
            "[email.mailgun]\nsigning_key = \"k\"\npassword = \"p\"\nmax_body = 10\n",
            "email.mailgun.max_body",
        ),
        (
            "[email.mailgun]\nsigning_key = \"k\"\n",
            "email.mailgun.password",
        ),
        (
            "[email.mailgun]\nsigning_key = \"k\"\npassword = \"p\"\nusername = \"\"\n",
            "email.mailgun.username",
        ),
        (
            "[email.postmark]\nusername = \"a:b\"\npassword = \"p\"\n",
            "email.postmark.username",
        ),
        (
            "[email.mailgun]\nsigning_key = \"k\"\npassword = \"p\"\ntolerence = \"1m\"\n",
            "email.mailgun",
        ),
    ];
    for (extra, key) in cases {
        let err = Config::parse(&format!("{base}\n{extra}"), "t").unwrap_err();
        assert!(
            err.key().is_some_and(|k| k.starts_with(key)),
            "{extra}: {err}"
        );
    }
}

pub(crate) fn test_service_account() -> String {
    serde_json::json!({
        "type": "service_account",
        "client_email": "t@p.iam.gserviceaccount.com",
        "private_key": include_str!("../../tests/fixtures/google-service-account-test-key.pem"),
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

#[test]
fn email_errors_name_the_key() {
    // A literal TOML string: the JSON goes in as it is.
    let sa = test_service_account();
    let email = format!(
        r#"
[[email.google]]
name = "workspace"
service_account = '{sa}'
admin = "it@corp.example"
internal_domains = ["corp.example"]

[[email.m365]]
name = "exchange"
tenant = "t"
client_id = "c"
client_secret = "s"
internal_domains = ["corp.example"]

[email.kill_switch]
url = "https://mailer.example/pause"
"#
    );
    let c = Config::parse(&format!("{GOOD}{email}"), "t.toml").unwrap();
    assert_eq!(
        c.email
            .as_ref()
            .unwrap()
            .kill_switch
            .as_ref()
            .unwrap()
            .method,
        "POST"
    );
    let bad = |from: &str, to: &str| err(&format!("{GOOD}{}", email.replace(from, to)));
    assert_eq!(
        bad("name = \"exchange\"", "name = \"main\"").key(),
        Some("email.m365[0].name")
    );
    assert_eq!(
        bad(
            "internal_domains = [\"corp.example\"]\n\n[[email.m365]]",
            "internal_domains = []\n\n[[email.m365]]"
        )
        .key(),
        Some("email.google[0].internal_domains")
    );
    assert_eq!(
        bad("admin = \"it@corp.example\"", "admin = \"it\"").key(),
        Some("email.google[0].admin")
    );
    assert_eq!(
        bad(
            "url = \"https://mailer.example/pause\"",
            "url = \"https://mailer.example/pause\"\nmethod = \"P O S T\""
        )
        .key(),
        Some("email.kill_switch.method")
    );
    assert_eq!(
        bad("tenant = \"t\"", "tenant = \"t\"\ntennant = \"u\"").key(),
        Some("email.m365[0].tennant")
    );
    assert!(!format!("{c:?}").contains("BEGIN PRIVATE KEY"));
}

pub(crate) const CHANNELS: &str = r#"
[[channels.pagerduty]]
name = "ops"
routing_key = "0123456789abcdef0123456789abcdef"
severities = ["critical", "high"]

[[channels.webhook]]
name = "soc"
url = "https://hooks.example/tocsin"
secret = "s3cret"

[heartbeat]
url = "https://monitor.example/ping/abc"
daily_summary = "09:00"
"#;

#[test]
fn channels_and_heartbeat_parse_with_defaults() {
    let c = Config::parse(&format!("{GOOD}{CHANNELS}"), "t.toml").unwrap();
    let pd = &c.channels.pagerduty[0];
    assert_eq!(pd.api_url.as_str(), "https://events.pagerduty.com/");
    assert_eq!(
        pd.severities,
        Some(vec![Severity::Critical, Severity::High])
    );
    assert_eq!(c.channels.webhook[0].severities, None);
    let hb = c.heartbeat.as_ref().unwrap();
    assert_eq!(hb.interval, Duration::from_secs(60));
    assert_eq!(hb.daily_summary, NaiveTime::from_hms_opt(9, 0, 0));
    assert_eq!(c.telegram.failure_grace, Duration::from_secs(120));
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn channel_errors_name_the_key() {
    let text = format!("{GOOD}{CHANNELS}");
    let e = err(&text.replace(
        "severities = [\"critical\", \"high\"]",
        "severities = [\"urgent\"]",
    ));
    assert_eq!(e.key(), Some("channels.pagerduty[0].severities[0]"));
    let e = err(&text.replace("name = \"soc\"", "name = \"ops\""));
    assert_eq!(e.key(), Some("channels.webhook[0].name"));
    let e = err(&text.replace("https://hooks.example/tocsin", "ftp://hooks.example"));
    assert_eq!(e.key(), Some("channels.webhook[0].url"));
    let e = err(&text.replace("secret = \"s3cret\"\n", ""));
    assert_eq!(e.key(), Some("channels.webhook[0].secret"));
    let e = err(&text.replace("\"09:00\"", "\"9am\""));
    assert_eq!(e.key(), Some("heartbeat.daily_summary"));
    let e = err(&text.replace("routing_key", "routingkey"));
    assert_eq!(e.key(), Some("channels.pagerduty[0].routingkey"));
    let e = err(&GOOD.replace(
        "responders = [1, 2]",
        "responders = [1, 2]
failure_grace = \"2 parsecs\"",
    ));
    assert_eq!(e.key(), Some("telegram.failure_grace"));
}

#[test]
fn paging_section_parses_and_names_bad_keys() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.paging.unmutable, super::DEFAULT_UNMUTABLE.to_vec());
    assert!(c.paging.approve_quorum.is_empty() && c.paging.resolve_quorum.is_empty());
    assert_eq!(c.paging.mute_without_quorum, Duration::from_secs(3600));
    let paging =
        "\n[paging]\nunmutable = [\"social.unapproved_post\"]\napprove_quorum = { critical = 2 }\n";
    let c = Config::parse(&format!("{GOOD}{paging}"), "t.toml").unwrap();
    assert_eq!(c.paging.unmutable, vec![Rule::UnapprovedPost]);
    assert_eq!(c.paging.approve_quorum[&Severity::Critical], 2);
    let e = err(&format!("{GOOD}{}", paging.replace("= 2", "= 6")));
    assert_eq!(e.key(), Some("paging.approve_quorum.critical"));
    let e = err(&format!("{GOOD}{}", paging.replace("critical", "dire")));
    assert_eq!(e.key(), Some("paging.approve_quorum"));
    let e = err(&format!(
        "{GOOD}{}",
        paging.replace("unapproved_post", "nope")
    ));
    assert_eq!(e.key(), Some("paging.unmutable[0]"));
    let e = err(&format!(
        "{GOOD}{}",
        paging.replace("unmutable", "unmuteable")
    ));
    assert!(e.to_string().ends_with("did you mean `unmutable`?"), "{e}");
}

pub(crate) const BLUESKY: &str = r#"
[[accounts]]
name = "sky"
platform = "bluesky"
base_url = "https://bsky.social"
account_id = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
"#;

#[test]
fn bluesky_accounts_parse_with_defaults_and_bad_keys_are_named() {
    let c = Config::parse(&format!("{GOOD}{BLUESKY}"), "t.toml").unwrap();
    let sky = &c.accounts[1];
    assert_eq!(sky.plc_url().as_str(), "https://plc.directory/");
    assert_eq!(sky.jetstream_url().as_str(), DEFAULT_JETSTREAM_URL);
    let handle = BLUESKY.replace(
        "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        "examplecorp.bsky.social",
    );
    assert!(Config::parse(&format!("{GOOD}{handle}"), "t.toml").is_ok());
    let e = err(&format!(
        "{GOOD}{}",
        BLUESKY.replace("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "@examplecorp")
    ));
    assert_eq!(e.key(), Some("accounts[1].account_id"));
    let e = err(&format!(
        "{GOOD}{BLUESKY}jetstream_url = \"https://jetstream.example/subscribe\"\n"
    ));
    assert_eq!(e.key(), Some("accounts[1].jetstream_url"));
    let e = err(&format!("{GOOD}plc_url = \"https://plc.directory\"\n"));
    assert_eq!(e.key(), Some("accounts[0].plc_url"));
    assert!(
        e.to_string().contains("only for platform = \"bluesky\""),
        "{e}"
    );
}

#[test]
fn missing_key_is_named() {
    let e = err(&GOOD.replace("chat_id = -100\n", ""));
    assert_eq!(e.key(), Some("telegram.chat_id"));
}

#[test]
fn bad_duration_is_named() {
    let e = err(&GOOD.replace("\"2m\"", "\"2 parsecs\""));
    assert_eq!(e.key(), Some("accounts[0].poll_interval"));
    assert!(e.to_string().contains("invalid duration"), "{e}");
}

#[test]
fn validation_names_the_key() {
    let e = err(&GOOD.replace("responders = [1, 2]", "responders = []"));
    assert_eq!(e.key(), Some("telegram.responders"));
    let e = err(&GOOD.replace("platform = \"mastodon\"", "platform = \"x\""));
    assert_eq!(
        e.key(),
        Some("accounts[0].token"),
        "X reads nothing without one"
    );
    let e = err(&GOOD.replace("base_url = \"https://mastodon.example\"\n", ""));
    assert_eq!(e.key(), Some("accounts[0].base_url"));
    let e = err(&GOOD.replace("platform = \"mastodon\"", "platform = \"myspace\""));
    assert_eq!(e.key(), Some("accounts[0].platform"));
    let e = err(&GOOD.replace("platform = \"mastodon\"", "platform = \"telegram_channel\""));
    assert_eq!(
        e.key(),
        Some("accounts[0].account_id"),
        "a channel id is a number"
    );
    let e = err(&format!("{GOOD}\n[paging]\ntakedown_quorum = 9\n"));
    assert_eq!(e.key(), Some("paging.takedown_quorum"));
}

#[test]
fn the_milter_policy_names_only_mail_rules_and_known_actions() {
    let c = Config::parse(
        &format!(
            "{GOOD}\n[email.milter]\npolicy = {{ \"email.exposed_recipients\" = \"hold\", \"email.unapproved_bulk\" = \"tempfail\" }}\n"
        ),
        "t.toml",
    )
    .unwrap();
    let m = c.email.unwrap().milter.unwrap();
    assert_eq!(
        m.action(crate::model::Rule::ExposedRecipients),
        MilterAction::Hold
    );
    assert_eq!(
        m.action(crate::model::Rule::UnapprovedBulk),
        MilterAction::Tempfail
    );
    assert_eq!(
        m.action(crate::model::Rule::SecurityNotice),
        MilterAction::Observe
    );
    let e = err(&format!(
        "{GOOD}\n[email.milter]\npolicy = {{ \"social.unapproved_post\" = \"hold\" }}\n"
    ));
    assert!(e.to_string().contains("email.milter.policy"), "{e}");
    let e = err(&format!(
        "{GOOD}\n[email.milter]\npolicy = {{ \"email.exposed_recipients\" = \"bounce\" }}\n"
    ));
    assert!(e.to_string().contains("bounce"), "{e}");
    let e = err(&format!("{GOOD}\n[email.milter]\nallow_from = []\n"));
    assert_eq!(e.key(), Some("email.milter.allow_from"), "{e}");
}

#[test]
fn api_tokens_have_names_and_roles_and_api_token_is_the_admin_api() {
    let tokens =
        "\n[[general.api_tokens]]\nname = \"ci\"\ntoken = \"ci-secret\"\nrole = \"approve\"\n";
    let c = Config::parse(&format!("{GOOD}{tokens}"), "t.toml").unwrap();
    let all = c.general.all_api_tokens();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].name.as_str(), all[0].role), ("api", ApiRole::Admin));
    assert_eq!(all[0].token.expose(), "literal-token");
    assert_eq!(
        (all[1].name.as_str(), all[1].role),
        ("ci", ApiRole::Approve)
    );
    let e = err(&format!("{GOOD}{}", tokens.replace("approve", "owner")));
    assert_eq!(e.key(), Some("general.api_tokens[0].role"));
    let e = err(&format!("{GOOD}{}", tokens.replace("\"ci\"", "\"api\"")));
    assert_eq!(e.key(), Some("general.api_tokens[0].name"));
    let e = err(&format!(
        "{GOOD}{}",
        tokens.replace("ci-secret", "literal-token")
    ));
    assert_eq!(e.key(), Some("general.api_tokens[0].token"));
}

#[test]
fn meta_accounts_default_to_the_graph_api_and_push_needs_both_secrets() {
    let (c, _key) = full_example();
    assert_eq!(c.meta.graph_version, "v21.0");
    assert!(c.meta.push());
    let page = c
        .accounts
        .iter()
        .find(|a| a.platform == Platform::FacebookPage)
        .unwrap();
    assert_eq!(page.base_url.as_str(), "https://graph.facebook.com/");
    let base = example_text();
    let err = |extra: &str| {
        Config::parse(&format!("{base}\n{extra}"), "t")
            .unwrap_err()
            .to_string()
    };
    assert!(err("[meta]\ngraph_version = \"21\"").contains("meta.graph_version"));
    assert!(err("[meta]\napp_secret = \"s\"").contains("meta.verify_token"));
    assert!(err("[meta]\napp_secret = \"s\"\nverify_token = \"v\"").contains("general.public_url"));
    let page = "[[accounts]]\nname = \"fb\"\nplatform = \"facebook_page\"\naccount_id = \"1\"";
    assert!(err(page).contains("accounts[2].token"));
    assert!(
        err(&format!("{page}\ntoken = \"t\"").replace("\"1\"", "\"examplecorp\""))
            .contains("accounts[2].account_id")
    );
}

#[test]
fn imap_feeds_are_checked_and_named() {
    let feed = |extra: &str| {
        format!(
            "{GOOD}\n[email]\n\n[[email.imap]]\nname = \"x-mailbox\"\naccount = \"x-main\"\n\
             host = \"imap.example.com\"\nusername = \"social@example.com\"\n\
             password = \"pw\"\nauthserv_id = \"mx.example.com\"\n{extra}"
        )
    };
    let c = Config::parse(&feed(""), "t.toml").unwrap();
    let imap = &c.email.unwrap().imap[0];
    assert_eq!((imap.port, imap.mailbox.as_str()), (993, "INBOX"));
    for (text, key) in [
        (
            feed("").replace("name = \"x-mailbox\"", "name = \"main\""),
            "email.imap[0].name",
        ),
        (
            feed("").replace("host = \"imap.example.com\"", "host = \" \""),
            "email.imap[0].host",
        ),
        (
            feed("").replace("authserv_id = \"mx.example.com\"", "authserv_id = \"\""),
            "email.imap[0].authserv_id",
        ),
        (feed("port = 0"), "email.imap[0].port"),
    ] {
        let e = err(&text);
        assert_eq!(e.key(), Some(key), "{e}");
    }
}
