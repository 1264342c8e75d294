//! The Rust client proxy: the same wire, seen from outside.
//!
//! Owns one connection to an easyrpc host (ours or a Python one): setup, listing, calls in
//! flight matched by request id, failing in-flight calls at once when the connection drops and
//! reconnecting on the next call. Arguments are checked against the function's descriptor with
//! the host's own rules (`signature::check`) before anything is sent, so a wrong type, a missing or extra
//! argument or an unknown keyword fails locally with an error naming the parameter. It does not
//! run functions or know about namespaces beyond the one it connected to.

use crate::signature::{self, bind_borrowed, FunctionDescriptor};
use crate::value::Value;
use crate::wire::{self, auth, Frame, Message, Serialization};
use futures_util::stream::{BoxStream, SplitSink, SplitStream};
use futures_util::task::AtomicWaker;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long connecting (TCP, websocket upgrade, setup and listing) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long closing may wait for the close frame to go out.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Most the websocket reads from the socket at once. tungstenite zero-fills the free part of
/// its read buffer, up to this much, before every read: at its default of 128 KiB that memset
/// is a noticeable part of each answer's cost on the sequential path. A frame larger than this
/// arrives in several reads.
pub const READ_BUFFER: usize = 16 << 10;

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `ws://host:port/path`
    pub url: String,
    pub secret: String,
    pub namespace: String,
    pub serialization: Serialization,
    pub connect_timeout: Duration,
    /// Give up on a call after this long (none: wait as long as the connection lives).
    pub call_timeout: Option<Duration>,
    /// The host path has easyrpc's `encryption_enabled`: wrap every request in a JWT.
    pub encryption: bool,
    /// For `wss://`: certificates (PEM) to trust besides Mozilla's roots, e.g. a private CA's.
    pub ca_file: Option<std::path::PathBuf>,
}

impl ClientConfig {
    pub fn new(url: &str, secret: &str, namespace: &str) -> Self {
        Self {
            url: url.to_owned(),
            secret: secret.to_owned(),
            namespace: namespace.to_owned(),
            serialization: Serialization::Json,
            connect_timeout: CONNECT_TIMEOUT,
            call_timeout: None,
            encryption: false,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the server refused the connection: {0} (is the secret right?)")]
    Auth(String),
    #[error("no function `{name}` in namespace {namespace}")]
    UnknownFunction { name: String, namespace: String },
    #[error("bad arguments for {function}: {reason}")]
    BadArguments { function: String, reason: String },
    /// The function failed on the server; the text is the server's error string.
    #[error("{0}")]
    Remote(String),
    #[error("the connection closed before the call completed")]
    Disconnected,
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Where a response goes: to the caller waiting for its request id.
type Waiter = oneshot::Sender<Result<(Value, bool), ClientError>>;
type Pending = Mutex<HashMap<String, Waiter>>;
type WsSink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, WsMessage>;
type WsStream = SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>;

/// One live websocket to the host. Callers write their requests into the sink's buffer
/// themselves (no writer task to hand frames to); a flusher task sends the buffer out once the
/// callers that are ready to run have written theirs (a caller with no other request in flight
/// sends its own). Responses are read by a reader task, which matches them to callers by
/// request id, except while a caller with no other request in flight reads its own.
struct Connection {
    sink: Arc<tokio::sync::Mutex<WsSink>>,
    /// Set by a caller after writing, cleared by the flusher before it flushes: every frame
    /// written is followed by a flush that starts after it.
    flush_requested: Arc<AtomicBool>,
    flush: Arc<tokio::sync::Notify>,
    flusher: tokio::task::JoinHandle<()>,
    inbox: Arc<Inbox>,
    server_id: String,
    /// Request ids are this connection's random prefix and a counter: unique, shaped like the
    /// Python client's uuid4 ids, and no random draw per call.
    id_prefix: String,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.flusher.abort();
    }
}

impl Connection {
    /// Ends the connection the websocket way, with a close frame, so that the host sees a
    /// client leaving rather than a connection reset. Calls still in flight fail with
    /// [`ClientError::Disconnected`]. Gives up after [`CLOSE_TIMEOUT`] (a write stuck on a host
    /// that stopped reading holds the sink).
    async fn close(&self) {
        self.inbox.end();
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async { self.sink.lock().await.close().await }).await;
    }

    fn request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(self.id_prefix.len() + 12);
        id.push_str(&self.id_prefix);
        push_hex48(&mut id, n);
        id
    }

