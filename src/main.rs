//! The `tocsin` command. Parses arguments, sets up logging, and hands over to the library;
//! the only place that speaks `anyhow`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tocsin::{App, Config, store::Store, telemetry};
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
    Demo,
    /// Run the daemon.
    Run {
        #[arg(long, default_value = "config/tocsin.toml")]
        config: PathBuf,
    },
    /// Validate a configuration and print what would be watched.
    CheckConfig {
        #[arg(long, default_value = "config/tocsin.toml")]
        config: PathBuf,
    },
    /// Pre-approve a post before it is published (client of POST /api/v1/approvals).
    Approve {
        #[arg(long)]
        account: String,
        #[arg(long)]
        text: String,
        /// Optional note kept in the approved log.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List incidents (client of GET /api/v1/incidents).
    Incidents {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The approved log.
    Log {
        #[command(subcommand)]
        command: LogCmd,
    },
}

#[derive(Subcommand)]
enum LogCmd {
    /// Check the approved log's hash chain (with the daemon stopped).
    Verify {
        #[arg(long, default_value = "state")]
        state: PathBuf,
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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Cmd::Demo | Cmd::CheckConfig { .. } | Cmd::Log { .. }
    );
    telemetry::init(if quiet { "warn" } else { "info" });
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
        Cmd::Demo => {
            let report = tocsin::demo::run().await?;
            print!("{report}");
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Run { config } => {
            let config = Config::load(&config)?;
            let app = App::build(config).await?;
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                signal.cancel();
            });
            app.run_until(shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CheckConfig { config: path } => match Config::load(&path) {
            Ok(config) => {
                println!("{}: ok", path.display());
                print!("{}", config.summary());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(2))
            }
        },
        Cmd::Approve {
            account,
            text,
            note,
            api,
        } => {
            let (url, token) = api.resolve()?;
            let body = serde_json::json!({ "account": account, "text": text, "note": note, "by": whoami() });
            let resp = reqwest::Client::new()
                .post(format!("{url}/api/v1/approvals"))
                .bearer_auth(token)
                .json(&body)
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
            println!(
                "approved for {account}: entry {} (fingerprint {})",
                answer["seq"],
                answer["fingerprint"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Incidents { api } => {
            let (url, token) = api.resolve()?;
            let resp = reqwest::Client::new()
                .get(format!("{url}/api/v1/incidents"))
                .bearer_auth(token)
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
            for i in answer["incidents"].as_array().into_iter().flatten() {
                println!(
                    "#{} {} {} {} {} {}",
                    i["id"],
                    i["severity"].as_str().unwrap_or("?"),
                    i["rule"].as_str().unwrap_or("?"),
                    i["account"].as_str().unwrap_or("?"),
                    i["state"].as_str().unwrap_or("?"),
                    i["opened_at"].as_str().unwrap_or("?")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Log {
            command: LogCmd::Verify { state },
        } => {
            if !state.exists() {
                bail!("no state database at {}", state.display());
            }
            let store = Store::open(&state).with_context(|| {
                format!("opening {} (is the daemon still running?)", state.display())
            })?;
            let report = store.verify_log()?;
            if report.is_ok() {
                println!(
                    "approved log ok: {} entries, head {}",
                    report.entries, report.head
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!("approved log TAMPERED: {} entries checked", report.entries);
                for p in &report.problems {
                    println!("  {p}");
                }
                Ok(ExitCode::from(3))
            }
        }
    }
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
