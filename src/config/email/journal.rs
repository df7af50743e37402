//! `[email.journal]`: the SMTP listener the MTA journals a copy of every message to.
//!
//! The listener believes what it is told, so it must hear only its MTA: connections from outside
//! `allow_from` are refused at the greeting, STARTTLS (with `tls_cert`/`tls_key`) keeps the copy
//! private on a network, and `auth` makes the MTA prove who it is before MAIL.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
    time::Duration,
};

use serde::{Deserialize, Deserializer};

use super::super::{ConfigError, Secret, duration};

/// `[email.journal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    /// Our name of the feed: incidents about journaled mail are filed under it.
    #[serde(default = "default_journal_name")]
    pub name: String,
    /// Port 0 picks a free port (tests). Keep it on a private interface; `allow_from` says who
    /// may talk to it.
    #[serde(default = "default_journal_listen")]
    pub listen: SocketAddr,
    /// Bytes; a larger message is refused with 552 (the MTA keeps it and reports it).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// `RCPT TO` per message; more is answered 452 (RFC 5321 asks servers to accept 100).
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// The networks (CIDR) whose connections are served: the MTA's. Anyone else is greeted
    /// `554 5.7.1` and every command answered 503 until QUIT (RFC 5321 §3.1).
    #[serde(default = "default_allow_from")]
    pub allow_from: Vec<Cidr>,
    /// PEM certificate chain for STARTTLS; with `tls_key`, STARTTLS is offered.
    #[serde(default)]
    pub tls_cert: Option<Secret>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<Secret>,
    /// MAIL before STARTTLS is answered `530 5.7.0`.
    #[serde(default)]
    pub require_tls: bool,
    /// The credentials the MTA must give (AUTH PLAIN or LOGIN) before MAIL; offered only after
    /// STARTTLS, or on loopback where there is no wire to read.
    #[serde(default)]
    pub auth: Option<JournalAuth>,
    /// Concurrent sessions at most; the next connection is answered `421` and closed.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// From MAIL to the end of DATA at most: a client trickling one line per idle period keeps
    /// no session forever. Between transactions only the idle timeout applies, so an MTA may
    /// keep its connection for many messages.
    #[serde(default = "default_transaction_timeout", deserialize_with = "duration")]
    pub transaction_timeout: Duration,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            name: default_journal_name(),
            listen: default_journal_listen(),
            max_message_size: default_max_message_size(),
            max_recipients: default_max_recipients(),
            allow_from: default_allow_from(),
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            auth: None,
            max_sessions: default_max_sessions(),
            transaction_timeout: default_transaction_timeout(),
        }
    }
}

/// `[email.journal.auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalAuth {
    pub username: String,
    pub password: Secret,
}

impl Journal {
    /// Whether STARTTLS is offered.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// Whether `ip` may talk to the listener.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow_from.iter().any(|c| c.contains(ip))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let key = |f: &str| format!("email.journal.{f}");
        if self.name.is_empty() || self.name.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                key("name"),
                "a non-empty name without spaces",
            ));
        }
        if self.max_message_size < 1024 {
            return Err(ConfigError::invalid(
                key("max_message_size"),
                "at least 1024 bytes",
            ));
        }
        if self.max_recipients == 0 {
            return Err(ConfigError::invalid(key("max_recipients"), "at least 1"));
        }
        if self.allow_from.is_empty() {
            return Err(ConfigError::invalid(
                key("allow_from"),
                "list the MTA's network (nobody could journal to an empty list)",
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let missing = if self.tls_cert.is_some() {
                "tls_key"
            } else {
                "tls_cert"
            };
            return Err(ConfigError::invalid(
                key(missing),
                "STARTTLS needs both tls_cert and tls_key",
            ));
        }
        if self.require_tls && !self.tls() {
            return Err(ConfigError::invalid(
                key("require_tls"),
                "needs tls_cert and tls_key",
            ));
        }
        if let Some(a) = &self.auth {
            if a.username.is_empty() || a.username.contains(['\0', '\r', '\n']) {
                return Err(ConfigError::invalid(
                    key("auth.username"),
                    "a non-empty name without NUL or line breaks",
                ));
            }
            if !self.tls() && !self.allow_from.iter().all(Cidr::is_loopback) {
                return Err(ConfigError::invalid(
                    key("auth"),
                    "credentials are only taken over STARTTLS (set tls_cert and tls_key) \
                     unless every allow_from network is loopback",
                ));
            }
        }
        if self.max_sessions == 0 {
            return Err(ConfigError::invalid(key("max_sessions"), "at least 1"));
        }
        if self.transaction_timeout < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                key("transaction_timeout"),
                "at least 1s",
            ));
        }
        Ok(())
    }

    /// `check-config`'s line.
    pub fn summary(&self) -> String {
        format!(
            "email journal {} · SMTP on {} · from {} · STARTTLS {} · AUTH {} · max {} bytes, {} recipients per message, {} sessions, {} per transaction\n",
            self.name,
            self.listen,
            self.allow_from
                .iter()
                .map(Cidr::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            match (self.tls(), self.require_tls) {
                (true, true) => "required",
                (true, false) => "offered",
                _ => "off",
            },
            match &self.auth {
                Some(a) => format!("on (user {})", a.username),
                None => "off".to_owned(),
            },
            self.max_message_size,
            self.max_recipients,
            self.max_sessions,
            humantime::format_duration(self.transaction_timeout)
        )
    }
}

/// An IPv4-mapped IPv6 peer (`::ffff:10.0.0.5`, what a dual-stack socket reports) is the IPv4
/// address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is its own /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether every address of the network is a loopback address.
    pub fn is_loopback(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => a.is_loopback() && self.prefix >= 8,
            IpAddr::V6(a) => a == Ipv6Addr::LOCALHOST && self.prefix == 128,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an address or network (write 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length is 0 to {max}"))?,
        };
        Ok(Cidr {
            addr: canonical(addr),
            prefix: if canonical(addr) != addr {
                prefix.saturating_sub(96)
            } else {
                prefix
            },
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn default_journal_name() -> String {
    "journal".into()
}
fn default_journal_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2525))
}
fn default_max_message_size() -> usize {
    25 * 1024 * 1024
}
fn default_max_recipients() -> usize {
    10_000
}
fn default_allow_from() -> Vec<Cidr> {
    vec![
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            prefix: 32,
        },
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            prefix: 128,
        },
    ]
}
fn default_max_sessions() -> usize {
    64
}
fn default_transaction_timeout() -> Duration {
    Duration::from_secs(300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses_only() {
        let lan: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(lan.contains("10.1.200.3".parse().unwrap()));
        assert!(!lan.contains("10.2.0.1".parse().unwrap()));
        assert!(
            lan.contains("::ffff:10.1.0.9".parse().unwrap()),
            "v4-mapped"
        );
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(one.to_string(), "192.0.2.7/32");
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("203.0.113.1".parse().unwrap()));
        assert!(!any.contains("::1".parse().unwrap()), "families never mix");
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nonsense", "::/129", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let j = Journal::default();
        assert!(j.allows("127.0.0.1".parse().unwrap()));
        assert!(j.allows("::1".parse().unwrap()));
        assert!(!j.allows("127.0.0.2".parse().unwrap()));
        assert!(!j.allows("203.0.113.9".parse().unwrap()));
        assert!(j.allow_from.iter().all(Cidr::is_loopback));
        assert!(!lan.is_loopback());
    }
}
