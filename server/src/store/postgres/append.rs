//! Write coalescing for appends. Concurrent appends, to any sessions, are queued and written
//! by a few workers, each taking everything queued (up to a bound) into ONE transaction:
//! one statement locks all the sessions involved (in id order, so batches never deadlock),
//! one reads the idempotency records of the keyed ones, one multi-row statement writes every
//! entry, idempotency record and session position, then one commit. Each caller is answered
//! only after that commit. Seqs stay gap-free per session because every session of the batch
//! is locked and its appends are applied in queue order.
//!
//! A batch of one is the plain path, so at low concurrency nothing waits; under load, a
//! worker's batch grows while the other worker commits.
//!
//! With read replicas, a batch reads the primary's log position once after its commit and
//! each caller reports it (`freshness`), so the client's next reads see its append.
//!
//! Tracing: each append brings its caller's span. A batch runs in an `append batch` span that
//! is a child of its first append's caller and links to the others', so every statement shows
//! up in the first caller's trace and the others' traces point at it.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::postgres::PgPool;
use sqlx::types::Json;
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument as _;

use super::ts;
use crate::domain::summary::{SummaryCounts, SummaryNames, SummaryState};
use crate::domain::{Entry, Error, Result, Session, rules};
use crate::store::freshness::{self, Lsn};
use crate::store::rows::{
    Cells, SESSION_COLS, content_columns, entry_at, session_at, signed, stored_entry, token_counts,
};
use crate::store::sql::Sql;
use crate::store::{AppendCommand, AppendOutcome, Scope};

/// Most appends in one transaction, and most entries.
const MAX_BATCH: usize = 256;
const MAX_BATCH_ENTRIES: usize = 4096;
/// Queued appends before callers wait for room.
const QUEUE: usize = 4096;

const LOCK_SESSIONS: &str = concat!(
    "SELECT ",
    session_cols!("s."),
    ", s.summary_counts, s.summary_names",
    " FROM sessions s JOIN UNNEST($1::text[], $2::text[]) AS k(tenant, session_key) \
       ON s.tenant = k.tenant AND s.session_key = k.session_key \
     ORDER BY s.id FOR UPDATE OF s"
);

/// The original entries of keyed appends: one row per entry (NULL entry columns when the
/// append wrote none).
const REPLAYS: &str = concat!(
    "SELECT a.session_id, a.idempotency_key, ",
    entry_cols!(),
    " FROM appends a JOIN UNNEST($1::bigint[], $2::text[]) AS k(session_id, idempotency_key) \
       ON a.session_id = k.session_id AND a.idempotency_key = k.idempotency_key \
     LEFT JOIN entries e ON e.session_id = a.session_id AND e.seq BETWEEN a.first_seq AND a.last_seq \
     ORDER BY a.session_id, a.idempotency_key, e.seq"
);

/// Every entry, idempotency record and session position of a batch, in one statement.
const WRITE_BATCH: &str = "WITH written AS ( \
       INSERT INTO entries (session_id, seq, kind, role, author, content_text, content_data, media_type, \
                            metadata, token_count, idempotency_key, trace_id, created_at, tenant) \
       SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
                            $7::bytea[], $8::text[], $9::jsonb[], $10::int4[], $11::text[], $12::text[], \
                            $13::timestamptz[], $25::text[]) \
     ), keyed AS ( \
       INSERT INTO appends (session_id, idempotency_key, first_seq, last_seq, created_at, tenant) \
       SELECT * FROM UNNEST($14::bigint[], $15::text[], $16::bigint[], $17::bigint[], $18::timestamptz[], \
                            $26::text[]) \
     ) \
     UPDATE sessions s SET last_seq = u.last_seq, last_summary_seq = u.last_summary_seq, \
            last_activity_at = u.last_activity_at, status = u.status, updated_at = u.updated_at, \
            summary_counts = u.summary_counts, summary_names = COALESCE(u.summary_names, s.summary_names) \
     FROM UNNEST($19::bigint[], $20::bigint[], $21::bigint[], $22::timestamptz[], $23::text[], \
                 $24::timestamptz[], $27::jsonb[], $28::jsonb[]) \
          AS u(id, last_seq, last_summary_seq, last_activity_at, status, updated_at, summary_counts, summary_names) \
     WHERE s.id = u.id";

/// The batch's statements run on generic plans. Their parameters are arrays, which a generic
/// plan estimates at 10 rows and a custom plan at their length, so PostgreSQL judged every
/// custom plan cheaper and planned the lock and the write again on each execution: 0.22 and
/// 0.25 ms of the database's CPU per batch, more than executing them at low concurrency. The
/// lock and the write touch no partition by scan (sessions by key and by id; entries and
/// idempotency records are inserted). The replay read of keyed appends does: like the reads
/// PostgreSQL already plans generically, it probes each partition by index once the
/// partition's statistics know its rows (a partition analyzed while empty is scanned until
/// autovacuum analyzes it again, which also replaces the cached plan).
const GENERIC_PLANS: &str = "SET LOCAL plan_cache_mode = force_generic_plan";

