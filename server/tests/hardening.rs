//! Hostile input at the edge of the contract is INVALID_ARGUMENT naming the field, on every
//! backend, and writes nothing: NUL characters (PostgreSQL cannot store them), non-finite
//! numbers and over-deep nesting in metadata, out-of-range timestamps and durations, and
//! entries without content.

mod common;

use baton_proto::v1 as pb;
use common::*;
use prost_types::value::Kind;
use tonic::Code;

backend_tests!(
    nul_characters_are_refused,
    metadata_must_be_json,
    times_and_durations_are_range_checked,
    entries_carry_content
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
