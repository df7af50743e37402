//! The social platforms, one folder each: its API client and wire types (`api.rs`), what it
//! watches (`watch.rs`, and its push streams), and its takedown (`takedown.rs`).
//!
//! [`Platform`] is the one seam the rest of the daemon sees: `app` builds the watchers and
//! `check-config` describes the accounts through it, `contain` takes a post down through it.
//! Adding a platform is a new folder implementing it, a fake in the `tocsin-fakes` crate, and
//! one line in [`PLATFORMS`] (plus the name in `config::Platform`, the config's vocabulary).
//! No platform reaches into another's folder; what they share (the source context, health,
//! rate-limit headers) lives in `crate::watch`.

pub mod bluesky;
pub mod mastodon;
pub mod meta;
pub mod telegram_channel;
pub mod x;
pub mod youtube;

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    pin::Pin,
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use url::{Host, Url};

use crate::{
    config::{self, Account, Config},
    model::TakedownOutcome,
    watch::{SourceContext, SourceFuture},
};

/// Every platform this build watches.
pub static PLATFORMS: [&dyn Platform; 7] = [
    &mastodon::Mastodon,
    &x::X,
    &bluesky::Bluesky,
    &telegram_channel::TelegramChannel,
    &meta::FacebookPage,
    &meta::Instagram,
    &youtube::YouTube,
];

/// What a platform's watchers are built with at start-up.
pub struct WatchContext<'a> {
    pub config: &'a Config,
    pub source: SourceContext,
    /// Updates the on-call bot receives on a watcher's behalf (Telegram channels push their
    /// posts to the bot's `getUpdates`): chat id → the watcher that takes them.
    pub bot_updates: &'a mut HashMap<i64, mpsc::Sender<telegram_channel::ChannelUpdate>>,
    /// Where push webhooks count what they accept and refuse.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The push webhook routes (each with its state) a platform's watchers are fed by: served
    /// on the hooks listener.
    pub hook_routes: &'a mut Vec<axum::Router>,
}

/// One post to delete, as `contain` asks for it.
#[derive(Clone, Copy)]
pub struct Takedown<'a> {
    pub http: &'a reqwest::Client,
    pub account: &'a Account,
    pub post_id: &'a str,
    /// The platform's time of the post when known, for platforms with a deletion window.
    pub posted_at: Option<DateTime<Utc>>,
    /// The account's approved profile baseline (field → value): what a platform pins the
    /// endpoints it learns from data to (Bluesky's `pds`), so a takeover that moved them
    /// receives nothing.
    pub baseline: &'a BTreeMap<String, String>,
}

/// A takedown in flight.
pub type TakedownFuture<'a> = Pin<Box<dyn Future<Output = TakedownOutcome> + Send + 'a>>;

/// One platform, as `app` and `contain` need it.
pub trait Platform: Sync {
    /// The name `accounts[].platform` gives it.
    fn kind(&self) -> config::Platform;

    /// The futures that watch `accounts` (this platform's, in config order) until shutdown.
    fn watch(&self, accounts: &[&Account], cx: &mut WatchContext<'_>) -> Vec<SourceFuture>;

    /// How long each watched thing may go without a success before it is blind
    /// (`monitor.blind`, `/readyz`): the accounts, and any health entry of their own (a push
    /// stream). By default each account's `grace`.
    fn graces(&self, accounts: &[&Account], _config: &Config) -> Vec<(String, Duration)> {
        accounts
            .iter()
            .map(|a| (a.name.clone(), a.grace()))
            .collect()
    }

    /// Deletes one post with the account's write token. Never fails as such: every answer, a
    /// network failure included, is one of the outcomes the responder reads.
    fn takedown<'a>(&'a self, post: Takedown<'a>) -> TakedownFuture<'a>;

    /// `check-config`'s line for one account.
    fn describe(&self, account: &Account) -> String;

    /// `check-config`'s lines about the platform as a whole, after the accounts.
    fn describe_all(&self, _config: &Config) -> String {
        String::new()
    }
}

/// The platform of `kind`.
pub fn of(kind: config::Platform) -> &'static dyn Platform {
    PLATFORMS
        .iter()
        .copied()
        .find(|p| p.kind() == kind)
        .expect("every config::Platform is in PLATFORMS")
}

