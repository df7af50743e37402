//! The reverse proxy a deployment puts in front of tocsin's hooks listener, on loopback: it
//! holds its public port from the start, so the callback URL a push subscription registers is
//! known before the daemon has bound its own listener, and forwards each connection once told
//! where the daemon listens.

use std::net::SocketAddr;

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct Front {
    port: u16,
    target: watch::Sender<Option<SocketAddr>>,
}

impl Front {
    pub async fn start() -> std::io::Result<Front> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let (target, rx) = watch::channel(None);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    // Connections made before the daemon is known wait for it.
                    let Ok(to) = rx.wait_for(Option::is_some).await.map(|t| t.expect("some"))
                    else {
                        return;
                    };
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Front { port, target })
    }

    /// The public base URL (`general.public_url`).
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://127.0.0.1:{}/", self.port)).expect("loopback URL")
    }

    /// Forwards to `to` from now on.
    pub fn forward_to(&self, to: SocketAddr) {
        self.target.send_replace(Some(to));
    }
}
