//! What serde cannot check: cross-field rules and ranges, each refused with its dotted key.

use std::collections::HashSet;
use std::time::Duration;

use url::Url;

use super::{
    Account, Config, ConfigError, GRAPH_API_URL, MAX_QUORUM, MIN_POLL_INTERVAL, Platform,
    X_API_URL, accounts::unset_base_url,
};
use crate::model::Severity;

/// More connections than this per listener would outgrow any file-descriptor limit.
const MAX_CONNECTIONS: usize = 65_536;

impl Config {
    /// Defaults that depend on another key (an account's `base_url` on its platform).
    pub(super) fn fill_defaults(&mut self) -> Result<(), ConfigError> {
        let unset = unset_base_url();
        for (i, account) in self.accounts.iter_mut().enumerate() {
            if account.base_url != unset {
                continue;
            }
            match account.platform {
                Platform::X => account.base_url = Url::parse(X_API_URL).expect("constant URL"),
                Platform::FacebookPage | Platform::Instagram => {
                    account.base_url = Url::parse(GRAPH_API_URL).expect("constant URL")
                }
                Platform::YouTube => {
                    account.base_url = Url::parse(super::YOUTUBE_API_URL).expect("constant URL")
                }
                _ => {
                    return Err(ConfigError::invalid(
                        format!("accounts[{i}].base_url"),
                        format!(
                            "missing: the {} server's URL, like \"https://mastodon.example\"",
                            account.platform
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// X push needs both of its keys, a webhook id as X writes them, and the public URL X
    /// delivers to.
    fn validate_x_push(&self) -> Result<(), ConfigError> {
        let x = &self.x;
        match (&x.consumer_secret, &x.webhook_id) {
            (None, None) => return Ok(()),
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "x.webhook_id",
                    "X push needs the id of the webhook registered at general.public_url",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "x.consumer_secret",
                    "X push needs the app's consumer secret to check X's signatures",
                ));
            }
            (Some(_), Some(id)) => {
                if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ConfigError::invalid(
                        "x.webhook_id",
                        "X's webhook ids are 1 to 19 digits",
                    ));
                }
            }
        }
        if self.general.public_url.is_none() {
            return Err(ConfigError::invalid(
                "general.public_url",
                "X push delivers to general.public_url + /hooks/x: set it",
            ));
        }
        Ok(())
    }

    /// Checks what serde cannot: cross-field rules and ranges.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_CONNECTIONS).contains(&self.general.max_connections) {
            return Err(ConfigError::invalid(
                "general.max_connections",
                format!("between 1 and {MAX_CONNECTIONS}"),
            ));
        }
        if let Some(hooks) = self.general.hooks_listen
            && hooks == self.general.listen
            && hooks.port() != 0
        {
            return Err(ConfigError::invalid(
                "general.hooks_listen",
                "must differ from general.listen (leave it out to serve the webhooks there)",
            ));
        }
        if let Some(url) = &self.general.public_url {
            check_secret_url("general.public_url", url)?;
        }
        self.validate_x_push()?;
        self.validate_meta()?;
        if self.telegram.chat_id == 0 {
            return Err(ConfigError::invalid(
                "telegram.chat_id",
                "must be the on-call chat's id",
            ));
        }
        if self.telegram.responders.is_empty() {
            return Err(ConfigError::invalid(
                "telegram.responders",
                "list at least one Telegram user id allowed to act on incidents",
            ));
        }
        for (key, d) in [
            ("general.source_timeout", self.general.source_timeout),
            ("telegram.request_timeout", self.telegram.request_timeout),
        ] {
            if d < Duration::from_millis(100) || d > Duration::from_secs(300) {
                return Err(ConfigError::invalid(key, "between 100ms and 5m"));
            }
        }
        if self.general.publish_heads < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                "general.publish_heads",
                "at least 100ms (default 1h)",
            ));
        }
        if self.telegram.long_poll > Duration::from_secs(50) {
            return Err(ConfigError::invalid("telegram.long_poll", "at most 50s"));
        }
        check_secret_url("telegram.api_url", &self.telegram.api_url)?;
        let mut names = std::collections::BTreeSet::new();
        let mut tokens = std::collections::BTreeSet::new();
        for (i, t) in self.general.all_api_tokens().iter().enumerate() {
            let key = |field: &str| match i {
                0 => "general.api_token".to_owned(),
                i => format!("general.api_tokens[{}].{field}", i - 1),
            };
            if t.name.trim().is_empty() || !names.insert(t.name.clone()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!(
                        "a unique, non-empty name (`{}` is taken by general.api_token)",
                        super::LEGACY_API_TOKEN_NAME
                    ),
                ));
            }
            if t.token.expose().is_empty() || !tokens.insert(t.token.expose().to_owned()) {
                return Err(ConfigError::invalid(
                    key("token"),
                    "a non-empty token no other API token uses",
                ));
            }
        }
        let quorums = [
            ("approve_quorum", &self.paging.approve_quorum),
            ("resolve_quorum", &self.paging.resolve_quorum),
        ];
        for (name, quorum) in quorums {
            for (severity, n) in quorum {
                if !(1..=MAX_QUORUM).contains(n) {
                    return Err(ConfigError::invalid(
                        format!("paging.{name}.{}", severity.as_str()),
                        format!("between 1 and {MAX_QUORUM} responders, not {n}"),
                    ));
                }
            }
        }
        if !(1..=MAX_QUORUM).contains(&self.paging.takedown_quorum) {
            return Err(ConfigError::invalid(
                "paging.takedown_quorum",
                format!(
                    "between 1 and {MAX_QUORUM} responders, not {}",
                    self.paging.takedown_quorum
                ),
            ));
        }
        if let Some(e) = &self.escalation {
            let short = Duration::from_millis(100);
            let mut intervals = vec![(
                "escalation.renotify_after".to_owned(),
                Some(e.renotify_after),
            )];
            intervals.push(("escalation.escalate_after".to_owned(), e.escalate_after));
            for (sev, r) in &e.severity {
                intervals.push((
                    format!("escalation.severity.{}.renotify_after", sev.as_str()),
                    r.renotify_after,
                ));
                intervals.push((
                    format!("escalation.severity.{}.escalate_after", sev.as_str()),
                    r.escalate_after,
                ));
            }
            for (key, d) in intervals {
                if d.is_some_and(|d| d < short) {
                    return Err(ConfigError::invalid(key, "at least 100ms"));
                }
            }
            for (i, tier) in e.tiers.iter().enumerate() {
                if tier.mentions.is_empty() && tier.chat_id.is_none() {
                    return Err(ConfigError::invalid(
                        format!("escalation.tiers[{i}]"),
                        "name at least one of `mentions` or `chat_id`",
                    ));
                }
                if let Some(m) = tier
                    .mentions
                    .iter()
                    .find(|m| m.is_empty() || m.contains(char::is_whitespace))
                {
                    return Err(ConfigError::invalid(
                        format!("escalation.tiers[{i}].mentions"),
                        format!("`{m}` is not a Telegram username"),
                    ));
                }
            }
        }
        let mut names = HashSet::new();
        let mut feed_names: Vec<String> = self.accounts.iter().map(|a| a.name.clone()).collect();
        for (i, account) in self.accounts.iter().enumerate() {
            let key = |field: &str| format!("accounts[{i}].{field}");
            if account.name.trim().is_empty() || account.name.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    key("name"),
                    "a non-empty name without spaces",
                ));
            }
            if !names.insert(account.name.as_str()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("`{}` is used by another account", account.name),
                ));
            }
            if !matches!(
                account.platform,
                Platform::Mastodon
                    | Platform::X
                    | Platform::TelegramChannel
                    | Platform::Bluesky
                    | Platform::FacebookPage
                    | Platform::Instagram
                    | Platform::YouTube
            ) {
                return Err(ConfigError::invalid(
                    key("platform"),
                    format!(
                        "`{}` is not supported by this build yet; supported: mastodon, x, telegram_channel, bluesky, facebook_page, instagram, youtube",
                        account.platform
                    ),
                ));
            }
            if account.platform == Platform::X {
                if account.token.is_none() {
                    return Err(ConfigError::invalid(
                        key("token"),
                        "X needs the app's bearer token to read anything",
                    ));
                }
                if !account.account_id.chars().all(|c| c.is_ascii_digit()) {
                    return Err(ConfigError::invalid(
                        key("account_id"),
                        format!(
                            "`{}` is not an X user id: the numeric id, not the @handle",
                            account.account_id
                        ),
                    ));
                }
            }
            if account.platform == Platform::TelegramChannel
                && !account
                    .account_id
                    .trim()
                    .parse::<i64>()
                    .is_ok_and(|id| id < 0)
            {
                return Err(ConfigError::invalid(
                    key("account_id"),
                    "the channel's chat id: a negative number, like -1001234567890",
                ));
            }
            // The account's tokens go to base_url; a Telegram channel's is the bot token.
            if account.token.is_some()
                || account.write_token.is_some()
                || account.platform == Platform::TelegramChannel
            {
                check_secret_url(&key("base_url"), &account.base_url)?;
            } else {
                check_http_url(&key("base_url"), &account.base_url)?;
            }
            if account.account_id.trim().is_empty() {
                return Err(ConfigError::invalid(key("account_id"), "must not be empty"));
            }
            validate_bluesky_keys(account, &key)?;
            validate_meta_account(account, &key)?;
            if account.poll_interval < MIN_POLL_INTERVAL {
                return Err(ConfigError::invalid(
                    key("poll_interval"),
                    format!("at least {}", humantime::format_duration(MIN_POLL_INTERVAL)),
                ));
            }
        }
        self.validate_youtube()?;
        for (key, n) in [
            (
                "x.timeline_requests_per_window",
                self.x.timeline_requests_per_window,
            ),
            (
                "x.users_requests_per_window",
                self.x.users_requests_per_window,
            ),
        ] {
            if n == 0 {
                return Err(ConfigError::invalid(key, "at least 1 request per window"));
            }
        }
        self.validate_channels()?;
        if let Some(email) = &self.email {
            email.validate(&mut feed_names)?;
        }
        if let Some(h) = &self.heartbeat {
            if let Some(url) = &h.url {
                let parsed = Url::parse(url.expose()).map_err(|e| {
                    ConfigError::invalid("heartbeat.url", format!("not a URL ({e})"))
                })?;
                // The URL is the secret: the error never shows it.
                check_secret_url("heartbeat.url", &parsed).map_err(|_| {
                    ConfigError::invalid(
                        "heartbeat.url",
                        "not an https URL (plain http only on loopback)",
                    )
                })?;
            }
            if h.interval < MIN_POLL_INTERVAL {
                return Err(ConfigError::invalid(
                    "heartbeat.interval",
                    format!("at least {}", humantime::format_duration(MIN_POLL_INTERVAL)),
                ));
            }
            if h.url.is_none() && h.daily_summary.is_none() {
                return Err(ConfigError::invalid(
                    "heartbeat",
                    "set `url`, `daily_summary` or both, or remove the section",
                ));
            }
        }
        if self.telegram.failure_grace < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "telegram.failure_grace",
                "at least 1s",
            ));
        }
        Ok(())
    }

    fn validate_channels(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        let mut check = |key: String,
                         name: &str,
                         url: (&str, &Url),
                         severities: &Option<Vec<Severity>>|
         -> Result<(), ConfigError> {
            if name.trim().is_empty() || name.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    "a non-empty name without spaces",
                ));
            }
            if !names.insert(name.to_owned()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("`{name}` is used by another channel"),
                ));
            }
            // PagerDuty's routing key and the webhook's signature travel with every page.
            check_secret_url(&format!("{key}.{}", url.0), url.1)?;
            if severities.as_ref().is_some_and(Vec::is_empty) {
                return Err(ConfigError::invalid(
                    format!("{key}.severities"),
                    "list at least one severity, or remove the key to page every severity",
                ));
            }
            Ok(())
        };
        for (i, c) in self.channels.pagerduty.iter().enumerate() {
            let key = format!("channels.pagerduty[{i}]");
            check(key, &c.name, ("api_url", &c.api_url), &c.severities)?;
        }
        for (i, c) in self.channels.webhook.iter().enumerate() {
            let key = format!("channels.webhook[{i}]");
            check(key, &c.name, ("url", &c.url), &c.severities)?;
        }
        Ok(())
    }
}

