//! Cluster links: hosts that share their namespaces' functions (easyrpc's server chaining).
//!
//! Owns what makes a connection a link: the requests this host sends over it ([`LinkHandle`]),
//! the other host's functions as [`LinkFunction`]s in the registry while the link is up, the
//! parent side of a link (a child host that connected with `type: SERVER`, in [`children`])
//! and the child side (dialing a parent and keeping the link up, in [`parent`]). A link carries requests both ways on one websocket: the other host's requests
//! are answered by the same session code as any client's (`session::run`), and a listing for
//! a link leaves out what the other host offered over it. It does not accept connections
//! (`server`) or decide where a call goes (`dispatch`).

pub mod children;
mod function;
pub mod parent;

pub use function::LinkFunction;

use crate::registry::{LinkId, Registry};
use crate::session::{self, Accepted, Answer, LinkPart, Outgoing, Shared, Transport};
use crate::value::Value;
use crate::wire;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};

/// How often the other host's functions are listed again when it announces nothing: the
/// Python original's refresh, which its hosts expect. Our hosts announce each change at once.
pub const RELIST_INTERVAL: Duration = Duration::from_secs(30);
/// The shortest time between two listings of one link's functions: a host that announces
/// changes without end costs this host one listing (and one new snapshot) per gap at most,
/// while a single change still travels at once.
pub const MIN_RELIST_GAP: Duration = Duration::from_millis(20);

/// The requests this host sends over one link.
#[derive(Clone)]
pub struct LinkHandle {
    id: LinkId,
    requests: mpsc::UnboundedSender<Outgoing>,
    /// Poked by the link's session when the other host announces a change of its functions.
    relist: Arc<Notify>,
    /// Whether the other host is one of ours (see `session::LinkPart::ours`).
    ours: Arc<AtomicBool>,
}

/// The link went down (or was never up) before the other host answered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the link to {0} is down")]
pub struct LinkDown(pub String);

impl LinkHandle {
    /// A handle for a new link to `peer`, and the part the link's session reads its requests
    /// from. `ours`: the other host is known to be one of ours from the start.
    pub fn new(peer: &str, ours: bool) -> (Self, LinkPart) {
        static NEXT_LINK: AtomicU64 = AtomicU64::new(1);
        let id = LinkId { id: NEXT_LINK.fetch_add(1, Ordering::Relaxed), peer: peer.into() };
        let (requests, receiver) = mpsc::unbounded_channel();
        let relist = Arc::new(Notify::new());
        let ours = Arc::new(AtomicBool::new(ours));
        let part = LinkPart { id: id.clone(), requests: receiver, relist: relist.clone(), ours: ours.clone() };
        (Self { id, requests, relist, ours }, part)
    }

    /// Whether the other host is one of ours, which takes EasyRpc's extension actions.
    pub fn is_ours(&self) -> bool {
        self.ours.load(Ordering::Relaxed)
    }

    /// Sends `request` to the other host without waiting for, or asking for, an answer.
    pub fn tell(&self, request: Value) {
        let _ = self.requests.send(Outgoing { request, answer: None });
    }

    /// Waits until the other host's functions are due to be listed again: it announced a
    /// change, or [`RELIST_INTERVAL`] passed (hosts that announce nothing, like Python's).
    async fn relist_due(&self) {
        tokio::select! {
            _ = tokio::time::sleep(RELIST_INTERVAL) => {}
            _ = self.relist.notified() => {}
        }
    }

    pub fn id(&self) -> &LinkId {
        &self.id
    }

    /// Sends `request` (a request object) to the other host and waits for its answer.
    pub async fn request(&self, request: Value) -> Result<Answer, LinkDown> {
        let (answer, answered) = oneshot::channel();
        let down = || LinkDown(self.id.peer.to_string());
        self.requests.send(Outgoing { request, answer: Some(answer) }).map_err(|_| down())?;
        answered.await.map_err(|_| down())
    }
}

/// The request for the other host's functions. The flags are the Python original's (easyrpc
/// §9.2): `upstream` is false when a parent asks its child; `trigger` names the asking child.
fn listing_request(namespace: &str, upstream: bool, trigger: Option<&str>) -> Value {
    let kwargs = vec![
        ("upstream".to_owned(), Value::Bool(upstream)),
        ("all_functions".to_owned(), Value::Bool(false)),
        ("trigger".to_owned(), trigger.map_or(Value::None, |t| Value::Str(t.to_owned()))),
    ];
    wire::call_object("get_registered_functions", vec![Value::Str(namespace.to_owned())], kwargs)
}

/// Serves one link until it closes: the session loop answers the other host and sends this
/// host's requests, while `learn_functions` offers the other host's functions in `namespace`;
/// then they are taken away. `ours`: the other host is known to be one of ours from the start.
async fn serve_link<S: Transport>(
    accepted: Accepted<S>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    peer: &str,
    ours: bool,
    trigger: Option<String>,
) {
    let namespace = accepted.claims().namespace.clone();
    let _up = crate::metrics::LinkUp::new(if trigger.is_some() { "parent" } else { "child" });
    let (link, part) = LinkHandle::new(peer, ours);
    let registry = shared.registry.clone();
    tracing::info!(link = link.id().id, %peer, %namespace, "link up");
    let learning = tokio::spawn(learn_functions(link.clone(), registry.clone(), namespace.clone(), trigger));
    session::run(accepted, shared, shutdown, Some(part)).await;
    learning.abort();
    registry.remove_linked(link.id());
    tracing::info!(link = link.id().id, %peer, %namespace, "link down; its functions are gone");
}

/// Lists the other host's functions now, whenever it announces a change (our hosts do), and
/// every [`RELIST_INTERVAL`], offering them in `namespace` until the link is down. `trigger`:
/// this host's id when it asks its parent (`upstream`), none when it asks a child.
async fn learn_functions(link: LinkHandle, registry: Arc<Registry>, namespace: String, trigger: Option<String>) {
    loop {
        let request = listing_request(&namespace, trigger.is_some(), trigger.as_deref());
        let answer = match link.request(request).await {
            Ok(answer) => answer,
            Err(_) => return,
        };
        match wire::listing::parse_listing(&answer.response) {
            Ok(descriptors) => {
                tracing::debug!(link = link.id().id, functions = descriptors.len(), "linked functions listed");
                registry.set_linked(link.id().clone(), &namespace, LinkFunction::all(&link, descriptors));
            }
            Err(reason) => tracing::info!(link = link.id().id, %reason, "the other host's listing cannot be read"),
        }
        tokio::time::sleep(MIN_RELIST_GAP).await;
        link.relist_due().await;
    }
}
