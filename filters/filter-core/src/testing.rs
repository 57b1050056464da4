//! A recording fake of the host (feature `testing`): the filters' glue runs natively against
//! it in unit tests. It keeps header maps and bodies per context, answers shared-data reads with
//! versions as Envoy does, numbers dispatched calls, and records what the filter did (local
//! replies, resumes, resets, metrics, logs) for the test to assert.

use crate::headers::HeaderMap;
use crate::host::{Buffer, CallError, GrpcCall, Host, Level, Map, MetricKind};
use crate::shared::SharedStore;
use std::cell::{Ref, RefCell, RefMut};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

/// A local reply the filter sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub context: u32,
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a dispatched call was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallKind {
    Http {
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    },
    Grpc {
        service: String,
        method: String,
        message: Vec<u8>,
    },
}

/// A call the filter dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub token: u32,
    /// The context it was dispatched from (its answer goes back there).
    pub context: u32,
    pub cluster: String,
    pub timeout: Duration,
    pub kind: CallKind,
}

impl Call {
    /// An HTTP call's request header.
    pub fn header(&self, name: &str) -> Option<&str> {
        match &self.kind {
            CallKind::Http { headers, .. } => headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
            CallKind::Grpc { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    pub value: i64,
}

/// Everything the fake holds; tests may read and change it through [`FakeHost::state`].
#[derive(Debug, Default)]
pub struct State {
    pub now_ms: u64,
    /// The effective context: header maps, bodies and replies are this context's.
    pub context: u32,
    /// Contexts that have ended (`set_effective_context` fails for them).
    pub gone: HashSet<u32>,
    pub maps: HashMap<(u32, Map), HeaderMap>,
    pub buffers: HashMap<(u32, Buffer), Vec<u8>>,
    /// When set, body writes are refused.
    pub refuse_buffer_writes: bool,
    pub shared: HashMap<String, (Vec<u8>, u32)>,
    /// When set, every shared-data write loses its compare-and-swap.
    pub refuse_shared_writes: bool,
    pub metrics: Vec<Metric>,
    pub logs: Vec<(Level, String)>,
    pub calls: Vec<Call>,
    /// When set, dispatching a call fails.
    pub refuse_calls: bool,
    pub replies: Vec<Reply>,
    /// Contexts resumed, in order.
    pub resumed: Vec<u32>,
    /// Contexts whose response stream was reset.
    pub resets: Vec<u32>,
    /// Properties by their path joined with `.`.
    pub properties: HashMap<String, Vec<u8>>,
    /// Every property read, by its path joined with `.`, in order.
    pub property_reads: Vec<String>,
    /// Every property set: (context, path joined with `.`, value), in order.
    pub properties_set: Vec<(u32, String, Vec<u8>)>,
    /// The last tick period a plugin set (None: never set).
    pub tick_period: Option<Duration>,
    next_token: u32,
}

/// The recording host. Clones share one state (as every handle to Envoy shares one Envoy).
#[derive(Debug, Clone, Default)]
pub struct FakeHost(Rc<RefCell<State>>);

impl FakeHost {
    /// A host whose clock reads `now_ms`, in context 1.
    pub fn at(now_ms: u64) -> Self {
        let host = FakeHost::default();
        host.state_mut().now_ms = now_ms;
        host.state_mut().context = 1;
        host
    }

    pub fn state(&self) -> Ref<'_, State> {
        self.0.borrow()
    }

    pub fn state_mut(&self) -> RefMut<'_, State> {
        self.0.borrow_mut()
    }

    pub fn advance(&self, ms: u64) {
        let mut s = self.state_mut();
        s.now_ms = s.now_ms.saturating_add(ms);
    }

    /// Makes `context` the effective one (Envoy does this before every callback).
    pub fn enter(&self, context: u32) {
        self.state_mut().context = context;
    }

    /// The request `context` ended: resuming it fails from now on.
    pub fn end(&self, context: u32) {
        self.state_mut().gone.insert(context);
    }

    /// Sets a header map of the effective context.
    pub fn set_map(&self, map: Map, headers: impl Into<HeaderMap>) {
        let mut s = self.state_mut();
        let key = (s.context, map);
        s.maps.insert(key, headers.into());
    }

    /// A header map of `context` as the filter left it.
    pub fn map_of(&self, context: u32, map: Map) -> HeaderMap {
        self.state()
            .maps
            .get(&(context, map))
            .cloned()
            .unwrap_or_default()
    }

    /// Sets a buffer of the effective context.
    pub fn set_buffer_of(&self, buffer: Buffer, bytes: impl Into<Vec<u8>>) {
        let mut s = self.state_mut();
        let key = (s.context, buffer);
        s.buffers.insert(key, bytes.into());
    }

    /// A buffer of `context` as the filter left it.
    pub fn buffer_of(&self, context: u32, buffer: Buffer) -> Vec<u8> {
        self.state()
            .buffers
            .get(&(context, buffer))
            .cloned()
            .unwrap_or_default()
    }

    /// Makes the answer to an HTTP call readable from the effective context.
    pub fn answer_http(&self, status: u16, body: &[u8]) {
        self.set_map(
            Map::CallResponseHeaders,
            HeaderMap::from([(":status", status.to_string().as_str())]),
        );
        self.set_buffer_of(Buffer::CallResponseBody, body.to_vec());
    }

    /// The calls dispatched so far (and forgets them).
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state_mut().calls)
    }

    /// The local replies sent so far (and forgets them).
    pub fn take_replies(&self) -> Vec<Reply> {
        std::mem::take(&mut self.state_mut().replies)
    }

    /// The contexts resumed so far (and forgets them).
    pub fn take_resumed(&self) -> Vec<u32> {
        std::mem::take(&mut self.state_mut().resumed)
    }

    /// The value of the metric `name` as the host has it (0 when never defined).
    pub fn metric(&self, name: &str) -> i64 {
        self.state()
            .metrics
            .iter()
            .filter(|m| m.name == name)
            .map(|m| m.value)
            .sum()
    }

    /// The log lines at or above `level`.
    pub fn logs(&self, level: Level) -> Vec<String> {
        self.state()
            .logs
            .iter()
            .filter(|(l, _)| *l >= level)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// The route Envoy matched, as the route properties show it: its `edgegate` metadata (as
    /// Envoy serializes a struct of strings), its name, and whether it forwards to a cluster.
    /// Replaces the route of any earlier request.
    pub fn set_route(&self, metadata: &[(&str, &str)], name: Option<&str>, cluster: bool) {
        use crate::route::{serialize_pairs, CLUSTER_NAME_PATH, METADATA_PATH, ROUTE_NAME_PATH};
        for path in [&METADATA_PATH[..], &ROUTE_NAME_PATH, &CLUSTER_NAME_PATH] {
            self.state_mut().properties.remove(&path.join("."));
        }
        if !metadata.is_empty() {
            let pairs: Vec<(&str, &[u8])> =
                metadata.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
            self.set_property(&METADATA_PATH, &serialize_pairs(&pairs));
        }
        if let Some(n) = name {
            self.set_property(&ROUTE_NAME_PATH, n.as_bytes());
        }
        if cluster {
            self.set_property(&CLUSTER_NAME_PATH, b"upstream");
        }
    }

    pub fn set_property(&self, path: &[&str], value: &[u8]) {
        self.state_mut()
            .properties
            .insert(path.join("."), value.to_vec());
    }

    fn map_mut(&self, map: Map, edit: impl FnOnce(&mut HeaderMap)) {
        let mut s = self.state_mut();
        let key = (s.context, map);
        edit(s.maps.entry(key).or_default());
    }

    fn dispatch(&self, cluster: &str, timeout: Duration, kind: CallKind) -> Result<u32, CallError> {
        let mut s = self.state_mut();
        if s.refuse_calls {
            return Err(CallError(format!("no cluster {cluster:?}")));
        }
        s.next_token += 1;
        let call = Call {
            token: s.next_token,
            context: s.context,
            cluster: cluster.to_string(),
            timeout,
            kind,
        };
        s.calls.push(call);
        Ok(s.next_token)
    }
}

