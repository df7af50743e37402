//! The `tocsin` command. Parses arguments, sets up logging, and hands over to the library;
//! the only place that speaks `anyhow`.

mod cli;
mod demo;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use cli::{
    init,
    output::{approval_line, evidence_lines, incident_line, s, status_line, when},
    signals::{forward_sighup, wait_for_signal},
    whoami,
};
use tocsin::{Config, app::run_reloading, store::Store, telemetry};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "tocsin",
    version,
    about = "Pages on-call responders in Telegram within seconds of an unapproved change to the official accounts"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Play a takeover against fake platforms on 127.0.0.1 and print the timeline.
    Demo {
        /// Leave out one step of the story (`approval`: the announcement is not pre-approved),
        /// so a test can see the demo fail when what it shows does not happen.
        #[arg(long, hide = true, value_enum)]
        omit: Option<demo::Step>,
    },
    /// Run the daemon. SIGHUP reloads the config; SIGTERM/SIGINT stop it.
    Run {
        #[arg(long, default_value = "config/tocsin.toml")]
        config: PathBuf,
    },
    /// Exit 0 if the daemon's HTTP endpoint answers 2xx: the container HEALTHCHECK, which has
    /// no shell or curl to call.
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// Validate a configuration and print what would be watched.
    CheckConfig {
        #[arg(long, default_value = "config/tocsin.toml")]
        config: PathBuf,
    },
    /// Pre-approve a post before it is published, or (`approve campaign`) a planned bulk send
    /// (client of POST /api/v1/approvals).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Approve {
        #[command(subcommand)]
        what: Option<ApproveWhat>,
        #[arg(long, required = true)]
        account: Option<String>,
        #[arg(long, required = true)]
        text: Option<String>,
        /// Optional note kept in the approved log.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List the approved log (client of GET /api/v1/approvals).
    Approvals {
        /// Only entries about this account.
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Withdraw an approved post, e.g. approved by mistake (client of
    /// POST /api/v1/approvals/SEQ/revoke).
    Revoke {
        /// The approved log entry, as `tocsin approvals` numbers it.
        seq: u64,
        /// Why; kept in the approved log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List incidents, or show one with its timeline (client of GET /api/v1/incidents).
    #[command(args_conflicts_with_subcommands = true)]
    Incidents {
        #[command(subcommand)]
        command: Option<IncidentsCmd>,
        /// Show this incident and its timeline.
        #[arg(long, conflicts_with = "state")]
        id: Option<u64>,
        /// Only incidents in this state.
        #[arg(long, value_parser = ["open", "acked", "resolved"])]
        state: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Each watched account's last poll, errors, rate limit and open incidents (client of
    /// GET /api/v1/accounts).
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Write the documented example configuration to start from.
    Init {
        #[arg(long, default_value = "config/tocsin.toml")]
        path: PathBuf,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// The hash-chained logs: the approved log and the incident timeline.
    Log {
        #[command(subcommand)]
        command: LogCmd,
    },
    /// Print a new Ed25519 key that signs the chain heads (for general.signing_key) and its
    /// public half (for `tocsin log verify --public-key`).
    Keygen,
}

#[derive(Subcommand)]
enum IncidentsCmd {
    /// Print the hash-chained timeline events as JSON Lines (client of GET /api/v1/timeline).
    Export {
        /// Only events at or after this time: RFC 3339 (2026-11-24T20:00:00Z) or a duration back
        /// from now (24h).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum LogCmd {
    /// Check the approved log, the incident timeline and everything they cover (with the daemon
    /// stopped, or on a copy of the state dir).
    Verify {
        #[arg(long, default_value = "state")]
        state: PathBuf,
        /// The public key `tocsin keygen` printed: the chain heads must be signed with it.
        /// Without it an edit that recomputes every hash is not caught.
        #[arg(long, env = "TOCSIN_PUBLIC_KEY")]
        public_key: Option<tocsin::store::PublicKey>,
        /// A head tocsin published (CHAIN:SEQ:HASH, as in the chat): the chain must still hold
        /// it. Catches a chain cut back to an older signed head. Repeatable.
        #[arg(long, value_name = "CHAIN:SEQ:HASH")]
        expect_head: Vec<tocsin::store::ChainHead>,
    },
    /// Chain what an older build left unchained (incident timelines, seen posts, mutes) and
    /// write the genesis record (with the daemon stopped). Refused once the store has one.
    Adopt {
        #[arg(long, default_value = "state")]
        state: PathBuf,
        /// Signs the heads too: the signing key as in the config (a literal, env:NAME or
        /// file:/path).
        #[arg(long, value_name = "SECRET")]
        signing_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum ApproveWhat {
    /// A planned bulk send: the sender may reach up to --max-recipients envelope recipients per
    /// --window under the campaign without email.unapproved_bulk paging.
    Campaign {
        /// The envelope sender (MAIL FROM).
        #[arg(long)]
        sender: String,
        /// X-Campaign-Id, List-Id or tag of the send; `*` for every campaign of the sender.
        #[arg(long)]
        campaign: String,
        /// Absent: no cap.
        #[arg(long)]
        max_recipients: Option<u64>,
        /// Such as 24h; required with --max-recipients.
        #[arg(long)]
        window: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(clap::Args)]
struct ApiArgs {
    /// The daemon's config: its listen address and API token are used unless given below.
    #[arg(long, default_value = "config/tocsin.toml")]
    config: PathBuf,
    /// Base URL of the daemon, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: Option<String>,
    /// API token; defaults to TOCSIN_API_TOKEN, then to the config's general.api_token.
    #[arg(long, env = "TOCSIN_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl ApiArgs {
    fn resolve(&self) -> anyhow::Result<(String, String)> {
        if let (Some(url), Some(token)) = (&self.url, &self.token) {
            return Ok((url.trim_end_matches('/').to_owned(), token.clone()));
        }
        let config = Config::load(&self.config)
            .context("reading the daemon's config for its address and token")?;
        let url = self
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.general.listen));
        let token = self
            .token
            .clone()
            .unwrap_or_else(|| config.general.api_token.expose().to_owned());
        Ok((url.trim_end_matches('/').to_owned(), token))
    }

    /// One API call: resolves the address and token, sends, and turns a refusal into an error
    /// carrying the server's own message (which names the field or entry at fault).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let (url, token) = self.resolve()?;
        let mut target = format!("{url}{path}");
        if !query.is_empty() {
            let q = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            target = format!("{target}?{q}");
        }
        let mut req = reqwest::Client::new()
            .request(method, &target)
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach tocsin at {url}"))?;
        let status = resp.status();
        let answer: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "{status}: {}",
                answer["error"].as_str().unwrap_or("no detail")
            );
        }
        Ok(answer)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Cmd::Demo { .. }
            | Cmd::CheckConfig { .. }
            | Cmd::Log { .. }
            | Cmd::Keygen
            | Cmd::Init { .. }
            | Cmd::Healthcheck { .. }
    );
    if let Cmd::Demo { .. } = cli.command {
        // The daemon's own log lines would land in the middle of the story: they go to a file.
        let log = demo::log_path();
        if let Err(e) = telemetry::init_file(&log, "info") {
            eprintln!("error: {}: {e}", log.display());
            return ExitCode::FAILURE;
        }
    } else {
        telemetry::init(if quiet { "warn" } else { "info" });
    }
    match run(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Demo { omit } => {
            let report = demo::run(omit).await;
            print!("{report}");
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Run { config: path } => {
            let config = Config::load(&path)?;
            tocsin::app::check::check(&config)?;
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                signal.cancel();
            });
            let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
            forward_sighup(reload_tx);
            run_reloading(&path, config, shutdown, reload_rx).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Healthcheck { url } => {
            let resp = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(3))
                .build()?
                .get(&url)
                .send()
                .await
                .with_context(|| format!("GET {url}"))?;
            if resp.status().is_success() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{url}: {}", resp.status());
                Ok(ExitCode::FAILURE)
            }
        }
        Cmd::CheckConfig { config: path } => {
            match Config::load(&path).and_then(|c| tocsin::app::check::check(&c).map(|()| c)) {
                Ok(config) => {
                    println!("{}: ok", path.display());
                    print!("{}", tocsin::app::check::summary(&config));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Cmd::Approve {
            what:
                Some(ApproveWhat::Campaign {
                    sender,
                    campaign,
                    max_recipients,
                    window,
                    api,
                }),
            ..
        } => {
            let body = serde_json::json!({
                "type": "campaign", "sender": sender, "campaign": campaign,
                "max_recipients": max_recipients, "window": window, "by": whoami()
            });
            let answer = api
                .call(reqwest::Method::POST, "/api/v1/approvals", &[], Some(body))
                .await?;
            println!(
                "campaign approved for {}: entry {}",
                answer["sender"].as_str().unwrap_or("?"),
                answer["seq"]
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Approve {
            what: None,
            account,
            text,
            note,
            api,
        } => {
            let (Some(account), Some(text)) = (account, text) else {
                anyhow::bail!("give --account and --text, or `approve campaign`");
            };
            let body = serde_json::json!({ "account": account, "text": text, "note": note, "by": whoami() });
            let answer = api
                .call(reqwest::Method::POST, "/api/v1/approvals", &[], Some(body))
                .await?;
            println!(
                "approved for {account}: entry {} (fingerprint {})",
                answer["seq"],
                answer["fingerprint"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Approvals { account, api } => {
            let query: Vec<_> = account.iter().map(|a| ("account", a.as_str())).collect();
            let answer = api
                .call(reqwest::Method::GET, "/api/v1/approvals", &query, None)
                .await?;
            let approvals = answer["approvals"].as_array().cloned().unwrap_or_default();
            if approvals.is_empty() {
                println!("the approved log is empty");
            }
            for a in &approvals {
                println!("{}", approval_line(a));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Revoke { seq, reason, api } => {
            let body = serde_json::json!({ "reason": reason, "by": whoami() });
            let answer = api
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/approvals/{seq}/revoke"),
                    &[],
                    Some(body),
                )
                .await?;
            println!("revoked entry {seq}: recorded as entry {}", answer["seq"]);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Incidents {
            command: Some(IncidentsCmd::Export { since, api }),
            ..
        } => {
            let query: Vec<_> = since.iter().map(|s| ("since", s.as_str())).collect();
            let answer = api
                .call(reqwest::Method::GET, "/api/v1/timeline", &query, None)
                .await?;
            let mut out = std::io::stdout().lock();
            for event in answer["events"].as_array().into_iter().flatten() {
                use std::io::Write;
                writeln!(out, "{event}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Incidents {
            id: Some(id), api, ..
        } => {
            let i = api
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/incidents/{id}"),
                    &[],
                    None,
                )
                .await?;
            println!("{}", incident_line(&i));
            println!("object: {}", s(&i["object"]));
            if let Some(r) = i["resolution"].as_str() {
                println!("resolution: {r}");
            }
            println!("evidence:");
            for line in evidence_lines(&i["evidence"]) {
                println!("  {line}");
            }
            println!("timeline:");
            for e in i["timeline"].as_array().into_iter().flatten() {
                println!(
                    "  {} {} by {}",
                    when(&e["at"]),
                    s(&e["action"]),
                    s(&e["who"])
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Incidents {
            id: None,
            state,
            api,
            command: None,
        } => {
            let query: Vec<_> = state.iter().map(|st| ("state", st.as_str())).collect();
            let answer = api
                .call(reqwest::Method::GET, "/api/v1/incidents", &query, None)
                .await?;
            let incidents = answer["incidents"].as_array().cloned().unwrap_or_default();
            if incidents.is_empty() {
                println!("no incidents");
            }
            for i in &incidents {
                println!("{}", incident_line(i));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { api } => {
            let answer = api
                .call(reqwest::Method::GET, "/api/v1/accounts", &[], None)
                .await?;
            let accounts = answer["accounts"].as_array().cloned().unwrap_or_default();
            if accounts.is_empty() {
                println!("no accounts are watched");
            }
            for a in &accounts {
                println!("{}", status_line(a));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Init { path, force } => {
            init(&path, force)?;
            println!(
                "wrote {p}; edit it, set TOCSIN_API_TOKEN, TOCSIN_TELEGRAM_TOKEN and \
                 TOCSIN_MASTODON_TOKEN (or change those keys), then run \
                 `tocsin check-config --config {p}`",
                p = path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Log {
            command:
                LogCmd::Verify {
                    state,
                    public_key,
                    expect_head,
                },
        } => {
            let store = open_state(&state)?;
            let options = tocsin::store::VerifyOptions {
                public_key,
                expect: expect_head,
            };
            let verification = store.verify(&options)?;
            print!("{}", cli::output::verification(&verification, public_key));
            let never_signed = public_key.is_some()
                && verification.signature == tocsin::store::SignatureCheck::NeverSigned;
            Ok(if verification.is_ok() && !never_signed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Cmd::Log {
            command: LogCmd::Adopt { state, signing_key },
        } => {
            let key = signing_key
                .map(|spec| {
                    let secret =
                        tocsin::config::Secret::resolve(&spec).map_err(anyhow::Error::msg)?;
                    tocsin::store::SigningKey::parse(secret.expose())
                        .context("reading --signing-key")
                })
                .transpose()?;
            let store = open_state(&state)?;
            let adopted = store.adopt(key.as_ref())?;
            println!(
                "adopted {} incident(s) ({} event(s)), {} seen post(s), {} mute(s); genesis record written{}",
                adopted.incidents,
                adopted.events,
                adopted.seen_posts,
                adopted.mutes,
                if adopted.signed {
                    "; heads signed"
                } else {
                    "; heads unsigned (the daemon signs them at its next start if it has a key)"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Keygen => {
            let (secret, public) = tocsin::store::SigningKey::generate()?;
            println!(
                "# general.signing_key: keep it secret, outside the state dir (env: or file:)"
            );
            println!("signing_key = \"{secret}\"");
            println!("# for `tocsin log verify --public-key`; published with the heads");
            println!("public_key = \"{public}\"");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Opens the state database of a stopped daemon.
fn open_state(state: &std::path::Path) -> anyhow::Result<Store> {
    if !state.exists() {
        bail!("no state database at {}", state.display());
    }
    Store::open(state)
        .with_context(|| format!("opening {} (is the daemon still running?)", state.display()))
}