fn accounts_of(config: &Config, kind: config::Platform) -> Vec<&Account> {
    config
        .accounts
        .iter()
        .filter(|a| a.platform == kind)
        .collect()
}

/// The watchers of every configured account, each registered for health.
pub fn watch_all(cx: &mut WatchContext<'_>) -> Vec<SourceFuture> {
    let mut out = Vec::new();
    for p in PLATFORMS {
        let accounts = accounts_of(cx.config, p.kind());
        if accounts.is_empty() {
            continue;
        }
        for a in &accounts {
            cx.source.health.register(&a.name, a.platform);
        }
        out.extend(p.watch(&accounts, cx));
    }
    out
}

/// One watcher per account, each `run(account, context)`.
pub fn per_account<F, Fut>(
    accounts: &[&Account],
    cx: &WatchContext<'_>,
    run: F,
) -> Vec<SourceFuture>
where
    F: Fn(Account, SourceContext) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    accounts
        .iter()
        .map(|a| Box::pin(run((*a).clone(), cx.source.clone())) as SourceFuture)
        .collect()
}

/// Each account's own `grace`.
pub fn account_graces(accounts: &[&Account]) -> Vec<(String, Duration)> {
    accounts
        .iter()
        .map(|a| (a.name.clone(), a.grace()))
        .collect()
}

/// Every account's grace (and its push streams'), accounts in config order.
pub fn graces(config: &Config) -> Vec<(String, Duration)> {
    let mut out: Vec<(String, Duration)> = PLATFORMS
        .iter()
        .flat_map(|p| p.graces(&accounts_of(config, p.kind()), config))
        .collect();
    let position = |name: &str| {
        config
            .accounts
            .iter()
            .position(|a| a.name == name)
            .unwrap_or(usize::MAX)
    };
    out.sort_by_key(|(name, _)| position(name));
    out
}

/// Why an endpoint taken from platform data (not from the configuration) is not called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("`{url}` is not https")]
    NotHttps { url: String },
    #[error("`{url}` is not on a public host ({why})")]
    NotPublic { url: String, why: &'static str },
    #[error("`{url}` does not resolve: {detail}")]
    Unresolved { url: String, detail: String },
}

/// The rule for every endpoint a platform takes from data an attacker may write (Bluesky: the
/// PDS a DID document names, the host of a did:web). Only Bluesky takes endpoints from data:
/// Mastodon, X and Telegram channels call the configured `base_url` only. Such an endpoint must
/// be `https` on a public host, so a rewritten identity cannot point tocsin at the cloud
/// metadata service, the state dir's neighbours or a sniffable plain-text peer, unless
/// `accounts[].allow_private_endpoints` says the account lives on loopback fakes. Names are
/// judged as written (`localhost`, `.local`, `.internal`, single labels); what a public name
/// resolves to is not.
pub fn check_data_endpoint(account: &Account, url: &Url) -> Result<(), EndpointError> {
    if account.allow_private_endpoints {
        return Ok(());
    }
    if url.scheme() != "https" {
        return Err(EndpointError::NotHttps {
            url: url.to_string(),
        });
    }
    let not_public = |why| {
        Err(EndpointError::NotPublic {
            url: url.to_string(),
            why,
        })
    };
    match url.host() {
        None => not_public("no host"),
        Some(Host::Ipv4(ip)) => match ipv4_scope(ip) {
            Some(why) => not_public(why),
            None => Ok(()),
        },
        Some(Host::Ipv6(ip)) => match ipv6_scope(ip) {
            Some(why) => not_public(why),
            None => Ok(()),
        },
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Ok(ip) = name.parse::<IpAddr>() {
                return ip_scope(ip).map_or(Ok(()), not_public);
            }
            let local_suffix = [".localhost", ".local", ".internal", ".home.arpa", ".lan"]
                .iter()
                .any(|s| name.ends_with(s));
            if name == "localhost" || local_suffix {
                not_public("a local name")
            } else if !name.contains('.') {
                not_public("a single-label name")
            } else {
                Ok(())
            }
        }
    }
}

