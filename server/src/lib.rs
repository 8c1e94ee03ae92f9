//! Baton's server library; `batond` is a thin binary over [`run`].
//!
//! A request flows down, never back up: tonic → [`telemetry::grpc`] (server span, duration,
//! open streams) → [`api::ContextLayer`] (authentication, role, rate quota, tenant and trace
//! id, once per call; see [`auth`]) → [`api`] (thin
//! handlers: proto → validated domain command) → [`domain::service::Baton`] (rules,
//! summaries, streams, sweeps) → [`store`] (PostgreSQL or the embedded SQLite; seqs,
//! idempotency and state transitions happen atomically there). Replies go back out as protos
//! through [`wire`], the one place records meet their proto form.
//!
//! After a commit `Baton` tells the cache (the [`domain::cache::Cache`] contract; [`cache`] is
//! the Redis one) and the [`hub`], which fans appends and handoff events out to the streams
//! following them; the Redis bus feeds other replicas' changes into the same hub. [`serve`]
//! owns every background task (health, sweeper, admin, bus) and joins them on shutdown.
//! [`admin`] serves /health, /ready and /metrics; [`config`] holds every setting.
//!
//! ```text
//! gRPC ─► telemetry::grpc ─► api::ContextLayer ─► api ─► domain::service ─► store
//!                                                          │  │   ▲         (PostgreSQL | SQLite)
//!                                   cache (Redis, L1) ◄────┘  ▼   │ backfill
//!                                        │ bus ──────────────► hub ─► StreamEntries / WatchHandoffs
//! wire: domain records ⇄ baton.v1 protos (api replies, cache payloads)
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use baton_proto::encoded::server::context_service_server::ContextServiceServer;
use baton_proto::v1::handoff_service_server::HandoffServiceServer;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;

pub mod admin;
pub mod allocator;
pub mod api;
pub mod auth;
pub mod cache;
pub mod clock;
pub mod config;
pub mod domain;
pub mod hub;
pub mod probe;
pub mod store;
pub mod telemetry;
pub mod wire;

use clock::{Clock, SystemClock};
use config::Config;
use domain::service::{Baton, Parts};
use hub::Hub;
use store::Store;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How often the health service probes a store that is up (one round trip on the probe's
/// own connection).
const HEALTH_INTERVAL: Duration = Duration::from_millis(250);
/// How often the health service reads the store's circuit breaker (and probes a store that
/// is down).
const HEALTH_TICK: Duration = Duration::from_millis(250);

/// Opens the configured store: PostgreSQL when `database_url` is set, else the embedded
/// SQLite store under `data_dir`. Migrates when `config.migrate` is set, as
/// `migrate_database_url`'s role when set (the tables' owner), before connecting to serve.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, BoxError> {
    match &config.database_url {
        Some(url) => {
            let acquire = config.db_acquire_timeout();
            if config.migrate {
                let owner = config.migrate_database_url.as_ref().unwrap_or(url);
                store::postgres::PgStore::connect(owner, 1, acquire).await?.migrate().await?;
            }
            let pg = store::postgres::PgStore::connect(url, config.db_max_connections, acquire).await?.with_replicas(
                &config.database_read_url,
                config.db_max_connections,
                Duration::from_millis(config.read_replica_max_lag_ms),
            )?;
            Ok(Arc::new(pg))
        }
        None if !config.database_read_url.is_empty() => {
            Err("DATABASE_READ_URL names read replicas of a PostgreSQL primary: set DATABASE_URL too".into())
        }
        None => Ok(Arc::new(store::sqlite::SqliteStore::open(&config.data_dir).await?)),
    }
}

