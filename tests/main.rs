//! One test binary (links once); each module is a slice of behaviour.

mod support;

mod adversarial;
mod api;
mod blind;
mod bot;
mod channels;
mod cli;
mod crash;
mod delivery;
mod disk;
mod email_audit;
mod email_hooks;
mod escalation;
mod fake_mastodon;
mod fake_telegram;
mod faults;
mod fuzz_corpus;
mod lifecycle;
mod pages;
mod paging;
