//! The bus: one pattern subscription per replica that forwards other replicas' appends,
//! handoff events and closes to the local hub; while it is down followers poll the store, and
//! when it is back they backfill and what failed updates left stale is invalidated.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::prelude::*;
use prost::Message as _;
use tokio::task::JoinHandle;

use super::RedisCache;
use super::keys::BusMessage;
use crate::domain::{Entry, Result as DomainResult};
use crate::hub::{Hub, SessionMessage};
use crate::wire;
use baton_proto::v1 as pb;

/// How often followers poll the store while the bus is down.
const DEGRADED_POLL: Duration = Duration::from_millis(250);

impl RedisCache {
    /// Subscribes to the bus and forwards other replicas' changes to `hub`; while the bus is
    /// down, followers poll the store, and when it is back they backfill. Also invalidates
    /// sessions marked dirty once Redis answers.
    /// `serve` owns the task and joins it on shutdown, after which both clients have quit.
    pub fn spawn_bus(self: &Arc<Self>, hub: Arc<Hub>, stop: tokio_util::sync::CancellationToken) -> JoinHandle<()> {
        let this = Arc::clone(self);
        let mut messages = self.subscriber.message_rx();
        let mut reconnects = self.subscriber.reconnect_rx();
        let mut errors = self.subscriber.error_rx();
        // Resubscribes after reconnections; the task lives as long as the client.
        drop(self.subscriber.manage_subscriptions());
        tokio::spawn(async move {
            let mut poll = tokio::time::interval(DEGRADED_POLL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut subscribed = false;
            loop {
                if !subscribed && this.subscriber.is_connected() {
                    match this.subscriber.psubscribe(this.keys.bus_pattern()).await {
                        Ok(()) => {
                            subscribed = true;
                            this.bus_up.store(true, Ordering::SeqCst);
                            hub.resync_all();
                        }
                        Err(e) => this.failed("subscribe", &e),
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => {
                        let _ = this.subscriber.quit().await;
                        let _ = this.pool.quit().await;
                        return;
                    }
                    msg = messages.recv() => match msg {
                        Ok(m) => this.on_bus_message(&hub, m),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(lost = n, "bus messages dropped in process; followers backfill");
                            hub.resync_all();
                        }
                        Err(_) => return,
                    },
                    r = reconnects.recv() => if r.is_ok() {
                        tracing::info!("redis reconnected; followers backfill");
                        this.bus_up.store(true, Ordering::SeqCst);
                        this.clean_dirty().await;
                        hub.resync_all();
                    },
                    e = errors.recv() => if let Ok((e, _)) = e && this.bus_up.swap(false, Ordering::SeqCst) {
                        this.failed("bus", &e);
                    },
                    _ = poll.tick() => {
                        if !this.bus_up.load(Ordering::SeqCst) || !this.subscriber.is_connected() {
                            this.bus_up.store(false, Ordering::SeqCst);
                            subscribed = subscribed && this.subscriber.is_connected();
                            hub.resync_all();
                        }
                        this.clean_dirty().await;
                    }
                }
            }
        })
    }

    /// Invalidates what failed updates may have left stale, once Redis answers: sessions
    /// through INVALIDATE with the version they reached (floors keep growing, so no repair
    /// from an older snapshot can slip in), handoffs by deleting them. A failed update also
    /// published nothing, and the other replicas' subscriptions may never have dropped (on a
    /// cluster, one node failing leaves the others serving), so each clean announces the
    /// change late: a session's followers elsewhere read up to the seq it reached, and a
    /// handoff's inbox watchers re-read their inboxes.
    async fn clean_dirty(&self) {
        let dirty: Vec<((String, String), (u64, i64))> = {
            let d = self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if d.is_empty() {
                return;
            }
            d.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
        if self.check_circuit().is_err() {
            return;
        }
        // Recovery, not a hot path: one call per dirty key, all in flight at once.
        let calls = dirty.iter().map(|((tenant, key), (last_seq, upd))| async move {
            match key.strip_prefix("handoff/") {
                Some(id) => {
                    let client = self.pool.next_connected();
                    self.traced("DEL", "", client.del::<i64, _>(self.keys.handoff(tenant, id))).await?;
                    let msg = BusMessage { tenant: tenant.clone(), resync: true, ..Default::default() };
                    let publish =
                        client.publish::<i64, _, _>(self.keys.agent_channel(tenant, ""), self.bus_payload(msg));
                    self.traced("PUBLISH", "", publish).await.map(drop)
                }
                None => {
                    let msg = BusMessage {
                        tenant: tenant.clone(),
                        session_key: key.clone(),
                        last_seq: *last_seq,
                        ..Default::default()
                    };
                    let args: Vec<Value> = vec![
                        last_seq.to_string().into(),
                        upd.to_string().into(),
                        self.ttl_secs().into(),
                        self.keys.session_channel(tenant, key).into(),
                        Value::Bytes(self.bus_payload(msg)),
                    ];
                    let keys = vec![self.keys.meta(tenant, key), self.keys.tail(tenant, key)];
                    self.eval::<i64>(&self.scripts.invalidate, keys, args).await.map(drop)
                }
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut d = self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((k, v), result) in dirty.iter().zip(&results) {
            if result.is_ok() && d.get(k) == Some(v) {
                d.remove(k);
            }
        }
        drop(d);
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            self.failed("clean", &e);
        }
    }

    fn on_bus_message(&self, hub: &Hub, m: fred::types::Message) {
        let Some(bytes) = m.value.as_bytes() else { return };
        let Some((sender, body)) = bytes.split_first_chunk::<8>() else { return };
        if u64::from_le_bytes(*sender) == self.replica {
            return;
        }
        let Ok(msg) = BusMessage::decode(body) else {
            tracing::warn!(channel = %m.channel, "undecodable bus message");
            return;
        };
        if msg.replica == self.replica {
            return;
        }
        let BusMessage {
            replica: _,
            tenant,
            session_key,
            last_seq,
            entries,
            agent,
            event,
            closed,
            purged,
            deleted,
            resync,
        } = msg;
        if resync {
            hub.resync_all();
            return;
        }
        if let Some(event) = event {
            match wire::event_from_pb(event, &tenant, &agent) {
                Ok(e) => hub.publish_agent(&tenant, e),
                Err(_) => hub.resync_all(),
            }
            return;
        }
        self.l1.invalidate(&(tenant.clone(), session_key.clone()));
        if deleted {
            hub.publish_session(&tenant, &session_key, SessionMessage::Deleted);
            return;
        }
        if purged {
            return;
        }
        if closed {
            hub.publish_session(&tenant, &session_key, SessionMessage::Closed);
            return;
        }
        let decoded: DomainResult<Vec<Entry>> = entries
            .into_iter()
            .map(|wire| pb::Entry::decode(wire).map_err(|_| wire::corrupt("bus entry")).and_then(Entry::try_from))
            .collect();
        match decoded {
            Ok(entries) if !entries.is_empty() => {
                hub.publish_session(&tenant, &session_key, SessionMessage::Appended(entries.into()))
            }
            _ => hub.publish_session(&tenant, &session_key, SessionMessage::Advanced(last_seq)),
        }
    }
}
