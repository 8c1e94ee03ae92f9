//! Live fan-out inside one `batond`: committed appends per session and handoff events per
//! agent, delivered to the streams that follow them.
//!
//! The hub is a fast path, not a source of truth. Messages carry what was committed; a
//! follower that sees a gap (or lags behind the channel) reads the missing part from the
//! store, so a slow consumer never loses anything and publishers never wait for followers.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::domain::{Entry, HandoffEvent};

/// How many messages a topic buffers for its slowest follower before it lags.
const TOPIC_CAPACITY: usize = 256;

/// What a session's followers hear.
#[derive(Debug, Clone)]
pub enum SessionMessage {
    /// Entries committed by one append, in seq order.
    Appended(Arc<[Entry]>),
    /// Entries up to this seq were committed elsewhere (too large to carry): read them.
    Advanced(u64),
    /// Something may have been missed (bus down or reconnected): read from the store.
    Resync,
    /// The session was closed or expired: followers finish.
    Closed,
    /// The session was deleted: followers end with NOT_FOUND.
    Deleted,
}

/// What an agent's inbox watchers hear.
#[derive(Debug, Clone)]
pub enum AgentMessage {
    Event(Arc<HandoffEvent>),
    /// Something may have been missed: read the inbox from the store.
    Resync,
}

/// A session topic key: (tenant, session_key).
pub type SessionTopic = (String, String);
/// An agent inbox topic key: (tenant, agent).
pub type AgentTopic = (String, String);

/// Fan-out of committed changes to local followers.
#[derive(Default)]
pub struct Hub {
    sessions: Arc<Topics<SessionTopic, SessionMessage>>,
    agents: Arc<Topics<AgentTopic, AgentMessage>>,
}

impl Hub {
    pub fn subscribe_session(&self, tenant: &str, session_key: &str) -> Subscription<SessionTopic, SessionMessage> {
        Topics::subscribe(&self.sessions, (tenant.to_owned(), session_key.to_owned()))
    }

    pub fn publish_session(&self, tenant: &str, session_key: &str, msg: SessionMessage) {
        self.sessions.publish(&(tenant.to_owned(), session_key.to_owned()), msg);
    }

    pub fn subscribe_agent(&self, tenant: &str, agent: &str) -> Subscription<AgentTopic, AgentMessage> {
        Topics::subscribe(&self.agents, (tenant.to_owned(), agent.to_owned()))
    }

    pub fn publish_agent(&self, tenant: &str, event: HandoffEvent) {
        let key = (tenant.to_owned(), event.agent.clone());
        self.agents.publish(&key, AgentMessage::Event(Arc::new(event)));
    }

    /// Tells every follower to check the store for what it may have missed.
    pub fn resync_all(&self) {
        self.sessions.broadcast(SessionMessage::Resync);
        self.agents.broadcast(AgentMessage::Resync);
    }

    /// Number of topics with followers: (sessions, agents).
    pub fn topic_counts(&self) -> (usize, usize) {
        (self.sessions.len(), self.agents.len())
    }
}

/// Broadcast channels by key: created by the first follower, removed with the last.
struct Topics<K, V> {
    map: Mutex<HashMap<K, broadcast::Sender<V>>>,
}

impl<K, V> Default for Topics<K, V> {
    fn default() -> Self {
        Self { map: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Topics<K, V> {
    fn subscribe(this: &Arc<Self>, key: K) -> Subscription<K, V> {
        let rx = this.lock().entry(key.clone()).or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0).subscribe();
        Subscription { rx, topics: Arc::clone(this), key }
    }

    fn publish(&self, key: &K, value: V) {
        if let Some(tx) = self.lock().get(key) {
            // No receivers is not an error here: the last one is about to unsubscribe.
            let _ = tx.send(value);
        }
    }

    fn broadcast(&self, value: V) {
        for tx in self.lock().values() {
            let _ = tx.send(value.clone());
        }
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, broadcast::Sender<V>>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A follower's receiver; dropping the last one of a topic removes the topic.
pub struct Subscription<K: Eq + Hash + Clone, V: Clone> {
    rx: broadcast::Receiver<V>,
    topics: Arc<Topics<K, V>>,
    key: K,
}

impl<K: Eq + Hash + Clone, V: Clone> Subscription<K, V> {
    pub async fn recv(&mut self) -> Result<V, broadcast::error::RecvError> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Result<V, broadcast::error::TryRecvError> {
        self.rx.try_recv()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Drop for Subscription<K, V> {
    fn drop(&mut self) {
        let mut map = self.topics.lock();
        // This receiver is still counted: it is the last one when the count is 1.
        if map.get(&self.key).is_some_and(|tx| tx.receiver_count() <= 1) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_reaches_subscribers_and_empty_topics_are_dropped() {
        let hub = Hub::default();
        let mut rx = hub.subscribe_session("t", "s");
        hub.publish_session("t", "s", SessionMessage::Closed);
        assert!(matches!(rx.try_recv(), Ok(SessionMessage::Closed)));
        let rx2 = hub.subscribe_session("t", "s");
        drop(rx);
        assert_eq!(hub.topic_counts(), (1, 0));
        drop(rx2);
        assert_eq!(hub.topic_counts(), (0, 0));
    }
}
