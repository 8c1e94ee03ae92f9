//! baton-mcp calling a real batond over TLS: a private CA (`--tls-ca`), mTLS with a client
//! certificate (`--tls-cert`, `--tls-key`), and the ways a connection is refused. batond serves
//! with API keys on (the test kit's default), so each call also carries a key.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use baton_server::clock::SystemClock;
use baton_server::domain::principal::Role;
use baton_testkit::{Backend, Server};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::json;
use support::{Gateway, key};

/// PEM files of a throwaway CA, a server certificate for `localhost` and a client certificate.
struct Certs {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// A CA that signed nothing here.
    other_ca: PathBuf,
    _dir: tempfile::TempDir,
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let authority = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    };
    let (ca_pem, ca) = authority("baton test CA");
    let (other_pem, _) = authority("someone else's CA");
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["baton-mcp".into()]);
    Certs {
        ca: write("ca.pem", ca_pem),
        server_cert: write("server.pem", server_cert),
        server_key: write("server.key", server_key),
        client_cert: write("client.pem", client_cert),
        client_key: write("client.key", client_key),
        other_ca: write("other-ca.pem", other_pem),
        _dir: dir,
    }
}

fn arg(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

/// Whether a call failed in the connection (TLS handshake, h2), which tonic reports with one of
/// these codes depending on the moment the server hung up.
fn refused(error: &str) -> bool {
    ["UNAVAILABLE", "UNKNOWN", "INTERNAL", "CANCELLED"].iter().any(|code| error.starts_with(code))
}

/// A tool call through `gateway` with `bearer`: Ok(structured result) or Err(error text).
async fn session_call(gateway: &mut Gateway, bearer: &str, session_key: &str) -> Result<(), String> {
    let result = gateway
        .call("register_session", json!({"session_key": session_key, "agent": "a"}), &[("authorization", bearer)])
        .await;
    match result["isError"].as_bool() {
        Some(false) => Ok(()),
        _ => Err(result["content"][0]["text"].as_str().unwrap_or_default().to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_a_private_ca() {
    let certs = certs();
    let server = Server::start(Backend::Sqlite, Arc::new(SystemClock), |c| {
        c.tls_cert = Some(certs.server_cert.clone());
        c.tls_key = Some(certs.server_key.clone());
    })
    .await
    .expect("batond");
    let bearer = format!("Bearer {}", server.key(&baton_testkit::tenant(), Role::Writer, None).await);
    let https = format!("https://localhost:{}", server.addr.port());

    let mut trusted = Gateway::start_with(&https, &["--tls-ca", arg(&certs.ca)], &[]).await;
    session_call(&mut trusted, &bearer, &key("tls")).await.expect("a call over TLS");

    // A certificate that does not chain to the configured CA (or to the system's roots).
    for args in [vec!["--tls-ca", arg(&certs.other_ca)], vec![]] {
        let mut distrusting = Gateway::start_with(&https, &args, &[]).await;
        let error = session_call(&mut distrusting, &bearer, &key("tls")).await.unwrap_err();
        assert!(refused(&error), "{args:?}: {error}");
    }
    // The name checked is the endpoint's host unless --tls-server-name says otherwise.
    let by_ip = format!("https://127.0.0.1:{}", server.addr.port());
    let mut wrong_name = Gateway::start_with(&by_ip, &["--tls-ca", arg(&certs.ca)], &[]).await;
    let error = session_call(&mut wrong_name, &bearer, &key("tls")).await.unwrap_err();
    assert!(refused(&error), "{error}");
    let mut named =
        Gateway::start_with(&by_ip, &["--tls-ca", arg(&certs.ca), "--tls-server-name", "localhost"], &[]).await;
    session_call(&mut named, &bearer, &key("tls")).await.expect("a call naming the certificate's host");
    // Plaintext to the TLS port.
    let mut plaintext = Gateway::start(&format!("http://localhost:{}", server.addr.port()), &[]).await;
    let error = session_call(&mut plaintext, &bearer, &key("tls")).await.unwrap_err();
    assert!(refused(&error), "{error}");

    drop((trusted, named, plaintext));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mtls_needs_the_client_certificate() {
    let certs = certs();
    let server = Server::start(Backend::Sqlite, Arc::new(SystemClock), |c| {
        c.tls_cert = Some(certs.server_cert.clone());
        c.tls_key = Some(certs.server_key.clone());
        c.tls_client_ca = Some(certs.ca.clone());
    })
    .await
    .expect("batond");
    let bearer = format!("Bearer {}", server.key(&baton_testkit::tenant(), Role::Writer, None).await);
    let https = format!("https://localhost:{}", server.addr.port());
    let ca = ["--tls-ca", arg(&certs.ca)];

    let mut with_cert = Gateway::start_with(
        &https,
        &[&ca[..], &["--tls-cert", arg(&certs.client_cert), "--tls-key", arg(&certs.client_key)]].concat(),
        &[],
    )
    .await;
    session_call(&mut with_cert, &bearer, &key("mtls")).await.expect("a call with the client certificate");

    let mut without = Gateway::start_with(&https, &ca, &[]).await;
    let error = session_call(&mut without, &bearer, &key("mtls")).await.unwrap_err();
    assert!(refused(&error), "{error}");

    drop((with_cert, without));
    server.shutdown().await;
}
