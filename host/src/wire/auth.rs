//! The setup JWT and the `encryption_enabled` request wrapping (docs/protocol.md, sections 2
//! and 7).
//!
//! Owns signing and verifying HS256 tokens with a shared secret, as PyJWT 2.0.0 does for
//! easyrpc: no `exp` or other registered claims are required or added, but as in PyJWT an
//! `exp` or `nbf` that is present is honoured, with no leeway. It does not pick the secret (the
//! server's config and the registry's tenants do).

use super::Serialization;
use crate::value::{json, Value};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

/// Setup claim with which a client asks for change notices (see [`SetupClaims::notify`]).
pub const NOTIFY_CLAIM: &str = "easyrpc_notify";

/// The `type` claim of a plain client.
pub const PROXY: &str = "PROXY";
/// The `type` claim of a child host joining a cluster through this connection.
pub const SERVER: &str = "SERVER";

/// What a connection's setup token says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupClaims {
    /// `PROXY` or `SERVER`.
    pub kind: String,
    /// The connecting proxy's id (a uuid1 string from Python).
    pub id: String,
    pub namespace: String,
    pub serialization: Serialization,
    /// EasyRpc extension claim `easyrpc_notify`: the client wants a notice frame when the
    /// namespace's functions change (Python clients never send it, so never get one).
    pub notify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the token's signature does not verify with the server secret")]
    BadSignature,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("setup token lacks the claim `{0}`")]
    MissingClaim(&'static str),
    #[error("the token has expired: its `exp` claim lies in the past")]
    Expired,
    #[error("the token is not valid yet: its `nbf` claim lies in the future")]
    NotYetValid,
}

fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.required_spec_claims.clear();
    v.validate_exp = true;
    v.validate_nbf = true;
    v.leeway = 0;
    v.validate_aud = false;
    v
}

/// Verifies `token` with `secret` and returns its claims, parsed with the host's JSON reader so
/// integers of any size stay exact.
pub fn verify(token: &str, secret: &str) -> Result<Value, AuthError> {
    jsonwebtoken::decode::<serde_json::Value>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation())
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthError::BadSignature,
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            _ => AuthError::Malformed(e.to_string()),
        })?;
    unverified_claims(token)
}

/// The claims of a token WITHOUT checking its signature: only to learn which secret to verify
/// it with (the namespace it names). Never trust them before [`verify`].
pub fn unverified_claims(token: &str) -> Result<Value, AuthError> {
    let payload = token.split('.').nth(1).ok_or_else(|| AuthError::Malformed("no payload".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| AuthError::Malformed(e.to_string()))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| AuthError::Malformed(e.to_string()))?;
    json::parse(text).map_err(|e| AuthError::Malformed(e.to_string()))
}

/// Signs `claims` (a dict) with `secret`.
pub fn sign(claims: &Value, secret: &str) -> String {
    // Our values always print as JSON serde can read, except NaN/Infinity, which JWT claims
    // cannot carry anyway; those become null.
    let claims: serde_json::Value = serde_json::from_str(&json::to_string(claims)).unwrap_or(serde_json::Value::Null);
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .unwrap_or_default()
}

/// Verifies a setup token and reads its four claims (all required, as by the Python server).
pub fn verify_setup(token: &str, secret: &str) -> Result<SetupClaims, AuthError> {
    setup_claims(verify(token, secret)?)
}

/// A verified setup: what the token claims and the secret that signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    pub claims: SetupClaims,
    /// Signed with the path's admin secret (else with the namespace's or group's own).
    pub admin: bool,
    /// The secret that verified the token: the client signs its wrapped requests with it too
    /// (`encryption_enabled`).
    pub secret: String,
}

/// Reads a setup frame (`{"setup": token}`, JSON text) and verifies its token: signed with the
/// path's `admin_secret`, or with the secret `tenant_secret` gives for the namespace (or group)
/// the token names. Everything here runs before the peer is known, so each step is linear in
/// the frame.
pub fn read_setup(
    frame: &str,
    admin_secret: &str,
    tenant_secret: impl FnOnce(&str) -> Option<String>,
) -> Result<Setup, String> {
    let value = json::parse(frame).map_err(|e| format!("setup frame is not JSON: {e}"))?;
    let token = value.get("setup").and_then(Value::as_str).ok_or("setup frame lacks `setup`")?;
    if let Ok(claims) = verify_setup(token, admin_secret) {
        return Ok(Setup { claims, admin: true, secret: admin_secret.to_owned() });
    }
    let claimed = unverified_claims(token).map_err(|e| e.to_string())?;
    let namespace = claimed.get("namespace").and_then(Value::as_str).unwrap_or_default();
    let secret = tenant_secret(namespace).ok_or("no tenant secret and not the admin secret")?;
    let claims = verify_setup(token, &secret).map_err(|e| e.to_string())?;
    Ok(Setup { claims, admin: false, secret })
}

