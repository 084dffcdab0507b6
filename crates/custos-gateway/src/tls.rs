//! tls: HTTPS on the listener with rustls (TLS 1.2 and 1.3 only) and, when a client CA is
//! configured, mutual TLS: a client certificate that chains to that CA is read for its
//! SPIFFE ID (URI SAN) and subject CN, and `[[auth.mtls]]` maps those to a service principal.
//!
//! Certificates are optional by default, so API keys and tokens keep working on the same
//! port; a bearer token, when sent, is what authenticates the request.

use custos_authz::x509::{peer_names, PeerNames};
use custos_core::config::{MtlsPrincipal, TlsConfig};
use custos_core::principal::{AuthMethod, ModelScope, Principal};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls.{key} {path}: {message}")]
    File {
        key: &'static str,
        path: String,
        message: String,
    },
    #[error("server.tls: {0}")]
    Config(String),
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |message: String| TlsError::File {
        key,
        path: path.display().to_string(),
        message,
    };
    let list = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if list.is_empty() {
        return Err(fail("holds no PEM certificate".into()));
    }
    Ok(list)
}

/// Builds the acceptor from `[server.tls]`.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs("cert_file", &config.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&config.key_file).map_err(|e| TlsError::File {
        key: "key_file",
        path: config.key_file.display().to_string(),
        message: format!("no usable PEM private key: {e}"),
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("client_ca_file", ca)? {
                roots.add(c).map_err(|e| TlsError::File {
                    key: "client_ca_file",
                    path: ca.display().to_string(),
                    message: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if config.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?,
            )
        }
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key: {e}")))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The verified client certificate of a connection, as every request on it sees it.
#[derive(Clone, Debug)]
pub struct PeerCertificate(pub Arc<PeerNames>);

/// Reads the names of a connection's verified leaf certificate, if it sent one.
pub fn peer_certificate(conn: &rustls::ServerConnection) -> Option<PeerCertificate> {
    let leaf = conn.peer_certificates()?.first()?;
    match peer_names(leaf.as_ref()) {
        Ok(names) => Some(PeerCertificate(Arc::new(names))),
        Err(e) => {
            tracing::warn!(error = %e, "a verified client certificate could not be read");
            None
        }
    }
}

/// Whether a configured pattern matches a SPIFFE ID (exact, or `…/*` for a path prefix).
fn spiffe_matches(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(prefix) => id
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/')),
        None => pattern == id,
    }
}

/// The principal of a client certificate, or why it has none.
pub fn principal(
    mappings: &[MtlsPrincipal],
    peer: &PeerCertificate,
) -> Result<(Principal, String), String> {
    let names = &peer.0;
    let spiffe = names.spiffe_id();
    let found = mappings.iter().find(|m| match (&m.spiffe_id, &m.subject) {
        (Some(p), _) => spiffe.is_some_and(|id| spiffe_matches(p, id)),
        (None, Some(cn)) => names.common_name.as_deref() == Some(cn.as_str()),
        (None, None) => false,
    });
    let id = spiffe
        .map(str::to_owned)
        .or_else(|| names.common_name.clone())
        .unwrap_or_default();
    let Some(m) = found else {
        return Err(if id.is_empty() {
            "the client certificate has neither a SPIFFE ID nor a subject CN".into()
        } else {
            format!("the client certificate {id:?} is not mapped to a principal in [[auth.mtls]]")
        });
    };
    Ok((
        Principal {
            id,
            method: AuthMethod::Mtls,
            issuer: "client-ca".into(),
            tenant: m.tenant.clone(),
            team: m.team.clone().unwrap_or_default(),
            env: m.env.clone(),
            roles: if m.roles.is_empty() {
                vec!["service".into()]
            } else {
                m.roles.clone()
            },
            models: ModelScope::Any,
            ..Principal::default()
        },
        m.tenant.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_patterns() {
        assert!(spiffe_matches(
            "spiffe://a.org/ns/prod/*",
            "spiffe://a.org/ns/prod/sa/x"
        ));
        assert!(!spiffe_matches(
            "spiffe://a.org/ns/prod/*",
            "spiffe://a.org/ns/production/x"
        ));
        assert!(!spiffe_matches(
            "spiffe://a.org/ns/prod/*",
            "spiffe://a.org/ns/prod"
        ));
        assert!(spiffe_matches("spiffe://a.org/x", "spiffe://a.org/x"));
        assert!(!spiffe_matches("spiffe://a.org/x", "spiffe://a.org/x/y"));
    }
}
