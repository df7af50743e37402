//! `[email.milter]`: the Sendmail/Postfix milter the MTA consults in line for every message.
//!
//! Unlike the journal, the milter sees the real envelope (the sender and every recipient, Bcc
//! included) and answers before the MTA accepts the message, so a rule's `policy` can keep a
//! leak from leaving: `hold` (quarantine: Postfix's hold queue) or `tempfail` (4xx to the
//! submitting client). Who may speak is `allow_from`, as for the journal.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use serde::Deserialize;

use super::{
    super::{ConfigError, duration},
    journal::{Cidr, canonical},
};
use crate::model::Rule;

/// What the milter answers for a message a rule finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MilterAction {
    /// Accept and page, as the journal would.
    #[default]
    Observe,
    /// Quarantine: the MTA keeps the message in its hold queue until someone releases or
    /// deletes it. Nothing of it leaves.
    Hold,
    /// Temporary failure: the MTA answers 4xx to the submitting client, which retries.
    Tempfail,
}

/// `[email.milter]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Milter {
    /// Our name of the feed: incidents about mail the milter saw are filed under it.
    #[serde(default = "default_name")]
    pub name: String,
    /// Where the MTA connects (`smtpd_milters = inet:HOST:PORT`). Port 0 picks one (tests).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The networks (CIDR) whose connections are served: the MTA's. Anyone else is closed at
    /// once, before a byte is read.
    #[serde(default = "default_allow_from")]
    pub allow_from: Vec<Cidr>,
    /// Rule → action (`observe`, `hold`, `tempfail`); rules not listed are observed.
    #[serde(default)]
    pub policy: BTreeMap<String, MilterAction>,
    /// Concurrent MTA connections at most; more are closed (the MTA applies its
    /// `milter_default_action`).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// The command that releases or deletes held messages on the MTA host, run as
    /// `COMMAND... release|delete QUEUE_ID...` (e.g. `["sudo", "-n",
    /// "/usr/local/sbin/tocsin-postsuper"]`, see `contrib/tocsin-postsuper`). Empty: Release
    /// and Discard are refused and held messages are handled with `postsuper` by hand.
    #[serde(default)]
    pub hold_helper: Vec<String>,
    /// The longest the MTA may take between two commands of one connection.
    #[serde(default = "default_idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for Milter {
    fn default() -> Self {
        Milter {
            name: default_name(),
            listen: default_listen(),
            allow_from: default_allow_from(),
            policy: BTreeMap::new(),
            max_sessions: default_max_sessions(),
            hold_helper: Vec::new(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

fn default_name() -> String {
    "milter".into()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8899))
}

fn default_allow_from() -> Vec<Cidr> {
    vec![
        "127.0.0.0/8".parse().expect("literal"),
        "::1/128".parse().expect("literal"),
    ]
}

fn default_max_sessions() -> usize {
    256
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}

/// The rules a message can raise, which are the only ones a policy may name.
const MAIL_RULES: &[Rule] = &[
    Rule::ExposedRecipients,
    Rule::UnapprovedBulk,
    Rule::SecurityNotice,
];

fn rule_named(name: &str) -> Option<Rule> {
    MAIL_RULES.iter().copied().find(|r| r.to_string() == name)
}

impl Milter {
    /// Whether `ip` may talk to the milter.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow_from.iter().any(|c| c.contains(ip))
    }

    /// The action for a message `rule` found (observe for rules the policy does not name).
    pub fn action(&self, rule: Rule) -> MilterAction {
        self.policy
            .get(&rule.to_string())
            .copied()
            .unwrap_or_default()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let key = |f: &str| format!("email.milter.{f}");
        if self.name.is_empty() || self.name.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                key("name"),
                "a non-empty name without spaces",
            ));
        }
        if self.allow_from.is_empty() {
            return Err(ConfigError::invalid(
                key("allow_from"),
                "list the MTA's network (nobody could connect to an empty list)",
            ));
        }
        for name in self.policy.keys() {
            if rule_named(name).is_none() {
                return Err(ConfigError::invalid(
                    key(&format!("policy.\"{name}\"")),
                    format!(
                        "not a rule a message raises (one of {})",
                        MAIL_RULES
                            .iter()
                            .map(Rule::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        if self.max_sessions == 0 {
            return Err(ConfigError::invalid(key("max_sessions"), "at least 1"));
        }
        if self.idle_timeout < Duration::from_secs(1) {
            return Err(ConfigError::invalid(key("idle_timeout"), "at least 1s"));
        }
        Ok(())
    }

    /// `check-config`'s line.
    pub fn summary(&self) -> String {
        let policy = if self.policy.is_empty() {
            "observe all".to_owned()
        } else {
            self.policy
                .iter()
                .map(|(r, a)| format!("{r} → {a:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "email milter {} · milter protocol on {} · from {} · policy: {policy} · {} sessions\n",
            self.name,
            self.listen,
            self.allow_from
                .iter()
                .map(Cidr::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            self.max_sessions,
        )
    }
}
