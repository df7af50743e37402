//! One test binary (links once); each module is a slice of behaviour.

mod support;

mod adversarial;
mod api;
mod blind;
mod bluesky;
mod bot;
mod chains;
mod channels;
mod cli;
mod crash;
mod delivery;
mod disk;
mod email_audit;
mod email_hooks;
mod email_journal;
mod escalation;
mod faults;
mod fuzz_corpus;
mod kill_switch;
mod lifecycle;
mod mastodon_stream;
mod pages;
mod paging;
mod takedown;
mod telegram_channel;
mod x;