    /// Writes one frame into the sink's buffer and asks the flusher to send it; `alone` (no
    /// other request of this connection in flight, none to share a write with) sends it at
    /// once instead, sparing the flusher's wake-up on the sequential path. A caller cancelled
    /// while writing still asks the flusher (the frame may be half in the buffer).
    async fn send(&self, frame: WsMessage, alone: bool) -> Result<(), ClientError> {
        let request_flush = FlushOnDrop(self);
        let outcome = if alone {
            let sent = self.sink.lock().await.send(frame).await;
            if sent.is_ok() {
                // Written and flushed: nothing left for the flusher.
                std::mem::forget(request_flush);
            }
            sent
        } else {
            let fed = self.sink.lock().await.feed(frame).await;
            drop(request_flush);
            fed
        };
        if outcome.is_err() {
            self.inbox.end();
            return Err(ClientError::Disconnected);
        }
        Ok(())
    }
}

/// Appends the low 48 bits of `n` as 12 hex digits: what `{:012x}` prints of them, without
/// fmt on every call.
fn push_hex48(out: &mut String, n: u64) {
    for shift in (0..12).rev() {
        out.push(char::from(b"0123456789abcdef"[((n >> (4 * shift)) & 0xf) as usize]));
    }
}

/// Asks the connection's flusher to flush, when dropped (written or cancelled).
struct FlushOnDrop<'a>(&'a Connection);

impl Drop for FlushOnDrop<'_> {
    fn drop(&mut self) {
        if !self.0.flush_requested.swap(true, Ordering::AcqRel) {
            self.0.flush.notify_one();
        }
    }
}

/// The receiving half of the websocket and the reading of it. Whoever reads (the reader task,
/// or a caller waiting alone for its answer) hands every response to the caller waiting for its
/// request id and marks the listing stale on a change notice. A caller alone reads its own
/// answer because handing it over costs the sequential path a task wake-up (and, when the
/// caller is a runtime's `block_on` future, a wake of the runtime's driver) per call.
struct Inbox {
    /// Locked only while frames are read, never across an await.
    stream: Mutex<ReadHalf>,
    serialization: Serialization,
    /// The callers waiting for answers, by request id.
    pending: Pending,
    /// Cleared when the connection ends; the next call then connects again.
    alive: AtomicBool,
    stale: Arc<AtomicBool>,
    /// A caller is reading its own answer: the reader task leaves the stream to it.
    caller_reading: AtomicBool,
    /// The reader task, woken when a caller stops reading.
    reader: AtomicWaker,
    /// The caller reading, woken by the reader task when the socket woke that task instead.
    caller: AtomicWaker,
}

/// The websocket's receiving half and who will be woken when more arrives.
struct ReadHalf {
    ws: WsStream,
    /// The reader task polled the stream last, so the socket's next wake goes to it (a socket
    /// wakes only the last task that polled it).
    reader_registered: bool,
}

/// How reading the stream ended (it stops at Pending otherwise).
enum Read {
    /// The response to the reader's own request, with the waiter it no longer needs.
    Own { answer: Result<(Value, bool), ClientError>, waiter: Option<Waiter> },
    /// The connection ended: marked dead, every waiter failed.
    Closed,
}

