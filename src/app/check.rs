//! What `check-config` (and start-up, and a reload) checks beyond the file itself, and what it
//! prints.
//!
//! The configuration stays data: a key the file only carries (the SendGrid verification key, a
//! Google service account) is parsed by the component that uses it. [`check`] builds those
//! parts the way start-up does, so a bad key is refused before anything runs, with an error
//! that names its config key.

use crate::{
    config::{Config, ConfigError, Platform},
    model::Severity,
    platforms,
    store::SigningKey,
};

/// Parses what the components parse at start-up; the error names the config key.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    signing_key(config)?;
    if let Some(email) = &config.email {
        crate::mail::check(email)?;
    }
    Ok(())
}

/// The key that signs the chain heads, if one is configured.
pub fn signing_key(config: &Config) -> Result<Option<SigningKey>, ConfigError> {
    config
        .general
        .signing_key
        .as_ref()
        .map(|k| {
            SigningKey::parse(k.expose())
                .map_err(|e| ConfigError::invalid("general.signing_key", e.to_string()))
        })
        .transpose()
}

/// What `check-config` prints: everything that will be watched and where pages go.
pub fn summary(config: &Config) -> String {
    let mut out = String::new();
    let g = &config.general;
    let t = &config.telegram;
    out.push_str(&format!("state dir     {}\n", g.state_dir.display()));
    out.push_str(&format!(
        "http listen   {} (api token set) · API, /healthz, /readyz, /metrics · at most {} connections\n",
        g.listen, g.max_connections
    ));
    let webhooks = config.email.as_ref().is_some_and(|e| e.has_webhooks());
    match g.hooks_listen {
        Some(addr) => out.push_str(&format!(
            "hooks listen  {addr} · /hooks/* and /healthz only{} · at most {} connections\n",
            if webhooks { "" } else { " (no webhook configured)" },
            g.max_connections
        )),
        None if webhooks => out.push_str(
            "hooks listen  on http listen, beside /metrics and /readyz (general.hooks_listen serves them apart)\n",
        ),
        None => {}
    }
    let every = humantime::format_duration(g.publish_heads);
    match signing_key(config) {
        Ok(Some(key)) => out.push_str(&format!(
            "chain heads   signed, public key {} · published every {every}\n",
            key.public_key()
        )),
        _ => out.push_str(&format!(
            "chain heads   UNSIGNED (no general.signing_key) · published every {every}\n"
        )),
    }
    out.push_str(&format!(
        "telegram      {} chat {} · {} responder(s): {}\n",
        t.api_url,
        t.chat_id,
        t.responders.len(),
        t.responders
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for c in &config.channels.pagerduty {
        out.push_str(&format!(
            "page          pagerduty {} · {} · {}\n",
            c.name,
            c.api_url,
            severities(&c.severities)
        ));
    }
    for c in &config.channels.webhook {
        out.push_str(&format!(
            "page          webhook {} · {} · {} · signed\n",
            c.name,
            // The path may carry the receiver's token: the host says enough here.
            c.url.host_str().unwrap_or_default(),
            severities(&c.severities)
        ));
    }
    if let Some(h) = &config.heartbeat {
        if h.url.is_some() {
            out.push_str(&format!(
                "heartbeat     every {}\n",
                humantime::format_duration(h.interval)
            ));
        }
        if let Some(t) = h.daily_summary {
            out.push_str(&format!(
                "summary       daily at {} UTC\n",
                t.format("%H:%M")
            ));
        }
    }
    let feeds = config.email.as_ref().is_some_and(|e| {
        !e.google.is_empty()
            || !e.m365.is_empty()
            || !e.imap.is_empty()
            || e.ses.is_some()
            || e.sendgrid.is_some()
            || e.mailgun.is_some()
            || e.postmark.is_some()
            || e.journal.is_some()
            || e.milter.is_some()
    });
    if config.accounts.is_empty() {
        out.push_str(if feeds {
            "accounts      none: only the mail feeds below are watched\n"
        } else {
            "accounts      none: nothing will be watched\n"
        });
    }
    // The channels the bot is an admin of come first, beside the chat settings above.
    for a in config
        .accounts
        .iter()
        .filter(|a| a.platform == Platform::TelegramChannel)
    {
        out.push_str(&platforms::of(a.platform).describe(a));
    }
    let p = &config.paging;
    out.push_str(&format!(
        "takedown      {} responder(s) per takedown · approved-post deletions {}\n",
        p.takedown_quorum,
        if p.page_approved_deletions {
            "paged (medium)"
        } else {
            "recorded, not paged"
        }
    ));
    for a in config
        .accounts
        .iter()
        .filter(|a| a.platform != Platform::TelegramChannel)
    {
        out.push_str(&platforms::of(a.platform).describe(a));
    }
    for p in platforms::PLATFORMS {
        out.push_str(&p.describe_all(config));
    }
    if let Some(email) = &config.email {
        email.summary(&mut out);
    }
    out
}

fn severities(s: &Option<Vec<Severity>>) -> String {
    match s {
        None => "every severity".into(),
        Some(list) => list
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::STANDARD};
    use p256::pkcs8::EncodePublicKey;

    use super::*;
    use crate::config::tests::{
        BLUESKY, CHANNELS, GOOD, example, full_example, test_service_account,
    };

    fn checked(extra: &str) -> Result<(), ConfigError> {
        check(&Config::parse(&format!("{GOOD}{extra}"), "t.toml").expect("parses"))
    }

    #[test]
    fn keys_parsed_by_their_components_are_named_when_bad() {
        let signer = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let der = signer.verifying_key().to_public_key_der().unwrap();
        let good_key = STANDARD.encode(der.as_bytes());
        checked(&format!(
            "\n[email.sendgrid]\npublic_key = \"{good_key}\"\n"
        ))
        .unwrap();
        let e = checked("\n[email.sendgrid]\npublic_key = \"bm90IGEga2V5\"\n").unwrap_err();
        assert_eq!(e.key(), Some("email.sendgrid.public_key"));

        let google = |sa: &str| {
            format!(
                "\n[[email.google]]\nname = \"workspace\"\nservice_account = '{sa}'\n\
                 admin = \"it@corp.example\"\ninternal_domains = [\"corp.example\"]\n"
            )
        };
        let sa = test_service_account();
        checked(&google(&sa)).unwrap();
        let e = checked(&google(&sa.replace("MII", "AAA"))).unwrap_err();
        assert_eq!(e.key(), Some("email.google[0].service_account"));
    }

    #[test]
    fn the_journal_certificate_and_key_are_checked_with_their_keys() {
        let tls = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let journal = |cert: &str, key: &str| {
            format!("\n[email.journal]\ntls_cert = '''{cert}'''\ntls_key = '''{key}'''\n")
        };
        let (cert, key) = (tls.cert.pem(), tls.key_pair.serialize_pem());
        checked(&journal(&cert, &key)).unwrap();
        let e = checked(&journal("not a certificate", &key)).unwrap_err();
        assert_eq!(e.key(), Some("email.journal.tls_cert"), "{e}");
        let bad_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let e = checked(&journal(&cert, bad_key)).unwrap_err();
        assert_eq!(e.key(), Some("email.journal.tls_key"), "{e}");
        let e = checked(&journal(&cert, &other.key_pair.serialize_pem())).unwrap_err();
        assert_eq!(
            e.key(),
            Some("email.journal.tls_key"),
            "another certificate's key: {e}"
        );
    }

    #[test]
    fn the_journal_and_the_milter_alone_are_what_will_be_watched() {
        let head = GOOD.split("[[accounts]]").next().unwrap();
        let text = format!(
            "{head}\n[email.journal]\n\n[email.milter]\nlisten = \"127.0.0.1:8899\"\n\
             policy = {{ \"email.exposed_recipients\" = \"hold\" }}\n"
        );
        let out = summary(&Config::parse(&text, "t.toml").unwrap());
        assert!(
            out.contains("accounts      none: only the mail feeds below are watched"),
            "{out}"
        );
        assert!(out.contains("email journal journal · SMTP on"), "{out}");
        assert!(
            out.contains(
                "email milter milter · milter protocol on 127.0.0.1:8899 · from 127.0.0.0/8, ::1/128 · policy: email.exposed_recipients → hold"
            ),
            "{out}"
        );
    }

    #[test]
    fn the_summary_says_what_is_watched_and_where_pages_go() {
        let good = summary(&Config::parse(GOOD, "t.toml").unwrap());
        assert!(good.contains("main · mastodon"), "{good}");
        let example = summary(&example());
        assert!(
            example.contains("telegram_channel chat -1001234567890"),
            "{example}"
        );
        let (full, _key) = full_example();
        let full = summary(&full);
        for line in [
            "hooks listen  0.0.0.0:8443 · /hooks/* and /healthz only",
            "1 pinned cert(s), nothing fetched",
            "POST /hooks/mailgun · basic auth as mailgun",
            "audit         workspace · google workspace",
            "kill switch   POST mailer.internal.example.com",
            "POST /hooks/sendgrid",
            "x schedule",
            "email journal journal · SMTP on 127.0.0.1:2525 · from 10.0.5.0/24 · STARTTLS required · AUTH on (user postfix)",
            "chain heads   signed, public key MP73linpLLxD1pUGy7i5ajOduU57ismgq/h20yuqYsE=",
        ] {
            assert!(full.contains(line), "{line}: {full}");
        }
        assert!(!full.contains("/admin/pause"), "{full}");
        assert!(
            good.contains("http listen   127.0.0.1:8080") && !good.contains("hooks listen"),
            "{good}"
        );
        let on_main = summary(
            &Config::parse(
                &format!("{GOOD}\n[email.mailgun]\nsigning_key = \"k\"\npassword = \"p\"\n"),
                "t.toml",
            )
            .unwrap(),
        );
        assert!(
            on_main.contains("hooks listen  on http listen, beside /metrics and /readyz"),
            "{on_main}"
        );
        let channels = summary(&Config::parse(&format!("{GOOD}{CHANNELS}"), "t.toml").unwrap());
        assert!(channels.contains("pagerduty ops"), "{channels}");
        assert!(!channels.contains("s3cret") && !channels.contains("0123456789abcdef"));
        let sky = summary(&Config::parse(&format!("{GOOD}{BLUESKY}"), "t.toml").unwrap());
        assert!(
            sky.contains("sky · bluesky did:plc:ewvi7nxzyoun6zhxrhs64oiz")
                && sky.contains("push from Jetstream wss://")
                && sky.contains("takedown not configured"),
            "{sky}"
        );
    }
}
