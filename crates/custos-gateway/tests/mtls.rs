//! HTTPS and mutual TLS over real TLS on loopback: a client certificate with a SPIFFE ID maps
//! to a service principal; an unmapped one gets 401; a certificate from another CA never
//! completes the handshake; API keys still work on the same port; TLS 1.2 and 1.3 both work
//! (rustls implements nothing older, so nothing older can be negotiated).

mod common;

use common::databases;
use custos_store::testkit::Seed as _;
use custos_store::Store;
use http_body_util::{BodyExt, Full};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;

struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let ca = p.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    fn leaf(&self, cn: &str, sans: Vec<SanType>, client: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn spiffe(id: &str) -> SanType {
    SanType::URI(id.try_into().unwrap())
}

/// One HTTPS chat call; `Err` when the TLS handshake fails.
async fn call(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    bearer: Option<&str>,
) -> Result<(u16, String), String> {
    request(
        addr,
        ca_pem,
        client,
        versions,
        bearer,
        ("POST", "/v1/chat/completions"),
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await
}

/// One HTTPS request of `method` to `path`.
async fn request(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    bearer: Option<&str>,
    (method, path): (&str, &str),
    body: &'static str,
) -> Result<(u16, String), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice_compat(ca_pem))
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice_compat(cert)],
                PrivateKeyDer::from_pem_slice_compat(key),
            )
            .unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json");
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let req = req.body(Full::new(bytes::Bytes::from(body))).unwrap();
    // A client certificate the server refuses shows up on the first read, not at connect.
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

trait PemCompat {
    fn from_pem_slice_compat(pem: &str) -> Self;
}

impl PemCompat for CertificateDer<'static> {
    fn from_pem_slice_compat(pem: &str) -> Self {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }
}

impl PemCompat for PrivateKeyDer<'static> {
    fn from_pem_slice_compat(pem: &str) -> Self {
        use rustls::pki_types::pem::PemObject;
        PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
    }
}

