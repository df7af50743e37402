//! The fakes against real clients: what they answer is what the platforms answer. One test
//! binary, so it links once.

mod mastodon;
mod providers;
mod telegram;
mod x;
