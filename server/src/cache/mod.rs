//! The Redis cache and bus (enabled by `REDIS_URL`), with an in-process L1 in front.
//!
//! Redis is never the only copy of anything: every write commits in the store first, then
//! one EVALSHA (see `scripts`) updates the session's cached tail and metadata and publishes
//! the change for the other replicas. Reads make one EVALSHA that either confirms the L1
//! copy is current or returns the cached tail; a missing, invalid or short cache sends the
//! read to the store, and the result repairs the cache. Cached data carries the `last_seq`
//! and `updated_at` it is valid for, and version floors only grow, so an older snapshot
//! never overwrites a newer write.
//!
//! When Redis fails, calls go on against the store: a failed update marks the session dirty
//! (invalidated once Redis answers again), the bus being down makes followers poll the store,
//! and its reconnection makes them backfill.

mod bus;
mod keys;
mod scripts;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use fred::bytes::Bytes;
use fred::prelude::*;
use fred::types::scripts::Script;
use prometheus::HistogramVec;
use prost::Message as _;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::domain::cache::{CachedEntry, CachedSession};
use crate::domain::{Entry, Handoff, HandoffEvent, HandoffStatus, Session};
use crate::store::WindowSlice;
use crate::wire;
use keys::*;

/// Largest bus payload that carries the entries themselves; larger appends publish only
/// their seq range and followers read the entries from the store.
const MAX_INLINE_PAYLOAD: usize = 256 * 1024;
/// After a failed call, how long requests skip Redis before trying it again, so an outage
/// costs each request nothing rather than a timeout.
const CIRCUIT_OPEN: Duration = Duration::from_secs(1);
/// Least time between two "redis unavailable" warnings.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub redis_url: String,
    /// Connections in the command pool.
    pub pool_size: usize,
    /// Newest entries kept per session.
    pub tail_len: usize,
    /// Expiry of cached sessions and handoffs.
    pub ttl: Duration,
    /// Most bytes of entries kept in the L1 cache.
    pub l1_max_bytes: u64,
    /// Timeout of one Redis command; past it the call goes to the store.
    pub command_timeout: Duration,
}

/// Counters of cache behaviour, exported at `/metrics` by [`RedisCache::collectors`].
#[derive(Debug, Default)]
pub struct CacheMetrics {
    pub l1_hits: AtomicU64,
    pub l1_misses: AtomicU64,
    pub redis_hits: AtomicU64,
    pub redis_misses: AtomicU64,
    pub redis_errors: AtomicU64,
    /// Redis commands sent (each is one round trip: the cache never waits on two).
    pub redis_round_trips: AtomicU64,
}

impl CacheMetrics {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Hits over lookups at either level, in [0, 1]; 0 before any lookup.
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.l1_hits.load(Ordering::Relaxed) + self.redis_hits.load(Ordering::Relaxed);
        let misses = self.redis_misses.load(Ordering::Relaxed);
        let total = hits + misses;
        if total == 0 { 0.0 } else { hits as f64 / total as f64 }
    }
}

fn version(c: &CachedSession) -> (String, String) {
    (c.session.last_seq.to_string(), c.session.updated_at.0.to_string())
}

/// The L1 weigher: a cached session's memory in bytes (`CachedSession::memory`). Counting
/// only content and encodings, it once let an L1 of 32 MiB hold about twice that.
fn weight(c: &CachedSession) -> u32 {
    u32::try_from(c.memory()).unwrap_or(u32::MAX)
}

/// `redis-cluster://h1:p1,h2:p2,…` (the form the README documents) in the form fred parses,
/// `redis-cluster://h1:p1?node=h2:p2&node=…`; any other URL as it is.
fn cluster_nodes_as_query(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    if !scheme.ends_with("-cluster") {
        return url.to_owned();
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, hosts) = authority.rsplit_once('@').map_or(("", authority), |(u, h)| (u, h));
    let mut nodes = hosts.split(',').filter(|h| !h.is_empty());
    let Some(first) = nodes.next() else { return url.to_owned() };
    let extra: Vec<String> = nodes.map(|n| format!("node={n}")).collect();
    if extra.is_empty() {
        return url.to_owned();
    }
    let at = if user.is_empty() { "" } else { "@" };
    let (path, query) = tail.split_once('?').map_or((tail, ""), |(p, q)| (p, q));
    let query = std::iter::once(query).filter(|q| !q.is_empty()).chain(extra.iter().map(String::as_str));
    format!("{scheme}://{user}{at}{first}{path}?{}", query.collect::<Vec<_>>().join("&"))
}

