//! The websocket server: accept loop, path routing, connection limit, graceful shutdown.
//!
//! Owns listening and the life of connections: which paths exist (each with its secret and
//! `encryption_enabled` flag), how many connections may be open (in all and from one peer
//! address, with the process's open-file limit raised to match), the websocket limits, and
//! stopping (stop accepting, let sessions finish their calls within the grace period, close
//! sockets cleanly). `run(listener, config, registry, shutdown)` is the whole server, so tests
//! start a real one on 127.0.0.1:0 and stop it deterministically. Per-connection protocol
//! lives in `session`.

use crate::cluster;
use crate::deploy::Deployer;
use crate::registry::Registry;
use crate::session::{self, Shared, Transport};
use crate::wire;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Files the host keeps open besides its connections (modules, the cache, the log, the
/// runtime's own): what the open-file limit needs beyond one per connection.
const FILES_BESIDE_CONNECTIONS: u64 = 256;
/// Read buffer of each websocket (tungstenite's default is 128 KiB).
pub const READ_BUFFER: usize = 8 << 10;
/// Bytes a connection may send before it is authenticated: its HTTP upgrade request and its
/// setup frame, together a few hundred bytes from easyrpc clients (a JWT of four claims).
/// Beyond it the connection is refused, so that peers nobody authenticated cannot make the
/// host hold frames of up to `max_frame` each.
pub const MAX_SETUP_BYTES: usize = 64 << 10;
/// The default port and path, as in the easyrpc README.
pub const DEFAULT_PORT: u16 = 8220;
pub const DEFAULT_PATH: &str = "/ws/easy";

/// A server's config is made of the session's types.
pub use crate::session::{ConnectionLimits, PathConfig};

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub paths: Vec<PathConfig>,
    pub limits: ConnectionLimits,
    /// Sent in every auth reply; the same for all connections of this server.
    pub server_id: String,
    /// Links to parent hosts, kept up while the server runs.
    pub links: Vec<cluster::parent::LinkConfig>,
    /// The host's certificate and key: every connection is TLS (`wss://`). None: plain `ws://`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ServerConfig {
    /// One path with one secret and default limits.
    pub fn single(path: &str, secret: &str) -> Self {
        Self {
            paths: vec![PathConfig { path: path.to_owned(), secret: secret.to_owned(), encryption: false }],
            limits: ConnectionLimits::default(),
            server_id: uuid::Uuid::new_v4().to_string(),
            links: Vec::new(),
            tls: None,
        }
    }
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
    raise_open_file_limit(config.limits.max_connections);
    let connections = Arc::new(Semaphore::new(config.limits.max_connections));
    let peers = Arc::new(PeerCounts::new(config.limits.max_connections_per_peer));
    let mut turned_away = TurnedAway::default();
    let open_generators = Arc::new(Semaphore::new(config.limits.max_open_generators));
    let paths = Arc::new(config.paths);
    let tls = config.tls.map(tokio_rustls::TlsAcceptor::from);
    let shared =
        Arc::new(Shared { limits: config.limits, server_id: config.server_id, registry, deployer, open_generators });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    for link in config.links {
        sessions.spawn(cluster::parent::keep_link(link, shared.clone(), stop_rx.clone()));
    }
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
        let Some(peer_slot) = peers.claim(peer.ip()) else {
            if let Some(since_last) = turned_away.note(Instant::now()) {
                tracing::warn!(%peer, since_last, "this peer's connection limit reached; turning connections away");
            }
            drop(stream);
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if let Some(since_last) = turned_away.note(Instant::now()) {
                tracing::warn!(%peer, since_last, "connection limit reached; turning connections away");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, paths, tls) = (shared.clone(), paths.clone(), tls.clone());
        let stop_rx = stop_rx.clone();
        sessions.spawn(async move {
            let _permits = (permit, peer_slot);
            let Some(socket) = secure(stream, tls.as_ref(), &shared.limits, peer).await else { return };
            let stream = PeerStream::new(socket);
            let Some((ws, path)) = handshake(stream, &paths, &shared.limits).await else { return };
            let Some(accepted) = session::accept(ws, peer, path, &shared).await else { return };
            if accepted.claims().kind == wire::auth::SERVER {
                cluster::children::serve_child(accepted, shared, stop_rx).await;
            } else {
                session::run(accepted, shared, stop_rx, None).await;
            }
        });
    }
    tracing::info!("shutting down: no new connections; letting calls finish");
    drop(listener);
    let _ = stop_tx.send(true);
    let grace = shared.limits.shutdown_grace + Duration::from_secs(1);
    if tokio::time::timeout(grace, async { while sessions.join_next().await.is_some() {} }).await.is_err() {
        sessions.abort_all();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Connections turned away at a limit, logged at most once per [`TURNED_AWAY_LOG_INTERVAL`]:
/// a peer that opens connections as fast as it can must not flood the log.
#[derive(Default)]
struct TurnedAway {
    last_logged: Option<Instant>,
    since_last: u64,
}

/// Shortest time between two log lines about connections turned away.
const TURNED_AWAY_LOG_INTERVAL: Duration = Duration::from_secs(1);

impl TurnedAway {
    /// Counts one connection turned away at `now`; the count since the last log line when
    /// this one is to be logged.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.since_last += 1;
        if self.last_logged.is_some_and(|last| now.duration_since(last) < TURNED_AWAY_LOG_INTERVAL) {
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.since_last))
    }
}

