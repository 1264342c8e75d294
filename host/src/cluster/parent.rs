//! The child side of a link: this host dials its parent for one namespace (`[[link]]` in the
//! config, `--link` on the command line) and keeps the link up while it runs. Over the link
//! the parent's requests are answered like any client's; this host learns the parent's
//! functions and offers them in the namespace. A link that drops takes the parent's functions
//! away at once; it is dialed again with capped, jittered backoff, and the functions come back
//! with it.

use super::serve_link;
use crate::session::{Accepted, PathConfig, Shared, Transport};
use crate::value::Value;
use crate::wire::{auth, Serialization};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::MaybeTlsStream;

/// The first wait before dialing a parent again; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two dials of a parent that does not answer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One link to a parent host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// The parent's websocket URL, path included (`ws://10.0.0.5:8220/ws/easy`).
    pub url: String,
    /// The parent's secret for that path or namespace.
    pub secret: String,
    /// The namespace (or group) of this host that joins the parent's namespace of that name.
    pub namespace: String,
    /// For a `wss://` parent: certificates (PEM) to trust besides Mozilla's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Transport for MaybeTlsStream<tokio::net::TcpStream> {}

/// Keeps the link to a parent up until the host shuts down.
pub async fn keep_link(config: LinkConfig, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    // One id for the life of the host, as the Python original keeps its proxy's id.
    let id = uuid::Uuid::new_v4().to_string();
    let mut backoff = FIRST_BACKOFF;
    loop {
        match dial(&config, &id, shared.limits.max_frame).await {
            Ok(accepted) => {
                backoff = FIRST_BACKOFF;
                let peer = format!("parent {}", config.url);
                serve_link(accepted, shared.clone(), shutdown.clone(), &peer, false, Some(id.clone())).await;
            }
            Err(reason) => {
                tracing::info!(url = %config.url, namespace = %config.namespace, %reason, "parent link failed");
            }
        }
        if *shutdown.borrow() {
            return;
        }
        let wait = jittered(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// `wait`, give or take a quarter at random, so that children of a restarted parent do not
/// all dial it at the same moment.
fn jittered(wait: Duration) -> Duration {
    let random = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    wait.mul_f64(0.75 + random / 2.0)
}

/// Connects to the parent and passes its setup: a connection ready for the session loop,
/// reading frames of at most `max_frame` bytes, as the host's own connections do.
async fn dial(
    config: &LinkConfig,
    id: &str,
    max_frame: usize,
) -> Result<Accepted<MaybeTlsStream<tokio::net::TcpStream>>, String> {
    let url: tokio_tungstenite::tungstenite::http::Uri =
        config.url.parse().map_err(|e| format!("bad parent url {}: {e}", config.url))?;
    let mut ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    ws_config.max_message_size = Some(max_frame);
    ws_config.max_frame_size = Some(max_frame);
    let connector = crate::wire::tls::client_connector(config.ca_file.as_deref())?;
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(config.url.as_str(), Some(ws_config), true, connector);
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| "no answer within 10 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let claims = auth::SetupClaims {
        kind: auth::SERVER.to_owned(),
        id: id.to_owned(),
        namespace: config.namespace.clone(),
        // Pickle, as the Python original's server links are (both ends of our links speak it).
        serialization: Serialization::Pickle,
        // Our parents then announce their changes (a Python parent ignores the claim).
        notify: true,
    };
    let setup = Value::Dict(vec![("setup".to_owned(), Value::Str(auth::sign_setup(&claims, &config.secret)))]);
    ws.send(WsMessage::text(setup.to_json())).await.map_err(|e| e.to_string())?;
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .map_err(|_| "no auth reply within 10 s".to_owned())?
        .ok_or("closed before the auth reply")?
        .map_err(|e| e.to_string())?;
    let authenticated = reply
        .to_text()
        .ok()
        .and_then(|t| crate::value::json::parse(t).ok())
        .is_some_and(|v| v.get("auth").and_then(Value::as_str) == Some("ok"));
    if !authenticated {
        return Err(format!("the parent refused the link: {}", reply.to_text().unwrap_or("(binary)")));
    }
    let peer = match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.peer_addr().map_err(|e| e.to_string())?,
        MaybeTlsStream::Rustls(tls) => tls.get_ref().0.peer_addr().map_err(|e| e.to_string())?,
        // MaybeTlsStream is non-exhaustive; only the two kinds above are built here.
        _ => return Err("the link's stream is of an unknown kind".to_owned()),
    };
    let path = Arc::new(PathConfig { path: url.path().to_owned(), secret: config.secret.clone(), encryption: false });
    let setup = auth::Setup { claims, admin: false, secret: config.secret.clone() };
    Ok(Accepted::dialed(ws, peer, path, setup))
}