/// Redis plus L1.
pub struct RedisCache {
    pool: Pool,
    subscriber: fred::clients::SubscriberClient,
    l1: moka::sync::Cache<(String, String), Arc<CachedSession>>,
    config: CacheConfig,
    metrics: Arc<CacheMetrics>,
    durations: HistogramVec,
    replica: u64,
    scripts: Scripts,
    /// Sessions (and handoffs, keyed `handoff/ID`) whose cached copy may be stale because
    /// an update failed, with the newest version written to the store: (last_seq, updated_at).
    dirty: Mutex<HashMap<(String, String), (u64, i64)>>,
    keys: Keys,
    bus_up: AtomicBool,
    /// Set while Redis is failing (logged once per outage).
    degraded: AtomicBool,
    /// Until when (ms since `epoch`) calls skip Redis after a failure.
    open_until_ms: AtomicU64,
    /// When (ms since `epoch`) the last "unavailable" warning was logged; 0: never.
    last_warned_ms: AtomicU64,
    epoch: std::time::Instant,
}

struct Scripts {
    append: Lua,
    install: Lua,
    invalidate: Lua,
    read: Lua,
    put_handoff: Lua,
}

/// A script and the name its spans carry.
struct Lua {
    name: &'static str,
    script: Script,
}

impl Lua {
    fn new(name: &'static str, lua: &str) -> Lua {
        Lua { name, script: Script::from_lua(lua) }
    }
}

fn handoff_rank(s: HandoffStatus) -> u8 {
    match s {
        HandoffStatus::Pending => 0,
        HandoffStatus::Accepted => 1,
        _ => 2,
    }
}

impl RedisCache {
    /// Connects to Redis. Fails if the URL is malformed; an unreachable Redis is not an
    /// error (the cache starts degraded and connects in the background).
    /// `instance` is the store's identity (`Store::instance_id`): every key and channel
    /// carries it.
    pub async fn connect(config: CacheConfig, instance: &str) -> Result<Arc<RedisCache>, Error> {
        let redis_config = Config::from_url(&cluster_nodes_as_query(&config.redis_url))?;
        let mut builder = Builder::from_config(redis_config);
        builder
            .with_performance_config(|p| p.default_command_timeout = config.command_timeout)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.max_command_attempts = 1;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
        let pool = builder.build_pool(config.pool_size.max(1))?;
        // Only the subscriber gets a deep event queue: bus messages wait there for the
        // forwarding task, a short queue lags under load, and every lag makes all followers
        // re-read the store. (fred sizes every event channel of a client by this setting and
        // allocates them up front, so the command pool keeps the default.)
        builder.with_performance_config(|p| p.broadcast_channel_capacity = 2048);
        let subscriber = builder.build_subscriber_client()?;
        // Connect in the background: batond serves from the store until Redis answers.
        pool.connect_pool();
        subscriber.connect();
        let replica = rand::random::<u64>();
        let l1 = moka::sync::Cache::builder()
            .max_capacity(config.l1_max_bytes)
            .weigher(|_, v: &Arc<CachedSession>| weight(v))
            .time_to_live(config.ttl)
            .build();
        Ok(Arc::new(RedisCache {
            pool,
            subscriber,
            l1,
            metrics: Arc::new(CacheMetrics::default()),
            durations: baton_telemetry::metrics::histogram(
                "redis_command_duration_seconds",
                "Redis round trips of the cache and bus, by command.",
                &["command"],
            ),
            replica,
            keys: Keys::new(instance),
            scripts: Scripts {
                append: Lua::new("append", scripts::APPEND),
                install: Lua::new("install", scripts::INSTALL),
                invalidate: Lua::new("invalidate", scripts::INVALIDATE),
                read: Lua::new("read", scripts::READ),
                put_handoff: Lua::new("put_handoff", scripts::PUT_HANDOFF),
            },
            config,
            dirty: Mutex::new(HashMap::new()),
            bus_up: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
            open_until_ms: AtomicU64::new(0),
            last_warned_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }))
    }

