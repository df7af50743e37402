//! One test binary (links once); each module is a slice of behaviour.

mod support;

mod adversarial;
mod api;
mod blind;
mod bluesky;
mod bot;
mod chains;
mod channels;
mod claims;
mod cli;
mod crash;
mod delivery;
mod demo;
mod disk;
mod email_audit;
mod email_hooks;
mod email_journal;
mod escalation;
mod faults;
mod fuzz_corpus;
mod journal_guard;
mod kill_switch;
mod lifecycle;
mod listeners;
mod mail_flood;
mod mastodon_stream;
mod mta_milter;
mod mta_postfix;
mod pages;
mod paging;
mod provider_vectors;
mod stuck_pages;
mod takedown;
mod telegram_channel;
mod x;
