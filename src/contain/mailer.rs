//! The mail kill switch: one configured HTTP request that tells the company's mailer to stop
//! sending. A leaky bulk send goes out in batches; pausing before the next batch is the whole
//! point, so the call is made at once and its answer shown on the page.
//!
//! A press is one pause: the request is repeated only when the mailer cannot have acted on it
//! (connection refused, or 429/502/503/504 from it or its proxy), at most [`ATTEMPTS`] times. A
//! timeout is not repeated: the mailer may have paused and only its answer was lost.

use std::time::Duration;

use reqwest::{
    Method,
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue},
};

use crate::{
    config::KillSwitch,
    incidents::{PauseFuture, PauseMailer},
    model::{PauseCall, cut},
};

/// Calls per press, retries included.
pub const ATTEMPTS: u32 = 3;
/// The mailer's answer body kept in the timeline.
const BODY_KEPT: usize = 200;

#[derive(Clone)]
pub struct Mailer {
    config: KillSwitch,
    http: reqwest::Client,
}

impl Mailer {
    pub fn new(config: KillSwitch) -> Result<Mailer, reqwest::Error> {
        // Redirects are not followed: the secret must not travel to another host.
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Mailer { config, http })
    }

    pub fn auto_pause(&self) -> bool {
        self.config.auto_pause
    }

    fn request(&self) -> reqwest::RequestBuilder {
        let method = Method::from_bytes(self.config.method.to_ascii_uppercase().as_bytes())
            .unwrap_or(Method::POST);
        let mut req = self.http.request(method, self.config.url.clone());
        let mut has_type = false;
        for (k, v) in &self.config.headers {
            has_type |= k.eq_ignore_ascii_case("content-type");
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(secret) = &self.config.secret {
            let value = HeaderValue::from_str(secret.expose()).ok();
            match (&self.config.secret_header, value) {
                (Some(name), Some(mut v)) => {
                    if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                        v.set_sensitive(true);
                        req = req.header(name, v);
                    }
                }
                _ => {
                    if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", secret.expose()))
                    {
                        v.set_sensitive(true);
                        req = req.header(AUTHORIZATION, v);
                    }
                }
            }
        }
        if let Some(body) = &self.config.body {
            if !has_type {
                req = req.header(CONTENT_TYPE, "application/json");
            }
            req = req.body(body.clone());
        }
        req
    }

    /// Calls the kill switch; every call made, last one last.
    pub async fn pause(&self) -> Vec<PauseCall> {
        let mut calls = Vec::new();
        for attempt in 1..=ATTEMPTS {
            let (call, again) = match self.request().send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap_or_default();
                    let call = PauseCall {
                        attempt,
                        status: Some(status),
                        detail: cut(body.trim(), BODY_KEPT),
                        paused: (200..300).contains(&status),
                    };
                    (call, matches!(status, 429 | 502 | 503 | 504))
                }
                Err(e) => {
                    let call = PauseCall {
                        attempt,
                        status: None,
                        detail: cut(&transport_error(&e), BODY_KEPT),
                        paused: false,
                    };
                    (call, e.is_connect() && !e.is_timeout())
                }
            };
            calls.push(call);
            if !again || attempt == ATTEMPTS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
        }
        calls
    }
}

/// The error without the URL (its path or query may carry a token).
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

impl PauseMailer for Mailer {
    fn pause(&self) -> PauseFuture<'_> {
        Box::pin(Mailer::pause(self))
    }
}
