//! The server streams: StreamEntries (replay, then live appends), WatchHandoffs (an agent's
//! inbox) and StreamHandoffContext (a handoff's context package). Each runs as a task that
//! feeds a bounded channel; every read from the store goes through [`Sink::relay`], the one
//! paging loop. Live messages from the hub are a fast path: a gap or a lag is filled from the
//! store, so every item is delivered once and in order.

use std::ops::ControlFlow;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::Baton;
use super::paging::{ItemStream, STREAM_BUFFER, Sink, Stop};
use crate::domain::commands::{StreamEntries, WatchHandoffs};
use crate::domain::validate::DEFAULT_MAX_TOKENS;
use crate::domain::{Content, Entry, EntryKind, Handoff, HandoffEvent, HandoffStatus, Metadata, Result, rules, tokens};
use crate::hub::{AgentMessage, SessionMessage};
use crate::store::{EntryQuery, Store};

impl Baton {
    /// Streams entries after `after_seq`: a replay from the store in keyset pages, then (with
    /// `follow`) live appends. Every entry is delivered once, in order, across the switch.
    pub async fn stream_entries(self: &Arc<Self>, tenant: &str, cmd: StreamEntries) -> Result<ItemStream<Entry>> {
        let StreamEntries { session_key, after_seq, follow, max_entries } = cmd;
        // Subscribe before reading, so nothing committed after the replay's last page is missed.
        let mut live = follow.then(|| self.hub.subscribe_session(tenant, &session_key));
        // The store, not the cache: a stream needs the session's state, not its tail, and
        // thousands of followers should not fill the L1 with tails nobody reads.
        let session = {
            let _permit = self.stream_reads.acquire().await;
            self.effective(self.store.get_session(tenant, &session_key).await?)
        };
        if session.first_seq > 1 && after_seq + 1 < session.first_seq {
            return Err(crate::domain::Error::OutOfRange(format!(
                "entries up to {} of session {session_key:?} were compacted away; stream from after_seq >= {}",
                session.first_seq - 1,
                session.first_seq - 1
            )));
        }
        // Seqs have no gaps: a later one does not exist yet, and a stream waiting for it would
        // skip every entry in between (an unsigned -1 is 2^64-1).
        if after_seq > session.last_seq {
            return Err(crate::domain::Error::OutOfRange(format!(
                "after_seq {after_seq} is beyond the last seq of session {session_key:?} ({}); stream from after_seq <= {}",
                session.last_seq, session.last_seq
            )));
        }
        // A follow stream's task idles for hours: it keeps what it needs (not the session
        // record), and its rare steps run boxed, so the task is no larger than its wait.
        let (last_seq, open) = (session.last_seq, session.status.is_open());
        drop(session);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = Arc::clone(self);
        let tenant = tenant.to_owned();
        let task = async move {
            let mut out = Sink::new(tx, after_seq + 1, max_entries, this.shutdown.clone());
            // Nothing stored after `after_seq` when the session was read: no query. What
            // commits later was not in that read, so it is published after the subscription
            // above and arrives live (a follower of a quiet session costs no read to open).
            if after_seq < last_seq && Box::pin(this.catch_up(&tenant, &session_key, &mut out)).await.is_err() {
                return;
            }
            let Some(live) = live.as_mut() else { return };
            if !open {
                return;
            }
            loop {
                let msg = tokio::select! {
                    biased;
                    _ = out.shutdown.cancelled() => return out.shutting_down().await,
                    _ = out.tx.closed() => return,
                    msg = live.recv() => msg,
                };
                if Box::pin(this.follow_step(&tenant, &session_key, msg, &mut out)).await.is_break() {
                    return;
                }
            }
        };
        // In the call's span: the stream's statements are children of the call that opened it.
        tokio::spawn(task.in_current_span());
        Ok(rx)
    }

