//! The service running inside this process on loopback ports the OS chooses: for embedding it
//! next to other code, and for tests that speak to it over real sockets.

use super::{run, Listeners, ServerError, Settings};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running service; [`Spawned::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct Spawned {
    /// The gRPC port (RateLimitService, QuotaLease, RevocationService, health).
    pub grpc: SocketAddr,
    /// The HTTP port (`/healthz`, `/ready`, `/metrics`, `/revocations`).
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Spawned {
    /// Binds `127.0.0.1:0` twice and serves `settings` on a task of the current runtime.
    pub async fn start(settings: Settings) -> std::io::Result<Spawned> {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(Listeners { grpc, http }, settings, async move {
            let _ = stopped.await;
        }));
        Ok(Spawned {
            grpc: grpc_addr,
            http: http_addr,
            stop: Some(stop),
            task,
        })
    }

    /// Stops serving and waits for the drain: the run's own result, or `None` when it did not
    /// end within `within`.
    pub async fn shutdown(mut self, within: Duration) -> Option<Result<(), ServerError>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(within, &mut self.task).await {
            Ok(Ok(result)) => Some(result),
            Ok(Err(join)) => Some(Err(ServerError::Task(join))),
            Err(_) => None,
        }
    }
}