impl Inbox {
    /// Reads the frames that are here, handing out responses, until none is left (Pending,
    /// with `cx` woken when more arrive), the response to `own` (a caller's request id; none:
    /// the reader task) comes, or the connection ends.
    fn poll_read(&self, cx: &mut Context<'_>, own: Option<&str>) -> Poll<Read> {
        let mut half = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let message = match half.ws.poll_next_unpin(cx) {
                Poll::Pending => {
                    half.reader_registered = own.is_none();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(message))) => message,
                Poll::Ready(Some(Err(_)) | None) => break,
            };
            let message = match &message {
                WsMessage::Text(t) => wire::read_text(t.as_str()),
                WsMessage::Binary(b) => wire::read_binary(self.serialization, b).map(|(message, _)| message),
                WsMessage::Close(_) => break,
                _ => continue,
            };
            let message = match message {
                Ok(message) => message,
                // An answer that cannot be read still ends its call, with the reason.
                Err(wire::Undecodable { reason, request_id: Some(request_id) }) => {
                    let error = ClientError::Protocol(format!("the answer cannot be decoded: {reason}"));
                    let waiter = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&request_id);
                    if own == Some(request_id.as_str()) {
                        return Poll::Ready(Read::Own { answer: Err(error), waiter });
                    }
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(Err(error));
                    }
                    continue;
                }
                Err(_) => continue,
            };
            match message {
                Message::Response { request_id, response, is_error } => {
                    let waiter = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&request_id);
                    if own == Some(request_id.as_str()) {
                        return Poll::Ready(Read::Own { answer: Ok((response, is_error)), waiter });
                    }
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(Ok((response, is_error)));
                    }
                }
                Message::Notice(_) => self.stale.store(true, Ordering::Release),
                _ => {}
            }
        }
        self.end();
        Poll::Ready(Read::Closed)
    }

    /// The connection is over: marks it dead, then fails every waiting call (so that their
    /// retries connect again).
    fn end(&self) {
        self.alive.store(false, Ordering::Release);
        let waiting: Vec<_> = self.pending.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        for (_, tx) in waiting {
            let _ = tx.send(Err(ClientError::Disconnected));
        }
    }

    /// Waits for the answer to request `id` (already in `pending` with `rx` as its receiver)
    /// by reading the stream itself, while the reader task stays away.
    async fn read_own(
        &self,
        id: &str,
        mut rx: oneshot::Receiver<Result<(Value, bool), ClientError>>,
    ) -> Result<(Value, bool), ClientError> {
        let _reading = CallerReading(self);
        let mut own_waiter = None;
        let answer = std::future::poll_fn(|cx| {
            self.caller.register(cx.waker());
            // The reader task may have read it (it was reading when this caller began).
            if let Poll::Ready(answer) = Pin::new(&mut rx).poll(cx) {
                return Poll::Ready(answer.unwrap_or(Err(ClientError::Disconnected)));
            }
            self.poll_read(cx, Some(id)).map(|read| match read {
                Read::Own { answer, waiter } => {
                    own_waiter = waiter;
                    answer
                }
                Read::Closed => Err(ClientError::Disconnected),
            })
        })
        .await;
        // The receiver goes first: a sender dropped while its receiver lives would wake this
        // caller once more for nothing (on a current-thread runtime, one more poll of the
        // driver per call).
        drop(rx);
        drop(own_waiter);
        answer
    }
}

/// Marks a caller reading its own answer; when it is done (or cancelled) the reader task reads
/// again.
struct CallerReading<'a>(&'a Inbox);

impl Drop for CallerReading<'_> {
    fn drop(&mut self) {
        self.0.caller_reading.store(false, Ordering::Release);
        self.0.reader.wake();
    }
}

