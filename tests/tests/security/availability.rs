//! One client cannot take the gateway from others: no backend ejected by client errors, floods and held streams capped.

use crate::prelude::*;
use crate::support::writer_token;

/// Finding 3: gRPC UNIMPLEMENTED is the client's error. Ten calls to a method that does not
/// exist, then a healthy call: the backend is still in service and nothing was ejected. The
/// same for an HTTP service answering 500 to one user's requests.
#[tokio::test]
async fn client_errors_never_eject_a_backend() {
    let gw = Gateway::start(Opts {
        users: Arc::new(|r: &Recorded| {
            if r.path.contains("boom") {
                Reply::json(500, &json!({"error": "handler error"}))
            } else {
                Reply::json(200, &json!({"service": "users"}))
            }
        }),
        ..Opts::default()
    })
    .await;
    let h2 = h2c();
    for i in 0..10 {
        let resp = h2
            .post(gw.url("/grpc.health.v1.Health/NoSuchMethod"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .bearer_auth(writer_token())
            .body(vec![0u8, 0, 0, 0, 0])
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&resp, "grpc-status").as_deref(),
            Some("12"),
            "call {i}: UNIMPLEMENTED expected"
        );
    }
    for i in 0..10 {
        let (status, _) = answer(
            client()
                .post(gw.url("/api/users/boom"))
                .bearer_auth(writer_token())
                .body("{}"),
        )
        .await;
        assert_eq!(status, 500, "request {i}");
    }
    // The ejection would be immediate (consecutive counters); the healthy calls still land.
    let auth = format!("Bearer {}", writer_token());
    let status = grpc_check(&grpc_channel(&gw).await, &[("authorization", &auth)]).await;
    assert_eq!(status.unwrap(), 1, "SERVING");
    assert_eq!(served(gw.get("/api/users/1")).await.0, "users");
    for cluster in ["grpc_backend", "users"] {
        let ejected = gw
            .envoy
            .stat(&format!(
                "cluster.{cluster}.outlier_detection.ejections_enforced_total"
            ))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(ejected, 0, "{cluster} was ejected by client errors");
    }
}

/// A client whose connections come from `source` (a loopback address of its own).
fn client_from(source: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from(source))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The review's third weakness: the global ceiling was spent before authentication, so an
/// unauthenticated flood denied every tenant. Unauthenticated requests now have their own
/// budget, per client address and global; a tenant's authenticated traffic next to the flood
/// is served throughout.
#[tokio::test]
async fn an_unauthenticated_flood_spends_only_its_own_budget() {
    let gw = Gateway::start(Opts::default()).await;
    let url = gw.url("/api/products/1");
    let tenant = client_from([127, 0, 0, 1]);
    let tok = token("user-1", "acme", "orders:read");
    // One address floods: past its bucket it gets 429 from the anonymous budget, not 401.
    let flooder = client_from([127, 0, 0, 2]);
    let (mut refused, mut limited) = (0, 0);
    for i in 0..150 {
        let (status, body) = answer(flooder.get(&url)).await;
        match status {
            401 => refused += 1,
            429 => {
                assert_eq!(body["error"], "rate_limited", "{body}");
                limited += 1;
            }
            other => panic!("anonymous request {i}: {other} {body}"),
        }
        if i % 10 == 0 {
            let resp = tenant.get(&url).bearer_auth(&tok).send().await.unwrap();
            assert_eq!(resp.status(), 200, "the tenant's request during the flood");
        }
    }
    assert!(
        limited > 50,
        "the flood was not limited: {refused} 401, {limited} 429"
    );
    // Another address still has its own budget...
    let (status, _) = answer(client_from([127, 0, 0, 3]).get(&url)).await;
    assert_eq!(
        status, 401,
        "a second address was limited by the first one's flood"
    );
    // ...until the global anonymous ceiling is spent by many addresses at once.
    let mut global = 0;
    for host in 10..40u8 {
        let c = client_from([127, 0, 0, host]);
        for _ in 0..40 {
            if c.get(&url).send().await.unwrap().status() == 429 {
                global += 1;
            }
        }
        let resp = tenant.get(&url).bearer_auth(&tok).send().await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "the tenant's request during the wide flood"
        );
    }
    assert!(global > 0, "the global anonymous ceiling never applied");
    let spent = gw
        .envoy
        .stat("http.gateway_ceiling.local_rate_limit.rate_limited")
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(
        spent, 0,
        "authenticated requests were rate limited by the flood"
    );
}