/// The Bluesky keys: only on Bluesky accounts, with the schemes their services speak.
fn validate_bluesky_keys(
    account: &Account,
    key: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    if account.platform != Platform::Bluesky {
        for (name, set) in [
            ("plc_url", account.plc_url.is_some()),
            ("jetstream_url", account.jetstream_url.is_some()),
            ("pds_url", account.pds_url.is_some()),
            ("appview_url", account.appview_url.is_some()),
            ("allow_private_endpoints", account.allow_private_endpoints),
        ] {
            if set {
                return Err(ConfigError::invalid(
                    key(name),
                    format!(
                        "only for platform = \"bluesky\", not `{}`",
                        account.platform
                    ),
                ));
            }
        }
        return Ok(());
    }
    let id = account.account_id.trim();
    let is_did = id.starts_with("did:plc:") || id.starts_with("did:web:");
    let is_handle = !id.starts_with("did:")
        && id.contains('.')
        && !id.starts_with('@')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !is_did && !is_handle {
        return Err(ConfigError::invalid(
            key("account_id"),
            format!(
                "`{id}` is neither a did:plc:/did:web: DID nor a handle like example.bsky.social"
            ),
        ));
    }
    if let Some(url) = &account.plc_url {
        check_http_url(&key("plc_url"), url)?;
    }
    if let Some(url) = &account.appview_url {
        check_http_url(&key("appview_url"), url)?;
    }
    // The app password goes there.
    if let Some(url) = &account.pds_url {
        check_secret_url(&key("pds_url"), url)?;
    }
    if let Some(url) = &account.jetstream_url
        && !(matches!(url.scheme(), "ws" | "wss") && url.has_host())
    {
        return Err(ConfigError::invalid(
            key("jetstream_url"),
            format!("`{url}` is not a ws(s) URL"),
        ));
    }
    Ok(())
}

