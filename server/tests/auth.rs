//! Authentication, authorization and quotas against a real batond over a real connection, on
//! every backend: missing / unknown / revoked / expired keys, roles, tenants, agent-bound
//! keys, rate limits and stream caps, TLS and mTLS.

mod common;

use std::time::Duration;

use baton_proto::v1 as pb;
use baton_server::auth::KeySpec;
use baton_server::clock::Clock as _;
use common::*;
use futures::StreamExt;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

backend_tests!(
    every_rpc_and_stream_needs_a_valid_key,
    roles_limit_what_a_key_may_do,
    a_key_acts_only_for_its_tenant_unless_admin,
    an_agent_bound_key_acts_only_as_its_agent,
    revoked_and_expired_keys_are_refused,
    rate_limit_refuses_with_retry_info_and_recovers,
    stream_cap_refuses_and_recovers,
    page_tokens_are_bound_to_their_tenant,
);

/// A `tonic::Request` with optional credential and tenant header.
fn call<T>(message: T, key: Option<&str>, tenant: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some(k) = key {
        r.metadata_mut().insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    if let Some(t) = tenant {
        r.metadata_mut().insert("x-baton-tenant", t.parse().unwrap());
    }
    r
}

/// The code a unary call ends with.
macro_rules! code {
    ($call:expr) => {
        match $call.await {
            Ok(_) => Code::Ok,
            Err(e) => e.code(),
        }
    };
}

/// The code a stream ends with, if it ends within 300 ms (`Ok` if it is still open).
async fn first<T>(stream: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>) -> Code {
    match stream {
        Err(e) => e.code(),
        Ok(r) => {
            let mut r = r.into_inner();
            match tokio::time::timeout(Duration::from_millis(300), r.next()).await {
                Ok(Some(Err(e))) => e.code(),
                _ => Code::Ok,
            }
        }
    }
}

/// The status of every Baton RPC and stream made with `key` (`None`: no credential), each
/// against things that exist, so only authentication can refuse them.
async fn every_call(srv: &TestServer, key: Option<&str>) -> Vec<(&'static str, Code)> {
    let mut ctx = pb::context_service_client::ContextServiceClient::new(srv.channel().await);
    let mut h = pb::handoff_service_client::HandoffServiceClient::new(srv.channel().await);
    let s = || "s".to_string();
    let mut out = vec![
        (
            "CreateSession",
            code!(ctx.create_session(call(
                pb::CreateSessionRequest { agent: "a".into(), ..Default::default() },
                key,
                None
            ))),
        ),
        ("GetSession", code!(ctx.get_session(call(pb::GetSessionRequest { session_key: s() }, key, None)))),
        ("ListSessions", code!(ctx.list_sessions(call(pb::ListSessionsRequest::default(), key, None)))),
        (
            "UpdateSession",
            code!(ctx.update_session(call(
                pb::UpdateSessionRequest { session_key: s(), ..Default::default() },
                key,
                None
            ))),
        ),
        (
            "AppendEntries",
            code!(ctx.append_entries(call(
                pb::AppendEntriesRequest { session_key: s(), entries: vec![message("a", "x")], ..Default::default() },
                key,
                None,
            ))),
        ),
        (
            "ListEntries",
            code!(ctx.list_entries(call(pb::ListEntriesRequest { session_key: s(), ..Default::default() }, key, None))),
        ),
        (
            "GetContextWindow",
            code!(ctx.get_context_window(call(
                pb::GetContextWindowRequest { session_key: s(), ..Default::default() },
                key,
                None,
            ))),
        ),
        (
            "SearchEntries",
            code!(ctx.search_entries(call(
                pb::SearchEntriesRequest { query: "x".into(), ..Default::default() },
                key,
                None
            ))),
        ),
        (
            "RequestHandoff",
            code!(h.request_handoff(call(
                pb::RequestHandoffRequest {
                    session_key: s(),
                    from_agent: "a".into(),
                    to_agent: "b".into(),
                    r#type: pb::HandoffType::ContextTransfer.into(),
                    ..Default::default()
                },
                key,
                None,
            ))),
        ),
        ("ListHandoffs", code!(h.list_handoffs(call(pb::ListHandoffsRequest::default(), key, None)))),
    ];
    let entries = ctx
        .stream_entries(call(
            pb::StreamEntriesRequest { session_key: s(), after_seq: 0, follow: true, ..Default::default() },
            key,
            None,
        ))
        .await;
    out.push(("StreamEntries", first(entries).await));
    let watch =
        h.watch_handoffs(call(pb::WatchHandoffsRequest { agent: "b".into(), after_cursor: None }, key, None)).await;
    out.push(("WatchHandoffs", first(watch).await));
    let handoff = h
        .list_handoffs(call(pb::ListHandoffsRequest::default(), srv.key.as_deref(), Some(&srv.tenant)))
        .await
        .unwrap()
        .into_inner()
        .handoffs
        .pop()
        .map(|h| h.handoff_id)
        .unwrap_or_default();
    let context = h
        .stream_handoff_context(call(pb::StreamHandoffContextRequest { handoff_id: handoff.clone() }, key, None))
        .await;
    out.push(("StreamHandoffContext", first(context).await));
    out.push((
        "GetHandoff",
        code!(h.get_handoff(call(pb::GetHandoffRequest { handoff_id: handoff.clone() }, key, None))),
    ));
    let accept = pb::AcceptHandoffRequest { handoff_id: handoff.clone(), agent: "b".into() };
    out.push(("AcceptHandoff", code!(h.accept_handoff(call(accept, key, None)))));
    let reject = pb::RejectHandoffRequest { handoff_id: handoff.clone(), agent: "b".into(), ..Default::default() };
    out.push(("RejectHandoff", code!(h.reject_handoff(call(reject, key, None)))));
    let complete = pb::CompleteHandoffRequest { handoff_id: handoff.clone(), agent: "b".into() };
    out.push(("CompleteHandoff", code!(h.complete_handoff(call(complete, key, None)))));
    let cancel = pb::CancelHandoffRequest { handoff_id: handoff.clone(), agent: "a".into(), ..Default::default() };
    out.push(("CancelHandoff", code!(h.cancel_handoff(call(cancel, key, None)))));
    let fork = pb::ForkSessionRequest { session_key: s(), agent: "a".into(), ..Default::default() };
    out.push(("ForkSession", code!(ctx.fork_session(call(fork, key, None)))));
    let redact = pb::RedactEntriesRequest { session_key: s(), seqs: vec![1], agent: "a".into(), ..Default::default() };
    out.push(("RedactEntries", code!(ctx.redact_entries(call(redact, key, None)))));
    let compact = pb::CompactSessionRequest { session_key: s(), before_seq: 1, force: false };
    out.push(("CompactSession", code!(ctx.compact_session(call(compact, key, None)))));
    out.push(("CloseSession", code!(ctx.close_session(call(pb::CloseSessionRequest { session_key: s() }, key, None)))));
    out.push((
        "DeleteSession",
        code!(ctx.delete_session(call(pb::DeleteSessionRequest { session_key: s() }, key, None))),
    ));
    out
}

/// A session "s" with one entry and a pending handoff a → b, in the test's tenant.
async fn seed(srv: &TestServer) {
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "s", "a").await;
    append(&mut ctx, "s", vec![message("a", "hello")]).await;
    let mut h = srv.handoffs().await;
    h.request_handoff(pb::RequestHandoffRequest {
        session_key: "s".into(),
        from_agent: "a".into(),
        to_agent: "b".into(),
        r#type: pb::HandoffType::ContextTransfer.into(),
        ..Default::default()
    })
    .await
    .unwrap();
}

