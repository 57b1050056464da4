//! The stack every module starts (Redis, ratelimit-service, the numbered upstream, Envoy), its keys and request helpers.

use crate::prelude::*;

/// The demo keys of the shipped config (their SHA-256 digests are in the YAML).
pub const ACME_KEY: &str = "demo-key-acme";

pub const GLOBEX_KEY: &str = "demo-key-globex";

/// No limits at all (tests about caching).
pub const NO_LIMITS: &str = "\
domain: edge
descriptors:
  - key: unused
    rate_limit: { unit: hour, requests_per_unit: 1 }
";

/// What the upstream answers: a JSON echo of the tenant it saw, numbered so that a cached
/// answer is recognisable, with caching headers chosen by the path.
pub fn reply(r: &Recorded, n: usize) -> Reply {
    let body = json!({
        "n": n,
        "tenant": r.header_all("x-tenant-id"),
        "plan": r.header("x-tenant-plan"),
        "api_key_seen": r.header("x-api-key").is_some(),
        "cache_control_seen": r.header("cache-control"),
        // What an upstream personalises on: the user and the org it was told about.
        "user": r.header("x-user-id"),
        "org": r.header("x-org-id"),
    });
    let mut reply = Reply::json(200, &body);
    let path = r.path.as_str();
    if path.contains("no-store") {
        reply = reply.header("cache-control", "no-store");
    } else if path.contains("shared") {
        // An upstream that invites shared caches (a CDN) to store the answer.
        reply = reply.header("cache-control", "public, max-age=60, s-maxage=600");
    } else if !path.starts_with("/catalog") {
        // /catalog answers without Cache-Control: the route table decides.
        reply = reply.header("cache-control", "max-age=60");
    }
    if path.starts_with("/vary-ae") {
        reply = reply.header("vary", "Accept-Encoding");
    } else if path.starts_with("/vary-star") {
        reply = reply.header("vary", "*");
    } else if path.starts_with("/vary-tenant") {
        reply = reply.header("vary", "X-Tenant-Id");
    }
    reply
}

pub async fn numbered_upstream() -> Upstream {
    Upstream::numbered(reply).await.unwrap()
}

/// Redis, the rate limit service, the upstream and Envoy running `envoy/tenant-cache.yaml`.
pub struct Stack {
    pub envoy: Envoy,
    pub up: Upstream,
    _rls: RateLimitService,
    _redis: RedisServer,
    _cache_dir: tempfile::TempDir,
}

pub async fn stack(limits: &str) -> Stack {
    stack_with(limits, |text| text.to_string()).await
}

/// [`stack`] on the shipped configuration as `edit` changes it (a key table, ...).
pub async fn stack_with(limits: &str, edit: impl FnOnce(&str) -> String) -> Stack {
    let redis = RedisServer::start().unwrap();
    let rls = RateLimitService::start(&redis.url(), limits, &[])
        .await
        .unwrap();
    rls.wait_ready(Duration::from_secs(10)).await.unwrap();
    let up = numbered_upstream().await;
    let cache_dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(tools::repo_root().join("envoy/tenant-cache.yaml"));
    let envoy = EnvoyBuilder::new("tenant-cache", &edit(&shipped.unwrap()))
        .var("ADMIN_PORT", 0)
        .var("LISTEN_PORT", 0)
        .var("UPSTREAM_PORT", up.port())
        .var("RLS_PORT", rls.grpc_port())
        .var("CACHE_DIR", cache_dir.path().display())
        .wasm("TENANT_CACHE_KEY_WASM", "tenant_cache_key")
        .unwrap()
        .start()
        .await
        .unwrap();
    Stack {
        envoy,
        up,
        _rls: rls,
        _redis: redis,
        _cache_dir: cache_dir,
    }
}

pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The upstream's request number: the same number twice means the second came from the cache.
    pub fn n(&self) -> u64 {
        self.body["n"]
            .as_u64()
            .unwrap_or_else(|| panic!("no upstream echo (status {}): {}", self.status, self.body))
    }

    pub fn tenant(&self) -> Vec<String> {
        serde_json::from_value(self.body["tenant"].clone()).unwrap()
    }

    pub fn served_by_cache(&self) -> bool {
        self.headers.contains_key("age")
    }
}

pub async fn get(envoy: &Envoy, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = client().get(envoy.url("main", path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Got {
        status,
        headers,
        body,
    }
}

/// Entries the file-system cache has finished writing.
pub async fn cache_entries(envoy: &Envoy) -> u64 {
    envoy.cache_entries().await.unwrap()
}

pub async fn wait_cache_entries(envoy: &Envoy, n: u64) {
    wait::until(
        &format!("{n} cache entries written"),
        Duration::from_secs(10),
        || async { Ok((cache_entries(envoy).await >= n).then_some(())) },
    )
    .await
    .unwrap();
}

pub async fn cache_hits(envoy: &Envoy) -> u64 {
    envoy
        .stat_sum(r"^cache\.event\..*event_type\.hit$")
        .await
        .unwrap()
}