/// `batond migrate`: brings the configured store's schema up to date and says what it did,
/// where. Without a DATABASE_URL it migrates an existing embedded data directory, and refuses
/// to create one (`batond serve` creates and migrates its own).
pub async fn migrate(config: &Config) -> Result<String, BoxError> {
    let (place, before, after, migrator) = match &config.database_url {
        Some(url) => {
            let owner = config.migrate_database_url.as_ref().unwrap_or(url);
            let pg = store::postgres::PgStore::connect(owner, 1, config.db_acquire_timeout()).await?;
            let before = pg.schema_versions().await?;
            pg.migrate().await?;
            (pg.describe(), before, pg.schema_versions().await?, &store::postgres::MIGRATOR)
        }
        None => {
            let dir = &config.data_dir;
            if !dir.is_dir() {
                return Err(format!(
                    "no DATABASE_URL and no embedded data directory at {}: nothing to migrate (give --database-url, \
                     or --data-dir of an existing embedded store; `batond serve` creates and migrates its own)",
                    dir.display()
                )
                .into());
            }
            let before = store::sqlite::SqliteStore::schema_versions_at(dir).await?;
            let sqlite = store::sqlite::SqliteStore::open(dir).await?;
            sqlite.close().await;
            let after = store::sqlite::SqliteStore::schema_versions_at(dir).await?;
            let file = store::sqlite::SqliteStore::file(dir);
            (format!("the embedded store {}", file.display()), before, after, &store::sqlite::MIGRATOR)
        }
    };
    let applied: Vec<String> = migrator
        .iter()
        .filter(|m| after.contains(&m.version) && !before.contains(&m.version))
        .map(|m| format!("{:04} {}", m.version, m.description))
        .collect();
    let version = after.last().copied().unwrap_or(0);
    Ok(if applied.is_empty() {
        format!("{place}: schema already at version {version}; nothing to apply")
    } else {
        format!(
            "{place}: applied {} migration(s), schema now at version {version}:\n  {}",
            applied.len(),
            applied.join("\n  ")
        )
    })
}

/// A server that is up, as [`serve`] hands it to its caller.
pub struct Running {
    pub baton: Arc<Baton>,
    /// The Redis cache, when configured (its counters and connection state).
    pub redis: Option<Arc<cache::RedisCache>>,
}

/// The listeners `batond` serves on.
pub struct Listeners {
    pub grpc: TcpListener,
    pub admin: TcpListener,
}

/// Opens the store and serves until `shutdown` resolves. Telemetry ([`init_telemetry`]) is
/// the caller's: it is process-wide.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BoxError> {
    let store = open_store(&config).await?;
    serve(config, store, Arc::new(SystemClock), listeners, shutdown, |_| {}).await
}

