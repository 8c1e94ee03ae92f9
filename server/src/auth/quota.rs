//! Quotas: a token bucket of requests per principal (`governor`'s keyed GCRA limiter), and caps
//! on the streams one principal, and one connection, hold open at a time. Both refuse with
//! `RESOURCE_EXHAUSTED` and a `RetryInfo` saying when to try again; both recover on their own
//! (the bucket refills, a closed stream frees its place).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus::IntCounterVec;

use crate::domain::{Error, Result};

/// How long a refused stream is told to wait before opening again.
const STREAM_RETRY: Duration = Duration::from_secs(1);

/// The quota settings.
#[derive(Debug, Clone, Copy)]
pub struct QuotaConfig {
    /// Sustained requests per second per principal; 0 turns the rate limit off.
    pub rate_per_sec: u32,
    /// Requests a principal may make at once above the sustained rate.
    pub burst: u32,
    /// Most streams one principal holds open; 0: no cap.
    pub streams_per_principal: usize,
    /// Most streams one connection holds open; 0: no cap.
    pub streams_per_connection: usize,
}

/// The quotas of one server; cheap to clone.
#[derive(Clone)]
pub struct Quotas {
    config: QuotaConfig,
    rate: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    open: Arc<Mutex<HashMap<String, usize>>>,
    refused: IntCounterVec,
}

impl Quotas {
    pub fn new(config: QuotaConfig) -> Quotas {
        let rate = NonZeroU32::new(config.rate_per_sec).map(|rate| {
            let burst = NonZeroU32::new(config.burst).unwrap_or(rate);
            Arc::new(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
        });
        let refused = baton_telemetry::metrics::counter(
            "rate_limited_total",
            "Calls refused by a quota, by limit (requests: the rate limit; streams: a cap on open streams).",
            &["limit"],
        );
        Quotas { config, rate, open: Arc::default(), refused }
    }

    /// `rate_limited_total`, for the server's registry.
    pub fn collector(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(self.refused.clone())
    }

    /// Takes one request from `who`'s bucket.
    pub fn request(&self, who: &str) -> Result<()> {
        let Some(rate) = &self.rate else { return Ok(()) };
        match rate.check_key(&who.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                self.refused.with_label_values(&["requests"]).inc();
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(Error::ResourceExhausted {
                    message: format!(
                        "rate limit of {} requests per second exceeded; retry in {} ms",
                        self.config.rate_per_sec,
                        wait.as_millis().max(1)
                    ),
                    retry_after: wait.max(Duration::from_millis(1)),
                })
            }
        }
    }

    /// A place for one more open stream of `who` on the connection from `peer`; the place is
    /// freed when the permit is dropped (the stream ends).
    pub fn open_stream(&self, who: &str, peer: Option<SocketAddr>) -> Result<StreamPermit> {
        let mut slots = vec![(format!("p:{who}"), self.config.streams_per_principal, "this principal")];
        if let Some(peer) = peer {
            slots.push((format!("c:{peer}"), self.config.streams_per_connection, "this connection"));
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for (slot, cap, whose) in &slots {
            if *cap > 0 && open.get(slot).copied().unwrap_or(0) >= *cap {
                self.refused.with_label_values(&["streams"]).inc();
                return Err(Error::ResourceExhausted {
                    message: format!("{whose} already has {cap} open streams, the most allowed; close one first"),
                    retry_after: STREAM_RETRY,
                });
            }
        }
        let slots: Vec<String> = slots.into_iter().map(|(slot, _, _)| slot).collect();
        for slot in &slots {
            *open.entry(slot.clone()).or_default() += 1;
        }
        Ok(StreamPermit { open: Arc::clone(&self.open), slots })
    }

    /// Forgets the buckets of principals that have been idle long enough to be full again.
    pub fn forget_idle(&self) {
        if let Some(rate) = &self.rate {
            rate.retain_recent();
            rate.shrink_to_fit();
        }
    }
}

/// One open stream's place in its caps.
#[derive(Debug)]
pub struct StreamPermit {
    open: Arc<Mutex<HashMap<String, usize>>>,
    slots: Vec<String>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for slot in &self.slots {
            if let Some(n) = open.get_mut(slot) {
                *n -= 1;
                if *n == 0 {
                    open.remove(slot);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(rate: u32, burst: u32, per_principal: usize, per_connection: usize) -> Quotas {
        Quotas::new(QuotaConfig {
            rate_per_sec: rate,
            burst,
            streams_per_principal: per_principal,
            streams_per_connection: per_connection,
        })
    }

    #[test]
    fn the_bucket_holds_its_burst_per_principal() {
        let q = quotas(1, 3, 0, 0);
        for _ in 0..3 {
            q.request("a").unwrap();
        }
        let e = q.request("a").unwrap_err();
        assert!(matches!(e, Error::ResourceExhausted { retry_after, .. } if retry_after > Duration::ZERO));
        q.request("b").expect("another principal has its own bucket");
        let off = quotas(0, 0, 0, 0);
        for _ in 0..10_000 {
            off.request("a").unwrap();
        }
    }

    #[test]
    fn stream_caps_count_open_streams_and_free_on_drop() {
        let q = quotas(0, 0, 2, 3);
        let peer: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let a = q.open_stream("p", Some(peer)).unwrap();
        let _b = q.open_stream("p", Some(peer)).unwrap();
        assert!(matches!(q.open_stream("p", Some(other)), Err(Error::ResourceExhausted { .. })));
        let _c = q.open_stream("x", Some(peer)).unwrap();
        assert!(matches!(q.open_stream("y", Some(peer)), Err(Error::ResourceExhausted { .. })), "connection cap");
        drop(a);
        q.open_stream("p", Some(other)).expect("a closed stream frees its place");
        assert_eq!(q.open.lock().unwrap().get("c:127.0.0.1:1000"), Some(&2));
    }
}