    /// What a follow stream does with a message from the hub; `Break` ends the stream.
    async fn follow_step(
        &self,
        tenant: &str,
        session_key: &str,
        msg: Result<SessionMessage, RecvError>,
        out: &mut Sink<Entry>,
    ) -> ControlFlow<()> {
        let step = match msg {
            Ok(SessionMessage::Appended(batch)) => self.deliver(tenant, session_key, &batch, out).await,
            Ok(SessionMessage::Advanced(last)) if last < out.next => Ok(()),
            Ok(SessionMessage::Advanced(_) | SessionMessage::Resync) => self.catch_up(tenant, session_key, out).await,
            Ok(SessionMessage::Closed) => {
                let _ = self.catch_up(tenant, session_key, out).await;
                return ControlFlow::Break(());
            }
            Ok(SessionMessage::Deleted) => {
                let gone = crate::domain::Error::session_not_found(session_key);
                let _ = out.tx.send(Box::new(Err(gone))).await;
                return ControlFlow::Break(());
            }
            // Fell behind the hub: the store has everything.
            Err(RecvError::Lagged(_)) => self.catch_up(tenant, session_key, out).await,
            Err(RecvError::Closed) => return ControlFlow::Break(()),
        };
        if step.is_err() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }

    /// Sends a live batch, first reading from the store whatever lies between the last entry
    /// sent and the batch (appends can commit in one order and publish in another).
    async fn deliver(
        &self,
        tenant: &str,
        session_key: &str,
        batch: &[Entry],
        out: &mut Sink<Entry>,
    ) -> Result<(), Stop> {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else { return Ok(()) };
        if last.seq < out.next {
            return Ok(());
        }
        if first.seq > out.next {
            self.catch_up(tenant, session_key, out).await?;
        }
        for e in batch {
            if e.seq == out.next {
                out.send(e.clone()).await?;
            }
        }
        Ok(())
    }

    /// Sends every stored entry from `out.next` on (below `before_seq`, if given).
    async fn catch_up(&self, tenant: &str, session_key: &str, out: &mut Sink<Entry>) -> Result<(), Stop> {
        self.relay_entries(tenant, session_key, None, out).await
    }

    async fn relay_entries(
        &self,
        tenant: &str,
        session_key: &str,
        before_seq: Option<u64>,
        out: &mut Sink<Entry>,
    ) -> Result<(), Stop> {
        out.relay(entry_pages(&self.store, &self.stream_reads, tenant, session_key, before_seq)).await
    }

