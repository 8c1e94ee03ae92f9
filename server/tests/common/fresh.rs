//! A PostgreSQL database of a test's own, for tests that must be alone in theirs (racing
//! migrations or indexers, counting partitions), dropped at the end. Made by the tables' owner
//! (`BATON_TEST_DATABASE_URL`); the serving role (`BATON_TEST_APP_DATABASE_URL`) connects to
//! it too, through the grants the migrations give baton_app.

use sqlx::{Connection, PgConnection};

use super::{postgres_url, service};

pub struct FreshDb {
    pub name: String,
    /// As the tables' owner.
    pub url: String,
    /// As the serving role.
    pub app_url: String,
}

impl FreshDb {
    /// A new empty database named `{prefix}_{uuid}`.
    pub async fn create(prefix: &str) -> Option<FreshDb> {
        let owner = postgres_url()?;
        let app = service(baton_testkit::APP_DATABASE_URL)?;
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&owner).await.expect("connect as the owner");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create a database");
        let at = |url: &str| format!("{}/{name}", url.rsplit_once('/').expect("a database URL").0);
        Some(FreshDb { url: at(&owner), app_url: at(&app), name })
    }

    /// Drops the database. The owner may end its own connections (FORCE) but not the serving
    /// role's, which a test may leave behind (a pool closing in the background): those are
    /// ended first, as the serving role, which may end its own.
    pub async fn drop(self) {
        let mut app = PgConnection::connect(&self.app_url).await.expect("connect as the serving role");
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity              WHERE datname = current_database() AND usename = current_user AND pid <> pg_backend_pid()",
        )
        .execute(&mut app)
        .await
        .expect("end the serving role's connections");
        app.close().await.expect("disconnect");
        let mut conn = PgConnection::connect(&postgres_url().unwrap()).await.unwrap();
        let drop = format!("DROP DATABASE {} WITH (FORCE)", self.name);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match sqlx::query(&drop).execute(&mut conn).await {
                Ok(_) => return,
                Err(e) if std::time::Instant::now() < deadline && e.as_database_error().is_some() => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => {
                    let still: Vec<(String, String, String)> = sqlx::query_as(
                        "SELECT usename::text, coalesce(state, ''), query FROM pg_stat_activity WHERE datname = $1",
                    )
                    .bind(&self.name)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_default();
                    panic!("drop the test's database {}: {e}; still connected: {still:?}", self.name)
                }
            }
        }
    }
}
