//! A demo upstream for `make demo` and docker-compose: one process per role, on 127.0.0.1.
//!
//! ```text
//! demo-service --role orders-v1|orders-v2|users|products|events|grpc --port N
//! ```
//!
//! The first stdout line is `listening 127.0.0.1:NNNN` (port 0 asks the OS for one). HTTP roles
//! answer `/healthz` and reply JSON naming themselves and the identity headers the gateway set
//! (so curl shows the gateway's work); `users` leaks `password_hash` and `internal` for the
//! gateway to strip; `products` replies are cacheable and count themselves, so a cache hit is
//! visible; `events` is a WebSocket echo; `grpc` serves `grpc.health.v1.Health` (SERVING) and
//! the demo inventory service (`edgegate.inventory.v1.Inventory`, gateway_tests::inventory).

use anyhow::{Context, Result};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use clap::{Parser, ValueEnum};
use serde_json::{json, Map, Value};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    OrdersV1,
    OrdersV2,
    Users,
    Products,
    Events,
    Grpc,
}

/// A demo upstream service of the edgegate gateway demo.
#[derive(Debug, Parser)]
struct Args {
    #[arg(long, value_enum)]
    role: Role,
    /// TCP port on 127.0.0.1; 0 lets the OS choose (printed on the first stdout line).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

/// Request headers the gateway adds or passes on, echoed back under `upstream_saw`.
const SHOWN_HEADERS: [&str; 10] = [
    "x-user-id",
    "x-tenant-id",
    "x-org-id",
    "x-request-id",
    "x-gateway-route",
    "x-canary",
    "x-forwarded-for",
    "x-envoy-original-path",
    "x-forwarded-client-cert",
    "traceparent",
];

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout();
    writeln!(out, "listening {addr}")?;
    out.flush()?;
    if args.role == Role::Grpc {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("edgegate.demo", tonic_health::ServingStatus::Serving)
            .await;
        let inventory = gateway_tests::inventory::InventoryService::default();
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(inventory.server())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .context("serving gRPC")?;
        return Ok(());
    }
    let role = args.role;
    let served = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(move |req: Request| {
            let served = served.clone();
            async move { handle(role, req, &served).await }
        });
    axum::serve(listener, app).await.context("serving HTTP")?;
    Ok(())
}

async fn handle(role: Role, req: Request, served: &AtomicU64) -> Response {
    let count = served.fetch_add(1, Ordering::Relaxed) + 1;
    let (mut parts, _body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let saw = upstream_saw(&parts.headers);
    let id = parts
        .uri
        .path()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let base = json!({ "method": parts.method.as_str(), "path": path, "upstream_saw": saw });
    let body = match role {
        Role::OrdersV1 | Role::OrdersV2 => {
            let version = if role == Role::OrdersV1 { "v1" } else { "v2" };
            json!({ "service": "orders", "version": version,
                    "order": { "id": id, "status": "shipped", "items": 2 } })
        }
        Role::Users => json!({
            "service": "users", "id": id, "name": "Ada Lovelace", "email": "ada@example.com",
            // Leaked on purpose: the gateway's transform filter strips both.
            "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            "internal": { "shard": 3, "db_host": "users-db-7" }
        }),
        Role::Products => json!({
            "service": "products", "id": id, "name": "Rust mug", "price_cents": 1299,
            // Same values on a cache hit: the response was stored, not served again.
            "served_count": count, "served_at_unix_ms": unix_ms(),
            "for_tenant": saw.get("x-tenant-id").cloned().unwrap_or(Value::Null)
        }),
        Role::Events => {
            if let Ok(upgrade) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
                return upgrade.on_upgrade(echo);
            }
            json!({ "service": "events", "hint": "open a WebSocket: every text message is echoed" })
        }
        Role::Grpc => json!({ "service": "grpc" }),
    };
    let mut response = Json(merge(body, base)).into_response();
    let headers = response.headers_mut();
    // What an application framework leaks; the gateway removes these.
    headers.insert("x-powered-by", HeaderValue::from_static("demo-service"));
    if role == Role::Products {
        headers.insert(
            "cache-control",
            HeaderValue::from_static("public, max-age=60"),
        );
    }
    response
}

/// Echoes every text and binary message until the client closes.
async fn echo(mut socket: WebSocket) {
    for _ in 0..100_000 {
        let Some(Ok(msg)) = socket.recv().await else {
            return;
        };
        let reply = match msg {
            Message::Text(t) => Message::Text(t),
            Message::Binary(b) => Message::Binary(b),
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}

fn upstream_saw(headers: &HeaderMap) -> Map<String, Value> {
    let mut saw = Map::new();
    for name in SHOWN_HEADERS {
        if let Some(v) = headers.get(name) {
            saw.insert(name.into(), json!(String::from_utf8_lossy(v.as_bytes())));
        }
    }
    saw.insert(
        "authorization".into(),
        json!(if headers.contains_key("authorization") {
            "present"
        } else {
            "absent"
        }),
    );
    saw
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
