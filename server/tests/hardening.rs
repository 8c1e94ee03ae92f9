//! Hostile input at the edge of the contract is INVALID_ARGUMENT naming the field, on every
//! backend, and writes nothing: NUL characters (PostgreSQL cannot store them), non-finite
//! numbers and over-deep nesting in metadata, out-of-range timestamps and durations, entries
//! without content, bytes that are not a protobuf message at all, token budgets past the
//! supported range; and stream cursors past what exists are OUT_OF_RANGE, not a silent wait.

mod common;

use baton_proto::v1 as pb;
use common::*;
use prost_types::value::Kind;
use tonic::Code;

backend_tests!(
    nul_characters_are_refused,
    metadata_must_be_json,
    times_and_durations_are_range_checked,
    entries_carry_content,
    malformed_messages_are_invalid_arguments,
    token_budgets_are_range_checked,
    cursors_beyond_the_head_are_out_of_range,
    page_tokens_are_bound_to_their_query
);

fn num(n: f64) -> prost_types::Value {
    prost_types::Value { kind: Some(Kind::NumberValue(n)) }
}

fn string(s: &str) -> prost_types::Value {
    prost_types::Value { kind: Some(Kind::StringValue(s.into())) }
}

fn object(fields: Vec<(&str, prost_types::Value)>) -> prost_types::Struct {
    prost_types::Struct { fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }
}

async fn refused(r: Result<tonic::Response<impl std::fmt::Debug>, tonic::Status>, field: &str) {
    let e = r.expect_err("hostile input accepted");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let fields = violations(&e);
    assert!(fields.iter().any(|f| f.starts_with(field)), "{field} not in {fields:?}");
}

async fn nul_characters_are_refused(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "n", "a").await;
    let append =
        |e: pb::NewEntry| pb::AppendEntriesRequest { session_key: "n".into(), entries: vec![e], ..Default::default() };
    refused(ctx.append_entries(append(message("a", "nul \0 here"))).await, "entries[0].text").await;
    let mut role = message("a", "x");
    role.role = "us\0er".into();
    refused(ctx.append_entries(append(role)).await, "entries[0].role").await;
    let mut media = message("a", "x");
    media.media_type = "text/\0plain".into();
    refused(ctx.append_entries(append(media)).await, "entries[0].media_type").await;
    let mut key = message("a", "x");
    key.metadata = Some(object(vec![("k\0", string("v"))]));
    refused(ctx.append_entries(append(key)).await, "entries[0].metadata").await;
    let mut value = message("a", "x");
    value.metadata = Some(object(vec![("k", string("v\0"))]));
    refused(ctx.append_entries(append(value)).await, "entries[0].metadata.k").await;
    let search = pb::SearchEntriesRequest { query: "a\0b".into(), ..Default::default() };
    refused(ctx.search_entries(search).await, "query").await;
    assert_eq!(
        ctx.get_session(pb::GetSessionRequest { session_key: "n".into() }).await.unwrap().into_inner().last_seq,
        0
    );
    srv.shutdown().await;
}

async fn metadata_must_be_json(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "m", "a").await;
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut e = message("a", "x");
        e.metadata = Some(object(vec![("score", num(bad))]));
        let r = ctx
            .append_entries(pb::AppendEntriesRequest {
                session_key: "m".into(),
                entries: vec![e],
                ..Default::default()
            })
            .await;
        refused(r, "entries[0].metadata.score").await;
    }
    // 30 levels are fine; 33 are refused, naming the limit (past ~33 levels the protobuf
    // decoder itself gives up first: issue 15 maps that to INVALID_ARGUMENT).
    let nested = |depth: usize| {
        let mut s = object(vec![("leaf", num(1.0))]);
        for _ in 1..depth {
            s = object(vec![("n", prost_types::Value { kind: Some(Kind::StructValue(s)) })]);
        }
        s
    };
    let create = |key: &str, depth: usize| pb::CreateSessionRequest {
        session_key: key.into(),
        agent: "a".into(),
        metadata: Some(nested(depth)),
        ..Default::default()
    };
    ctx.create_session(create("d30", 30)).await.expect("30 levels");
    let e = ctx.create_session(create("d33", 33)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("deeper than 32"), "{e:?}");
    srv.shutdown().await;
}