/// An append's outcome, with the primary's log position after its commit when asked for.
type Reply = (Result<AppendOutcome>, Option<Lsn>);

struct Pending {
    cmd: AppendCommand,
    reply: oneshot::Sender<Reply>,
    /// The caller's span, the parent of (or linked from) the batch's statements.
    span: tracing::Span,
}

/// The queue in front of the append workers.
#[derive(Debug, Clone)]
pub(super) struct Appender {
    queue: mpsc::Sender<Pending>,
}

impl Appender {
    /// Starts `workers` append workers on `pool`; they stop when every `Appender` is gone.
    /// With `positions`, each batch reads the log position after its commit for its callers.
    pub(super) fn start(pool: PgPool, sql: Sql, workers: usize, positions: bool) -> Appender {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            tokio::spawn(work(pool.clone(), sql.clone(), Arc::clone(&rx), positions));
        }
        Appender { queue }
    }

    pub(super) async fn append(&self, cmd: AppendCommand) -> Result<AppendOutcome> {
        let (reply, answer) = oneshot::channel();
        let stopped = || Error::Unavailable("the store is shutting down".into());
        let span = tracing::Span::current();
        self.queue.send(Pending { cmd, reply, span }).await.map_err(|_| stopped())?;
        let (outcome, position) = answer.await.map_err(|_| stopped())?;
        if let Some(position) = position {
            freshness::saw(position);
        }
        outcome
    }
}

async fn work(pool: PgPool, sql: Sql, queue: Arc<Mutex<mpsc::Receiver<Pending>>>, positions: bool) {
    loop {
        let batch = {
            let mut rx = queue.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut entries = first.cmd.entries.len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && entries < MAX_BATCH_ENTRIES {
                match rx.try_recv() {
                    Ok(p) => {
                        entries += p.cmd.entries.len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        let span = batch_span(&batch);
        run(&pool, &sql, batch, positions).instrument(span).await;
    }
}

/// The span of a batch's statements: a child of its first append's caller, linking the rest.
fn batch_span(batch: &[Pending]) -> tracing::Span {
    let Some(first) = batch.first() else { return tracing::Span::none() };
    if first.span.is_none() {
        return tracing::Span::none();
    }
    let span = tracing::debug_span!(parent: &first.span, "append batch", baton.append.batch_size = batch.len() as i64);
    for other in &batch[1..] {
        span.follows_from(&other.span);
    }
    span
}

/// Writes a batch; if the transaction as a whole fails, each append is retried alone so
/// that one append's failure is never another's.
async fn run(pool: &PgPool, sql: &Sql, batch: Vec<Pending>, positions: bool) {
    let (cmds, replies): (Vec<AppendCommand>, Vec<_>) = batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    match write(pool, sql, &cmds).await {
        Ok(results) => {
            let position = if positions { position(pool, sql).await } else { None };
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send((result, position));
            }
        }
        Err(e) if cmds.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send((Err(e), None));
            }
        }
        Err(_) => {
            for (cmd, reply) in cmds.into_iter().zip(replies) {
                let result = match write(pool, sql, std::slice::from_ref(&cmd)).await {
                    Ok(mut r) => r.pop().unwrap_or_else(|| Err(Error::Internal("empty batch result".into()))),
                    Err(e) => Err(e),
                };
                let position = if positions && result.is_ok() { position(pool, sql).await } else { None };
                let _ = reply.send((result, position));
            }
        }
    }
}

/// The primary's log position, read after a commit (`None` if it cannot be read: the
/// callers' next reads then may not reflect their appends on a replica, but nothing fails).
async fn position(pool: &PgPool, sql: &Sql) -> Option<Lsn> {
    let read = sqlx::query_scalar::<_, i64>(super::replicas::PRIMARY_POSITION).fetch_one(pool);
    match sql.run("SELECT", "", read).await {
        Ok(p) => Some(Lsn(p as u64)),
        Err(e) => {
            tracing::debug!(error = %e, "could not read the log position after an append batch");
            None
        }
    }
}

/// Column arrays of the batch write.
#[derive(Default)]
struct Rows<'a> {
    session_ids: Vec<i64>,
    seqs: Vec<i64>,
    kinds: Vec<&'a str>,
    roles: Vec<&'a str>,
    authors: Vec<&'a str>,
    texts: Vec<Option<&'a str>>,
    datas: Vec<Option<&'a [u8]>>,
    media_types: Vec<&'a str>,
    metadatas: Vec<Json<&'a crate::domain::Metadata>>,
    token_counts: Vec<i32>,
    idempotency_keys: Vec<&'a str>,
    trace_ids: Vec<&'a str>,
    created_ats: Vec<time::OffsetDateTime>,
    tenants: Vec<&'a str>,
    keyed_tenants: Vec<&'a str>,
    keyed_ids: Vec<i64>,
    keyed_keys: Vec<&'a str>,
    keyed_first: Vec<i64>,
    keyed_last: Vec<i64>,
    keyed_at: Vec<time::OffsetDateTime>,
}

