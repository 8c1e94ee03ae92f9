//! Tenant isolation enforced by PostgreSQL itself: connected as the serving role (what batond
//! runs as), with `app.tenant_id` set to tenant A no table shows a row of tenant B, with it unset
//! nothing shows, writes into another tenant are refused, and the role can neither lift the
//! policies nor bypass them.

mod common;

use baton_proto::v1 as pb;
use common::*;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool, Row};

/// Every tenant-owned table.
const TABLES: [&str; 7] = ["sessions", "entries", "appends", "handoffs", "inbox_heads", "inbox_events", "audit_log"];

/// Writes a session with entries (one keyed append), a handoff with its inbox events, and a
/// fork (an audit record), for the server's tenant.
async fn populate(srv: &TestServer) {
    let mut ctx = srv.context().await;
    create_session(&mut ctx, "s", "a").await;
    ctx.append_entries(pb::AppendEntriesRequest {
        session_key: "s".into(),
        entries: vec![message("a", "secret of this tenant")],
        idempotency_key: "k1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
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
    // An audited lifecycle action.
    ctx.fork_session(pb::ForkSessionRequest { session_key: "s".into(), agent: "a".into(), ..Default::default() })
        .await
        .unwrap();
}

async fn serving_role() -> PgPool {
    let url = baton_testkit::service(baton_testkit::APP_DATABASE_URL).expect("the serving role's URL");
    PgPoolOptions::new().max_connections(2).connect(&url).await.expect("connect as the serving role")
}

/// Per table: (rows of `mine`, rows of any other tenant) seen in a transaction scoped with
/// `setting` (`None`: nothing set).
async fn visible(pool: &PgPool, setting: Option<&str>, mine: &str) -> Vec<(&'static str, i64, i64)> {
    let mut out = Vec::new();
    for table in TABLES {
        let mut tx = pool.begin().await.unwrap();
        if let Some(t) = setting {
            sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(t).execute(&mut *tx).await.unwrap();
        }
        let sql =
            format!("SELECT count(*) FILTER (WHERE tenant = $1), count(*) FILTER (WHERE tenant <> $1) FROM {table}");
        let row = sqlx::query(&sql).bind(mine).fetch_one(&mut *tx).await.unwrap();
        out.push((table, row.get::<i64, _>(0), row.get::<i64, _>(1)));
        tx.rollback().await.unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_serving_role_sees_only_the_tenant_it_names() {
    if !Backend::Postgres.available() {
        return;
    }
    let a = start_server(Backend::Postgres).await;
    let mut b = start_server(Backend::Postgres).await;
    b.tenant = baton_testkit::tenant();
    b.key = Some(b.server.key(&b.tenant, Role::Writer, None).await);
    populate(&a).await;
    populate(&b).await;
    let pool = serving_role().await;

    // Scoped to A: every table has A's rows and nothing else.
    for (table, mine, others) in visible(&pool, Some(&a.tenant), &a.tenant).await {
        assert!(mine > 0, "{table}: tenant A's own rows are visible");
        assert_eq!(others, 0, "{table}: another tenant's rows leak into A's transaction");
    }
    // Scoped to nothing: nothing at all.
    for (table, mine, others) in visible(&pool, None, &a.tenant).await {
        assert_eq!((mine, others), (0, 0), "{table}: rows visible with app.tenant_id unset");
    }
    // An empty setting is not a wildcard either.
    for (table, mine, others) in visible(&pool, Some(""), &a.tenant).await {
        assert_eq!((mine, others), (0, 0), "{table}: rows visible with app.tenant_id empty");
    }

    // Writing a row of B while scoped to A is refused by the policy's WITH CHECK.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(&a.tenant).execute(&mut *tx).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let insert = sqlx::query(
        "INSERT INTO sessions (tenant, session_key, created_by, owner, status, created_at, updated_at, \
         last_activity_at) VALUES ($1, 'forged', 'x', 'x', 'active', $2, $2, $2)",
    )
    .bind(&b.tenant)
    .bind(now)
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert!(insert.to_string().contains("row-level security"), "{insert}");
    tx.rollback().await.unwrap();
    // Nor can it move A's rows to B.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(&a.tenant).execute(&mut *tx).await.unwrap();
    let moved = sqlx::query("UPDATE sessions SET tenant = $2 WHERE tenant = $1")
        .bind(&a.tenant)
        .bind(&b.tenant)
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(moved.to_string().contains("row-level security"), "{moved}");
    tx.rollback().await.unwrap();

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_serving_role_cannot_lift_or_bypass_the_policies() {
    if !Backend::Postgres.available() {
        return;
    }
    // The store migrates as the owner first.
    let _ = baton_testkit::postgres_store(1).await;
    let pool = serving_role().await;
    let role: (bool, bool) = sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(role, (false, false), "the serving role must be neither superuser nor BYPASSRLS");
    let owned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tableowner = current_user",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(owned, 0, "the serving role owns no table");
    for table in TABLES {
        let forced: (bool, bool) =
            sqlx::query_as("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = $1")
                .bind(table)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(forced, (true, true), "{table}: row-level security enabled and forced");
        for ddl in [
            format!("ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"),
            format!("ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"),
            format!("DROP POLICY tenant_isolation ON {table}"),
        ] {
            let e = pool.execute(ddl.as_str()).await.unwrap_err();
            assert!(e.to_string().contains("must be owner"), "{ddl}: {e}");
        }
    }
    // row_security = off makes a query that policies would filter fail instead of bypassing.
    let mut conn = pool.acquire().await.unwrap();
    conn.execute("SET row_security = off").await.unwrap();
    let e = sqlx::query("SELECT count(*) FROM sessions").fetch_one(&mut *conn).await.unwrap_err();
    assert!(e.to_string().contains("row-level security"), "{e}");
    conn.execute("RESET row_security").await.unwrap();
}
