//! One test binary (links once); each module is a slice of behaviour.

mod support;

mod api;
mod blind;
mod bot;
mod channels;
mod cli;
mod crash;
mod delivery;
mod email_hooks;
mod escalation;
mod fake_mastodon;
mod fake_telegram;
mod lifecycle;
mod pages;
mod paging;