async fn times_and_durations_are_range_checked(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "t", "a").await;
    let mut h = srv.handoffs().await;
    let year_10000 = prost_types::Timestamp { seconds: 253_402_300_800, nanos: 0 };
    let r = h
        .request_handoff(pb::RequestHandoffRequest {
            session_key: "t".into(),
            from_agent: "a".into(),
            to_agent: "b".into(),
            r#type: pb::HandoffType::ContextTransfer.into(),
            deadline: Some(year_10000),
            ..Default::default()
        })
        .await;
    refused(r, "deadline").await;
    let r = ctx
        .update_session(pb::UpdateSessionRequest {
            session_key: "t".into(),
            ttl: Some(prost_types::Duration { seconds: 1, nanos: 2_000_000_000 }),
            ..Default::default()
        })
        .await;
    refused(r, "ttl").await;
    srv.shutdown().await;
}

async fn entries_carry_content(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "e", "a").await;
    let mut none = message("a", "x");
    none.content = None;
    let mut empty_data = message("a", "x");
    empty_data.content = Some(pb::new_entry::Content::Data(Vec::new()));
    for (e, field) in
        [(message("a", ""), "entries[0].text"), (none, "entries[0].content"), (empty_data, "entries[0].data")]
    {
        let r = ctx
            .append_entries(pb::AppendEntriesRequest {
                session_key: "e".into(),
                entries: vec![e],
                ..Default::default()
            })
            .await;
        refused(r, field).await;
    }
    srv.shutdown().await;
}

/// Sends raw bytes as the request message of a method, as a broken client would.
#[derive(Clone, Default)]
struct RawCodec;

struct Raw;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

async fn raw_call(srv: &TestServer, method: &'static str, body: Vec<u8>) -> tonic::Status {
    let channel = tonic::service::interceptor::InterceptedService::new(srv.channel().await, srv.caller());
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.expect_err("garbage accepted")
}

async fn malformed_messages_are_invalid_arguments(b: Backend) {
    use prost::Message as _;
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "p", "a").await;
    const APPEND: &str = "/baton.v1.ContextService/AppendEntries";
    let valid = pb::AppendEntriesRequest {
        session_key: "p".into(),
        entries: vec![message("a", "hello")],
        ..Default::default()
    }
    .encode_to_vec();
    // Invalid UTF-8 in a string field: the text's bytes, one of them replaced.
    let at = valid.windows(5).position(|w| w == b"hello").unwrap();
    let mut not_utf8 = valid.clone();
    not_utf8[at] = 0xff;
    let truncated = valid[..valid.len() - 3].to_vec();
    let garbage = vec![0xff; 64];
    for (what, body) in [("not UTF-8", not_utf8), ("truncated", truncated), ("garbage", garbage)] {
        let e = raw_call(&srv, APPEND, body).await;
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(e.message().contains("not a valid protobuf message"), "{what}: {e:?}");
        assert_eq!(violations(&e), ["request"], "{what}");
    }
    // Nesting past the decoder's limit (60 levels of metadata) names the documented limit.
    let mut deep = prost_types::Struct::default();
    for _ in 0..60 {
        deep = object(vec![("n", prost_types::Value { kind: Some(Kind::StructValue(deep)) })]);
    }
    let body = pb::CreateSessionRequest {
        session_key: "deep".into(),
        agent: "a".into(),
        metadata: Some(deep),
        ..Default::default()
    }
    .encode_to_vec();
    let e = raw_call(&srv, "/baton.v1.ContextService/CreateSession", body).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("at most 32 levels"), "{e:?}");
    // Nothing was written, and the server still answers on the same connection.
    let s = ctx.get_session(pb::GetSessionRequest { session_key: "p".into() }).await.unwrap().into_inner();
    assert_eq!(s.last_seq, 0);
    srv.shutdown().await;
}