/// [`check_data_endpoint`], then what the host name resolves to: a public-looking name whose
/// addresses are loopback, private or link-local is refused as well. The HTTP client resolves
/// the name again when it connects, so a name that changes its answer in between (DNS
/// rebinding) is not caught here; Bluesky's takedown also pins the PDS itself.
pub async fn check_data_endpoint_resolved(
    account: &Account,
    url: &Url,
) -> Result<(), EndpointError> {
    check_data_endpoint(account, url)?;
    if account.allow_private_endpoints {
        return Ok(());
    }
    let Some(Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs =
        tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| EndpointError::Unresolved {
                url: url.to_string(),
                detail: e.to_string(),
            })?;
    for addr in addrs {
        if let Some(why) = ip_scope(addr.ip()) {
            return Err(EndpointError::NotPublic {
                url: url.to_string(),
                why: match why {
                    "loopback" => "its name resolves to loopback",
                    "link-local" => "its name resolves to a link-local address",
                    _ => "its name resolves to a non-public address",
                },
            });
        }
    }
    Ok(())
}

fn ip_scope(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => ipv4_scope(v4),
        IpAddr::V6(v6) => ipv6_scope(v6),
    }
}

/// Why an IPv4 address is not public, if it is not.
fn ipv4_scope(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("not unicast")
    } else if ip.is_documentation() || (a == 198 && (18..20).contains(&b)) || (a, b) == (192, 0) {
        Some("a reserved address")
    } else {
        None
    }
}

/// Why an IPv6 address is not public, if it is not.
fn ipv6_scope(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return ipv4_scope(v4);
    }
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("not unicast")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a private address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("a reserved address")
    } else {
        None
    }
}

/// What a platform's refusal of a delete means by its HTTP status alone: the post is gone
/// already (404), the token may not delete it (401, 403), or the call failed; `text` is the
/// platform's own error message, shortened for the page.
pub(crate) fn refused_delete(status: u16, text: &str) -> TakedownOutcome {
    let detail = format!("{status}: {}", short(text));
    match status {
        404 => TakedownOutcome::AlreadyGone,
        401 | 403 => TakedownOutcome::Forbidden { detail },
        _ => TakedownOutcome::Failed { detail },
    }
}

/// Shortens a platform's error text for the page.
pub(crate) fn short(text: &str) -> String {
    const MAX: usize = 200;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(allow: bool) -> Account {
        let mut a: Account = toml::from_str(
            r#"
name = "sky"
platform = "bluesky"
base_url = "https://bsky.social"
account_id = "example.bsky.social"
"#,
        )
        .unwrap();
        a.allow_private_endpoints = allow;
        a
    }

    #[test]
    fn endpoints_from_data_must_be_https_on_a_public_host() {
        let strict = account(false);
        let check = |u: &str| check_data_endpoint(&strict, &Url::parse(u).unwrap());
        assert_eq!(check("https://morel.us-east.host.bsky.network"), Ok(()));
        assert_eq!(check("https://[2606:4700::1111]/"), Ok(()));
        assert!(matches!(
            check("http://pds.example.com"),
            Err(EndpointError::NotHttps { .. })
        ));
        for private in [
            "https://127.0.0.1:2583",
            "https://10.0.0.5",
            "https://172.16.0.1",
            "https://192.168.1.1",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1",
            "https://0.0.0.0",
            "https://[::1]",
            "https://[fd00::1]",
            "https://[fe80::1]",
            "https://[::ffff:127.0.0.1]",
            "https://localhost",
            "https://pds.localhost",
            "https://metadata.google.internal",
            "https://printer.local",
            "https://intranet",
        ] {
            assert!(
                matches!(check(private), Err(EndpointError::NotPublic { .. })),
                "{private}"
            );
        }
        // What a name resolves to is judged by the same rule.
        assert_eq!(ip_scope("8.8.8.8".parse().unwrap()), None);
        assert_eq!(
            ip_scope("10.1.2.3".parse().unwrap()),
            Some("a private address")
        );
        let fakes = account(true);
        assert_eq!(
            check_data_endpoint(&fakes, &Url::parse("http://127.0.0.1:9/").unwrap()),
            Ok(())
        );
    }
}
