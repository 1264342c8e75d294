//! TLS under the websocket (`wss://`): the host's certificate and key, and the roots a client
//! or a cluster link trusts.
//!
//! Owns reading PEM files into rustls configurations (with the ring provider). It does not
//! accept or dial connections (`server`, `client`, `cluster` do).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_tungstenite::Connector;

/// ring builds with a C compiler alone (aws-lc-rs, rustls's default, needs cmake as well); it
/// has no post-quantum key exchange, which rustls marks by deprecating its provider.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The host's TLS configuration from a PEM certificate chain and its PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("reading the certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("reading the key {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate {} and its key do not make a TLS identity: {e}", cert.display()))?;
    Ok(Arc::new(config))
}

/// What a client trusts for `wss://`: the certificates in `ca_file` (PEM) besides Mozilla's
/// roots; none: Mozilla's roots only (tungstenite's default).
pub fn client_connector(ca_file: Option<&Path>) -> Result<Option<Connector>, String> {
    let Some(ca_file) = ca_file else { return Ok(None) };
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let certs = CertificateDer::pem_file_iter(ca_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading the CA file {}: {e}", ca_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", ca_file.display()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| format!("a certificate of {} is unusable: {e}", ca_file.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Connector::Rustls(Arc::new(config))))
}
