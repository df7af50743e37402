//! A loopback fake of the Amazon SNS host a subscriber talks to, and the signer of the messages
//! SNS would post.
//!
//! It serves HTTPS on 127.0.0.1 with a server certificate for `sns.<region>.amazonaws.com`
//! issued by a CA made at start; [`FakeSns::client`] gives the reqwest client that resolves that
//! host name to the fake and trusts that CA (and nothing is configured differently in tocsin:
//! the SNS host check and the certificate fetch are the real ones). It serves the signing
//! certificate (`GET /SimpleNotificationService-….pem`) and answers `ConfirmSubscription`
//! (`GET /?Action=ConfirmSubscription&TopicArn=…&Token=…`), counting both.
//!
//! The RSA signing key is generated at start (2048 bits, like SNS's); [`FakeSns::notification`]
//! and [`FakeSns::subscription_confirmation`] return message bodies signed with it, version 1
//! (SHA1withRSA) or 2 (SHA256withRSA).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    extract::{Query, State},
    http::StatusCode,
    response::IntoResponse,
    routing::get,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, SecondsFormat, Utc};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rsa::{
    RsaPrivateKey,
    pkcs1v15::SigningKey,
    pkcs8::EncodePrivateKey,
    signature::{SignatureEncoding, Signer},
};
use tokio::net::TcpListener;
use tokio_rustls::{
    TlsAcceptor,
    rustls::{self, pki_types::PrivateKeyDer},
};

pub const REGION: &str = "us-east-1";
pub const HOST: &str = "sns.us-east-1.amazonaws.com";
/// S3 virtual hosts whose names begin like an SNS host's: whoever owns a bucket named `sns`
/// can serve a certificate there. The fake answers for them too (its TLS certificate names
/// them, and [`FakeSns::client`] resolves them here), as that bucket's owner would: a
/// subscriber that fetches from them is fooled, and a test can tell.
pub const S3_HOSTS: [&str; 3] = [
    "sns.s3.amazonaws.com",
    "sns.s3-accelerate.amazonaws.com",
    "sns.s3-us-west-2.amazonaws.com",
];
/// The path SNS serves its signing certificates under: `SimpleNotificationService-` and the
/// certificate's hex digest.
pub const CERT_PATH: &str = "/SimpleNotificationService-f00dfacec0ffee0123456789abcdef01.pem";
/// The headers SNS sends with every message it posts to an HTTP(S) subscriber.
pub const TYPE_HEADER: &str = "x-amz-sns-message-type";
pub const MESSAGE_ID_HEADER: &str = "x-amz-sns-message-id";
pub const TOPIC_HEADER: &str = "x-amz-sns-topic-arn";

#[derive(Default)]
struct Seen {
    cert_fetches: AtomicU64,
    confirmations: Mutex<Vec<HashMap<String, String>>>,
}

/// The fake SNS host; dropped, it keeps serving until the runtime ends.
#[derive(Clone)]
pub struct FakeSns {
    addr: SocketAddr,
    ca_pem: String,
    signing: Arc<RsaPrivateKey>,
    seen: Arc<Seen>,
}

#[derive(Debug, thiserror::Error)]
pub enum FakeSnsError {
    #[error("cannot bind: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot make certificates: {0}")]
    Cert(String),
}

fn cert_err(e: impl std::fmt::Display) -> FakeSnsError {
    FakeSnsError::Cert(e.to_string())
}