const ALL_CALLS: usize = 23;

async fn every_rpc_and_stream_needs_a_valid_key(b: Backend) {
    let srv = start_server(b).await;
    seed(&srv).await;
    let (_, unknown) = baton_server::auth::keys::generate();
    let writer = srv.key.clone().unwrap();
    // A well-formed key whose secret is wrong.
    let forged = format!("{}{}", &writer[..writer.len() - 4], if writer.ends_with("AAAA") { "BBBB" } else { "AAAA" });
    for key in [None, Some("not-a-baton-key"), Some(unknown.as_str()), Some(forged.as_str())] {
        let codes = every_call(&srv, key).await;
        assert_eq!(codes.len(), ALL_CALLS);
        let wrong: Vec<_> = codes.iter().filter(|(_, c)| *c != Code::Unauthenticated).collect();
        assert!(wrong.is_empty(), "key {key:?}: {wrong:?}");
    }
    // Health and reflection need no key (load balancers and grpcurl).
    let mut health = tonic_health::pb::health_client::HealthClient::new(srv.channel().await);
    health.check(tonic_health::pb::HealthCheckRequest::default()).await.expect("health without a key");
    // The writer key passes authentication on every call.
    let codes = every_call(&srv, Some(&writer)).await;
    assert!(codes.iter().all(|(_, c)| *c != Code::Unauthenticated && *c != Code::PermissionDenied), "{codes:?}");
    let metrics = reqwest_metrics(&srv).await;
    assert!(metrics.contains("auth_failures_total{reason=\"missing\"}"), "{metrics}");
    assert!(metrics.contains("auth_failures_total{reason=\"unknown\"}"));
    assert!(metrics.contains("auth_failures_total{reason=\"malformed\"}"));
    srv.shutdown().await;
}

