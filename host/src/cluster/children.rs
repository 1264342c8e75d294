//! The parent side of a link: a child host connected with `type: SERVER`. Its requests are
//! answered like any client's; this host learns the child's functions and offers them in the
//! link's namespace while the link is up.

use super::serve_link;
use crate::session::{Accepted, Shared, Transport};
use std::sync::Arc;
use tokio::sync::watch;

/// Serves a child host until its link closes, then takes its functions away.
pub async fn serve_child<S: Transport>(accepted: Accepted<S>, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let claims = accepted.claims();
    let peer = format!("child {} at {}", claims.id, accepted.peer());
    // A child that asked for notices is one of ours: it announces its changes too.
    let ours = claims.notify;
    serve_link(accepted, shared, shutdown, &peer, ours, None).await;
}