#[tokio::test]
async fn client_certificates_authenticate_services() {
    let pki = Pki::new("custos test CA");
    let dir = tempfile::tempdir().unwrap();
    let (server_cert, server_key) = pki.leaf(
        "localhost",
        vec![SanType::DnsName("localhost".try_into().unwrap())],
        false,
    );
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let toml = format!(
        r#"
[server.tls]
cert_file = "{}"
key_file = "{}"
client_ca_file = "{}"

[[auth.mtls]]
spiffe_id = "spiffe://acme.example/ns/prod/*"
tenant = "acme"
team = "ml"
env = "prod"

[[auth.mtls]]
subject = "legacy-batch"
tenant = "acme"
roles = ["service"]

[[auth.mtls]]
spiffe_id = "spiffe://acme.example/ns/ops/admin"
tenant = "acme"
roles = ["tenant-admin", "security-admin", "auditor"]
"#,
        write("server.pem", &server_cert),
        write("server.key", &server_key),
        write("ca.pem", &pki.ca.pem()),
    );
    let ca = pki.ca.pem();
    let (billing_cert, billing_key) = pki.leaf(
        "billing",
        vec![spiffe("spiffe://acme.example/ns/prod/sa/billing")],
        true,
    );
    let (stranger_cert, stranger_key) = pki.leaf(
        "stranger",
        vec![spiffe("spiffe://other.example/sa/x")],
        true,
    );
    let rogue = Pki::new("rogue CA");
    let (rogue_cert, rogue_key) = rogue.leaf(
        "billing",
        vec![spiffe("spiffe://acme.example/ns/prod/sa/billing")],
        true,
    );
    for db in databases("mtls").await {
        let gw = common::start(&db, &toml).await;
        let addr: std::net::SocketAddr = gw.base.trim_start_matches("http://").parse().unwrap();
        let all = &[&rustls::version::TLS13, &rustls::version::TLS12][..];

        // A mapped SPIFFE ID is a service principal of its tenant; the call is audited as it.
        let (status, body) = call(addr, &ca, Some((&billing_cert, &billing_key)), all, None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{}: {body}", db.name);
        let (status, _) = call(
            addr,
            &ca,
            Some((&billing_cert, &billing_key)),
            &[&rustls::version::TLS12],
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "TLS 1.2");
        gw.state.audit.flush().await;
        let events = ledger_text(&gw.store).await;
        assert!(
            events.contains(r#""id":"spiffe://acme.example/ns/prod/sa/billing""#)
                && events.contains(r#""auth":"mtls""#),
            "{events}"
        );

        // A certificate without SANs maps by its subject CN.
        let (legacy_cert, legacy_key) = pki.leaf("legacy-batch", Vec::new(), true);
        let (status, body) = call(addr, &ca, Some((&legacy_cert, &legacy_key)), all, None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");

        // Verified but unmapped: 401 with its own type.
        let (status, body) = call(addr, &ca, Some((&stranger_cert, &stranger_key)), all, None)
            .await
            .unwrap();
        assert_eq!(status, 401);
        assert!(
            body.contains("certificate-not-mapped") && body.contains("other.example"),
            "{body}"
        );

        // A certificate principal of acme holding every admin role reaches none of globex's
        // admin endpoints, and is told nothing it would not be told of a tenant that does not
        // exist; its own tenant's answer (the matrix is not vacuous).
        gw.store.ensure_tenant("globex").await.unwrap();
        gw.state.directory.refresh(&gw.store).await.unwrap();
        let (admin_cert, admin_key) = pki.leaf(
            "ops-admin",
            vec![spiffe("spiffe://acme.example/ns/ops/admin")],
            true,
        );
        let admin = Some((admin_cert.as_str(), admin_key.as_str()));
        for tail in [
            "keys", "teams", "budgets", "usage", "audit", "policies", "grants",
        ] {
            let at = |tenant: &str| format!("/admin/v1/tenants/{tenant}/{tail}");
            let (s_b, body_b) = request(addr, &ca, admin, all, None, ("GET", &at("globex")), "")
                .await
                .unwrap();
            let (s_n, body_n) = request(addr, &ca, admin, all, None, ("GET", &at("nowhere")), "")
                .await
                .unwrap();
            assert_eq!((s_b, s_n), (403, 403), "{tail}: {body_b}");
            let detail = |b: &str| {
                serde_json::from_str::<serde_json::Value>(b).unwrap()["detail"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            assert_eq!(
                detail(&body_b).replace("globex", "T"),
                detail(&body_n).replace("nowhere", "T"),
                "{tail}"
            );
            let (s_a, body_a) = request(addr, &ca, admin, all, None, ("GET", &at("acme")), "")
                .await
                .unwrap();
            assert_eq!(s_a, 200, "{tail}: {body_a}");
        }

        // Another CA's certificate: no connection at all.
        assert!(call(addr, &ca, Some((&rogue_cert, &rogue_key)), all, None)
            .await
            .is_err());

        // No certificate: API keys still work on the same port, and no key is a 401.
        let (key, _) = key_for(&gw).await;
        let (status, _) = call(addr, &ca, None, all, Some(&key)).await.unwrap();
        assert_eq!(status, 200);
        let (status, body) = call(addr, &ca, None, all, None).await.unwrap();
        assert_eq!(status, 401);
        assert!(body.contains("missing-api-key"), "{body}");
    }
}

/// A key minted like `custos keys create`, without waiting through plain HTTP (the listener
/// speaks TLS only).
async fn key_for(gw: &common::TestGateway) -> (String, String) {
    let minted = custos_authz::api_key::mint().unwrap();
    let row = gw
        .store
        .insert_key(&custos_store::NewKey {
            digest_hex: minted.digest.to_hex(),
            prefix: minted.display_prefix.clone(),
            name: None,
            app_id: gw.app_id.clone(),
            env: "prod".into(),
            models: "*".into(),
            rpm: None,
            tpm: None,
            expires_at: None,
            roles: Vec::new(),
        })
        .await
        .unwrap();
    gw.state.keys.refresh(&gw.store).await.unwrap();
    (minted.secret, row.id)
}

async fn ledger_text(store: &Store) -> String {
    store
        .ledger_entries(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect::<Vec<_>>()
        .join("\n")
}
