//! A JWKS endpoint the test controls: what it serves (keys, an error status, garbage), how slowly,
//! and a record of every fetch, so tests can count fetches and order events around them.

use crate::upstream::{Reply, Upstream};
use anyhow::Result;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the endpoint answers.
#[derive(Debug, Clone)]
pub enum JwksReply {
    /// 200 with this JWKS document.
    Keys(Value),
    /// This status with a small text body (the IdP is down).
    Status(u16),
    /// 200 `application/json` with this body, valid JSON or not (a broken IdP).
    Body(String),
}

#[derive(Debug)]
struct State {
    reply: JwksReply,
    delay: Duration,
    fetches: Vec<Instant>,
}

/// An in-process JWKS server on `127.0.0.1:0`; stops when dropped.
pub struct JwksServer {
    upstream: Upstream,
    state: Arc<Mutex<State>>,
}

impl JwksServer {
    pub async fn start(jwks: Value) -> Result<Self> {
        let state = Arc::new(Mutex::new(State {
            reply: JwksReply::Keys(jwks),
            delay: Duration::ZERO,
            fetches: Vec::new(),
        }));
        let shared = state.clone();
        let upstream = Upstream::start(move |_| {
            let Ok(mut s) = shared.lock() else {
                return Reply::text(500, "state poisoned");
            };
            s.fetches.push(Instant::now());
            let reply = match &s.reply {
                JwksReply::Keys(v) => Reply::json(200, v),
                JwksReply::Status(code) => Reply::text(*code, "identity provider unavailable"),
                JwksReply::Body(b) => Reply::new(200)
                    .header("content-type", "application/json")
                    .body(b.clone()),
            };
            reply.delay(s.delay)
        })
        .await?;
        Ok(Self { upstream, state })
    }

    pub fn port(&self) -> u16 {
        self.upstream.port()
    }

    /// Serve `reply` from the next fetch on.
    pub fn set(&self, reply: JwksReply) {
        if let Ok(mut s) = self.state.lock() {
            s.reply = reply;
        }
    }

    /// Hold each answer this long before sending it.
    pub fn set_delay(&self, delay: Duration) {
        if let Ok(mut s) = self.state.lock() {
            s.delay = delay;
        }
    }

    /// How many fetches arrived so far.
    pub fn fetches(&self) -> usize {
        self.state.lock().map(|s| s.fetches.len()).unwrap_or(0)
    }

    /// When each fetch arrived.
    pub fn fetch_times(&self) -> Vec<Instant> {
        self.state
            .lock()
            .map(|s| s.fetches.clone())
            .unwrap_or_default()
    }
}
