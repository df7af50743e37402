//! The sending side of the SendGrid, Mailgun and Postmark webhooks: keys made at start and
//! request builders that sign as each provider does, so tests and benches post what the
//! provider would (and forge what an attacker would).

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use p256::{
    ecdsa::{Signature, SigningKey, signature::Signer},
    pkcs8::EncodePublicKey,
};
use sha2::Sha256;

/// The headers SendGrid's signed event webhook sends.
pub const SENDGRID_SIGNATURE: &str = "X-Twilio-Email-Event-Webhook-Signature";
pub const SENDGRID_TIMESTAMP: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// SendGrid's signing side: an ECDSA P-256 key pair.
pub struct SendGridSigner {
    key: SigningKey,
}

impl Default for SendGridSigner {
    fn default() -> Self {
        SendGridSigner::new()
    }
}

impl SendGridSigner {
    pub fn new() -> SendGridSigner {
        SendGridSigner {
            key: SigningKey::random(&mut rand_core::OsRng),
        }
    }

    /// The verification key as SendGrid's settings show it: base64 DER SubjectPublicKeyInfo.
    pub fn public_key(&self) -> String {
        let der = self
            .key
            .verifying_key()
            .to_public_key_der()
            .expect("P-256 keys encode");
        STANDARD.encode(der.as_bytes())
    }

    /// The two headers SendGrid sends with `body`, signed at `at`.
    pub fn headers(&self, body: &[u8], at: DateTime<Utc>) -> [(&'static str, String); 2] {
        let ts = at.timestamp().to_string();
        let mut signed = ts.as_bytes().to_vec();
        signed.extend_from_slice(body);
        let sig: Signature = self.key.sign(&signed);
        [
            (SENDGRID_SIGNATURE, STANDARD.encode(sig.to_der().as_bytes())),
            (SENDGRID_TIMESTAMP, ts),
        ]
    }
}

/// A batch of SendGrid events: for each message, a `processed` and a `delivered` event per
/// recipient, `category` as the campaign.
pub fn sendgrid_events(
    messages: usize,
    recipients: usize,
    category: &str,
    at: DateTime<Utc>,
) -> String {
    let mut events = Vec::with_capacity(messages * recipients * 2);
    for m in 0..messages {
        for r in 0..recipients {
            for kind in ["processed", "delivered"] {
                events.push(serde_json::json!({
                    "email": format!("customer{m}-{r}@example.net"),
                    "timestamp": at.timestamp(),
                    "smtp-id": format!("<msg{m}.{}@sendgrid.example>", at.timestamp_micros()),
                    "event": kind,
                    "category": [category],
                    // Unique per event, as SendGrid's are: a batch sent again repeats them.
                    "sg_event_id": format!("ev{m}-{r}-{kind}-{}", at.timestamp_micros()),
                    "sg_message_id": format!("msg{m}.filter0001"),
                }));
            }
        }
    }
    serde_json::Value::Array(events).to_string()
}

/// A Mailgun webhook body signed with `key` at `at` with `token`.
pub fn mailgun_body(
    key: &str,
    at: DateTime<Utc>,
    token: &str,
    event_data: serde_json::Value,
) -> String {
    let ts = at.timestamp().to_string();
    serde_json::json!({
        "signature": {
            "timestamp": ts,
            "token": token,
            "signature": mailgun_signature(key, &ts, token),
        },
        "event-data": event_data,
    })
    .to_string()
}

/// Mailgun's webhook signature: the hex HMAC-SHA256 of the timestamp followed by the token,
/// keyed with the webhook signing key.
pub fn mailgun_signature(key: &str, timestamp: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `Authorization` header of a Postmark webhook URL's credentials.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// An SES event (`eventType` Send) whose headers are included, with `to` visible in `To:`.
pub fn ses_event(
    message_id: &str,
    from: &str,
    to: &[String],
    subject: &str,
    campaign: &str,
) -> String {
    let to_header = to.join(", ");
    serde_json::json!({
        "eventType": "Send",
        "mail": {
            "timestamp": Utc::now().to_rfc3339(),
            "source": from,
            "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/corp.example",
            "sendingAccountId": "123456789012",
            "messageId": message_id,
            "destination": to,
            "headersTruncated": false,
            "headers": [
                {"name": "From", "value": format!("Corp News <{from}>")},
                {"name": "To", "value": to_header},
                {"name": "Subject", "value": subject},
                {"name": "Message-ID", "value": format!("<{message_id}@email.amazonses.com>")},
            ],
            "commonHeaders": {
                "from": [format!("Corp News <{from}>")],
                "to": to.iter().take(3).collect::<Vec<_>>(),
                "messageId": format!("<{message_id}@email.amazonses.com>"),
                "subject": subject,
            },
            "tags": {
                "ses:configuration-set": ["bulk"],
                "campaign": [campaign],
            },
        },
        "send": {},
    })
    .to_string()
}