/// Verifies a setup token with the first of `secrets` that its signature matches.
pub fn verify_setup_any<'a>(token: &str, secrets: impl IntoIterator<Item = &'a str>) -> Result<SetupClaims, AuthError> {
    let mut last = AuthError::BadSignature;
    for secret in secrets {
        match verify_setup(token, secret) {
            Ok(claims) => return Ok(claims),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn setup_claims(claims: Value) -> Result<SetupClaims, AuthError> {
    let get = |name: &'static str| {
        claims.get(name).and_then(Value::as_str).map(str::to_owned).ok_or(AuthError::MissingClaim(name))
    };
    Ok(SetupClaims {
        kind: get("type")?,
        id: get("id")?,
        namespace: get("namespace")?,
        serialization: Serialization::from_claim(&get("serialization")?),
        notify: matches!(claims.get(NOTIFY_CLAIM), Some(Value::Bool(true))),
    })
}

/// The setup token a client sends.
pub fn sign_setup(claims: &SetupClaims, secret: &str) -> String {
    let value = Value::Dict(vec![
        ("type".into(), Value::Str(claims.kind.clone())),
        ("id".into(), Value::Str(claims.id.clone())),
        ("namespace".into(), Value::Str(claims.namespace.clone())),
        ("serialization".into(), Value::Str(claims.serialization.as_claim().to_owned())),
        (NOTIFY_CLAIM.into(), Value::Bool(claims.notify)),
    ]);
    sign(&value, secret)
}

/// Unwraps an `encryption_enabled` request: a token whose claims are `{"data": request}`.
pub fn unwrap_request(token: &str, secret: &str) -> Result<Value, AuthError> {
    let mut claims = verify(token, secret)?;
    match &mut claims {
        Value::Dict(entries) => entries
            .iter()
            .position(|(k, _)| k == "data")
            .map(|i| entries.swap_remove(i).1)
            .ok_or(AuthError::MissingClaim("data")),
        _ => Err(AuthError::Malformed("claims are not a dict".into())),
    }
}

/// Wraps a request object for a server with `encryption_enabled`.
pub fn wrap_request(request: Value, secret: &str) -> String {
    sign(&Value::Dict(vec![("data".into(), request)]), secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The setup frame captured from the real Python client (secret `abcd1234`).
    const CAPTURED: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJ0eXBlIjoiUFJPWFkiLCJpZCI6ImQyZjcwNTNlLWU3OGYtMTFmMS1hNDkwLTAyZmMwMDAwMDAwMSIsIm5hbWVzcGFjZSI6ImFscGhhIiwic2VyaWFsaXphdGlvbiI6Impzb24ifQ.SDFwv-GJ-M-zgbrri0eqDtz6JQR29dtCGWOUVx0OLPQ";

    #[test]
    fn verifies_the_captured_python_token() {
        let claims = verify_setup(CAPTURED, "abcd1234").unwrap();
        assert_eq!(claims.kind, "PROXY");
        assert_eq!(claims.namespace, "alpha");
        assert_eq!(claims.serialization, Serialization::Json);
        assert_eq!(verify_setup(CAPTURED, "wrong"), Err(AuthError::BadSignature));
        assert!(matches!(verify_setup("garbage", "abcd1234"), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn setup_tokens_round_trip() {
        let claims = SetupClaims {
            kind: PROXY.into(),
            id: "x".into(),
            namespace: "ns".into(),
            serialization: Serialization::Pickle,
            notify: true,
        };
        assert_eq!(verify_setup(&sign_setup(&claims, "s"), "s").unwrap(), claims);
        let missing = sign(&Value::Dict(vec![("type".into(), "PROXY".into())]), "s");
        assert_eq!(verify_setup(&missing, "s"), Err(AuthError::MissingClaim("id")));
    }

    #[test]
    fn exp_and_nbf_are_honoured_when_present() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i128;
        let token = |extra: (&str, i128)| {
            let mut claims = vec![
                ("type".into(), Value::from("PROXY")),
                ("id".into(), Value::from("x")),
                ("namespace".into(), Value::from("ns")),
                ("serialization".into(), Value::from("json")),
            ];
            claims.push((extra.0.into(), Value::Int(extra.1)));
            sign(&Value::Dict(claims), "s")
        };
        assert_eq!(verify_setup(&token(("exp", 1)), "s"), Err(AuthError::Expired));
        assert_eq!(verify_setup(&token(("exp", now - 5)), "s"), Err(AuthError::Expired));
        assert!(verify_setup(&token(("exp", now + 60)), "s").is_ok());
        assert_eq!(verify_setup(&token(("nbf", now + 60)), "s"), Err(AuthError::NotYetValid));
        assert!(verify_setup(&token(("nbf", now - 5)), "s").is_ok());
        assert!(verify_setup(&token(("iat", 1)), "s").is_ok(), "other registered claims change nothing");
    }

    #[test]
    fn wrapped_requests_keep_big_integers() {
        let request = json::parse(r#"{"action":"echo","args":[1180591620717411303424],"kwargs":{}}"#).unwrap();
        let token = wrap_request(request.clone(), "k");
        // serde_json (no arbitrary precision) writes big ints as floats in the token; the
        // Python client writes them exactly, which `unwrap_request` then keeps.
        assert!(unwrap_request(&token, "k").is_ok());
        assert_eq!(unwrap_request(&token, "other"), Err(AuthError::BadSignature));
    }
}