/// The admin port's /metrics text.
async fn reqwest_metrics(srv: &TestServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(srv.admin_addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    body
}

async fn roles_limit_what_a_key_may_do(b: Backend) {
    let srv = start_server(b).await;
    seed(&srv).await;
    let reader = srv.server.key(&srv.tenant, Role::Reader, None).await;
    let codes = every_call(&srv, Some(&reader)).await;
    let writes = [
        "CreateSession",
        "UpdateSession",
        "AppendEntries",
        "RequestHandoff",
        "AcceptHandoff",
        "RejectHandoff",
        "CompleteHandoff",
        "CancelHandoff",
        "CloseSession",
        "ForkSession",
        "RedactEntries",
        "CompactSession",
        "DeleteSession",
    ];
    for (name, code) in &codes {
        if writes.contains(name) {
            assert_eq!(*code, Code::PermissionDenied, "reader calling {name}");
        } else {
            assert_ne!(*code, Code::PermissionDenied, "reader calling {name}");
            assert_ne!(*code, Code::Unauthenticated, "reader calling {name}");
        }
    }
    // Nothing was written by the reader's attempts.
    let mut ctx = srv.context().await;
    let s = ctx.get_session(pb::GetSessionRequest { session_key: "s".into() }).await.unwrap().into_inner();
    assert_eq!(s.last_seq, 1);
    srv.shutdown().await;
}

async fn a_key_acts_only_for_its_tenant_unless_admin(b: Backend) {
    let srv = start_server(b).await;
    seed(&srv).await;
    let other = baton_testkit::tenant();
    let writer = srv.key.clone().unwrap();
    let mut ctx = pb::context_service_client::ContextServiceClient::new(srv.channel().await);
    let get =
        |key: &str, tenant: Option<&str>| call(pb::GetSessionRequest { session_key: "s".into() }, Some(key), tenant);

    // The key's own tenant, named or not.
    ctx.get_session(get(&writer, None)).await.expect("own tenant implied");
    ctx.get_session(get(&writer, Some(&srv.tenant))).await.expect("own tenant named");
    // A writer naming another tenant is refused, and cannot write there either.
    let e = ctx.get_session(get(&writer, Some(&other))).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let create =
        call(pb::CreateSessionRequest { agent: "a".into(), ..Default::default() }, Some(&writer), Some(&other));
    assert_eq!(ctx.create_session(create).await.unwrap_err().code(), Code::PermissionDenied);
    // Another tenant's key sees nothing of this tenant.
    let theirs = srv.server.key(&other, Role::Writer, None).await;
    assert_eq!(ctx.get_session(get(&theirs, None)).await.unwrap_err().code(), Code::NotFound);
    // An admin of the other tenant may act for this one by naming it.
    let admin = srv.server.key(&other, Role::Admin, None).await;
    let s = ctx.get_session(get(&admin, Some(&srv.tenant))).await.expect("admin names a tenant").into_inner();
    assert_eq!(s.tenant, srv.tenant);
    assert_eq!(ctx.get_session(get(&admin, None)).await.unwrap_err().code(), Code::NotFound, "admin's own tenant");
    srv.shutdown().await;
}

async fn an_agent_bound_key_acts_only_as_its_agent(b: Backend) {
    let srv = start_server(b).await;
    seed(&srv).await;
    let as_c = srv.server.key(&srv.tenant, Role::Writer, Some("c")).await;
    let as_b = srv.server.key(&srv.tenant, Role::Writer, Some("b")).await;
    let mut ctx = srv.context_as(Caller::new(None, Some(&as_c))).await;
    let mut h = srv.handoffs_as(Caller::new(None, Some(&as_c))).await;
    let handoff = h.list_handoffs(pb::ListHandoffsRequest::default()).await.unwrap().into_inner().handoffs[0].clone();

    // Naming another agent anywhere is refused.
    let denied = |c: Code| assert_eq!(c, Code::PermissionDenied);
    denied(code!(ctx.create_session(pb::CreateSessionRequest { agent: "a".into(), ..Default::default() })));
    let append = pb::AppendEntriesRequest {
        session_key: "s".into(),
        entries: vec![message("c", "mine"), message("a", "pretending")],
        ..Default::default()
    };
    denied(code!(ctx.append_entries(append)));
    denied(code!(h.request_handoff(pb::RequestHandoffRequest {
        session_key: "s".into(),
        from_agent: "a".into(),
        to_agent: "c".into(),
        r#type: pb::HandoffType::ContextTransfer.into(),
        ..Default::default()
    })));
    let accept = pb::AcceptHandoffRequest { handoff_id: handoff.handoff_id.clone(), agent: "b".into() };
    denied(code!(h.accept_handoff(accept)));
    denied(code!(h.watch_handoffs(pb::WatchHandoffsRequest { agent: "b".into(), after_cursor: None })));
    // As itself, c may write, but cannot accept a handoff addressed to b.
    ctx.create_session(pb::CreateSessionRequest { session_key: "c1".into(), agent: "c".into(), ..Default::default() })
        .await
        .expect("c creates as c");
    ctx.append_entries(pb::AppendEntriesRequest {
        session_key: "s".into(),
        entries: vec![message("c", "mine")],
        ..Default::default()
    })
    .await
    .expect("c appends as c");
    let e = h
        .accept_handoff(pb::AcceptHandoffRequest { handoff_id: handoff.handoff_id.clone(), agent: "c".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // b's key accepts it.
    let mut hb = srv.handoffs_as(Caller::new(None, Some(&as_b))).await;
    let accepted = hb
        .accept_handoff(pb::AcceptHandoffRequest { handoff_id: handoff.handoff_id, agent: "b".into() })
        .await
        .expect("b accepts its handoff")
        .into_inner();
    assert_eq!(accepted.status(), pb::HandoffStatus::Accepted);
    srv.shutdown().await;
}

async fn revoked_and_expired_keys_are_refused(b: Backend) {
    // A one-second verification cache, so revocation shows within the test.
    let srv = start_server_with(b, |c| c.auth_cache_secs = 1).await;
    seed(&srv).await;
    let issued = srv
        .server
        .issue(KeySpec {
            tenant: srv.tenant.clone(),
            role: Role::Reader,
            agent: None,
            name: "short-lived".into(),
            expires_in: Some(Duration::from_secs(60)),
        })
        .await;
    let revoked = srv.server.key(&srv.tenant, Role::Reader, None).await;
    let mut ctx = pb::context_service_client::ContextServiceClient::new(srv.channel().await);
    let get = |key: &str| call(pb::GetSessionRequest { session_key: "s".into() }, Some(key), None);
    ctx.get_session(get(&issued.token)).await.expect("valid before expiry");
    ctx.get_session(get(&revoked)).await.expect("valid before revocation");

    let id = baton_server::auth::keys::parse(&revoked).unwrap().id.to_owned();
    let now = srv.clock.now();
    let r = srv.server.store().revoke_key(&id, now).await.expect("revoke");
    assert!(r.revoked_at.is_some());
    let listed = srv.server.store().list_keys(Some(&srv.tenant)).await.unwrap();
    let used = listed.iter().find(|k| k.id == id).unwrap();
    assert!(used.last_used_at.is_some(), "a lookup stamps last_used_at");
    // Within the cache bound (1 s here), the revoked key stops working.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match ctx.get_session(get(&revoked)).await {
            Err(e) if e.code() == Code::Unauthenticated => {
                assert!(e.message().contains("revoked"), "{e:?}");
                break;
            }
            _ if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("a revoked key still works after the cache bound: {other:?}"),
        }
    }
    // The expiry is checked on every call against the server's clock.
    srv.clock.advance(Duration::from_secs(61));
    let e = ctx.get_session(get(&issued.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("expired"), "{e:?}");
    srv.shutdown().await;
}

async fn rate_limit_refuses_with_retry_info_and_recovers(b: Backend) {
    let srv = start_server_with(b, |c| {
        c.rate_limit_rps = 5;
        c.rate_limit_burst = 5;
    })
    .await;
    let mut ctx = srv.context().await;
    let mut refused = None;
    for _ in 0..20 {
        if let Err(e) = ctx.list_sessions(pb::ListSessionsRequest::default()).await {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("the 6th call in a burst of 5 is refused");
    assert_eq!(e.code(), Code::ResourceExhausted);
    use tonic_types::StatusExt as _;
    let retry = e.get_details_retry_info().expect("RetryInfo").retry_delay.expect("a delay");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1), "{retry:?}");
    // Another key has its own bucket.
    let other = srv.server.key(&srv.tenant, Role::Reader, None).await;
    let mut theirs = srv.context_as(Caller::new(None, Some(&other))).await;
    theirs.list_sessions(pb::ListSessionsRequest::default()).await.expect("another principal's bucket is full");
    // After the delay, the bucket has refilled.
    tokio::time::sleep(retry + Duration::from_millis(50)).await;
    ctx.list_sessions(pb::ListSessionsRequest::default()).await.expect("recovers after RetryInfo's delay");
    assert!(reqwest_metrics(&srv).await.contains("rate_limited_total{limit=\"requests\"}"));
    srv.shutdown().await;
}

async fn stream_cap_refuses_and_recovers(b: Backend) {
    let srv = start_server_with(b, |c| {
        c.max_streams_per_principal = 2;
        c.max_streams_per_connection = 3;
    })
    .await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "s", "a").await;
    let follow =
        || pb::StreamEntriesRequest { session_key: "s".into(), after_seq: 0, follow: true, ..Default::default() };
    let one = ctx.stream_entries(follow()).await.expect("first stream");
    let _two = ctx.stream_entries(follow()).await.expect("second stream");
    let e = ctx.stream_entries(follow()).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // On one new connection, three other principals fill the connection's cap of 3; a fourth
    // principal, with none of its own open, is refused by the connection's cap.
    let channel = srv.channel().await;
    let mut held = Vec::new();
    for i in 0..4 {
        let key = srv.server.key(&srv.tenant, Role::Reader, None).await;
        let mut c = pb::context_service_client::ContextServiceClient::with_interceptor(
            channel.clone(),
            Caller::new(None, Some(&key)),
        );
        match (i, c.stream_entries(follow()).await) {
            (0..=2, r) => held.push(r.expect("within the connection's cap")),
            (_, r) => assert_eq!(r.unwrap_err().code(), Code::ResourceExhausted, "connection cap"),
        }
    }
    // Closing a stream frees its place.
    drop(one);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match ctx.stream_entries(follow()).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::ResourceExhausted && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the cap did not recover: {e:?}"),
        }
    }
    assert!(reqwest_metrics(&srv).await.contains("rate_limited_total{limit=\"streams\"}"));
    srv.shutdown().await;
}

