//! Entry points for the fuzzers in `fuzz/` and for the corpus replay that CI runs
//! (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes from outside and must return, without
//! panicking and without unbounded allocation, whatever they are: these are the parsers an
//! attacker or a typo can reach.

use std::sync::{Arc, OnceLock};

use crate::{
    bot::Command,
    config::{Config, Email, Journal, Milter},
    mail::{
        journal::{Committer, session_over_bytes},
        milter,
        summary::summarise,
    },
    store::Store,
};

/// A fuzz target: its name (the folder of its corpus under `fuzz/corpus/`) and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, for the replay test and `fuzz/run`.
pub const TARGETS: &[Target] = &[
    ("config", config),
    ("bot_command", bot_command),
    ("smtp_session", smtp_session),
    ("mail_summary", mail_summary),
    ("milter_session", milter_session),
];

/// The TOML config parser and its validation. Inputs naming `file:` secrets are skipped: they
/// would fuzz the machine's filesystem (`file:/dev/stdin` blocks), not the parser.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("file:") {
        return;
    }
    if let Err(e) = Config::parse(text, "fuzz") {
        // Rendering the error is part of the contract: it must name the key without panicking.
        let _ = e.to_string();
    }
}

/// Chat commands and button callback data, as any chat member can send them.
pub fn bot_command(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = Command::parse(&text);
    let _ = Command::from_callback(&text);
}

/// The SMTP journal listener's session: commands, pipelining, DATA with dot-stuffing, size
/// limits, as any host that can connect may send them.
pub fn smtp_session(data: &[u8]) {
    let h = SMTP.get_or_init(SmtpHarness::new);
    h.runtime.block_on(session_over_bytes(
        h.config.clone(),
        h.committer.clone(),
        crate::model::AddressKey::new(&[0x5a; 64]),
        data,
    ));
}

/// One milter session (the MTA's side of the wire), judged by the real email rules.
pub fn milter_session(data: &[u8]) {
    let h = SMTP.get_or_init(SmtpHarness::new);
    h.runtime.block_on(milter::session_over_bytes(
        h.milter.clone(),
        &h.milter_parts,
        data,
    ));
}

/// The header summariser, on any message a mailer could journal.
pub fn mail_summary(data: &[u8]) {
    let key = crate::model::AddressKey::new(&[0x5a; 64]);
    let _ = summarise(
        "fuzz",
        &key,
        data,
        "sender@corp.example",
        &["a@b.example".into()],
    );
}

/// One runtime, one store and one committer for every SMTP input: opening sled per input
/// would fuzz sled's start-up, not the session.
struct SmtpHarness {
    runtime: tokio::runtime::Runtime,
    config: Arc<Journal>,
    committer: Committer,
    milter: Arc<Milter>,
    milter_parts: milter::Listener,
    _dir: tempfile::TempDir,
}

static SMTP: OnceLock<SmtpHarness> = OnceLock::new();

impl SmtpHarness {
    fn new() -> SmtpHarness {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("state")).expect("store");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let tasks = tokio_util::task::TaskTracker::new();
        let committer = runtime.block_on(async {
            Committer::spawn(store.clone(), Arc::new(tokio::sync::Notify::new()), &tasks)
        });
        let rules = Email::default();
        let judge_store = store.clone();
        let milter_parts = milter::Listener {
            committer: committer.clone(),
            key: crate::model::AddressKey::new(&[0x5a; 64]),
            judge: Arc::new(move |summary| {
                crate::detect::email::evaluate(
                    &judge_store,
                    &rules,
                    "fuzz",
                    summary,
                    chrono::Utc::now(),
                )
                .ok()
                .and_then(|o| o.finding)
                .map(|f| f.rule)
            }),
        };
        let config = Arc::new(Journal {
            max_message_size: 256 * 1024,
            ..Journal::default()
        });
        let mut milter = Milter::default();
        milter.policy.insert(
            "email.exposed_recipients".into(),
            crate::config::MilterAction::Hold,
        );
        SmtpHarness {
            runtime,
            config,
            committer,
            milter: Arc::new(milter),
            milter_parts,
            _dir: dir,
        }
    }
}