/// The reader task: reads whenever no caller does, until the connection ends.
async fn read_responses(inbox: Arc<Inbox>) {
    std::future::poll_fn(|cx| {
        // Registered before looking at the flag, so that a caller finishing after the look
        // still wakes this task.
        inbox.reader.register(cx.waker());
        if !inbox.caller_reading.load(Ordering::Acquire) {
            if inbox.poll_read(cx, None).is_ready() {
                return Poll::Ready(());
            }
            if !inbox.caller_reading.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        // A caller reads. If this task polled the stream after it (on another thread), the
        // socket's next wake comes here, not to the caller: the caller looks again, which
        // also takes the socket's wake over.
        if inbox.stream.lock().unwrap_or_else(|e| e.into_inner()).reader_registered {
            inbox.caller.wake();
        }
        Poll::Pending
    })
    .await
}

/// Sends the sink's buffer whenever a caller asked. It first lets the other tasks that are
/// ready to run go ahead: pipelined callers woken by one batch of responses then write their
/// next requests into the buffer, and they leave in one write instead of one each.
async fn flusher(
    sink: Arc<tokio::sync::Mutex<WsSink>>,
    requested: Arc<AtomicBool>,
    flush: Arc<tokio::sync::Notify>,
    inbox: Arc<Inbox>,
) {
    loop {
        flush.notified().await;
        tokio::task::yield_now().await;
        requested.store(false, Ordering::Release);
        if sink.lock().await.flush().await.is_err() {
            inbox.end();
            return;
        }
    }
}

/// A proxy for the functions of one namespace on one host.
pub struct EasyRpcProxy {
    config: ClientConfig,
    /// The live connection, read by every call without waiting.
    live: Mutex<Option<Arc<Connection>>>,
    /// Held while (re)connecting, so that one caller connects and the others wait for it.
    connecting: tokio::sync::Mutex<()>,
    functions: Mutex<Arc<Vec<FunctionDescriptor>>>,
    /// Set when the host sends a change notice: the next call lists the functions again first.
    stale: Arc<AtomicBool>,
}

impl Drop for EasyRpcProxy {
    fn drop(&mut self) {
        let conn = self.live.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        // Outside a runtime (or one shutting down) the socket just drops, as before.
        if let (Some(conn), Ok(runtime)) = (conn, tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move { conn.close().await });
        }
    }
}

impl EasyRpcProxy {
    /// Connects with json serialization and lists the namespace's functions.
    pub async fn connect(url: &str, secret: &str, namespace: &str) -> Result<Self, ClientError> {
        Self::connect_with(ClientConfig::new(url, secret, namespace)).await
    }

    pub async fn connect_with(config: ClientConfig) -> Result<Self, ClientError> {
        let proxy = Self {
            config,
            live: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            functions: Mutex::new(Arc::new(Vec::new())),
            stale: Arc::new(AtomicBool::new(false)),
        };
        proxy.connection().await?;
        Ok(proxy)
    }

    /// Closes the connection with a websocket close frame; calls still in flight fail with
    /// [`ClientError::Disconnected`]. The proxy stays usable: its next call connects again.
    /// Dropping the proxy inside a tokio runtime closes the same way, in a task of its own.
    pub async fn close(&self) {
        let conn = self.live.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(conn) = conn {
            conn.close().await;
        }
    }

