//! One client connection, from the setup frame to the close: the loop that reads requests
//! and writes their answers.
//!
//! Owns the per-connection protocol state: setup and auth (quirks Q1, Q14), the serialization
//! chosen by the client, calls answered by request id (unlike the Python server, which
//! serialises them), the in-flight bounds (calls and their bytes) that turn into backpressure,
//! the budget of answers waiting for a client that does not read (past it the client is
//! closed, not fed), the connection's open generators (limits, idle timeout), and the close (a
//! client that goes away aborts its calls; a host shutdown lets them finish within the grace
//! period). One task reads and writes the websocket and runs each request's first poll
//! itself; requests that wait continue as tasks of their own and send their answers back to
//! it. What each request does is its [`command`]'s; the path of a call is `dispatch`'s; how
//! frames look is `wire`'s. It does not accept connections (`server`).

pub mod command;
mod limits;
mod reply;

pub use limits::*;
pub use reply::Reply;

use crate::deploy::Deployer;
use crate::dispatch::Generator;
use crate::registry::Registry;
use crate::value::Value;
use crate::wire::{self, auth, Message, RequestBody, Serialization};
use command::Command;
use futures_util::{FutureExt, SinkExt, StreamExt};
use reply::to_ws;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::error::{Error as TungsteniteError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

/// The byte stream under a session's websocket.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The peer has passed setup and auth; a stream that bounds what unauthenticated peers may
    /// send lifts that bound here.
    fn authenticated(&mut self) {}
}

/// What every session of a server shares.
pub struct Shared {
    pub limits: ConnectionLimits,
    /// Sent in every auth reply; the same for all connections of this server.
    pub server_id: String,
    pub registry: Arc<Registry>,
    /// Present when admins may deploy and remove modules over the wire.
    pub deployer: Option<Arc<Deployer>>,
    /// One permit per generator open anywhere on the host.
    pub open_generators: Arc<Semaphore>,
}

/// What one connection is, once set up: what its commands read and change.
pub struct Session {
    serialization: Serialization,
    /// The namespace or group the connection reached.
    namespace: String,
    path: Arc<PathConfig>,
    /// The secret that verified the connection's setup; wrapped requests are signed with it.
    secret: String,
    registry: Arc<Registry>,
    max_response_frame: usize,
    /// This connection's open generators by id. Ids are only looked up here, so no other
    /// connection (or tenant) can step them, however it guesses.
    generators: Mutex<HashMap<String, Arc<tokio::sync::Mutex<OpenGenerator>>>>,
    /// Generators closed for want of pulls, by id, until their puller has been told: the next
    /// pull answers why (an error item), the one after the end, as for a generator that failed
    /// (quirk Q3). A Python client stops pulling only at the end marker, so an id that simply
    /// vanished would have it pull forever. Kept for [`EXPIRED_GENERATOR_MEMORY`] or one more
    /// idle timeout, whichever is longer, at most `max_generators` of them.
    expired: Mutex<HashMap<String, ExpiredGenerator>>,
    open_generators: Arc<Semaphore>,
    max_generators: usize,
    idle_timeout: Duration,
    /// Signed with the admin secret: may deploy and remove modules.
    admin: bool,
    deployer: Option<Arc<Deployer>>,
    /// Set when the connection is a cluster link: listings for it leave out what the other
    /// host offered over it.
    link: Option<crate::registry::LinkId>,
}

/// A generator of this connection between pulls.
struct OpenGenerator {
    generator: Generator,
    last_used: Instant,
    /// Its place among the host's open generators; given back when it ends.
    _host_slot: Option<OwnedSemaphorePermit>,
}

/// A generator closed for want of pulls, not yet reported to its puller in full.
struct ExpiredGenerator {
    since: Instant,
    /// Whether a pull has already been answered with why it was closed.
    told: bool,
}

