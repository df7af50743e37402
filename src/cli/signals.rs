//! The signals `tocsin run` answers: SIGTERM and SIGINT stop, SIGHUP reloads.

/// Turns each SIGHUP into a reload request; reloads asked for while one is pending coalesce.
pub(crate) fn forward_sighup(tx: tokio::sync::mpsc::Sender<()>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let _ = tx.try_send(());
        }
    });
    #[cfg(not(unix))]
    drop(tx);
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