    /// The functions listed at the last (re)connect or [`refresh`](Self::refresh).
    pub fn functions(&self) -> Arc<Vec<FunctionDescriptor>> {
        self.functions.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn function(&self, name: &str) -> Option<FunctionDescriptor> {
        self.functions().iter().find(|d| d.name == name).cloned()
    }

    /// The server's id from its auth reply.
    pub async fn server_id(&self) -> Result<String, ClientError> {
        Ok(self.connection().await?.server_id.clone())
    }

    /// Lists the namespace's functions again (picks up deployed and changed signatures).
    pub async fn refresh(&self) -> Result<(), ClientError> {
        let conn = self.connection().await?;
        self.list(&conn).await
    }

    /// Calls `name` with Python-style `args` and `kwargs` after checking them against the
    /// function's signature. A function's error comes back as [`ClientError::Remote`].
    pub async fn call(&self, name: &str, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Result<Value, ClientError> {
        let (_, value, is_error) = self.checked_call(name, args, kwargs).await?;
        if is_error {
            return Err(remote_error(value));
        }
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            if matches!(&value, Value::Dict(e) if e.len() == 1) && error.starts_with("no action") {
                return Err(ClientError::Remote(error.to_owned()));
            }
        }
        Ok(value)
    }

    /// Opens generator `name` and returns its items as a stream, pulled one at a time as the
    /// stream is polled (like `async for` in Python). A failure mid-stream is one `Err` item,
    /// after which the stream ends.
    pub async fn stream(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Result<BoxStream<'_, Result<Value, ClientError>>, ClientError> {
        let (conn, start, is_error) = self.checked_call(name, args, kwargs).await?;
        let id = match (start.get("GENERATOR_START"), is_error) {
            (Some(Value::Str(id)), false) => id.clone(),
            (_, true) => return Err(remote_error(start)),
            _ => return Err(ClientError::Protocol(format!("{name} did not start a generator: {}", start.brief()))),
        };
        let next = Value::Dict(vec![
            ("action".to_owned(), Value::Str("GENERATOR_NEXT".to_owned())),
            ("generator_id".to_owned(), Value::Str(id)),
        ]);
        Ok(futures_util::stream::unfold(Some((conn, next)), move |state| async move {
            let (conn, next) = state?;
            match self.request(&conn, Outgoing::Value(next.clone())).await {
                Ok((Value::Str(s), false)) if s == "GENERATOR_END" => None,
                Ok((item, false)) => Some((Ok(item), Some((conn, next)))),
                Ok((error, true)) => Some((Err(remote_error(error)), None)),
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed())
    }

    /// Deploys a module (admin secret required): `bytes` become module `name` in `namespace`,
    /// replacing a module of that name deployed there before. Returns the host's summary.
    pub async fn deploy(&self, namespace: &str, name: &str, bytes: &[u8]) -> Result<Value, ClientError> {
        let wasm = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
        self.admin(wire::DEPLOY, namespace, name, Some(Value::Str(wasm))).await
    }

    /// Removes module `name` from `namespace` (admin secret required).
    pub async fn remove(&self, namespace: &str, name: &str) -> Result<Value, ClientError> {
        self.admin(wire::REMOVE, namespace, name, None).await
    }

    /// The modules each namespace holds (or only `namespace`'s), admin secret required: a list
    /// of objects with namespace, name, hash, size, since (seconds since the Unix epoch, or
    /// None) and source (`deployed` or the file's path).
    pub async fn modules(&self, namespace: Option<&str>) -> Result<Value, ClientError> {
        let kwargs = namespace.map(|ns| ("namespace".to_owned(), Value::Str(ns.to_owned()))).into_iter().collect();
        self.admin_request(wire::MODULES, kwargs).await
    }

    async fn admin(
        &self,
        action: &str,
        namespace: &str,
        name: &str,
        wasm: Option<Value>,
    ) -> Result<Value, ClientError> {
        let mut kwargs = vec![
            ("namespace".to_owned(), Value::Str(namespace.to_owned())),
            ("name".to_owned(), Value::Str(name.to_owned())),
        ];
        kwargs.extend(wasm.map(|w| ("wasm".to_owned(), w)));
        self.admin_request(action, kwargs).await
    }

    /// Sends admin `action` with `kwargs`; the host's error answer becomes `Remote`.
    async fn admin_request(&self, action: &str, kwargs: Vec<(String, Value)>) -> Result<Value, ClientError> {
        let conn = self.connection().await?;
        let (value, is_error) = self.request(&conn, Outgoing::Value(wire::call_object(action, vec![], kwargs))).await?;
        if is_error {
            return Err(ClientError::Remote(
                value.get("error").and_then(Value::as_str).map_or_else(|| value.to_json(), str::to_owned),
            ));
        }
        Ok(value)
    }

    /// Checks the arguments against `name`'s signature, sends the call and waits for the first
    /// response: (connection, value, whether it reports an error).
    async fn checked_call(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Result<(Arc<Connection>, Value, bool), ClientError> {
        let conn = self.connection().await?;
        if self.stale.swap(false, Ordering::AcqRel) {
            // The host said its functions changed (a deploy): pick up new signatures first.
            self.list(&conn).await?;
        }
        let mut functions = self.functions();
        if !functions.iter().any(|d| d.name == name) {
            // Perhaps deployed since the last listing: list again once before giving up.
            self.list(&conn).await?;
            functions = self.functions();
        }
        let descriptor = functions.iter().find(|d| d.name == name).ok_or_else(|| ClientError::UnknownFunction {
            name: name.to_owned(),
            namespace: self.config.namespace.clone(),
        })?;
        check_arguments(descriptor, &args, &kwargs)?;
        let (value, is_error) =
            self.request(&conn, Outgoing::Call { action: name, args: &args, kwargs: &kwargs }).await?;
        Ok((conn, value, is_error))
    }

    /// The current connection, connecting (and listing) again when there is none or it died.
    async fn connection(&self) -> Result<Arc<Connection>, ClientError> {
        let live = || {
            self.live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .filter(|c| c.inbox.alive.load(Ordering::Acquire))
        };
        if let Some(conn) = live() {
            return Ok(conn);
        }
        let _connecting = self.connecting.lock().await;
        // Another caller may have reconnected while this one waited.
        if let Some(conn) = live() {
            return Ok(conn);
        }
        let conn = tokio::time::timeout(self.config.connect_timeout, self.open())
            .await
            .map_err(|_| ClientError::Connect { url: self.config.url.clone(), reason: "timed out".to_owned() })??;
        let conn = Arc::new(conn);
        self.list(&conn).await?;
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    async fn open(&self) -> Result<Connection, ClientError> {
        let url = &self.config.url;
        let connect_error = |reason: String| ClientError::Connect { url: url.clone(), reason };
        let mut ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        ws_config.read_buffer_size = READ_BUFFER;
        // TCP_NODELAY (the host sets it too): with Nagle's algorithm a request written while an
        // earlier one is unacknowledged waits for the host's delayed ACK, 40 ms on Linux.
        let connector = wire::tls::client_connector(self.config.ca_file.as_deref()).map_err(connect_error)?;
        let (mut ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(url.as_str(), Some(ws_config), true, connector)
                .await
                .map_err(|e| connect_error(e.to_string()))?;
        let claims = auth::SetupClaims {
            kind: auth::PROXY.to_owned(),
            id: uuid::Uuid::new_v4().to_string(),
            namespace: self.config.namespace.clone(),
            serialization: self.config.serialization,
            notify: true,
        };
        let mut setup = String::from(r#"{"setup":"#);
        crate::value::json::write_str(&mut setup, &auth::sign_setup(&claims, &self.config.secret));
        setup.push('}');
        ws.send(WsMessage::text(setup)).await.map_err(|e| connect_error(e.to_string()))?;
        let reply = loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(t))) => break t.as_str().to_owned(),
                Some(Ok(WsMessage::Close(_))) | None => {
                    return Err(ClientError::Auth("connection closed during setup".to_owned()))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(connect_error(e.to_string())),
            }
        };
        let reply = crate::value::json::parse(&reply).map_err(|e| ClientError::Protocol(format!("auth reply: {e}")))?;
        if let Some(error) = reply.get("error").and_then(Value::as_str) {
            return Err(ClientError::Auth(error.to_owned()));
        }
        let server_id = reply
            .get("server_id")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Protocol("auth reply without server_id".to_owned()))?
            .to_owned();

        let (sink, stream) = ws.split();
        let inbox = Arc::new(Inbox {
            stream: Mutex::new(ReadHalf { ws: stream, reader_registered: false }),
            serialization: self.config.serialization,
            pending: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            stale: self.stale.clone(),
            caller_reading: AtomicBool::new(false),
            reader: AtomicWaker::new(),
            caller: AtomicWaker::new(),
        });
        let reader = tokio::spawn(read_responses(inbox.clone()));
        let uuid = uuid::Uuid::new_v4().to_string();
        let sink = Arc::new(tokio::sync::Mutex::new(sink));
        let flush_requested = Arc::new(AtomicBool::new(false));
        let flush = Arc::new(tokio::sync::Notify::new());
        let flusher = tokio::spawn(flusher(sink.clone(), flush_requested.clone(), flush.clone(), inbox.clone()));
        Ok(Connection {
            sink,
            flush_requested,
            flush,
            flusher,
            inbox,
            server_id,
            id_prefix: uuid[..24].to_owned(),
            next_id: AtomicU64::new(0),
            reader,
        })
    }

    async fn list(&self, conn: &Arc<Connection>) -> Result<(), ClientError> {
        let request = Value::Dict(vec![
            ("action".to_owned(), Value::Str("get_registered_functions".to_owned())),
            ("args".to_owned(), Value::List(vec![Value::Str(self.config.namespace.clone())])),
            (
                "kwargs".to_owned(),
                Value::Dict(vec![
                    ("upstream".to_owned(), Value::Bool(true)),
                    ("all_functions".to_owned(), Value::Bool(true)),
                    ("trigger".to_owned(), Value::None),
                ]),
            ),
        ]);
        let (listing, _) = self.request(conn, Outgoing::Value(request)).await?;
        let functions = wire::listing::parse_listing(&listing).map_err(ClientError::Protocol)?;
        *self.functions.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(functions);
        Ok(())
    }

    async fn request(&self, conn: &Arc<Connection>, request: Outgoing<'_>) -> Result<(Value, bool), ClientError> {
        let id = conn.request_id();
        let ser = conn.inbox.serialization;
        let frame = match (request, self.config.encryption) {
            (Outgoing::Call { action, args, kwargs }, false) => {
                wire::call_request(ser, &id, action, args, kwargs, true)
            }
            (request, false) => wire::request(ser, &id, &request.into_value(), true),
            (request, true) => {
                let wrapped = Value::Str(auth::wrap_request(request.into_value(), &self.config.secret));
                wire::request(ser, &id, &wrapped, true)
            }
        };
        let frame = match frame {
            Frame::Text(t) => WsMessage::text(t),
            Frame::Binary(b) => WsMessage::binary(b),
        };
        let (tx, rx) = oneshot::channel();
        let alone = {
            let mut pending = conn.inbox.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.insert(id.clone(), tx);
            pending.len() == 1
        };
        let forget = |conn: &Connection| conn.inbox.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        if !conn.inbox.alive.load(Ordering::Acquire) || conn.send(frame, alone).await.is_err() {
            forget(conn);
            return Err(ClientError::Disconnected);
        }
        let reads_own = alone
            && conn.inbox.caller_reading.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok();
        let answer = async {
            if reads_own {
                conn.inbox.read_own(&id, rx).await
            } else {
                rx.await.unwrap_or(Err(ClientError::Disconnected))
            }
        };
        match self.config.call_timeout {
            Some(limit) => match tokio::time::timeout(limit, answer).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    forget(conn);
                    Err(ClientError::Timeout(limit))
                }
            },
            None => answer.await,
        }
    }
}

/// What a request carries: a call, written into its frame straight from the caller's
/// arguments, or any other request as a value.
enum Outgoing<'a> {
    Call { action: &'a str, args: &'a [Value], kwargs: &'a [(String, Value)] },
    Value(Value),
}

impl Outgoing<'_> {
    /// The request as a value (what an encrypted request wraps).
    fn into_value(self) -> Value {
        match self {
            Outgoing::Call { action, args, kwargs } => wire::call_object(action, args.to_vec(), kwargs.to_vec()),
            Outgoing::Value(value) => value,
        }
    }
}

/// A server's error response as the client's error (its text as the server wrote it).
fn remote_error(value: Value) -> ClientError {
    ClientError::Remote(match value {
        Value::Str(s) => s,
        other => other.to_json(),
    })
}

/// Checks arguments as the host will: binding by Python's rules, then each value against its
/// parameter's type. Nothing is sent when this fails.
pub fn check_arguments(d: &FunctionDescriptor, args: &[Value], kwargs: &[(String, Value)]) -> Result<(), ClientError> {
    let bad = |reason: String| ClientError::BadArguments { function: d.name.clone(), reason };
    let bound = bind_borrowed(&d.params, args, kwargs).map_err(|e| bad(e.to_string()))?;
    for (value, param) in bound.iter().zip(&d.params) {
        signature::check(value, &param.ty, &param.name).map_err(|e| bad(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_id_counters_print_as_twelve_hex_digits() {
        for n in [0u64, 1, 0xabc, 0xffff_ffff_ffff, 0x1_0000_0000_0001, u64::MAX] {
            let mut id = String::new();
            super::push_hex48(&mut id, n);
            assert_eq!(id, format!("{:012x}", n & 0xffff_ffff_ffff));
        }
    }
}