pub(super) fn check_http_url(key: &str, url: &Url) -> Result<(), ConfigError> {
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(()),
        _ => Err(ConfigError::invalid(
            key,
            format!("`{url}` is not an http(s) URL"),
        )),
    }
}

/// A URL that carries a secret (a token in its path or headers, a key in its body): `https`,
/// or plain `http` on loopback only, where nobody on the wire can read it.
pub(super) fn check_secret_url(key: &str, url: &Url) -> Result<(), ConfigError> {
    check_http_url(key, url)?;
    if url.scheme() == "https" || is_loopback(url) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        key,
        format!(
            "`{url}` would carry a secret in plain text: use https (http only on 127.0.0.1, \
             ::1 or localhost)"
        ),
    ))
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    }
}

impl Config {
    /// The `[youtube]` rules that only hold when a YouTube account is watched.
    fn validate_youtube(&self) -> Result<(), ConfigError> {
        let yt = &self.youtube;
        // The subscription secret travels in the subscription request.
        check_secret_url("youtube.hub_url", &yt.hub_url)?;
        if !(300..=10 * 24 * 3600).contains(&yt.lease.as_secs()) {
            return Err(ConfigError::invalid(
                "youtube.lease",
                "between 5 minutes and 10 days (hubs cap leases at about 10 days)",
            ));
        }
        if yt.daily_quota < 100 {
            return Err(ConfigError::invalid(
                "youtube.daily_quota",
                "at least 100 units",
            ));
        }
        for (i, account) in self.accounts.iter().enumerate() {
            if account.platform != Platform::YouTube {
                continue;
            }
            if yt.api_key.is_none() {
                return Err(ConfigError::invalid(
                    "youtube.api_key",
                    "missing: the Data API key every YouTube account is read with",
                ));
            }
            check_secret_url(&format!("accounts[{i}].base_url"), &account.base_url)?;
            let id = &account.account_id;
            if !(id.len() == 24
                && id.starts_with("UC")
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            {
                return Err(ConfigError::invalid(
                    format!("accounts[{i}].account_id"),
                    format!(
                        "`{id}` is not a channel id: the 24 characters starting with UC, not the @handle"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `[meta]`: a version Meta would accept, and push only with both secrets and a callback.
    fn validate_meta(&self) -> Result<(), ConfigError> {
        let meta = &self.meta;
        let version = meta.graph_version.strip_prefix('v').unwrap_or_default();
        let well_formed = version.split_once('.').is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if !well_formed {
            return Err(ConfigError::invalid(
                "meta.graph_version",
                format!(
                    "`{}` is not a Graph API version: write it like \"v21.0\"",
                    meta.graph_version
                ),
            ));
        }
        match (&meta.app_secret, &meta.verify_token) {
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "meta.verify_token",
                    "missing: webhooks need the verify token typed into the App Dashboard too",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "meta.app_secret",
                    "missing: webhook deliveries cannot be verified without the app secret",
                ));
            }
            _ => {}
        }
        if meta.push() && self.general.public_url.is_none() {
            return Err(ConfigError::invalid(
                "general.public_url",
                "missing: Meta's webhooks need the https URL the hooks listener is reached at",
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&meta.max_body) {
            return Err(ConfigError::invalid(
                "meta.max_body",
                "between 1024 and 16777216 bytes",
            ));
        }
        Ok(())
    }
}

/// Facebook Page and Instagram accounts: the Page (or Instagram) token, a numeric id.
fn validate_meta_account(
    account: &Account,
    key: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let what = match account.platform {
        Platform::FacebookPage => "Page",
        Platform::Instagram => "Instagram professional account",
        _ => return Ok(()),
    };
    if account.token.is_none() {
        return Err(ConfigError::invalid(
            key("token"),
            format!("the Graph API reads nothing without a token: set the {what}'s access token"),
        ));
    }
    if !account.account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::invalid(
            key("account_id"),
            format!(
                "`{}` is not a Graph API id: the {what}'s numeric id, not its name",
                account.account_id
            ),
        ));
    }
    Ok(())
}