/// Finding 7, gRPC half: one consumer opens 300 gRPC calls whose request body never ends. The
/// gRPC route buffers requests, so none of them takes an upstream slot (the breakers allow
/// 256), another tenant's calls are answered meanwhile, and the connection manager's request
/// deadline ends the unfinished ones (408, as a gRPC error) instead of letting them live on.
#[tokio::test]
async fn unfinished_grpc_bodies_hold_no_upstream_slot_and_time_out() {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    type Chunk = Result<Frame<Bytes>, std::convert::Infallible>;
    let gw = Gateway::start(Opts::default()).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<StreamBody<tokio_stream_shim::Receiver<Chunk>>>();
    let holder = token("holder", "acme", "orders:read");
    let mut senders = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..300 {
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(1);
        // Half a gRPC frame: a length prefix promising 100 bytes, and only 10 of them.
        tx.send(Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 100]))))
            .await
            .unwrap();
        senders.push(tx);
        let req = hyper::Request::post(gw.url("/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {holder}"))
            .body(StreamBody::new(tokio_stream_shim::Receiver(rx)))
            .unwrap();
        calls.push(tokio::spawn(client.request(req)));
    }
    gw.envoy
        .wait_stat_at_least("http.gateway.downstream_rq_active", 300)
        .await
        .unwrap();
    // Another tenant's call is answered while the 300 are held.
    let channel = grpc_channel(&gw).await;
    let auth = format!("Bearer {}", token("user-2", "globex", "orders:read"));
    for i in 0..5 {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            grpc_check(&channel, &[("authorization", &auth)]),
        )
        .await
        .unwrap_or_else(|_| panic!("call {i} hung behind the held streams"));
        assert_eq!(reply.unwrap(), 1, "call {i}: SERVING");
    }
    let active = gw
        .envoy
        .stat("cluster.grpc_backend.upstream_rq_active")
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(
        active < 10,
        "{active} upstream requests held by unfinished bodies"
    );
    // The deadline ends a held call: a gRPC error, not an answer from the service.
    let first = calls.remove(0);
    let resp = tokio::time::timeout(Duration::from_secs(45), first)
        .await
        .expect("the unfinished call was never ended")
        .unwrap()
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let _ = resp.into_body().collect().await;
    let grpc_status = headers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string());
    assert!(
        status == 408 || grpc_status.as_deref().is_some_and(|s| s != "0"),
        "{status} {headers:?}"
    );
    drop(senders);
}

/// A `Stream` over a tokio mpsc receiver (the request bodies the test keeps open).
mod tokio_stream_shim {
    pub struct Receiver<T>(pub tokio::sync::mpsc::Receiver<T>);

    impl<T> futures_util::Stream for Receiver<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

/// Opens a WebSocket through the gateway as `token`; returns the connection (kept open) and
/// the response head.
async fn open_websocket(gw: &Gateway, token: &str) -> (TcpStream, String) {
    let head = format!(
        "GET /api/events/orders HTTP/1.1\r\nhost: gateway.localhost\r\nconnection: Upgrade\r\n\
         upgrade: websocket\r\nsec-websocket-version: 13\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nauthorization: Bearer {token}\r\n\r\n"
    );
    let mut conn = TcpStream::connect(("127.0.0.1", gw.envoy.port("gateway")))
        .await
        .unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), read_head(&mut conn))
        .await
        .expect("no answer to the upgrade")
        .unwrap_or_default();
    (conn, reply)
}

/// Finding 7, WebSocket half: one consumer opens 300 WebSockets and holds them. Only its
/// in-flight cap (8) is admitted, the rest get 429 naming the consumer cap, the events
/// cluster's breakers are nowhere near full, and another user of the same tenant and another
/// tenant still open theirs. Closing one held stream frees its slot.
#[tokio::test]
async fn one_consumer_cannot_hold_the_streams_of_every_tenant() {
    let gw = Gateway::start(Opts::default()).await;
    let holder = token("holder", "acme", "orders:read");
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..300 {
        let (conn, reply) = open_websocket(&gw, &holder).await;
        if reply.starts_with("http/1.1 101") {
            held.push(conn);
        } else {
            assert!(reply.starts_with("http/1.1 429"), "stream {i}: {reply}");
            refused += 1;
        }
    }
    assert_eq!(held.len(), 8, "admitted in flight for one consumer");
    assert_eq!(refused, 292);
    // The refusal names the cap (read one body).
    let (mut conn, reply) = open_websocket(&gw, &holder).await;
    assert!(reply.starts_with("http/1.1 429"), "{reply}");
    let mut body = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut body))
        .await
        .unwrap()
        .unwrap();
    let body: Value = serde_json::from_slice(&body[..n]).unwrap_or(Value::Null);
    assert_eq!(body["error"], "too_many_streams", "{body}");
    assert_eq!(body["limit"], "consumer", "{body}");
    let active = gw
        .envoy
        .stat("cluster.events.upstream_rq_active")
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(active <= 8, "{active} upstream streams held");
    // Others still get through: a colleague at acme, and globex.
    for other in [
        token("colleague", "acme", "orders:read"),
        token("user-2", "globex", "orders:read"),
    ] {
        let (_conn, reply) = open_websocket(&gw, &other).await;
        assert!(reply.starts_with("http/1.1 101"), "{reply}");
    }
    // Closing one held stream frees one slot for the holder.
    drop(held.pop());
    let reopened = gateway_tests::wait::until(
        "the closed stream's slot to be released",
        Duration::from_secs(10),
        || {
            let holder = holder.clone();
            let gw = &gw;
            async move {
                let (conn, reply) = open_websocket(gw, &holder).await;
                Ok(reply.starts_with("http/1.1 101").then_some(conn))
            }
        },
    )
    .await
    .unwrap();
    drop(reopened);
}