async fn token_budgets_are_range_checked(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "w", "a").await;
    append(&mut ctx, "w", vec![message("a", "one"), message("a", "two")]).await;
    let window =
        |max_tokens: u32| pb::GetContextWindowRequest { session_key: "w".into(), max_tokens, ..Default::default() };
    // The largest budget works (and holds everything) on every store ...
    let w = ctx.get_context_window(window(i32::MAX as u32)).await.expect("the largest budget").into_inner();
    assert_eq!(w.entries.len(), 2);
    // ... and anything above it is refused, for windows and handoffs alike.
    refused(ctx.get_context_window(window(i32::MAX as u32 + 1)).await, "max_tokens").await;
    refused(ctx.get_context_window(window(u32::MAX)).await, "max_tokens").await;
    let mut h = srv.handoffs().await;
    let r = h
        .request_handoff(pb::RequestHandoffRequest {
            session_key: "w".into(),
            from_agent: "a".into(),
            to_agent: "b".into(),
            r#type: pb::HandoffType::ContextTransfer.into(),
            max_tokens: u32::MAX,
            ..Default::default()
        })
        .await;
    refused(r, "max_tokens").await;
    srv.shutdown().await;
}

async fn cursors_beyond_the_head_are_out_of_range(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "c", "a").await;
    append(&mut ctx, "c", vec![message("a", "one")]).await;
    let stream = |after_seq: u64| pb::StreamEntriesRequest {
        session_key: "c".into(),
        after_seq,
        follow: true,
        ..Default::default()
    };
    // 2^64-1 is what a client sends for -1.
    for after_seq in [2, 1 << 63, u64::MAX] {
        let e = ctx.stream_entries(stream(after_seq)).await.expect_err("a seq that does not exist");
        assert_eq!(e.code(), Code::OutOfRange, "{after_seq}: {e:?}");
    }
    // At the head the stream waits for what comes next.
    let mut live = ctx.stream_entries(stream(1)).await.unwrap().into_inner();
    append(&mut ctx, "c", vec![message("a", "two")]).await;
    assert_eq!(live.message().await.unwrap().unwrap().seq, 2);

    let mut h = srv.handoffs().await;
    let watch = |after_cursor: u64| pb::WatchHandoffsRequest { agent: "b".into(), after_cursor: Some(after_cursor) };
    for cursor in [1, 1 << 63] {
        let e = h.watch_handoffs(watch(cursor)).await.expect_err("a cursor that does not exist");
        assert_eq!(e.code(), Code::OutOfRange, "{cursor}: {e:?}");
    }
    let mut events = h.watch_handoffs(watch(0)).await.expect("cursor 0: from the start").into_inner();
    h.request_handoff(pb::RequestHandoffRequest {
        session_key: "c".into(),
        from_agent: "a".into(),
        to_agent: "b".into(),
        r#type: pb::HandoffType::ContextTransfer.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(events.message().await.unwrap().unwrap().cursor, 1);
    srv.shutdown().await;
}

async fn page_tokens_are_bound_to_their_query(b: Backend) {
    let srv = start_server(b).await;
    let mut ctx = srv.context().await;
    for k in ["q1", "q2", "q3"] {
        create_session(&mut ctx, k, "a").await;
    }
    let list = |agent: &str, page_token: &str| pb::ListSessionsRequest {
        agent: agent.into(),
        page_size: 1,
        page_token: page_token.into(),
        ..Default::default()
    };
    let first = ctx.list_sessions(list("a", "")).await.unwrap().into_inner();
    let token = first.next_page_token;
    assert!(!token.is_empty());
    // The same query continues ...
    let second = ctx.list_sessions(list("a", &token)).await.unwrap().into_inner();
    assert_ne!(second.sessions[0].session_key, first.sessions[0].session_key);
    // ... another query (here, another agent filter) refuses the token, as does a changed one.
    refused(ctx.list_sessions(list("b", &token)).await, "page_token").await;
    let mut changed = token.clone().into_bytes();
    let last = changed.len() - 2;
    changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
    refused(ctx.list_sessions(list("a", &String::from_utf8(changed).unwrap())).await, "page_token").await;
    // Entries: a token of one kind filter is refused by another.
    append(&mut ctx, "q1", vec![message("a", "one"), message("a", "two"), message("a", "three")]).await;
    let entries = |kinds: Vec<i32>, page_token: &str| pb::ListEntriesRequest {
        session_key: "q1".into(),
        kinds,
        page_size: 1,
        page_token: page_token.into(),
        ..Default::default()
    };
    let messages = vec![pb::EntryKind::Message as i32];
    let page = ctx.list_entries(entries(messages.clone(), "")).await.unwrap().into_inner();
    assert!(ctx.list_entries(entries(messages, &page.next_page_token)).await.is_ok());
    refused(ctx.list_entries(entries(vec![], &page.next_page_token)).await, "page_token").await;
    srv.shutdown().await;
}