impl SharedStore for FakeHost {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.state().shared.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut s = self.state_mut();
        if s.refuse_shared_writes {
            return false;
        }
        let current = s.shared.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return false;
        }
        let next = current.unwrap_or(0) + 1;
        s.shared.insert(key.to_string(), (value.to_vec(), next));
        true
    }
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.state().now_ms
    }

    fn log(&self, level: Level, message: &str) {
        self.state_mut().logs.push((level, message.to_string()));
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let path = path.join(".");
        let value = self.state().properties.get(&path).cloned();
        self.state_mut().property_reads.push(path);
        value
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> bool {
        let mut s = self.state_mut();
        let context = s.context;
        s.properties_set
            .push((context, path.join("."), value.to_vec()));
        true
    }

    fn headers(&self, map: Map) -> HeaderMap {
        let s = self.state();
        s.maps.get(&(s.context, map)).cloned().unwrap_or_default()
    }

    fn header(&self, map: Map, name: &str) -> Option<Vec<u8>> {
        self.headers(map).get(name).map(|v| v.as_bytes().to_vec())
    }

    fn set_header(&self, map: Map, name: &str, value: Option<&str>) {
        self.map_mut(map, |h| match value {
            Some(v) => h.set(name, v),
            None => h.remove(name),
        });
    }

    fn add_header(&self, map: Map, name: &str, value: &str) {
        self.map_mut(map, |h| h.append(name, value));
    }

    fn remove_header(&self, map: Map, name: &str) {
        self.map_mut(map, |h| h.remove(name));
    }

    fn buffer(&self, buffer: Buffer, start: usize, size: usize) -> Option<Vec<u8>> {
        let s = self.state();
        let bytes = s.buffers.get(&(s.context, buffer))?;
        let end = start.saturating_add(size).min(bytes.len());
        bytes.get(start.min(end)..end).map(<[u8]>::to_vec)
    }

    fn set_buffer(&self, buffer: Buffer, start: usize, size: usize, data: &[u8]) -> bool {
        let mut s = self.state_mut();
        if s.refuse_buffer_writes {
            return false;
        }
        let key = (s.context, buffer);
        let bytes = s.buffers.entry(key).or_default();
        let start = start.min(bytes.len());
        let end = start.saturating_add(size).min(bytes.len());
        bytes.splice(start..end, data.iter().copied());
        true
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: Option<&[u8]>) {
        let mut s = self.state_mut();
        let reply = Reply {
            context: s.context,
            status,
            headers: owned(headers),
            body: body.unwrap_or_default().to_vec(),
        };
        s.replies.push(reply);
    }

    fn resume_request(&self) {
        let mut s = self.state_mut();
        let context = s.context;
        s.resumed.push(context);
    }

    fn reset_response(&self) {
        let mut s = self.state_mut();
        let context = s.context;
        s.resets.push(context);
    }

    fn set_effective_context(&self, context_id: u32) -> bool {
        let mut s = self.state_mut();
        if s.gone.contains(&context_id) {
            return false;
        }
        s.context = context_id;
        true
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, CallError> {
        let kind = CallKind::Http {
            headers: owned(headers),
            body: body.map(<[u8]>::to_vec),
        };
        self.dispatch(cluster, timeout, kind)
    }

    fn grpc_call(&self, call: GrpcCall<'_>) -> Result<u32, CallError> {
        let kind = CallKind::Grpc {
            service: call.service.to_string(),
            method: call.method.to_string(),
            message: call.message.to_vec(),
        };
        self.dispatch(call.cluster, call.timeout, kind)
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut s = self.state_mut();
        if let Some(i) = s.metrics.iter().position(|m| m.name == name) {
            return u32::try_from(i).ok();
        }
        s.metrics.push(Metric {
            name: name.to_string(),
            kind,
            value: 0,
        });
        u32::try_from(s.metrics.len() - 1).ok()
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        if let Some(m) = self.state_mut().metrics.get_mut(id as usize) {
            m.value = m.value.saturating_add(delta);
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        if let Some(m) = self.state_mut().metrics.get_mut(id as usize) {
            m.value = i64::try_from(value).unwrap_or(i64::MAX);
        }
    }

    fn set_tick_period(&self, period: Duration) {
        self.state_mut().tick_period = Some(period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::HeaderEdit;
    use crate::host::{BatchedCounter, Counter};
    use crate::shared::update_shared;

    #[test]
    fn edits_reach_the_effective_context_only() {
        let host = FakeHost::at(0);
        host.set_map(Map::RequestHeaders, [("x-a", "1"), ("x-b", "2")]);
        host.enter(2);
        host.set_map(Map::RequestHeaders, [("x-a", "other")]);
        host.enter(1);
        host.write_edits(
            Map::RequestHeaders,
            &[
                HeaderEdit::Remove("x-a".into()),
                HeaderEdit::Set("x-b".into(), "3".into()),
                HeaderEdit::Add("x-b".into(), "4".into()),
            ],
        );
        let one = host.map_of(1, Map::RequestHeaders);
        assert_eq!(one.get("x-a"), None);
        assert_eq!(one.get_all("x-b").collect::<Vec<_>>(), ["3", "4"]);
        assert_eq!(
            host.map_of(2, Map::RequestHeaders).get("x-a"),
            Some("other")
        );
    }

    #[test]
    fn shared_data_versions_refuse_a_stale_write() {
        let host = FakeHost::at(0);
        assert!(host.set("k", b"1", None));
        let (_, v1) = host.get("k");
        assert!(host.set("k", b"2", v1));
        assert!(!host.set("k", b"3", v1), "stale version must lose");
        let n = update_shared(&host, "k", 3, |v| {
            let next = v.map_or(0, |b| b[0] - b'0') + 1;
            (Some(vec![b'0' + next]), next)
        });
        assert_eq!(n, Some(3));
    }

    #[test]
    fn batched_counters_reach_the_host_on_flush_only() {
        let host = FakeHost::at(0);
        let batched = BatchedCounter::define(&host, "a");
        let direct = Counter::define(&host, "b");
        batched.inc();
        batched.add(2);
        direct.inc();
        assert_eq!((host.metric("a"), host.metric("b")), (0, 1));
        batched.flush();
        assert_eq!(host.metric("a"), 3);
    }

    #[test]
    fn json_errors_carry_the_request_id() {
        let host = FakeHost::at(0);
        host.send_json_error(403, "forbidden", "no", Some("r-1"), &[("x-h", "v")]);
        let reply = &host.take_replies()[0];
        assert_eq!(reply.status, 403);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.header("x-h"), Some("v"));
        assert_eq!(reply.json()["request_id"], "r-1");
        assert_eq!(reply.json()["error"], "forbidden");
    }
}
