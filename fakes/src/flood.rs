//! Load on the mail inputs: the SMTP journal and the SendGrid webhook driven as hard as they
//! take it, as a runaway mailer (or someone who wants the watch blinded) would. A [`Flood`] runs
//! until stopped and counts what the daemon accepted; several run side by side, so a test or a
//! bench can swap one input for another without changing how it measures.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use tokio::task::JoinHandle;

use crate::{
    mail_signers::SendGridSigner,
    smtp::{SmtpClient, customers, leaky_message},
};

/// Load running against one input until [`Flood::stop`].
pub struct Flood {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

/// What a flood left behind once stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodCount {
    /// Messages (journal) or events (webhooks) the daemon acknowledged.
    pub accepted: u64,
    /// Answers other than the acknowledgement, and broken connections.
    pub refused: u64,
}

impl Flood {
    fn new() -> Flood {
        Flood {
            stop: Arc::new(AtomicBool::new(false)),
            accepted: Arc::new(AtomicU64::new(0)),
            refused: Arc::new(AtomicU64::new(0)),
            tasks: Vec::new(),
        }
    }

    /// `clients` SMTP connections to the journal at `addr`, each sending `recipients`-recipient
    /// messages that show every recipient (the leak) back to back, pipelined like an MTA.
    /// Client `c` sends as `mailer{c % senders}@exchange.example`: how many incidents the load
    /// opens is the number of senders.
    pub fn journal(addr: SocketAddr, clients: usize, senders: usize, recipients: usize) -> Flood {
        let mut flood = Flood::new();
        for c in 0..clients {
            let (stop, accepted, refused) = flood.counters();
            let sender = format!("mailer{}@exchange.example", c % senders.max(1));
            flood.tasks.push(tokio::spawn(async move {
                let to = customers(c, recipients, 50);
                let mut smtp = None;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let client = match smtp.as_mut() {
                        Some(client) => client,
                        None => match SmtpClient::connect(addr).await {
                            Ok(client) => smtp.insert(client),
                            Err(_) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        },
                    };
                    n += 1;
                    let id = format!("flood{c}.{n}@exchange.example");
                    let message = leaky_message(&sender, &to, "Statement", &id);
                    match client.send(&sender, &to, &message).await {
                        Ok(reply) if reply.code == 250 => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            smtp = None;
                        }
                    }
                }
                if let Some(client) = smtp {
                    let _ = client.quit().await;
                }
            }));
        }
        flood
    }

    /// SendGrid's event webhook at `url`: signed batches of `events` events (`delivered`, each
    /// its own message, recipient and `sg_event_id`, never repeated), `in_flight` requests at
    /// once.
    pub fn sendgrid(
        url: String,
        signer: Arc<SendGridSigner>,
        events: usize,
        in_flight: usize,
    ) -> Flood {
        let mut flood = Flood::new();
        let client = reqwest::Client::new();
        for lane in 0..in_flight {
            let (stop, accepted, refused) = flood.counters();
            let (client, url, signer) = (client.clone(), url.clone(), signer.clone());
            flood.tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let at = Utc::now();
                    let body = sendgrid_batch(&format!("f{lane}-{n}"), events, at.timestamp());
                    let mut request = client.post(&url).header("content-type", "application/json");
                    for (name, value) in signer.headers(body.as_bytes(), at) {
                        request = request.header(name, value);
                    }
                    match request.body(body).send().await {
                        Ok(r) if r.status().is_success() => {
                            accepted.fetch_add(events as u64, Ordering::Relaxed);
                        }
                        _ => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }));
        }
        flood
    }

    fn counters(&self) -> (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU64>) {
        (
            self.stop.clone(),
            self.accepted.clone(),
            self.refused.clone(),
        )
    }

    /// Acknowledged so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops the load, waits for the requests in flight, and counts.
    pub async fn stop(self) -> FloodCount {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        FloodCount {
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// A SendGrid batch of `events` `delivered` events, every id unique to `batch`, so that no
/// event is a replay of another.
fn sendgrid_batch(batch: &str, events: usize, timestamp: i64) -> String {
    let events: Vec<_> = (0..events)
        .map(|i| {
            serde_json::json!({
                "email": format!("customer{i}@flood{}.example", i % 50),
                "timestamp": timestamp,
                "smtp-id": format!("<{batch}.{i}@sendgrid.example>"),
                "event": "delivered",
                "category": ["newsletter"],
                "sg_event_id": format!("{batch}-{i}"),
                "sg_message_id": format!("{batch}.{i}.filter0001"),
            })
        })
        .collect();
    serde_json::Value::Array(events).to_string()
}