impl Session {
    /// What this connection lists from `snapshot`: its namespace's functions, without those the
    /// other host offered over it when it is a link.
    fn listing<'a>(
        &self,
        snapshot: &'a crate::registry::RegistrySnapshot,
    ) -> Vec<&'a crate::signature::FunctionDescriptor> {
        match &self.link {
            Some(link) => snapshot.listing_for_link(&self.namespace, link),
            None => snapshot.listing(&self.namespace),
        }
    }

    /// Answers one request.
    async fn handle(&self, request_id: &str, body: RequestBody, unsupported: Option<String>) -> Reply {
        match Command::parse(body, self.path.encryption, &self.secret, unsupported) {
            Ok(command) => command.apply(self, request_id).await,
            Err(reply) => reply,
        }
    }

    /// Frees generators nobody pulled from within the idle timeout (skipping any being pulled),
    /// remembering their ids for one more timeout, so that their pullers learn the end.
    fn close_idle_generators(&self) {
        let timeout = self.idle_timeout;
        let mut closed = Vec::new();
        self.generators_lock().retain(|id, g| match g.try_lock() {
            Ok(g) if g.last_used.elapsed() >= timeout => {
                tracing::debug!(generator = %id, "closing idle generator");
                closed.push(id.clone());
                false
            }
            _ => true,
        });
        let mut expired = self.expired_lock();
        let remembered = timeout.max(EXPIRED_GENERATOR_MEMORY);
        expired.retain(|_, e| e.since.elapsed() < remembered);
        for id in closed {
            if expired.len() >= self.max_generators.max(1) {
                let oldest = expired.iter().min_by_key(|(_, e)| e.since).map(|(id, _)| id.clone());
                oldest.map(|id| expired.remove(&id));
            }
            expired.insert(id, ExpiredGenerator { since: Instant::now(), told: false });
        }
    }

    /// The answer to a pull of a generator closed for want of pulls: why, then the end. None
    /// for an id that is not such a generator.
    fn pull_expired(&self, id: &str) -> Option<Reply> {
        let mut expired = self.expired_lock();
        let told = expired.get(id)?.told;
        if told {
            expired.remove(id);
            return Some(Reply::Value(Value::Str(crate::dispatch::GENERATOR_END.to_owned())));
        }
        if let Some(e) = expired.get_mut(id) {
            e.told = true;
        }
        let message = format!("generator {id} was closed after {:?} without a pull", self.idle_timeout);
        Some(Reply::exception("Timeout", &message))
    }

    fn expired_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExpiredGenerator>> {
        self.expired.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn generators_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<OpenGenerator>>>> {
        self.generators.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection past its setup: the peer, what its token said, and the secret that verified it.
pub struct Accepted<S> {
    ws: WebSocketStream<S>,
    peer: SocketAddr,
    path: Arc<PathConfig>,
    setup: auth::Setup,
}

impl<S> Accepted<S> {
    /// A connection this host dialed and set up itself (a link to its parent host): `setup`
    /// holds the claims it sent and the secret it signed them with.
    pub fn dialed(ws: WebSocketStream<S>, peer: SocketAddr, path: Arc<PathConfig>, setup: auth::Setup) -> Self {
        Self { ws, peer, path, setup }
    }

    /// What the peer's setup token says.
    pub fn claims(&self) -> &auth::SetupClaims {
        &self.setup.claims
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// Reads and verifies a new connection's setup frame and answers it: the auth reply, or the
/// error frame and a close (then none).
pub async fn accept<S: Transport>(
    mut ws: WebSocketStream<S>,
    peer: SocketAddr,
    path: Arc<PathConfig>,
    shared: &Shared,
) -> Option<Accepted<S>> {
    let limits = shared.limits;
    let setup = tokio::time::timeout(limits.setup_timeout, ws.next()).await;
    let setup = match setup {
        Ok(Some(Ok(WsMessage::Text(text)))) => auth::read_setup(text.as_str(), &path.secret, |namespace| {
            shared.registry.snapshot().secret_for(namespace).map(str::to_owned)
        }),
        Ok(Some(Ok(_))) => Err("the first frame must be a text setup frame".to_owned()),
        Ok(Some(Err(e))) => Err(format!("websocket error before setup: {e}")),
        Ok(None) => return None,
        Err(_) => Err(format!("no setup frame within {:?}", limits.setup_timeout)),
    };
    let setup = match setup {
        Ok(setup) => setup,
        Err(reason) => {
            tracing::info!(%peer, path = %path.path, %reason, "connection refused");
            // The error frame first (what Python clients read), then a real close so that
            // clients which would wait fail fast.
            let _ = ws.send(to_ws(wire::auth_error(wire::AUTH_ERROR))).await;
            let _ =
                ws.close(Some(CloseFrame { code: CloseCode::Policy, reason: "authentication failed".into() })).await;
            return None;
        }
    };
    ws.get_mut().authenticated();
    if ws.send(to_ws(wire::auth_ok(&shared.server_id))).await.is_err() {
        return None;
    }
    Some(Accepted { ws, peer, path, setup })
}

/// The link side of a connection that is a cluster link: its id, and the requests this host
/// sends the other host over it.
pub struct LinkPart {
    pub id: crate::registry::LinkId,
    pub requests: mpsc::UnboundedReceiver<Outgoing>,
    /// Poked when the other host announces that its functions changed: list them again.
    pub relist: Arc<Notify>,
    /// Whether the other host is one of ours, which takes `functions_changed` notices and
    /// EasyRpc's extension actions: known from the start for a child of ours (it asked for
    /// notices in its setup); a parent is sent none until it sends a notice itself, which only
    /// our hosts do (a Python host would not understand them). Shared with the link's handle.
    pub ours: Arc<std::sync::atomic::AtomicBool>,
}

/// A request this host sends over a link, and where its answer goes (none: no answer is
/// wanted, and the request says so).
pub struct Outgoing {
    /// The request object (`{"action": ..., "args": ..., "kwargs": ...}`).
    pub request: Value,
    pub answer: Option<tokio::sync::oneshot::Sender<Answer>>,
}

/// The other host's answer to an [`Outgoing`] request: the response value and whether our
/// hosts flagged it as an error (Python hosts never do).
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub response: Value,
    pub is_error: bool,
}

/// Serves an accepted connection (and, for a link, sends this host's requests over it) until
/// it closes or the host shuts down.
pub async fn run<S: Transport>(
    accepted: Accepted<S>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    link: Option<LinkPart>,
) {
    let limits = shared.limits;
    let _open = crate::metrics::Held::on(&crate::metrics::metrics().connections);
    let Accepted { ws, peer, path, setup: auth::Setup { claims, admin, secret } } = accepted;
    let (link_id, mut link_requests, relist, ours) = match link {
        Some(LinkPart { id, requests, relist, ours }) => (Some(id), Some(requests), Some(relist), Some(ours)),
        None => (None, None, None, None),
    };
    let session = Arc::new(Session {
        serialization: claims.serialization,
        namespace: claims.namespace.clone(),
        path: path.clone(),
        secret,
        registry: shared.registry.clone(),
        max_response_frame: limits.max_response_frame,
        generators: Mutex::new(HashMap::new()),
        expired: Mutex::new(HashMap::new()),
        deployer: if admin { shared.deployer.clone() } else { None },
        admin,
        open_generators: shared.open_generators.clone(),
        max_generators: limits.max_generators_per_connection,
        idle_timeout: limits.generator_idle_timeout,
        link: link_id,
    });
    let max_frame = shared.registry.snapshot().max_frame_for(&claims.namespace);
    let opened = Instant::now();
    tracing::info!(
        %peer, path = %path.path, namespace = %claims.namespace, client = %claims.kind, id = %claims.id,
        serialization = claims.serialization.as_claim(), "connection open"
    );

    let mut connection = Connection {
        ws,
        session,
        peer,
        max_frame,
        calls: JoinSet::new(),
        in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
        in_flight_bytes: Arc::new(Semaphore::new(limits.max_in_flight_bytes)),
        in_flight_bytes_limit: limits.max_in_flight_bytes,
        waited: mpsc::unbounded_channel(),
        backlog: Arc::new(Backlog {
            bytes: AtomicUsize::new(0),
            limit: limits.max_queued_answer_bytes,
            over: Notify::new(),
        }),
        write_timeout: limits.write_timeout,
        slow_reader: false,
        slow_actions: SlowActions::default(),
        requests: 0,
        pending: HashMap::new(),
        notices: false,
        relist: None,
        ours: None,
    };
    let mut changes = shared.registry.subscribe();
    connection.notices = match &ours {
        Some(ours) => ours.load(Ordering::Relaxed),
        None => claims.notify,
    };
    connection.relist = relist;
    connection.ours = ours;
    // What the connection's namespace listed when it last looked: a change elsewhere on the
    // host (another tenant's deploy) is none of this client's business.
    let mut listed = listing_fingerprint(&connection.session);
    if connection.session.link.is_some() && connection.notices {
        // Tells a child of ours that this parent sends notices, and so takes them too.
        let notice = to_ws(wire::functions_changed(connection.session.serialization));
        if let Flow::Close = connection.write(notice).await {
            return;
        }
    }
    let mut sweep = tokio::time::interval(GENERATOR_SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Frames handled since the last flush (their answers, if any, are still in the buffer).
    let mut unflushed = 0usize;
    let shutting_down = loop {
        while connection.calls.try_join_next().is_some() {}
        if shutdown.has_changed().unwrap_or(true) {
            break true;
        }
        // Answers of calls that had to wait go out as soon as the connection looks again.
        let mut delivered = Flow::Continue;
        while let Ok(answer) = connection.waited.1.try_recv() {
            delivered = connection.deliver(answer).await;
            if matches!(delivered, Flow::Close) {
                break;
            }
        }
        if matches!(delivered, Flow::Close) {
            break false;
        }
        // A frame that is already here is handled at once. The written answers are flushed
        // when none is waiting, so that a burst of requests gets its answers in few writes, and
        // every FLUSH_EVERY frames of a longer burst, so that a client keeping many calls in
        // flight gets answers (and sends its next requests) while the host works through it.
        let frame = match connection.ws.next().now_or_never() {
            Some(frame) => {
                if unflushed >= FLUSH_EVERY {
                    unflushed = 0;
                    if let Flow::Close = connection.flush().await {
                        break false;
                    }
                }
                frame
            }
            None => {
                unflushed = 0;
                if let Flow::Close = connection.flush().await {
                    break false;
                }
                tokio::select! {
                    _ = shutdown.changed() => break true,
                    Some(answer) = connection.waited.1.recv() => {
                        if let Flow::Close = connection.deliver(answer).await {
                            break false;
                        }
                        continue;
                    }
                    frame = connection.ws.next() => frame,
                    _ = sweep.tick() => {
                        connection.session.close_idle_generators();
                        continue;
                    }
                    Some(outgoing) = next_outgoing(&mut link_requests) => {
                        if let Flow::Close = connection.send_request(outgoing).await {
                            break false;
                        }
                        continue;
                    }
                    Ok(()) = changes.changed(), if connection.notices => {
                        let now_listed = listing_fingerprint(&connection.session);
                        if now_listed == listed {
                            continue;
                        }
                        listed = now_listed;
                        let notice = to_ws(wire::functions_changed(connection.session.serialization));
                        if let Flow::Close = connection.write(notice).await {
                            break false;
                        }
                        continue;
                    }
                }
            }
        };
        match connection.receive(frame).await {
            Flow::Continue => {}
            Flow::Close => break false,
        }
        unflushed += 1;
    };

    let Connection { mut ws, mut calls, waited: (_, mut waited), requests, slow_reader, .. } = connection;
    if shutting_down {
        // Let running calls finish and their answers go out, then close cleanly.
        let grace = tokio::time::sleep(limits.shutdown_grace);
        tokio::pin!(grace);
        while !calls.is_empty() {
            tokio::select! {
                _ = &mut grace => {
                    tracing::info!(%peer, "calls still running after the shutdown grace period; stopping them");
                    break;
                }
                Some(answer) = waited.recv() => {
                    if ws.feed(answer.message).await.is_err() {
                        break;
                    }
                }
                _ = calls.join_next() => {}
            }
        }
        while let Ok(answer) = waited.try_recv() {
            let _ = ws.feed(answer.message).await;
        }
        let _ = ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "server shutting down".into() })).await;
    } else if !slow_reader {
        let _ = ws.flush().await;
    }
    calls.abort_all();
    tracing::info!(%peer, namespace = %claims.namespace, requests, duration = ?opened.elapsed(), "connection closed");
}

/// A function whose calls ran longer than this inline [`SLOW_STRIKES`] times in a row is slow
/// for the connection: its later calls start as their own tasks, so a client's pipelined slow
/// calls use every core and do not hold up the connection's reading. (Several strikes, because
/// a function's first call on a cold cache can take this long.)
const INLINE_LIMIT: Duration = Duration::from_micros(200);
const SLOW_STRIKES: u8 = 3;

/// Frames a connection handles at most between two flushes of its answers while more frames
/// keep coming. Each flush is a `send`, costly on this loopback, so answers are not flushed one
/// by one (flushing after short time windows is slower too, on several connections); never
/// flushing before a burst's end holds answers back and costs one connection with many calls
/// in flight a good share of its calls/s. A smaller count gives some of that back, a larger one
/// gains nothing.
const FLUSH_EVERY: usize = 32;

/// A digest of what `namespace` lists now (names, parameters, types, docs), to tell whether a
/// change of the host's functions changed it.
fn listing_fingerprint(session: &Session) -> u64 {
    use std::hash::{Hash, Hasher};
    let snapshot = session.registry.snapshot();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for descriptor in session.listing(&snapshot) {
        serde_json::to_string(descriptor).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}

/// The next request this host sends over a link; never, for a connection that is no link.
async fn next_outgoing(requests: &mut Option<mpsc::UnboundedReceiver<Outgoing>>) -> Option<Outgoing> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// How long the id of a generator closed for want of pulls is remembered (at least), so that a
/// client coming back to it learns why it ended; a few bytes per id.
const EXPIRED_GENERATOR_MEMORY: Duration = Duration::from_secs(60);
/// How often idle generators are looked for.
const GENERATOR_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What the connection loop does after a frame.
enum Flow {
    Continue,
    Close,
}

/// One set-up connection: the websocket, read and written by this task alone, and the calls
/// that had to wait (they run as their own tasks and send their answers back here).
struct Connection<S> {
    ws: WebSocketStream<S>,
    session: Arc<Session>,
    peer: SocketAddr,
    max_frame: Option<usize>,
    /// Calls that did not finish on their first poll; aborted if the client goes away.
    calls: JoinSet<()>,
    /// Bounds `calls`; when it is used up the connection stops reading (backpressure).
    in_flight: Arc<Semaphore>,
    /// Bounds the bytes of the requests of `calls` (their arguments stay decoded while they
    /// run or wait), the same way.
    in_flight_bytes: Arc<Semaphore>,
    in_flight_bytes_limit: usize,
    /// Answers from `calls`, written by the connection task. The channel is unbounded because
    /// `backlog` bounds it.
    waited: (mpsc::UnboundedSender<Queued>, mpsc::UnboundedReceiver<Queued>),
    /// Bytes of the answers in `waited`, against the connection's budget.
    backlog: Arc<Backlog>,
    /// Closed for not reading its answers: nothing more is written to it.
    slow_reader: bool,
    /// Longest one write may wait for the client to read.
    write_timeout: Duration,
    /// Actions whose last calls took longer than [`INLINE_LIMIT`] here, and how many in a row;
    /// at [`SLOW_STRIKES`] they start as tasks.
    slow_actions: SlowActions,
    requests: u64,
    /// Requests this host sent over the connection (a link), by request id, until answered.
    /// Dropped with the connection, which fails their callers.
    pending: HashMap<String, tokio::sync::oneshot::Sender<Answer>>,
    /// Whether the other end is sent `functions_changed` notices.
    notices: bool,
    /// For a link: poked when the other host's functions changed.
    relist: Option<Arc<Notify>>,
    /// For a link: whether the other host is one of ours (see [`LinkPart::ours`]).
    ours: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl<S: Transport> Connection<S> {
    /// Handles one frame (or the end of the stream).
    async fn receive(&mut self, frame: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>) -> Flow {
        let peer = self.peer;
        let ser = self.session.serialization;
        let size = match &frame {
            Some(Ok(WsMessage::Text(t))) => t.len(),
            Some(Ok(WsMessage::Binary(b))) => b.len(),
            _ => 0,
        };
        if self.max_frame.is_some_and(|limit| size > limit) {
            tracing::info!(%peer, namespace = %self.session.namespace, size, "frame over the namespace's limit; closing");
            let reason = "frame larger than the namespace allows";
            let _ = self.ws.close(Some(CloseFrame { code: CloseCode::Size, reason: reason.into() })).await;
            return Flow::Close;
        }
        let decoded = match frame {
            Some(Ok(WsMessage::Text(text))) => {
                if let Some(pong) = command::ping::pong_for(ser, text.as_str()) {
                    if let Flow::Close = self.write(to_ws(pong)).await {
                        return Flow::Close;
                    }
                }
                wire::read_text(text.as_str()).map(|message| (message, None))
            }
            Some(Ok(WsMessage::Binary(bytes))) => wire::read_binary(ser, &bytes),
            Some(Ok(WsMessage::Close(_))) | None => return Flow::Close,
            Some(Ok(_)) => return Flow::Continue, // websocket ping/pong: answered by tungstenite
            Some(Err(TungsteniteError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                // A client that exits without closing: an everyday end, not an error.
                tracing::debug!(%peer, "client left without a close frame");
                return Flow::Close;
            }
            Some(Err(e)) => {
                tracing::info!(%peer, error = %e, "connection error");
                return Flow::Close;
            }
        };
        let (message, unsupported) = match decoded {
            Ok(d) => d,
            Err(wire::Undecodable { reason, request_id: Some(id) }) => {
                tracing::debug!(%peer, error = %reason, request = %crate::telemetry::LogSafe(&id), "undecodable request");
                let reply = Reply::error(&format!("cannot decode the request: {reason}"));
                return self.write(reply.encode(ser, &id, self.session.max_response_frame)).await;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "ignoring undecodable frame");
                return Flow::Continue;
            }
        };
        let request = match message {
            Message::Request(r) => r,
            Message::Notice(_) => {
                // The other host of a link changed its functions, and is one of ours: it
                // takes notices too.
                if let Some(relist) = &self.relist {
                    relist.notify_one();
                    self.notices = true;
                }
                if let Some(ours) = &self.ours {
                    ours.store(true, Ordering::Relaxed);
                }
                return Flow::Continue;
            }
            Message::Response { request_id, response, is_error } => {
                // The other host's answer to one of our requests over a link; an answer
                // nobody waits for (its caller gave up) is dropped.
                if let Some(waiting) = self.pending.remove(&request_id) {
                    let _ = waiting.send(Answer { response, is_error });
                }
                return Flow::Continue;
            }
            Message::Malformed { request_id: Some(id), reason } => {
                let reply = Reply::error(&reason);
                return self.write(reply.encode(ser, &id, self.session.max_response_frame)).await;
            }
            _ => return Flow::Continue,
        };
        self.requests += 1;
        let wire::Request { request_id, response_expected: expected, body } = request;
        let action = action_key(request_action(&body));
        let slow = self.slow_actions.strikes(action) >= SLOW_STRIKES;
        let session = self.session.clone();
        let mut call = Box::pin(async move {
            let outcome = session.handle(&request_id, body, unsupported).await;
            (session, request_id, outcome)
        });
        // Most calls finish on their first poll: run that here, with no hand-off to another
        // task and the answer written by this task. Known slow functions skip it.
        let started = Instant::now();
        let first =
            if slow { Poll::Pending } else { std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await };
        match first {
            Poll::Ready((session, id, reply)) => {
                if started.elapsed() > INLINE_LIMIT {
                    self.slow_actions.strike(action);
                } else {
                    self.slow_actions.clear(action);
                }
                if !expected {
                    return Flow::Continue;
                }
                let answer = reply.encode(session.serialization, &id, session.max_response_frame);
                self.write(answer).await
            }
            Poll::Pending => {
                // It waits (a deadline tick, a busy namespace, a deploy): it continues as its
                // own task and this connection goes on reading.
                let Some(permit) = self.admit(size).await else { return Flow::Close };
                let answers = self.waited.0.clone();
                let backlog = self.backlog.clone();
                self.calls.spawn(async move {
                    let (session, id, reply) = call.await;
                    if expected {
                        let message = reply.encode(session.serialization, &id, session.max_response_frame);
                        let bytes = message.len();
                        backlog.add(bytes);
                        let _ = answers.send(Queued { message, bytes, _in_flight: permit });
                    }
                });
                Flow::Continue
            }
        }
    }

    /// Sends one of this host's requests over the link, under a request id of its own.
    async fn send_request(&mut self, outgoing: Outgoing) -> Flow {
        let Outgoing { request, answer } = outgoing;
        if answer.as_ref().is_some_and(|answer| answer.is_closed()) {
            return Flow::Continue;
        }
        self.pending.retain(|_, waiting| !waiting.is_closed());
        let id = uuid::Uuid::new_v4().to_string();
        let frame = wire::request(self.session.serialization, &id, &request, answer.is_some());
        if let Some(answer) = answer {
            self.pending.insert(id, answer);
        }
        self.write(to_ws(frame)).await
    }

    /// A place among the calls in flight for a call whose request was `bytes` long. While
    /// there is none (the client pipelines more than the limits), the connection reads no
    /// further but goes on writing answers, whose calls then give their places back. None if
    /// the connection closed meanwhile.
    async fn admit(&mut self, bytes: usize) -> Option<InFlight> {
        let bytes = u32::try_from(bytes.min(self.in_flight_bytes_limit)).unwrap_or(u32::MAX);
        let places = (self.in_flight.clone(), self.in_flight_bytes.clone());
        let admitted = async move {
            let call = places.0.acquire_owned().await.ok()?;
            let bytes = places.1.acquire_many_owned(bytes).await.ok()?;
            Some(InFlight { _call: call, _bytes: bytes })
        };
        let mut admitted = std::pin::pin!(admitted);
        loop {
            tokio::select! {
                biased;
                admitted = &mut admitted => return admitted,
                Some(answer) = self.waited.1.recv() => {
                    if let Flow::Close = self.deliver(answer).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Queues a frame for the next flush (see [`until_written`](Self::until_written)).
    async fn write(&mut self, message: WsMessage) -> Flow {
        let written = Self::until_written(&self.backlog, self.write_timeout, self.ws.feed(message)).await;
        self.after_write(written)
    }

    /// Writes the queued frames out (see [`until_written`](Self::until_written)).
    async fn flush(&mut self) -> Flow {
        let written = Self::until_written(&self.backlog, self.write_timeout, self.ws.flush()).await;
        self.after_write(written)
    }

    /// Waits for a write, which waits while the client does not read. Answers of calls running
    /// meanwhile queue up; if they pass their budget while the write still waits, or the write
    /// waits longer than `timeout`, the client is a slow reader: none. (Passing the budget
    /// while no write waits is a burst of answers that the connection is about to write.)
    async fn until_written(
        backlog: &Backlog,
        timeout: Duration,
        write: impl Future<Output = Result<(), TungsteniteError>>,
    ) -> Option<Result<(), TungsteniteError>> {
        let mut write = std::pin::pin!(write);
        // Most writes finish on their first poll: only one that waits pays for a timer.
        if let Some(written) = (&mut write).now_or_never() {
            return Some(written);
        }
        let give_up = tokio::time::sleep(timeout);
        let mut give_up = std::pin::pin!(give_up);
        loop {
            tokio::select! {
                written = &mut write => return Some(written),
                _ = &mut give_up => return None,
                _ = backlog.over.notified() => if backlog.is_over() {
                    return None;
                },
            }
        }
    }

    fn after_write(&mut self, written: Option<Result<(), TungsteniteError>>) -> Flow {
        match written {
            Some(Ok(())) => Flow::Continue,
            Some(Err(_)) => Flow::Close,
            None => self.close_slow_reader(),
        }
    }

    /// Writes a waited call's answer; it leaves the backlog, and its call's in-flight place is
    /// given back, once the websocket has it.
    async fn deliver(&mut self, answer: Queued) -> Flow {
        let Queued { message, bytes, _in_flight } = answer;
        let flow = self.write(message).await;
        self.backlog.remove(bytes);
        flow
    }

    fn close_slow_reader(&mut self) -> Flow {
        let queued = self.backlog.bytes.load(Ordering::Relaxed);
        tracing::info!(
            peer = %self.peer, namespace = %self.session.namespace, queued, limit = self.backlog.limit,
            "the client does not read its answers; closing"
        );
        self.slow_reader = true;
        Flow::Close
    }
}

/// The answer of a call that ran as its own task, on its way to the connection task. It keeps
/// the call's in-flight place until it is written, so that a client that does not read stops
/// being read from.
struct Queued {
    message: WsMessage,
    bytes: usize,
    _in_flight: InFlight,
}

/// A call's place among a connection's calls in flight: one of `max_in_flight`, and its
/// request's bytes of `max_in_flight_bytes`.
struct InFlight {
    _call: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// Bytes of answers waiting to be written on one connection, against its budget.
struct Backlog {
    bytes: AtomicUsize,
    limit: usize,
    /// Woken when `bytes` passes `limit`.
    over: Notify,
}

impl Backlog {
    fn add(&self, bytes: usize) {
        if self.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes > self.limit {
            self.over.notify_one();
        }
    }

    fn remove(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    fn is_over(&self) -> bool {
        self.bytes.load(Ordering::Acquire) > self.limit
    }
}

/// A connection's slow actions, known by [`action_key`]: few or none, so a list. (A key two
/// actions share only makes the other one start as a task too.)
#[derive(Default)]
struct SlowActions(Vec<(u64, u8)>);

impl SlowActions {
    fn strikes(&self, action: u64) -> u8 {
        self.0.iter().find(|(key, _)| *key == action).map_or(0, |&(_, strikes)| strikes)
    }

    fn strike(&mut self, action: u64) {
        match self.0.iter_mut().find(|(key, _)| *key == action) {
            Some((_, strikes)) => *strikes = strikes.saturating_add(1),
            None => self.0.push((action, 1)),
        }
    }

    fn clear(&mut self, action: u64) {
        self.0.retain(|(key, _)| *key != action);
    }
}

/// An action's name as a number (FNV-1a), so that the call path keeps no copy of it.
fn action_key(action: &str) -> u64 {
    action.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The action a request names, as far as it can be seen before decoding it further (an
/// encrypted request shows none).
fn request_action(body: &RequestBody) -> &str {
    match body {
        RequestBody::Plain(request) => request.get("action").and_then(Value::as_str).unwrap_or_default(),
        RequestBody::Call(call) => call.action.as_deref().unwrap_or_default(),
        RequestBody::Wrapped(_) => "",
    }
}