/// Open connections by peer address, against the per-peer limit.
struct PeerCounts {
    open: Mutex<HashMap<IpAddr, usize>>,
    limit: usize,
}

/// One connection's place in its peer's count, given back when dropped.
struct PeerSlot {
    peers: Arc<PeerCounts>,
    key: IpAddr,
}

impl PeerCounts {
    fn new(limit: usize) -> Self {
        Self { open: Mutex::new(HashMap::new()), limit }
    }

    /// A place for one more connection from `ip`, or none at its limit.
    fn claim(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let key = peer_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(PeerSlot { peers: self.clone(), key })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The address a peer is counted under: an IPv4 address as it is, an IPv6 one by its /64
/// (an IPv4-mapped one as the IPv4 address).
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Raises the soft open-file limit so that `max_connections` sockets fit beside the host's
/// other files; where the hard limit is lower, raises it that far and says how many
/// connections the host can then take.
fn raise_open_file_limit(max_connections: usize) {
    let wanted = max_connections as u64 + FILES_BESIDE_CONNECTIONS;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return;
    }
    if limit.rlim_cur >= wanted {
        return;
    }
    let target = if limit.rlim_max == libc::RLIM_INFINITY { wanted } else { wanted.min(limit.rlim_max) };
    let raised = libc::rlimit { rlim_cur: target, rlim_max: limit.rlim_max };
    // SAFETY: as above.
    if target > limit.rlim_cur && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        limit.rlim_cur = target;
    }
    if limit.rlim_cur < wanted {
        let room = limit.rlim_cur.saturating_sub(FILES_BESIDE_CONNECTIONS);
        tracing::warn!(
            open_file_limit = limit.rlim_cur,
            max_connections,
            "the open-file limit cannot be raised to what max_connections needs: about {room} connections fit; \
             raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower max_connections"
        );
    } else {
        tracing::debug!(open_file_limit = limit.rlim_cur, "open-file limit");
    }
}