    /// True once Redis answers commands and the bus is subscribed.
    pub fn is_connected(&self) -> bool {
        self.pool.is_connected() && self.bus_up.load(Ordering::SeqCst)
    }

    /// Newest entries kept per session.
    pub fn tail_len(&self) -> u32 {
        u32::try_from(self.config.tail_len).unwrap_or(u32::MAX)
    }

    pub fn metrics(&self) -> &Arc<CacheMetrics> {
        &self.metrics
    }

    /// Runs one script: EVALSHA, loading the script first if Redis does not have it (after
    /// a restart), which is the only case with more round trips.
    async fn eval<R: FromValue>(&self, lua: &Lua, keys: Vec<String>, args: Vec<Value>) -> Result<R, Error> {
        self.check_circuit()?;
        let client = self.pool.next_connected();
        let script = &lua.script;
        let first = client.evalsha::<R, _, _, _>(script.sha1().clone(), keys.clone(), args.clone());
        let result = match self.traced("EVALSHA", lua.name, first).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                // On a cluster the script goes to every primary: EVALSHA runs on whichever
                // owns the keys' slot, and SCRIPT LOAD alone would reach only one of them.
                let load = client.script_load_cluster::<String, _>(script.lua().cloned().unwrap_or_default());
                self.traced("SCRIPT LOAD", lua.name, load).await?;
                self.traced("EVALSHA", lua.name, client.evalsha(script.sha1().clone(), keys, args)).await
            }
            other => other,
        };
        self.record(result.is_ok());
        result
    }

    /// One Redis round trip: counted, timed, and traced as a DEBUG span (Redis conventions,
    /// `db.system=redis`) when it serves a traced request. The cache sends one command per
    /// round trip: it never pipelines, its scripts do the batching inside Redis.
    async fn traced<T>(
        &self,
        command: &'static str,
        script: &'static str,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        CacheMetrics::inc(&self.metrics.redis_round_trips);
        let span = if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            tracing::debug_span!(
                "redis",
                otel.name = command,
                otel.kind = "client",
                db.system = "redis",
                db.operation = command,
                db.redis.commands = 1,
                baton.redis.script = script,
                otel.status_description = Empty,
            )
        };
        let start = Instant::now();
        let result = call.instrument(span.clone()).await;
        self.durations.with_label_values(&[command]).observe(start.elapsed().as_secs_f64());
        if let Err(e) = &result {
            span.record("otel.status_description", tracing::field::display(e));
        }
        result
    }

    /// The cache's metrics, for the server's registry: hits and misses per level, Redis
    /// errors and round trips, the hit ratio, and Redis round-trip durations.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        use baton_telemetry::metrics::{Sampled, catch_up, counter};
        let hits = counter("cache_hits_total", "Cache lookups answered, by level (l1, redis).", &["level"]);
        let misses = counter(
            "cache_misses_total",
            "Cache lookups not answered at a level (l1: went to Redis; redis: went to the store).",
            &["level"],
        );
        let plain = |name: &str, help: &str| {
            prometheus::IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"))
        };
        let errors = plain(
            "redis_errors_total",
            "Redis calls that failed or were skipped while Redis was down (served from the store).",
        );
        let trips = plain("redis_commands_total", "Redis round trips (one command each).");
        let ratio = prometheus::Gauge::new(
            "cache_hit_ratio",
            "Hits at either level over lookups since the start (l1 and redis hits over those plus redis misses).",
        )
        .unwrap_or_else(|e| panic!("metric cache_hit_ratio: {e}"));
        let metrics = Arc::clone(&self.metrics);
        let sampled: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(hits.clone()),
            Box::new(misses.clone()),
            Box::new(errors.clone()),
            Box::new(trips.clone()),
            Box::new(ratio.clone()),
        ];
        let update = move || {
            let m = &metrics;
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            catch_up(&hits.with_label_values(&["l1"]), load(&m.l1_hits));
            catch_up(&hits.with_label_values(&["redis"]), load(&m.redis_hits));
            catch_up(&misses.with_label_values(&["l1"]), load(&m.l1_misses));
            catch_up(&misses.with_label_values(&["redis"]), load(&m.redis_misses));
            catch_up(&errors, load(&m.redis_errors));
            catch_up(&trips, load(&m.redis_round_trips));
            ratio.set(m.hit_ratio());
        };
        vec![Box::new(Sampled::new(sampled, update)), Box::new(self.durations.clone())]
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Fails at once while Redis is known to be down: the request goes to the store.
    fn check_circuit(&self) -> Result<(), Error> {
        if self.now_ms() < self.open_until_ms.load(Ordering::Relaxed) || !self.pool.is_connected() {
            return Err(Error::new(ErrorKind::Canceled, "redis is unavailable; skipped"));
        }
        Ok(())
    }

    fn record(&self, ok: bool) {
        if ok {
            if self.degraded.swap(false, Ordering::Relaxed) {
                tracing::info!("redis answers again; cache back in use");
            }
        } else {
            let until = self.now_ms() + u64::try_from(CIRCUIT_OPEN.as_millis()).unwrap_or(1000);
            self.open_until_ms.store(until, Ordering::Relaxed);
        }
    }

    /// A Redis call failed (or was skipped): count it; log once per outage, and at most once
    /// every `LOG_EVERY` while calls keep failing between successes.
    fn failed(&self, what: &str, e: &Error) {
        CacheMetrics::inc(&self.metrics.redis_errors);
        let now = self.now_ms();
        let last = self.last_warned_ms.load(Ordering::Relaxed);
        let quiet = last != 0 && now.saturating_sub(last) < LOG_EVERY.as_millis() as u64;
        if !self.degraded.swap(true, Ordering::Relaxed) && !quiet {
            self.last_warned_ms.store(now.max(1), Ordering::Relaxed);
            tracing::warn!(error = %e, what, "redis unavailable; serving from the store until it returns");
        }
    }

    fn mark_dirty(&self, tenant: &str, key: &str, version: (u64, i64)) {
        let mut dirty = self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let v = dirty.entry((tenant.to_owned(), key.to_owned())).or_insert(version);
        *v = (*v).max(version);
        drop(dirty);
        self.l1.invalidate(&(tenant.to_owned(), key.to_owned()));
    }

    fn is_dirty(&self, tenant: &str, key: &str) -> bool {
        let dirty = self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        !dirty.is_empty() && dirty.contains_key(&(tenant.to_owned(), key.to_owned()))
    }

    /// A bus payload: the sending replica's id (8 bytes, so receivers skip their own
    /// messages without decoding them), then the message.
    fn bus_payload(&self, msg: BusMessage) -> Bytes {
        let msg = BusMessage { replica: self.replica, ..msg };
        let mut buf = Vec::with_capacity(8 + msg.encoded_len());
        buf.extend_from_slice(&self.replica.to_le_bytes());
        msg.encode(&mut buf).expect("a Vec grows as needed");
        buf.into()
    }

    /// After an append committed: one round trip extends the cached tail (or invalidates it)
    /// and publishes the entries to the other replicas.
    pub async fn after_append(&self, tenant: &str, session: &Session, entries: &[Entry]) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return };
        let l1_key = (tenant.to_owned(), session.session_key.clone());
        // Each entry is encoded once, for the L1 copy, the Redis tail and the bus alike.
        let cached: Vec<Arc<CachedEntry>> = entries.iter().map(cached_entry).collect();
        self.extend_l1(&l1_key, session, &cached);
        let mut inline: Vec<Bytes> = cached.iter().map(|c| c.wire.clone()).collect();
        if inline.iter().map(Bytes::len).sum::<usize>() > MAX_INLINE_PAYLOAD {
            inline.clear();
        }
        let payload = self.bus_payload(BusMessage {
            tenant: tenant.to_owned(),
            session_key: session.session_key.clone(),
            last_seq: last.seq,
            entries: inline,
            ..Default::default()
        });
        let summary = cached.iter().rev().find(|c| c.kind == crate::domain::EntryKind::Summary);
        let keep = entries.len().saturating_sub(self.config.tail_len);
        let mut args: Vec<Value> = vec![
            first.seq.to_string().into(),
            last.seq.to_string().into(),
            session.updated_at.0.to_string().into(),
            self.ttl_secs().into(),
            (self.config.tail_len as i64).into(),
            Value::Bytes(encode_session(session)),
            summary.map_or(0, |s| s.seq).to_string().into(),
            Value::Bytes(summary.map(|s| s.wire.clone()).unwrap_or_default()),
            self.keys.session_channel(tenant, &session.session_key).into(),
            Value::Bytes(payload),
        ];
        args.extend(cached[keep..].iter().map(|c| Value::Bytes(c.wire.clone())));
        let keys = vec![self.keys.meta(tenant, &session.session_key), self.keys.tail(tenant, &session.session_key)];
        if let Err(e) = self.eval::<i64>(&self.scripts.append, keys, args).await {
            self.failed("append", &e);
            self.mark_dirty(tenant, &session.session_key, (session.last_seq, session.updated_at.0));
        }
    }

    /// Our own append moves our L1 copy forward when it continues it; anything else drops it.
    fn extend_l1(&self, key: &(String, String), session: &Session, entries: &[Arc<CachedEntry>]) {
        let Some(cur) = self.l1.get(key) else { return };
        let continues = entries.first().is_some_and(|e| e.seq == cur.session.last_seq + 1);
        if !continues {
            self.l1.invalidate(key);
            return;
        }
        let drop = (cur.tail.len() + entries.len()).saturating_sub(self.config.tail_len);
        let tail: Arc<[Arc<CachedEntry>]> = cur.tail.iter().chain(entries).skip(drop).cloned().collect();
        let summary = entries.iter().rev().find(|e| e.kind == crate::domain::EntryKind::Summary).cloned();
        let next = CachedSession { session: session.clone(), summary: summary.or_else(|| cur.summary.clone()), tail };
        self.l1.insert(key.clone(), Arc::new(next));
    }

    fn ttl_secs(&self) -> i64 {
        i64::try_from(self.config.ttl.as_secs().max(1)).unwrap_or(i64::MAX)
    }

    /// The cached session and tail, current as of this call, or `None` (read the store).
    pub async fn session(&self, tenant: &str, key: &str) -> Option<Arc<CachedSession>> {
        if self.is_dirty(tenant, key) {
            return None;
        }
        let l1_key = (tenant.to_owned(), key.to_owned());
        let l1 = self.l1.get(&l1_key);
        let (last, upd) = l1.as_ref().map_or_else(|| ("-1".to_owned(), "-1".to_owned()), |c| version(c));
        let args: Vec<Value> = vec![last.into(), upd.into(), (self.config.tail_len as i64).into()];
        let reply: Vec<Value> = match self
            .eval(&self.scripts.read, vec![self.keys.meta(tenant, key), self.keys.tail(tenant, key)], args)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.failed("read", &e);
                return None;
            }
        };
        match reply.first().and_then(Value::as_i64) {
            Some(1) if l1.is_some() => {
                CacheMetrics::inc(&self.metrics.l1_hits);
                l1
            }
            Some(2) => {
                CacheMetrics::inc(&self.metrics.l1_misses);
                match decode_read(reply) {
                    Ok(cached) => {
                        CacheMetrics::inc(&self.metrics.redis_hits);
                        let cached = Arc::new(cached);
                        self.l1.insert(l1_key, Arc::clone(&cached));
                        Some(cached)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable cache entry; reading the store");
                        CacheMetrics::inc(&self.metrics.redis_misses);
                        None
                    }
                }
            }
            _ => {
                CacheMetrics::inc(&self.metrics.l1_misses);
                CacheMetrics::inc(&self.metrics.redis_misses);
                None
            }
        }
    }

    /// Installs a snapshot read from the store (unless a newer write is known).
    pub async fn install(&self, tenant: &str, slice: &WindowSlice) {
        let session = &slice.session;
        if self.is_dirty(tenant, &session.session_key) {
            return;
        }
        let mut tail: Vec<&Entry> = slice.newest_first.iter().take(self.config.tail_len).collect();
        tail.reverse();
        let mut args: Vec<Value> = vec![
            session.last_seq.to_string().into(),
            session.updated_at.0.to_string().into(),
            self.ttl_secs().into(),
            Value::Bytes(encode_session(session)),
            slice.summary.as_ref().map_or(0, |s| s.seq).to_string().into(),
            Value::Bytes(slice.summary.as_ref().map(wire::encode_entry).unwrap_or_default()),
        ];
        args.extend(tail.iter().map(|e| Value::Bytes(wire::encode_entry(e))));
        let keys = vec![self.keys.meta(tenant, &session.session_key), self.keys.tail(tenant, &session.session_key)];
        if let Err(e) = self.eval::<i64>(&self.scripts.install, keys, args).await {
            self.failed("install", &e);
        }
    }

    /// A session changed other than by an append (status, owner, metadata, expiry).
    pub async fn invalidate(&self, tenant: &str, session: &Session) {
        let key = &session.session_key;
        self.l1.invalidate(&(tenant.to_owned(), key.clone()));
        let (channel, payload) = if session.status.is_open() {
            (String::new(), Bytes::new())
        } else {
            let msg =
                BusMessage { tenant: tenant.to_owned(), session_key: key.clone(), closed: true, ..Default::default() };
            (self.keys.session_channel(tenant, key), self.bus_payload(msg))
        };
        let args: Vec<Value> = vec![
            session.last_seq.to_string().into(),
            session.updated_at.0.to_string().into(),
            self.ttl_secs().into(),
            channel.into(),
            Value::Bytes(payload),
        ];
        if let Err(e) = self
            .eval::<i64>(&self.scripts.invalidate, vec![self.keys.meta(tenant, key), self.keys.tail(tenant, key)], args)
            .await
        {
            self.failed("invalidate", &e);
            self.mark_dirty(tenant, key, (session.last_seq, session.updated_at.0));
        }
    }

    /// Drops every cached copy of a session (and of the given handoffs) here, in Redis and, over
    /// the bus, in the other replicas' L1; with `deleted`, their followers end and the inbox
    /// `events` reach their watchers. If Redis cannot be told, the session is marked dirty so
    /// that no copy is served until Redis is back and cleaned.
    pub async fn forget(
        &self,
        tenant: &str,
        key: &str,
        handoff_ids: &[String],
        deleted: bool,
        events: &[HandoffEvent],
    ) {
        self.l1.invalidate(&(tenant.to_owned(), key.to_owned()));
        let done: Result<(), Error> = async {
            self.check_circuit()?;
            let client = self.pool.next_connected();
            let _: i64 = client.del(vec![self.keys.meta(tenant, key), self.keys.tail(tenant, key)]).await?;
            for id in handoff_ids {
                let _: i64 = client.del(self.keys.handoff(tenant, id)).await?;
            }
            let msg = BusMessage {
                tenant: tenant.to_owned(),
                session_key: key.to_owned(),
                purged: true,
                deleted,
                ..Default::default()
            };
            let _: i64 = client.publish(self.keys.session_channel(tenant, key), self.bus_payload(msg)).await?;
            for e in events {
                let msg = BusMessage {
                    tenant: tenant.to_owned(),
                    agent: e.agent.clone(),
                    event: Some(e.clone().into()),
                    ..Default::default()
                };
                let _: i64 = client.publish(self.keys.agent_channel(tenant, &e.agent), self.bus_payload(msg)).await?;
            }
            Ok(())
        }
        .await;
        self.record(done.is_ok());
        if let Err(e) = done {
            self.failed("forget", &e);
            self.mark_dirty(tenant, key, (i64::MAX as u64, i64::MAX));
        }
    }

    /// After a handoff change: caches the handoff and publishes its inbox events.
    pub async fn after_handoff_change(&self, tenant: &str, handoff: &Handoff, events: &[HandoffEvent]) {
        let mut args: Vec<Value> = vec![
            i64::from(handoff_rank(handoff.status)).into(),
            self.ttl_secs().into(),
            Value::Bytes(pb::Handoff::from(handoff.clone()).encode_to_vec().into()),
        ];
        for e in events {
            let msg = BusMessage {
                tenant: tenant.to_owned(),
                agent: e.agent.clone(),
                event: Some(e.clone().into()),
                ..Default::default()
            };
            args.push(self.keys.agent_channel(tenant, &e.agent).into());
            args.push(Value::Bytes(self.bus_payload(msg)));
        }
        let key = self.keys.handoff(tenant, &handoff.handoff_id);
        if let Err(e) = self.eval::<i64>(&self.scripts.put_handoff, vec![key], args).await {
            self.failed("handoff", &e);
            // The cached copy may now be behind: drop it when Redis is back.
            self.mark_dirty(tenant, &format!("handoff/{}", handoff.handoff_id), (0, 0));
        }
    }

    /// A cached handoff, or `None` (read the store).
    pub async fn handoff(&self, tenant: &str, id: &str) -> Option<Handoff> {
        if self.is_dirty(tenant, &format!("handoff/{id}")) {
            return None;
        }
        if let Err(e) = self.check_circuit() {
            self.failed("get handoff", &e);
            return None;
        }
        let get = self.pool.next_connected().hget::<Option<Bytes>, _, _>(self.keys.handoff(tenant, id), "handoff");
        let got = self.traced("HGET", "", get).await;
        self.record(got.is_ok());
        let got = match got {
            Ok(v) => v,
            Err(e) => {
                self.failed("get handoff", &e);
                return None;
            }
        };
        let decoded = got.and_then(|b| pb::Handoff::decode(b).ok()).and_then(|p| wire::handoff_from_pb(p, tenant).ok());
        CacheMetrics::inc(if decoded.is_some() { &self.metrics.redis_hits } else { &self.metrics.redis_misses });
        decoded
    }
}

