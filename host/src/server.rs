//! The websocket server: accept loop, path routing, connection limit, graceful shutdown.
//!
//! Owns listening and the life of connections: which paths exist (each with its secret and
//! `encryption_enabled` flag), how many connections may be open, the websocket limits, and
//! stopping (stop accepting, let sessions finish their calls within the grace period, close
//! sockets cleanly). `run(listener, config, registry, shutdown)` is the whole server, so tests
//! start a real one on 127.0.0.1:0 and stop it deterministically. Per-connection protocol
//! lives in `session`.

use crate::deploy::Deployer;
use crate::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Largest frame accepted from a client: the Python server's (uvicorn) default.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
/// Largest response frame sent: Python clients (aiohttp) close the connection above 4 MiB
/// (quirk Q9), so a bigger result is answered with an error instead.
pub const DEFAULT_MAX_RESPONSE_FRAME: usize = 4 << 20;
/// Calls one connection may have running at once; further requests wait (backpressure).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Open connections across the host; more are turned away until some close.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Generators one connection may hold open at once.
pub const DEFAULT_MAX_GENERATORS_PER_CONNECTION: usize = 100;
/// Generators open across the host; each holds a sandboxed instance, so this stays well below
/// the runtime's instance pool (runtime::DEFAULT_MAX_INSTANCES).
pub const DEFAULT_MAX_OPEN_GENERATORS: usize = 500;
/// A generator nobody pulled from for this long is closed and its instance freed.
pub const GENERATOR_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a new connection has to send its setup frame.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Time running calls get to finish when the host shuts down.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Read buffer of each websocket (tungstenite's default is 128 KiB).
pub const READ_BUFFER: usize = 8 << 10;
/// The default port and path, as in the easyrpc README.
pub const DEFAULT_PORT: u16 = 8220;
pub const DEFAULT_PATH: &str = "/ws/easy";

/// One websocket path the server answers, with its own secret.
#[derive(Clone, Debug)]
pub struct PathConfig {
    pub path: String,
    pub secret: String,
    /// easyrpc's `encryption_enabled`: requests arrive wrapped in a JWT (spec section 8).
    pub encryption: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_frame: usize,
    pub max_response_frame: usize,
    pub max_in_flight: usize,
    pub max_connections: usize,
    pub setup_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_generators_per_connection: usize,
    pub max_open_generators: usize,
    pub generator_idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            max_response_frame: DEFAULT_MAX_RESPONSE_FRAME,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            setup_timeout: SETUP_TIMEOUT,
            shutdown_grace: SHUTDOWN_GRACE,
            max_generators_per_connection: DEFAULT_MAX_GENERATORS_PER_CONNECTION,
            max_open_generators: DEFAULT_MAX_OPEN_GENERATORS,
            generator_idle_timeout: GENERATOR_IDLE_TIMEOUT,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub paths: Vec<PathConfig>,
    pub limits: ConnectionLimits,
    /// Sent in every auth reply; the same for all connections of this server.
    pub server_id: String,
}

impl ServerConfig {
    /// One path with one secret and default limits.
    pub fn single(path: &str, secret: &str) -> Self {
        Self {
            paths: vec![PathConfig { path: path.to_owned(), secret: secret.to_owned(), encryption: false }],
            limits: ConnectionLimits::default(),
            server_id: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// What every session of the server shares.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub registry: Arc<Registry>,
    /// Present when admins may deploy and remove modules over the wire.
    pub deployer: Option<Arc<Deployer>>,
    /// One permit per generator open anywhere on the host.
    pub open_generators: Arc<Semaphore>,
}

/// Serves until `shutdown` completes, then stops accepting, lets sessions finish their calls
/// (up to the grace period) and returns once every connection is closed.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with_deployer(listener, config, registry, None, shutdown).await
}

/// [`run`], and admins (connections signed with a path's admin secret) may deploy and remove
/// modules through `deployer` (see `session` for the admin actions).
pub async fn run_with_deployer(
    listener: TcpListener,
    config: ServerConfig,
    registry: Arc<Registry>,
    deployer: Option<Arc<Deployer>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(address = %local, paths = ?config.paths.iter().map(|p| &p.path).collect::<Vec<_>>(), "serving");
    let connections = Arc::new(Semaphore::new(config.limits.max_connections));
    let open_generators = Arc::new(Semaphore::new(config.limits.max_open_generators));
    let shared = Arc::new(Shared { config, registry, deployer, open_generators });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while sessions.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; turning a connection away");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop_rx = stop_rx.clone();
        sessions.spawn(async move {
            let _permit = permit;
            let Some((ws, path)) = handshake(stream, &shared).await else { return };
            crate::session::serve(ws, peer, path, shared, stop_rx).await;
        });
    }
    tracing::info!("shutting down: no new connections; letting calls finish");
    drop(listener);
    let _ = stop_tx.send(true);
    let grace = shared.config.limits.shutdown_grace + Duration::from_secs(1);
    if tokio::time::timeout(grace, async { while sessions.join_next().await.is_some() {} }).await.is_err() {
        sessions.abort_all();
    }
    tracing::info!("stopped");
    Ok(())
}

/// The websocket upgrade; answers 404 for paths the server does not serve.
async fn handshake(
    stream: tokio::net::TcpStream,
    shared: &Shared,
) -> Option<(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, Arc<PathConfig>)> {
    let limits = shared.config.limits;
    let mut ws_config = WebSocketConfig::default();
    ws_config.max_message_size = Some(limits.max_frame);
    ws_config.max_frame_size = Some(limits.max_frame);
    // tungstenite's default 128 KiB read buffer per connection is most of an idle connection's
    // memory; reads of larger frames simply take more calls.
    ws_config.read_buffer_size = READ_BUFFER;
    let mut matched: Option<PathConfig> = None;
    // The error type is tungstenite's (its handshake callback's signature), not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        match shared.config.paths.iter().find(|p| p.path == request.uri().path()) {
            Some(p) => {
                matched = Some(p.clone());
                Ok(response)
            }
            None => {
                let mut not_found = ErrorResponse::new(Some(format!("no easyrpc endpoint at {}", request.uri().path())));
                *not_found.status_mut() = StatusCode::NOT_FOUND;
                Err(not_found)
            }
        }
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config));
    match tokio::time::timeout(limits.setup_timeout, upgrade).await {
        Ok(Ok(ws)) => matched.map(|p| (ws, Arc::new(p))),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "websocket handshake failed");
            None
        }
        Err(_) => None,
    }
}