/// Serves gRPC (Baton's two services, health, reflection) and admin HTTP on the given store
/// and clock until `shutdown` resolves, then shuts down gracefully: readiness and health go
/// NOT_SERVING, calls are still served for `shutdown_drain` (the drain), then streams end with UNAVAILABLE (clients resume from their last seq or cursor),
/// new connections are refused, and in-flight unary calls get `shutdown_grace` to finish.
/// `started` receives the service once it is up (tests use it to sweep on demand and to read
/// the cache's counters).
pub async fn serve(
    config: Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
    started: impl FnOnce(Running),
) -> Result<(), BoxError> {
    // Page tokens are sealed with a key from the pepper: replicas sharing it accept each
    // other's tokens.
    domain::page::set_secret(config.key_pepper.as_deref().unwrap_or_default().as_bytes());
    let stop = CancellationToken::new();
    // Cancelled first on shutdown: readiness and health turn not-serving while calls are
    // still served (the drain), then `stop` ends everything.
    let draining = CancellationToken::new();
    let metrics = telemetry::Metrics::new();
    let counters = domain::counters::Counters::new();
    store.collectors().into_iter().chain(counters.collectors()).for_each(|c| metrics.register(c));
    let hub = Arc::new(Hub::default());
    let mut tasks = Vec::new();
    let redis = match config.cache() {
        Some(c) => Some(cache::RedisCache::connect(c, &store.instance_id().await?).await?),
        None => None,
    };
    let cache: Arc<dyn domain::cache::Cache> = match &redis {
        Some(redis) => {
            redis.collectors().into_iter().for_each(|c| metrics.register(c));
            tasks.push(redis.spawn_bus(Arc::clone(&hub), stop.clone()));
            Arc::clone(redis) as Arc<dyn domain::cache::Cache>
        }
        None => Arc::new(domain::cache::NoCache),
    };
    let lifecycle = config.lifecycle();
    let parts = Parts { cache, hub, clock, limits: config.limits(), shutdown: stop.clone(), counters, lifecycle };
    let auth = auth::Authenticator::new(
        config.auth,
        Arc::clone(&store),
        Arc::clone(&parts.clock),
        auth::keys::Hasher::new(config.key_pepper.as_deref()),
        config.auth_cache_ttl(),
    );
    let quotas = auth::Quotas::new(config.quotas());
    metrics.register(auth.collector());
    metrics.register(quotas.collector());
    tasks.push(tokio::spawn(forget_idle_buckets(quotas.clone(), stop.clone())));
    let baton = Baton::new(Arc::clone(&store), parts);
    let grpc_layer = telemetry::grpc::GrpcLayer::new(
        Arc::clone(&metrics),
        &[
            baton_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        ],
    )?;

    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(baton_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // The error details Baton sends (google.rpc.BadRequest, RetryInfo, ...), so grpcurl
        // and other reflection clients can print them.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let max_message = config.max_append_bytes + 1024 * 1024;
    let context = ContextServiceServer::new(api::ContextApi(Arc::clone(&baton)))
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(usize::MAX);
    let handoff = HandoffServiceServer::new(api::HandoffApi(Arc::clone(&baton)))
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd);

    tasks.push(tokio::spawn(watch_health(Arc::clone(&store), health, draining.clone())));
    tasks.push(tokio::spawn(Arc::clone(&baton).run_sweeper(config.sweep_interval())));
    tasks.extend(store.spawn_background(stop.clone()));

    let router = admin::router(Arc::clone(&store), metrics, draining.clone());
    let admin_stop = stop.clone().cancelled_owned();
    let admin: futures::future::BoxFuture<'static, std::io::Result<()>> = match admin_tls(&config).await? {
        Some(tls) => {
            let listener = admin::TlsListener::new(listeners.admin, tls, stop.clone())?;
            Box::pin(axum::serve(listener, router).with_graceful_shutdown(admin_stop).into_future())
        }
        None => Box::pin(axum::serve(listeners.admin, router).with_graceful_shutdown(admin_stop).into_future()),
    };
    tasks.push(tokio::spawn(async move {
        if let Err(e) = admin.await {
            tracing::warn!(error = %e, "admin server failed");
        }
    }));

    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listeners.grpc).map(|conn| {
        if let Ok(c) = &conn {
            let _ = c.set_nodelay(true);
        }
        conn
    });
    let grpc_stop = stop.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls_config(&config).await? {
        builder = builder.tls_config(tls)?;
    }
    // HTTP/2's own ceiling: the stream cap plus room for unary calls (0: the transport default).
    let h2_streams = (config.max_streams_per_connection > 0)
        .then(|| u32::try_from(config.max_streams_per_connection.saturating_add(STREAM_HEADROOM)).unwrap_or(u32::MAX));
    let grpc = builder
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(h2_streams)
        .layer(grpc_layer)
        .layer(api::ContextLayer::new(auth, quotas))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(context)
        .add_service(handoff)
        .serve_with_incoming_shutdown(incoming, async move { grpc_stop.cancelled().await });
    let mut grpc = tokio::spawn(grpc);
    started(Running { baton, redis });

    tokio::select! {
        () = shutdown => {}
        result = &mut grpc => {
            draining.cancel();
            stop.cancel();
            return Err(match result { Ok(Ok(())) => "gRPC server stopped".into(), Ok(Err(e)) => e.into(), Err(e) => e.into() });
        }
    }
    draining.cancel();
    drain(config.shutdown_drain()).await;
    tracing::info!("shutting down");
    stop.cancel();
    match tokio::time::timeout(config.shutdown_grace(), &mut grpc).await {
        Ok(result) => result??,
        Err(_) => {
            tracing::warn!(grace = ?config.shutdown_grace(), "in-flight calls did not finish in time; aborting them");
            grpc.abort();
        }
    }
    // Background tasks (health, sweeper, admin, the Redis bus) all end on `stop`.
    futures::future::join_all(tasks).await;
    tracing::info!("stopped");
    Ok(())
}

/// Keeps serving for `period` after the shutdown signal while readiness and health say
/// not-serving, so load balancers stop sending new work first; a second SIGINT or SIGTERM
/// ends the drain early. With no period (tests, the embedded gateway) no signal handler is
/// installed.
async fn drain(period: Duration) {
    if period.is_zero() {
        return;
    }
    tracing::info!(
        ?period,
        "draining: /ready and health report not serving; calls are still served (signal again to stop now)"
    );
    tokio::select! {
        () = tokio::time::sleep(period) => {}
        () = baton_telemetry::signal::shutdown() => tracing::info!("second signal: ending the drain"),
    }
}

