//! The limits of one connection and the paths connections arrive on, with their named
//! defaults. The server reads the connection counts and frame sizes of [`ConnectionLimits`] as
//! it accepts; the session keeps the rest.

use std::time::Duration;

/// Largest frame accepted from a client: the Python server's (uvicorn) default.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
/// Largest response frame sent: Python clients (aiohttp) close the connection above 4 MiB
/// (quirk Q9), so a bigger result is answered with an error instead.
pub const DEFAULT_MAX_RESPONSE_FRAME: usize = 4 << 20;
/// Calls one connection may have running at once; further requests wait (backpressure).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Bytes of the requests of one connection's calls in flight: one frame of the largest size.
/// Their arguments stay decoded while the calls run or queue (up to about 32 times the
/// frame's bytes), so this, not the count, bounds what a client's pipelined requests hold;
/// past it the connection is read no further until calls finish.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = DEFAULT_MAX_FRAME;
/// Open connections across the host; more are turned away until some close.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Open connections from one peer address (an IPv6 peer's /64 counts as one address, since
/// one host holds a whole /64). A client host running a pool of worker processes, each with a
/// few proxies, stays far below it, while one address can take at most a twentieth of
/// [`DEFAULT_MAX_CONNECTIONS`], so that it cannot lock everyone else out.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 500;
/// Bytes of answers one connection may have waiting to be written. Eight answers of the
/// largest size easyrpc clients accept: room for a burst of big answers to a client that
/// reads them, while a client that stops reading holds at most this before it is closed.
pub const DEFAULT_MAX_QUEUED_ANSWER_BYTES: usize = 8 * DEFAULT_MAX_RESPONSE_FRAME;
/// Longest a write to a client may wait for it to read: a client that takes no answer for
/// this long has stopped reading and is closed (even a slow link takes a 4 MiB answer in far
/// less), so that it holds neither its connection nor the answers meant for it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
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

/// One websocket path the server answers, with its own secret.
#[derive(Clone, Debug)]
pub struct PathConfig {
    pub path: String,
    pub secret: String,
    /// easyrpc's `encryption_enabled`: requests arrive wrapped in a JWT
    /// (docs/protocol.md, section 7).
    pub encryption: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_frame: usize,
    pub max_response_frame: usize,
    pub max_in_flight: usize,
    pub max_in_flight_bytes: usize,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub max_queued_answer_bytes: usize,
    pub write_timeout: Duration,
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
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            max_queued_answer_bytes: DEFAULT_MAX_QUEUED_ANSWER_BYTES,
            write_timeout: WRITE_TIMEOUT,
            setup_timeout: SETUP_TIMEOUT,
            shutdown_grace: SHUTDOWN_GRACE,
            max_generators_per_connection: DEFAULT_MAX_GENERATORS_PER_CONNECTION,
            max_open_generators: DEFAULT_MAX_OPEN_GENERATORS,
            generator_idle_timeout: GENERATOR_IDLE_TIMEOUT,
        }
    }
}
