//! The parent side of a link: a child host connected with `type: SERVER`. Its requests are
//! answered like any client's; this host lists the child's functions at once, whenever the
//! child announces a change (our hosts do), and every [`RELIST_INTERVAL`](super::RELIST_INTERVAL), and offers them in
//! the link's namespace while the link is up.

use super::{listing_request, LinkFunction, LinkHandle};
use crate::registry::Registry;
use crate::session::{self, Accepted, Shared, Transport};
use crate::wire;
use std::sync::Arc;
use tokio::sync::watch;

/// Serves a child host until its link closes, then takes its functions away.
pub async fn serve_child<S: Transport>(accepted: Accepted<S>, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let claims = accepted.claims();
    let namespace = claims.namespace.clone();
    let peer = format!("child {} at {}", claims.id, accepted.peer());
    // A child that asked for notices is one of ours: it announces its changes too.
    let (link, part) = LinkHandle::new(&peer, claims.notify);
    let registry = shared.registry.clone();
    tracing::info!(link = link.id().id, %peer, %namespace, "child link up");
    let learning = tokio::spawn(learn_functions(link.clone(), registry.clone(), namespace.clone()));
    session::run(accepted, shared, shutdown, Some(part)).await;
    learning.abort();
    registry.remove_linked(link.id());
    tracing::info!(link = link.id().id, %peer, %namespace, "child link down; its functions are gone");
}

/// Lists the child's functions now, on each change it announces, and every
/// [`RELIST_INTERVAL`](super::RELIST_INTERVAL), offering them in `namespace`.
async fn learn_functions(link: LinkHandle, registry: Arc<Registry>, namespace: String) {
    loop {
        let answer = match link.request(listing_request(&namespace, false, None)).await {
            Ok(answer) => answer,
            Err(_) => return,
        };
        match wire::listing::parse_listing(&answer.response) {
            Ok(descriptors) => {
                tracing::debug!(link = link.id().id, functions = descriptors.len(), "child functions listed");
                registry.set_linked(link.id().clone(), &namespace, LinkFunction::all(&link, descriptors));
            }
            Err(reason) => tracing::info!(link = link.id().id, %reason, "the child's listing cannot be read"),
        }
        link.relist_due().await;
    }
}