/// One transaction for the batch; returns each append's own result.
async fn write(pool: &PgPool, sql: &Sql, cmds: &[AppendCommand]) -> Result<Vec<Result<AppendOutcome>>> {
    let (tenants, keys): (Vec<&str>, Vec<&str>) =
        cmds.iter().map(|c| (c.tenant.as_str(), c.session_key.as_str())).unzip();
    let mut scope = tenants.clone();
    scope.sort_unstable();
    scope.dedup();
    let begin = format!("{}; {GENERIC_PLANS}", super::begin_sql(Scope::Tenants(&scope))?);
    let mut tx = sql.run("BEGIN", "", pool.begin_with(begin)).await?;

    let lock = sqlx::query(LOCK_SESSIONS).bind(&tenants).bind(&keys).fetch_all(&mut *tx);
    let locked = sql.run("SELECT", "sessions", lock).await?;
    let mut sessions: HashMap<(String, String), Session> = HashMap::with_capacity(locked.len());
    // Each session's summary state (`None`: unknown, stays so), and whether its names changed.
    let mut summaries: HashMap<i64, (Option<SummaryState>, bool)> = HashMap::with_capacity(locked.len());
    for row in &locked {
        let s = session_at(row, 0)?;
        summaries.insert(s.id, (row.summary_state(SESSION_COLS)?, false));
        sessions.insert((s.tenant.clone(), s.session_key.clone()), s);
    }

    // Earlier appends with the same idempotency keys, read under the session locks.
    let keyed: Vec<(i64, &str)> = cmds
        .iter()
        .filter_map(|c| {
            let key = c.idempotency_key.as_deref().filter(|k| !k.is_empty())?;
            let s = sessions.get(&(c.tenant.clone(), c.session_key.clone()))?;
            Some((s.id, key))
        })
        .collect();
    let mut replays: HashMap<(i64, String), Vec<Entry>> = HashMap::new();
    if !keyed.is_empty() {
        let key_of: HashMap<i64, &str> = sessions.values().map(|s| (s.id, s.session_key.as_str())).collect();
        let (ids, ikeys): (Vec<i64>, Vec<&str>) = keyed.iter().copied().unzip();
        let replays_of = sqlx::query(REPLAYS).bind(&ids).bind(&ikeys).fetch_all(&mut *tx);
        let rows = sql.run("SELECT", "appends", replays_of).await?;
        for row in &rows {
            let id = row.int(0)?;
            let entries = replays.entry((id, row.text(1)?)).or_default();
            if row.opt_int(2)?.is_some() {
                entries.push(entry_at(row, 2, key_of.get(&id).copied().unwrap_or_default())?);
            }
        }
    }

    let mut rows = Rows::default();
    let mut results = Vec::with_capacity(cmds.len());
    // Appends of this batch by idempotency key: a repeat within the batch replays them.
    let mut written: HashMap<(i64, &str), usize> = HashMap::new();
    let mut touched: Vec<i64> = Vec::new();
    for cmd in cmds {
        let Some(session) = sessions.get_mut(&(cmd.tenant.clone(), cmd.session_key.clone())) else {
            results.push(Err(Error::session_not_found(&cmd.session_key)));
            continue;
        };
        let key = cmd.idempotency_key.as_deref().filter(|k| !k.is_empty()).unwrap_or_default();
        if !key.is_empty() {
            if let Some(entries) = replays.get(&(session.id, key.to_owned())) {
                results.push(Ok(AppendOutcome { session: session.clone(), entries: entries.clone(), replayed: true }));
                continue;
            }
            if let Some(&i) = written.get(&(session.id, key)) {
                let original: &Result<AppendOutcome> = &results[i];
                let entries = original.as_ref().map(|o| o.entries.clone()).unwrap_or_default();
                results.push(Ok(AppendOutcome { session: session.clone(), entries, replayed: true }));
                continue;
            }
        }
        let counts = match rules::check_append(session, cmd.expected_last_seq, cmd.now)
            .and_then(|()| token_counts(&cmd.entries))
        {
            Ok(counts) => counts,
            Err(e) => {
                results.push(Err(e));
                continue;
            }
        };
        let now = ts(cmd.now)?;
        let first_seq = rules::append_to(session, cmd.entries.iter().map(|e| e.kind), cmd.now);
        let mut entries = Vec::with_capacity(cmd.entries.len());
        for ((i, e), count) in cmd.entries.iter().enumerate().zip(counts) {
            let seq = first_seq + i as u64;
            rows.session_ids.push(session.id);
            rows.seqs.push(signed(seq));
            rows.kinds.push(e.kind.as_str());
            rows.roles.push(&e.role);
            rows.authors.push(&e.author);
            let (text, data) = content_columns(&e.content);
            rows.texts.push(text);
            rows.datas.push(data);
            rows.media_types.push(&e.media_type);
            rows.metadatas.push(Json(&e.metadata));
            rows.token_counts.push(count);
            rows.idempotency_keys.push(key);
            rows.trace_ids.push(&cmd.trace_id);
            rows.created_ats.push(now);
            rows.tenants.push(&cmd.tenant);
            entries.push(stored_entry(e.clone(), &cmd.session_key, seq, key, &cmd.trace_id, cmd.now));
        }
        if !key.is_empty() {
            rows.keyed_ids.push(session.id);
            rows.keyed_keys.push(key);
            rows.keyed_first.push(signed(first_seq));
            rows.keyed_last.push(signed(session.last_seq));
            rows.keyed_at.push(now);
            rows.keyed_tenants.push(&cmd.tenant);
            written.insert((session.id, key), results.len());
        }
        if let Some((Some(state), renamed)) = summaries.get_mut(&session.id) {
            for e in &entries {
                *renamed |= state.add(e);
            }
        }
        if !touched.contains(&session.id) {
            touched.push(session.id);
        }
        results.push(Ok(AppendOutcome { session: session.clone(), entries, replayed: false }));
    }

    if !touched.is_empty() {
        let by_id: HashMap<i64, &Session> = sessions.values().map(|s| (s.id, s)).collect();
        let finals: Vec<&Session> = touched.iter().filter_map(|id| by_id.get(id).copied()).collect();
        let ids: Vec<i64> = finals.iter().map(|s| s.id).collect();
        let last_seqs: Vec<i64> = finals.iter().map(|s| signed(s.last_seq)).collect();
        let summary_seqs: Vec<i64> = finals.iter().map(|s| signed(s.last_summary_seq)).collect();
        let activity = finals.iter().map(|s| ts(s.last_activity_at)).collect::<Result<Vec<_>>>()?;
        let statuses: Vec<&str> = finals.iter().map(|s| s.status.as_str()).collect();
        let updated = finals.iter().map(|s| ts(s.updated_at)).collect::<Result<Vec<_>>>()?;
        let states: Vec<Option<&(Option<SummaryState>, bool)>> = ids.iter().map(|id| summaries.get(id)).collect();
        let counts: Vec<Option<Json<&SummaryCounts>>> =
            states.iter().map(|s| s.and_then(|(state, _)| state.as_ref()).map(|s| Json(&s.counts))).collect();
        let names: Vec<Option<Json<&SummaryNames>>> = states
            .iter()
            .map(|s| s.and_then(|(state, renamed)| state.as_ref().filter(|_| *renamed)).map(|s| Json(&s.names)))
            .collect();
        let write_batch = sqlx::query(WRITE_BATCH)
            .bind(&rows.session_ids)
            .bind(&rows.seqs)
            .bind(&rows.kinds)
            .bind(&rows.roles)
            .bind(&rows.authors)
            .bind(&rows.texts)
            .bind(&rows.datas)
            .bind(&rows.media_types)
            .bind(&rows.metadatas)
            .bind(&rows.token_counts)
            .bind(&rows.idempotency_keys)
            .bind(&rows.trace_ids)
            .bind(&rows.created_ats)
            .bind(&rows.keyed_ids)
            .bind(&rows.keyed_keys)
            .bind(&rows.keyed_first)
            .bind(&rows.keyed_last)
            .bind(&rows.keyed_at)
            .bind(&ids)
            .bind(&last_seqs)
            .bind(&summary_seqs)
            .bind(&activity)
            .bind(&statuses)
            .bind(&updated)
            .bind(&rows.tenants)
            .bind(&rows.keyed_tenants)
            .bind(&counts)
            .bind(&names)
            .execute(&mut *tx);
        sql.run("INSERT", "entries", write_batch).await?;
    }
    sql.run("COMMIT", "", tx.commit()).await?;
    Ok(results)
}