/// A connection's socket: plain TCP, or TLS over it when the host has a certificate.
enum Socket {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// A connection's socket, counting what the peer sends until it is authenticated: past
/// [`MAX_SETUP_BYTES`] reading fails, before tungstenite buffers a frame that large.
struct PeerStream {
    socket: Socket,
    /// Bytes the peer may still send before it is authenticated; none once it is.
    unauthenticated_room: Option<usize>,
}

impl PeerStream {
    fn new(socket: Socket) -> Self {
        Self { socket, unauthenticated_room: Some(MAX_SETUP_BYTES) }
    }
}

impl Transport for PeerStream {
    /// The peer is authenticated: its frames are bounded by the websocket's limits only.
    fn authenticated(&mut self) {
        self.unauthenticated_room = None;
    }
}

/// Forwards a poll to the socket, whichever kind it is.
macro_rules! on_socket {
    ($self:expr, $s:ident => $poll:expr) => {
        match &mut $self.get_mut().socket {
            Socket::Plain($s) => $poll,
            Socket::Tls($s) => $poll,
        }
    };
}

impl AsyncRead for PeerStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = match &mut this.socket {
            Socket::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let (Poll::Ready(Ok(())), Some(room)) = (&read, this.unauthenticated_room.as_mut()) {
            let got = buf.filled().len() - before;
            *room = room.checked_sub(got).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("more than {MAX_SETUP_BYTES} bytes before the setup frame was verified"),
                )
            })?;
        }
        read
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        on_socket!(self, s => Pin::new(s).poll_write(cx, data))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        on_socket!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match &self.socket {
            Socket::Plain(s) => s.is_write_vectored(),
            Socket::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        on_socket!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        on_socket!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The TLS handshake when the host has a certificate; bounded by the setup timeout.
async fn secure(
    tcp: TcpStream,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    limits: &ConnectionLimits,
    peer: SocketAddr,
) -> Option<Socket> {
    let Some(acceptor) = tls else { return Some(Socket::Plain(tcp)) };
    match tokio::time::timeout(limits.setup_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(Socket::Tls(Box::new(stream))),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// The websocket upgrade; answers 404 for paths the server does not serve.
async fn handshake(
    stream: PeerStream,
    paths: &[PathConfig],
    limits: &ConnectionLimits,
) -> Option<(tokio_tungstenite::WebSocketStream<PeerStream>, Arc<PathConfig>)> {
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
        match paths.iter().find(|p| p.path == request.uri().path()) {
            Some(p) => {
                matched = Some(p.clone());
                Ok(response)
            }
            None => {
                let mut not_found =
                    ErrorResponse::new(Some(format!("no easyrpc endpoint at {}", request.uri().path())));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_counted_by_address_and_ipv6_prefix() {
        let peers = Arc::new(PeerCounts::new(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let first = peers.claim(a).expect("room");
        let _second = peers.claim(a).expect("room");
        assert!(peers.claim(a).is_none(), "at the limit");
        assert!(peers.claim("10.0.0.2".parse().unwrap()).is_some(), "another address has its own count");
        drop(first);
        assert!(peers.claim(a).is_some(), "a closed connection gives its place back");
        let v6 = |s: &str| peer_key(s.parse().unwrap());
        assert_eq!(v6("2001:db8::1"), v6("2001:db8::ffff:1"));
        assert_ne!(v6("2001:db8::1"), v6("2001:db8:0:1::1"));
        assert_eq!(v6("::ffff:10.0.0.1"), a);
    }

    #[test]
    fn connections_turned_away_are_logged_once_a_second() {
        let mut turned_away = TurnedAway::default();
        let start = Instant::now();
        assert_eq!(turned_away.note(start), Some(1), "the first is logged");
        for i in 1..1000 {
            assert_eq!(turned_away.note(start + Duration::from_micros(i)), None);
        }
        assert_eq!(turned_away.note(start + Duration::from_secs(1)), Some(1000), "then one line with the count");
    }

    #[test]
    fn the_open_file_limit_is_raised_for_the_connections() {
        raise_open_file_limit(1000);
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert!(limit.rlim_cur >= (1000 + FILES_BESIDE_CONNECTIONS).min(limit.rlim_max), "{}", limit.rlim_cur);
    }
}