async fn page_tokens_are_bound_to_their_tenant(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    for key in ["p1", "p2"] {
        create_session(&mut ctx, key, "a").await;
    }
    let page = ctx.list_sessions(pb::ListSessionsRequest { page_size: 1, ..Default::default() }).await.unwrap();
    let token = page.into_inner().next_page_token;
    assert!(!token.is_empty());
    // The token continues the list in its own tenant…
    let next = ctx
        .list_sessions(pb::ListSessionsRequest { page_size: 1, page_token: token.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.sessions.len(), 1);
    // …and is invalid in another one, even for an admin acting there.
    let other = baton_testkit::tenant();
    let admin = srv.server.key(&other, Role::Admin, None).await;
    let mut theirs = srv.context_as(Caller::new(None, Some(&admin))).await;
    let e = theirs
        .list_sessions(pb::ListSessionsRequest { page_size: 1, page_token: token, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violations(&e), ["page_token"]);
    srv.shutdown().await;
}

// ---- TLS ----

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    dir: tempfile::TempDir,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".into()]).unwrap().signed_by(&server_key, &issuer).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["agent-client".into()]).unwrap().signed_by(&client_key, &issuer).unwrap();
    Pki {
        ca: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Pki {
    fn write(&self, name: &str, pem: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    }
}

async fn tls_channel(srv: &TestServer, pki: &Pki, client_cert: bool) -> Result<tonic::transport::Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca)).domain_name("localhost");
    if client_cert {
        tls = tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    }
    let endpoint =
        Endpoint::from_shared(format!("https://localhost:{}", srv.addr.port())).unwrap().tls_config(tls).unwrap();
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_serves_and_plaintext_is_refused() {
    let pki = pki();
    let (cert, key) = (pki.write("server.pem", &pki.server_cert), pki.write("server.key", &pki.server_key));
    let srv = start_server_with(Backend::Sqlite, |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await;
    let channel = tls_channel(&srv, &pki, false).await.expect("a TLS client connects");
    let mut ctx = pb::context_service_client::ContextServiceClient::with_interceptor(channel, srv.caller());
    create_session(&mut ctx, "over-tls", "a").await;
    // A plaintext client gets no answer from a TLS port.
    let mut plain = srv.context().await;
    assert!(plain.list_sessions(pb::ListSessionsRequest::default()).await.is_err());
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_port_serves_https_with_admin_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let pki = pki();
    let (cert, key) = (pki.write("server.pem", &pki.server_cert), pki.write("server.key", &pki.server_key));
    let srv = start_server_with(Backend::Sqlite, |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.admin_tls = true;
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap()).unwrap();
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(srv.admin_addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake with the admin port");
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Plain HTTP gets no answer.
    let mut plain = tokio::net::TcpStream::connect(srv.admin_addr).await.unwrap();
    plain.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(6), plain.read_to_end(&mut reply)).await;
    assert!(!String::from_utf8_lossy(&reply).contains("200 OK"), "plain HTTP served on a TLS admin port");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mtls_refuses_a_client_without_a_certificate() {
    let pki = pki();
    let (cert, key, ca) = (
        pki.write("server.pem", &pki.server_cert),
        pki.write("server.key", &pki.server_key),
        pki.write("ca.pem", &pki.ca),
    );
    let srv = start_server_with(Backend::Sqlite, |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.tls_client_ca = Some(ca);
    })
    .await;
    let channel = tls_channel(&srv, &pki, true).await.expect("a client with a certificate connects");
    let mut ctx = pb::context_service_client::ContextServiceClient::with_interceptor(channel, srv.caller());
    create_session(&mut ctx, "over-mtls", "a").await;
    // Without a client certificate the handshake (or the first call) fails.
    let refused = match tls_channel(&srv, &pki, false).await {
        Err(_) => true,
        Ok(channel) => {
            let mut ctx = pb::context_service_client::ContextServiceClient::with_interceptor(channel, srv.caller());
            ctx.list_sessions(pb::ListSessionsRequest::default()).await.is_err()
        }
    };
    assert!(refused, "a client without a certificate was served under mTLS");
    srv.shutdown().await;
}
