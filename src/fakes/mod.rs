//! Loopback fakes of the platforms tocsin talks to, speaking their real wire protocols on
//! 127.0.0.1 ephemeral ports. The demo plays its story against them and the integration tests
//! drive them; they never bind or call any other address.

pub mod mastodon;
pub mod pagerduty;
pub mod telegram;
pub mod webhook;
