//! Protocols: TLS with HTTP/2 and HTTP/1.1, h2c, WebSocket upgrades and gRPC through the filters.

use crate::prelude::*;

#[tokio::test]
async fn tls_termination_speaks_http2_and_http11_and_h2c_in_the_clear() {
    let gw = Gateway::start(Opts::default()).await;
    let port = gw.envoy.port("gateway_tls");
    let url = format!("https://gateway.localhost:{port}/api/users/1");
    let tls = |http1: bool, trust: bool| gw.tls_client(http1, trust);
    let tok = token("user-1", "acme", "orders:read");

    for (http1, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let resp = tls(http1, true)
            .get(&url)
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version, "ALPN");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["service"], "users", "{version:?}");
        let got = last(&gw.users);
        assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(got.header("x-user-id").as_deref(), Some("user-1"));
    }
    // The same filters behind TLS: no token, 401.
    let resp = tls(false, true).get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // The certificate is the one made for this test: a client that does not trust it fails.
    assert!(tls(false, false).get(&url).send().await.is_err());

    // Cleartext HTTP/2 (prior knowledge) on the plain listener.
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2c
        .get(gw.url("/api/products/1"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        last(&gw.products).header("x-forwarded-proto").as_deref(),
        Some("http")
    );
}

/// A WebSocket upgrade on /api/events passes the same filters (token checked, identity headers
/// set, the token removed) and then carries bytes both ways; without a token it is a 401.
#[tokio::test]
async fn websocket_upgrade_passes_through_after_the_filters() {
    let gw = Gateway::start(Opts::default()).await;
    let port = gw.envoy.port("gateway");
    let upgrade = |auth: Option<&str>| {
        let auth = auth
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        format!(
            "GET /api/events/orders HTTP/1.1\r\nhost: gateway.localhost\r\nconnection: Upgrade\r\n\
             upgrade: websocket\r\nsec-websocket-version: 13\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nx-user-id: spoofed\r\n{auth}\r\n"
        )
    };

    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(upgrade(None).as_bytes()).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut conn))
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("http/1.1 401"), "{head}");

    let tok = token("user-1", "acme", "orders:read");
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(upgrade(Some(&tok)).as_bytes())
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut conn))
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    let upstream = gw.events.last_head();
    assert!(upstream.starts_with("get /events/orders "), "{upstream}");
    assert!(upstream.contains("upgrade: websocket"), "{upstream}");
    assert!(upstream.contains("x-user-id: user-1\r\n"), "{upstream}");
    assert!(!upstream.contains("spoofed"), "{upstream}");
    assert!(upstream.contains("x-tenant-id: acme\r\n"), "{upstream}");
    assert!(!upstream.contains("authorization"), "{upstream}");
    // Bytes flow both ways after the upgrade (a masked text frame; the service echoes it).
    let frame = [
        0x81u8,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    for _ in 0..3 {
        conn.write_all(&frame).await.unwrap();
        let mut echo = [0u8; 11];
        tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echo, frame);
    }
}

/// gRPC through the gateway to an HTTP/2 upstream: jwt_auth's 401 reaches a gRPC client as
/// UNAUTHENTICATED, a valid token gets SERVING, and the service sees the identity headers.
#[tokio::test]
async fn grpc_route_reaches_the_http2_upstream_through_the_filters() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let gw = Gateway::start(Opts::default()).await;
    let channel = tonic::transport::Endpoint::from_shared(gw.url(""))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);

    let err = client
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    let mut req = tonic::Request::new(HealthCheckRequest::default());
    let tok = token("user-1", "acme", "orders:read");
    req.metadata_mut()
        .insert("authorization", format!("Bearer {tok}").parse().unwrap());
    req.metadata_mut()
        .insert("x-tenant-id", "spoofed".parse().unwrap());
    let reply = client.check(req).await.unwrap().into_inner();
    assert_eq!(
        reply.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let seen = gw.grpc.last();
    let get = |k: &str| seen.get(k).and_then(|v| v.to_str().ok()).map(String::from);
    assert_eq!(get("x-user-id").as_deref(), Some("user-1"));
    assert_eq!(get("x-tenant-id").as_deref(), Some("acme"));
    assert_eq!(get("authorization"), None);
}