impl FakeSns {
    pub async fn start() -> Result<FakeSns, FakeSnsError> {
        // The CA the test client trusts, and the TLS certificate of the SNS host name.
        let ca_key = KeyPair::generate().map_err(cert_err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tocsin test CA");
        let ca = ca_params.self_signed(&ca_key).map_err(cert_err)?;
        let tls_key = KeyPair::generate().map_err(cert_err)?;
        let names = std::iter::once(HOST)
            .chain(S3_HOSTS)
            .map(str::to_owned)
            .collect::<Vec<_>>();
        let tls_cert = CertificateParams::new(names)
            .map_err(cert_err)?
            .signed_by(&tls_key, &ca, &ca_key)
            .map_err(cert_err)?;

        // The message-signing key and the certificate SNS publishes for it.
        let signing = tokio::task::spawn_blocking(|| {
            RsaPrivateKey::new(&mut rand_core::OsRng, 2048).map_err(cert_err)
        })
        .await
        .map_err(cert_err)??;
        let pkcs8 = signing.to_pkcs8_der().map_err(cert_err)?;
        let signing_pair = KeyPair::from_pkcs8_der_and_sign_algo(
            &pkcs8.as_bytes().into(),
            &rcgen::PKCS_RSA_SHA256,
        )
        .map_err(cert_err)?;
        let mut params = CertificateParams::new(vec![HOST.to_owned()]).map_err(cert_err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, HOST.to_owned());
        let signing_cert = params
            .signed_by(&signing_pair, &ca, &ca_key)
            .map_err(cert_err)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(cert_err)?
            .with_no_client_auth()
            .with_single_cert(
                vec![tls_cert.der().clone(), ca.der().clone()],
                PrivateKeyDer::Pkcs8(tls_key.serialize_der().into()),
            )
            .map_err(cert_err)?;
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let seen = Arc::new(Seen::default());
        let pem = signing_cert.pem();
        let app = Router::new()
            .route(
                CERT_PATH,
                get(
                    |State((seen, pem)): State<(Arc<Seen>, String)>| async move {
                        seen.cert_fetches.fetch_add(1, Ordering::SeqCst);
                        pem
                    },
                ),
            )
            .route("/", get(confirm))
            .with_state((seen.clone(), pem));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = TowerToHyperService::new(app);
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(FakeSns {
            addr,
            ca_pem: ca.pem(),
            signing: Arc::new(signing),
            seen,
        })
    }

    /// The loopback address the SNS host name resolves to for [`FakeSns::client`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client for `App::with_sns_client`: the SNS host (and the S3 look-alikes) resolve to
    /// this fake, and the fake's CA is trusted. https only, no redirects, like the daemon's own.
    pub fn client(&self) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .resolve(HOST, self.addr);
        for host in S3_HOSTS {
            builder = builder.resolve(host, self.addr);
        }
        builder
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("our own CA"),
            )
            .build()
            .expect("client builds")
    }

    pub fn cert_url(&self) -> String {
        format!("https://{HOST}{CERT_PATH}")
    }

    /// How many times the signing certificate was fetched.
    pub fn cert_fetches(&self) -> u64 {
        self.seen.cert_fetches.load(Ordering::SeqCst)
    }

    /// The query parameters of each `ConfirmSubscription` received.
    pub fn confirmations(&self) -> Vec<HashMap<String, String>> {
        self.seen.confirmations.lock().expect("lock").clone()
    }

    /// A signed `Notification` carrying `message` (an SES event's JSON).
    pub fn notification(
        &self,
        topic: &str,
        message: &str,
        version: u8,
        at: DateTime<Utc>,
    ) -> String {
        let mut body = serde_json::json!({
            "Type": "Notification",
            "MessageId": format!("{:032x}", rand_id()),
            "TopicArn": topic,
            "Message": message,
            "Timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "SignatureVersion": version.to_string(),
            "SigningCertURL": self.cert_url(),
            "UnsubscribeURL": format!("https://{HOST}/?Action=Unsubscribe&SubscriptionArn={topic}:sub"),
        });
        self.sign_into(&mut body, version);
        body.to_string()
    }

    /// A signed `SubscriptionConfirmation` for `topic`.
    pub fn subscription_confirmation(&self, topic: &str) -> String {
        let token = format!("{:064x}", rand_id());
        let mut body = serde_json::json!({
            "Type": "SubscriptionConfirmation",
            "MessageId": format!("{:032x}", rand_id()),
            "Token": token,
            "TopicArn": topic,
            "Message": format!("You have chosen to subscribe to the topic {topic}."),
            "SubscribeURL": format!("https://{HOST}/?Action=ConfirmSubscription&TopicArn={topic}&Token={token}"),
            "Timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "SignatureVersion": "2",
            "SigningCertURL": self.cert_url(),
        });
        self.sign_into(&mut body, 2);
        body.to_string()
    }

    /// The headers SNS sends with a message (`body`, as JSON): its type, id and topic.
    pub fn headers(body: &str) -> Vec<(&'static str, String)> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        vec![
            (TYPE_HEADER, field("Type")),
            (MESSAGE_ID_HEADER, field("MessageId")),
            (TOPIC_HEADER, field("TopicArn")),
        ]
    }

    /// Signs `body` (an SNS message as JSON) in place, as SNS does.
    pub fn sign_into(&self, body: &mut serde_json::Value, version: u8) {
        body["Signature"] = "".into();
        let text = string_to_sign(body);
        let key = (*self.signing).clone();
        let sig = if version == 1 {
            SigningKey::<sha1::Sha1>::new(key)
                .sign(text.as_bytes())
                .to_vec()
        } else {
            SigningKey::<sha2::Sha256>::new(key)
                .sign(text.as_bytes())
                .to_vec()
        };
        body["Signature"] = STANDARD.encode(sig).into();
    }
}

fn rand_id() -> u128 {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    u128::from_le_bytes(b)
}

async fn confirm(
    State((seen, _)): State<(Arc<Seen>, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    if q.get("Action").map(String::as_str) != Some("ConfirmSubscription")
        || !q.contains_key("Token")
        || !q.contains_key("TopicArn")
    {
        return (
            StatusCode::BAD_REQUEST,
            "<Error><Code>InvalidParameter</Code></Error>".to_owned(),
        );
    }
    seen.confirmations.lock().expect("lock").push(q.clone());
    (
        StatusCode::OK,
        format!(
            "<ConfirmSubscriptionResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><ConfirmSubscriptionResult><SubscriptionArn>{}:fake</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>",
            q["TopicArn"]
        ),
    )
}

/// The string SNS signs, laid out as its documentation says: the message's keys for its type,
/// in byte order, each as `Key\nValue\n`; a key the message lacks (a notification's `Subject`)
/// is left out.
pub fn string_to_sign(message: &serde_json::Value) -> String {
    let keys: &[&str] = match message["Type"].as_str() {
        Some("Notification") => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        _ => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
    };
    keys.iter()
        .filter_map(|k| {
            message
                .get(*k)
                .and_then(serde_json::Value::as_str)
                .map(|v| format!("{k}\n{v}\n"))
        })
        .collect()
}