    /// An agent's inbox: pending handoffs addressed to it (or the events after `after_cursor`),
    /// then live events, each once and in cursor order.
    pub async fn watch_handoffs(
        self: &Arc<Self>,
        tenant: &str,
        cmd: WatchHandoffs,
    ) -> Result<ItemStream<HandoffEvent>> {
        let WatchHandoffs { agent, after_cursor } = cmd;
        let mut live = self.hub.subscribe_agent(tenant, &agent);
        let (pending, head) = {
            let _permit = self.stream_reads.acquire().await;
            self.store.pending_inbox(tenant, &agent).await?
        };
        let (pending, next) = match after_cursor {
            // Cursors have no gaps either: one past the head would skip the events in between.
            Some(c) if c > head => {
                return Err(crate::domain::Error::OutOfRange(format!(
                    "after_cursor {c} is beyond the newest event of agent {agent:?}'s inbox ({head}); \
                     resume from after_cursor <= {head}"
                )));
            }
            Some(c) => (Vec::new(), c + 1),
            None => (pending, head + 1),
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = Arc::clone(self);
        let tenant = tenant.to_owned();
        let task = async move {
            let mut out = Sink::new(tx, next, 0, this.shutdown.clone());
            for e in pending {
                // Past its deadline but not swept yet: its EXPIRED event follows in the log.
                if rules::effective_status(&e.handoff, this.now()) != HandoffStatus::Pending {
                    continue;
                }
                // Pending events are older than `next`; send them without moving the cursor.
                if out.tx.send(Box::new(Ok(e))).await.is_err() {
                    return;
                }
            }
            if this.inbox_catch_up(&tenant, &agent, &mut out).await.is_err() {
                return;
            }
            loop {
                let msg = tokio::select! {
                    biased;
                    _ = out.shutdown.cancelled() => return out.shutting_down().await,
                    _ = out.tx.closed() => return,
                    msg = live.recv() => msg,
                };
                let step = match msg {
                    Ok(AgentMessage::Event(event)) if event.cursor < out.next => Ok(()),
                    Ok(AgentMessage::Event(event)) if event.cursor == out.next => {
                        out.send(event.as_ref().clone()).await
                    }
                    Ok(AgentMessage::Event(_) | AgentMessage::Resync) | Err(RecvError::Lagged(_)) => {
                        this.inbox_catch_up(&tenant, &agent, &mut out).await
                    }
                    Err(RecvError::Closed) => return,
                };
                if step.is_err() {
                    return;
                }
            }
        };
        tokio::spawn(task.in_current_span());
        Ok(rx)
    }

    async fn inbox_catch_up(&self, tenant: &str, agent: &str, out: &mut Sink<HandoffEvent>) -> Result<(), Stop> {
        let (store, tenant, agent) = (Arc::clone(&self.store), tenant.to_owned(), agent.to_owned());
        let reads = Arc::clone(&self.stream_reads);
        out.relay(move |after_cursor, limit| {
            let (store, reads, tenant, agent) = (Arc::clone(&store), Arc::clone(&reads), tenant.clone(), agent.clone());
            async move {
                let _permit = reads.acquire().await;
                store.inbox_after(&tenant, &agent, after_cursor, limit).await
            }
        })
        .await
    }

    /// The handoff's context package: its summary as a SUMMARY entry (seq 0), then the newest
    /// entries up to `up_to_seq` that fit its token budget, in seq order.
    pub async fn stream_handoff_context(self: &Arc<Self>, tenant: &str, handoff_id: &str) -> Result<ItemStream<Entry>> {
        let handoff = self.get_handoff(tenant, handoff_id).await?;
        let budget = if handoff.max_tokens == 0 { DEFAULT_MAX_TOKENS } else { handoff.max_tokens };
        let summary = handoff_summary_entry(&handoff);
        let first_seq = self
            .store
            .tail_start(tenant, &handoff.session_key, handoff.up_to_seq, budget.saturating_sub(summary.token_count))
            .await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = Arc::clone(self);
        let tenant = tenant.to_owned();
        let task = async move {
            let mut out = Sink::new(tx, first_seq, 0, this.shutdown.clone());
            if out.tx.send(Box::new(Ok(summary))).await.is_err() {
                return;
            }
            let before = Some(handoff.up_to_seq + 1);
            let _ = this.relay_entries(&tenant, &handoff.session_key, before, &mut out).await;
        };
        tokio::spawn(task.in_current_span());
        Ok(rx)
    }
}

/// Pages of a session's entries (below `before_seq`, if given) for the paging loop.
pub(super) fn entry_pages(
    store: &Arc<dyn Store>,
    reads: &Arc<tokio::sync::Semaphore>,
    tenant: &str,
    session_key: &str,
    before_seq: Option<u64>,
) -> impl FnMut(u64, u32) -> BoxFuture<'static, Result<Vec<Entry>>> + use<> {
    let (store, reads, tenant, session_key) =
        (Arc::clone(store), Arc::clone(reads), tenant.to_owned(), session_key.to_owned());
    move |after_seq, limit| {
        let (store, reads) = (Arc::clone(&store), Arc::clone(&reads));
        let q = EntryQuery {
            tenant: tenant.clone(),
            session_key: session_key.clone(),
            after_seq,
            before_seq,
            kinds: Vec::new(),
            limit,
        };
        Box::pin(async move {
            // Waits here, before the store's read exists: a queued read holds next to nothing.
            let _permit = reads.acquire().await;
            store.list_entries(&q).await
        })
    }
}

/// A handoff's summary (and instructions) as the SUMMARY entry that opens its context package.
fn handoff_summary_entry(h: &Handoff) -> Entry {
    let mut metadata = Metadata::new();
    metadata.insert("handoff_id".into(), h.handoff_id.clone().into());
    metadata.insert("up_to_seq".into(), h.up_to_seq.into());
    let mut text = h.summary.clone();
    if !h.instructions.is_empty() {
        text = format!("Instructions from {}: {}\n\n{text}", h.from_agent, h.instructions);
    }
    let content = Content::Text(text);
    Entry {
        session_key: h.session_key.clone(),
        seq: 0,
        kind: EntryKind::Summary,
        role: "system".into(),
        author: h.from_agent.clone(),
        token_count: tokens::estimate(&content),
        content,
        media_type: "text/plain".into(),
        metadata,
        idempotency_key: String::new(),
        trace_id: String::new(),
        created_at: h.created_at,
        redaction: None,
    }
}
