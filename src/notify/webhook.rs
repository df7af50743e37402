//! A generic outgoing webhook: the incident as JSON, signed so the receiver can trust it.
//!
//! Each request carries `X-Tocsin-Timestamp: <unix seconds>` and
//! `X-Tocsin-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">` keyed with the channel's
//! secret. Signing the timestamp with the body lets a receiver refuse replays of an old
//! request; `v1=` leaves room to change the scheme. Every change of the incident is posted
//! (receivers key on `id` and read `state`). 2xx is delivered; 408, 429, 5xx and network
//! errors are retried with backoff; any other 4xx is refused for good, as retrying the same
//! body cannot change the answer.

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::Sha256;

use super::{ChannelError, heads::Publication, incident_document, pagerduty::retry_after};
use crate::{
    config::{Secret, WebhookChannel},
    model::Incident,
};

pub const TIMESTAMP_HEADER: &str = "X-Tocsin-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Tocsin-Signature";

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature in constant time: what a receiver written in Rust would do.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("v1=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

pub struct Webhook {
    channel: String,
    url: url::Url,
    secret: Secret,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(config: &WebhookChannel, http: reqwest::Client) -> Webhook {
        Webhook {
            channel: format!("webhook:{}", config.name),
            url: config.url.clone(),
            secret: config.secret.clone(),
            http,
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub async fn deliver(&self, inc: &Incident) -> Result<(), ChannelError> {
        let body = serde_json::to_vec(&incident_document(inc)).expect("incidents serialize");
        self.post(body, &format!("incident #{}", inc.id)).await
    }

    /// The chain heads as a `{"event": "chain_heads", …}` document, signed like a page.
    pub async fn publish_heads(&self, p: &Publication) -> Result<(), ChannelError> {
        let body = serde_json::to_vec(&p.document()).expect("documents serialize");
        self.post(body, "the chain heads").await
    }

    async fn post(&self, body: Vec<u8>, what: &str) -> Result<(), ChannelError> {
        let timestamp = chrono::Utc::now().timestamp();
        let sig = signature(self.secret.expose().as_bytes(), timestamp, &body);
        let resp = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, sig)
            .body(body)
            .send()
            .await
            // The URL may carry a token of the receiver's: keep it out of the error.
            .map_err(|e| ChannelError::Retry {
                reason: format!("webhook unreachable: {}", e.without_url()),
                after: None,
            })?;
        let status = resp.status();
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                Err(ChannelError::Retry {
                    reason: format!("webhook answered {status}"),
                    after: retry_after(&resp),
                })
            }
            s if s.is_server_error() => Err(ChannelError::Retry {
                reason: format!("webhook answered {status}"),
                after: retry_after(&resp),
            }),
            _ => Err(ChannelError::Rejected(format!(
                "webhook refused {what} ({status})"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_timestamp_and_body() {
        let sig = signature(b"k", 1700000000, b"{}");
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64, "{sig}");
        assert!(verify(b"k", 1700000000, b"{}", &sig));
        assert!(!verify(b"other", 1700000000, b"{}", &sig));
        assert!(!verify(b"k", 1700000001, b"{}", &sig));
        assert!(!verify(b"k", 1700000000, b"{ }", &sig));
        assert!(!verify(b"k", 1700000000, b"{}", "v1=zz"));
    }
}