/// How often idle principals' rate buckets are forgotten.
const FORGET_BUCKETS_EVERY: Duration = Duration::from_secs(60);
/// HTTP/2 streams a connection may have beyond its cap of open Baton streams (unary calls).
const STREAM_HEADROOM: usize = 100;

async fn forget_idle_buckets(quotas: auth::Quotas, stop: CancellationToken) {
    let mut tick = tokio::time::interval(FORGET_BUCKETS_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => quotas.forget_idle(),
        }
    }
}

/// TLS for the gRPC port, when a certificate is configured; with a client CA, clients must
/// present a certificate it signed (mTLS).
async fn tls_config(config: &Config) -> Result<Option<tonic::transport::ServerTlsConfig>, BoxError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else { return Ok(None) };
    let read = |path: &std::path::PathBuf| {
        let path = path.clone();
        async move {
            tokio::fs::read(&path)
                .await
                .map_err(|e| -> BoxError { format!("cannot read {}: {e}", path.display()).into() })
        }
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert).await?, read(key).await?));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca).await?)).client_auth_optional(false);
    }
    Ok(Some(tls))
}

/// The admin port's TLS configuration, with `--admin-tls`.
async fn admin_tls(config: &Config) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, BoxError> {
    let (true, Some(cert), Some(key)) = (config.admin_tls, &config.tls_cert, &config.tls_key) else { return Ok(None) };
    let (cert, key) = (tokio::fs::read(cert).await?, tokio::fs::read(key).await?);
    Ok(Some(admin::tls_server_config(&cert, &key).map_err(|e| format!("admin TLS: {e}"))?))
}

/// Keeps grpc.health.v1 in step with the store: SERVING only while it answers. The breaker's
/// state is read every [`HEALTH_TICK`], so a call that found the database unreachable turns
/// health NOT_SERVING within that; the store is probed every [`HEALTH_INTERVAL`] while up (an
/// outage no call has met yet) and every tick while down (to come back as soon as it answers).
/// `draining` turns it NOT_SERVING for good.
async fn watch_health(
    store: Arc<dyn Store>,
    health: tonic_health::server::HealthReporter,
    draining: CancellationToken,
) {
    use baton_proto::v1::context_service_server::SERVICE_NAME as CONTEXT;
    use baton_proto::v1::handoff_service_server::SERVICE_NAME as HANDOFF;
    let set = |status| {
        let health = health.clone();
        async move {
            for service in ["", CONTEXT, HANDOFF] {
                health.set_service_status(service, status).await;
            }
        }
    };
    let mut tick = tokio::time::interval(HEALTH_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serving = None;
    let mut last_probe: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = draining.cancelled() => {
                set(tonic_health::ServingStatus::NotServing).await;
                return;
            }
            _ = tick.tick() => {}
        }
        let due = last_probe.is_none_or(|t| t.elapsed() >= HEALTH_INTERVAL);
        let ok = if store.available() && !due {
            true
        } else if !store.available() && serving == Some(true) {
            false
        } else {
            last_probe = Some(tokio::time::Instant::now());
            store.ping().await.is_ok()
        };
        if serving != Some(ok) {
            if !ok {
                tracing::warn!("store unreachable: health NOT_SERVING");
            }
            let status =
                if ok { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
            set(status).await;
            serving = Some(ok);
        }
    }
}

/// Logs to stderr as text or JSON, filtered by `RUST_LOG` (default `info`), and exports traces
/// over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see `baton_telemetry`). Must run inside
/// the Tokio runtime. Shut the returned handle down after [`run`] returns.
pub fn init_telemetry(format: config::LogFormat) -> Result<baton_telemetry::Telemetry, BoxError> {
    let format = match format {
        config::LogFormat::Text => baton_telemetry::LogFormat::Text,
        config::LogFormat::Json => baton_telemetry::LogFormat::Json,
    };
    let settings = baton_telemetry::Settings::from_env("batond", env!("CARGO_PKG_VERSION"), format)?;
    Ok(baton_telemetry::init(settings)?)
}