/// The domain sees the cache through this contract only.
#[async_trait::async_trait]
impl crate::domain::cache::Cache for RedisCache {
    fn tail_len(&self) -> Option<u32> {
        Some(RedisCache::tail_len(self))
    }
    async fn session(&self, tenant: &str, session_key: &str) -> Option<Arc<CachedSession>> {
        RedisCache::session(self, tenant, session_key).await
    }
    async fn handoff(&self, tenant: &str, handoff_id: &str) -> Option<Handoff> {
        RedisCache::handoff(self, tenant, handoff_id).await
    }
    async fn install(&self, tenant: &str, slice: &WindowSlice) {
        RedisCache::install(self, tenant, slice).await;
    }
    async fn after_append(&self, tenant: &str, session: &Session, entries: &[Entry]) {
        RedisCache::after_append(self, tenant, session, entries).await;
    }
    async fn invalidate(&self, tenant: &str, session: &Session) {
        RedisCache::invalidate(self, tenant, session).await;
    }
    async fn after_handoff_change(&self, tenant: &str, handoff: &Handoff, events: &[HandoffEvent]) {
        RedisCache::after_handoff_change(self, tenant, handoff, events).await;
    }
    async fn forget(&self, tenant: &str, key: &str, handoff_ids: &[String], deleted: bool, events: &[HandoffEvent]) {
        RedisCache::forget(self, tenant, key, handoff_ids, deleted, events).await;
    }
}

#[cfg(test)]
mod tests {
    use super::cluster_nodes_as_query as q;

    #[test]
    fn cluster_node_lists_become_node_parameters() {
        assert_eq!(q("redis-cluster://a:1,b:2,c:3"), "redis-cluster://a:1?node=b:2&node=c:3");
        assert_eq!(q("rediss-cluster://u:p@a:1,b:2/0?x=y"), "rediss-cluster://u:p@a:1/0?x=y&node=b:2");
        for same in ["redis-cluster://a:1", "redis://a:1", "redis-cluster://a:1?node=b:2", "redis-sentinel://a,b"] {
            assert_eq!(q(same), same);
        }
    }
}
