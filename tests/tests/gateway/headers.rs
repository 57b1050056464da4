//! Security headers on every answer of the gateway, whoever made it: the upstream (200, an
//! upstream's 500), Envoy itself (404 no route, 413, 504, a CORS preflight) and our filters'
//! refusals (401, 403) — HSTS only over TLS, whatever a client claims; a route's own policy.

use crate::prelude::*;

/// The headers every answer carries, with the gateway's default values.
const DEFAULTS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];
const HSTS: &str = "max-age=31536000; includeSubDomains";

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_hsts_only_over_tls() {
    let products: Handler = Arc::new(|r: &Recorded| {
        let reply = Reply::json(200, &json!({"service": "products", "path": r.path}))
            .header("x-powered-by", "Express")
            .header("strict-transport-security", "max-age=0");
        if r.path.contains("boom") {
            Reply::json(500, &json!({"error": "boom"})).header("x-powered-by", "Express")
        } else if r.path.contains("own-policy") {
            reply.header("content-security-policy", "default-src 'self'")
        } else {
            reply.delay_if(r.path.contains("slow"), Duration::from_secs(3))
        }
    });
    let gw = Gateway::start(Opts {
        products,
        route_timeout: "1s",
        ..Opts::default()
    })
    .await;
    let c = client();
    let tok = token("user-1", "acme", "orders:read");
    let get = |path: &str| c.get(gw.url(path)).bearer_auth(&tok);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("upstream 200", get("/api/products/1"), 200),
        ("upstream 500", get("/api/products/boom"), 500),
        ("route timeout", get("/api/products/slow"), 504),
        ("no token", c.get(gw.url("/api/users/1")), 401),
        ("missing scope", gw.post("/api/orders", "orders:read"), 403),
        ("no route", get("/nowhere"), 404),
        ("sunset API", c.get(gw.url("/api/v0/orders")), 410),
        (
            "declared body too large",
            c.post(gw.url("/api/users"))
                .bearer_auth(&tok)
                .body(vec![b'x'; 1024 * 1024 + 1]),
            413,
        ),
        (
            "CORS preflight",
            c.request(reqwest::Method::OPTIONS, gw.url("/api/users/1"))
                .header("origin", ORIGIN)
                .header("access-control-request-method", "POST"),
            200,
        ),
    ];
    for (what, req, status) in cases {
        // A client cannot turn HSTS on over plain HTTP by claiming https.
        let resp = req
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{what}");
        for (name, value) in DEFAULTS {
            assert_eq!(
                header(&resp, name).as_deref(),
                Some(value),
                "{what}: {name}"
            );
        }
        assert_eq!(
            header(&resp, "strict-transport-security"),
            None,
            "{what}: plain HTTP"
        );
        assert_eq!(header(&resp, "x-powered-by"), None, "{what}");
    }

    // An upstream's own policy header is kept; a route's policy replaces the defaults.
    let resp = get("/api/products/own-policy").send().await.unwrap();
    assert_eq!(
        header(&resp, "content-security-policy").as_deref(),
        Some("default-src 'self'")
    );
    let resp = get("/api/catalog/1").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-security-policy").as_deref(),
        Some("default-src 'none'; frame-ancestors https://app.edgegate.localhost")
    );
    assert_eq!(
        header(&resp, "x-frame-options"),
        None,
        "the catalog may be framed"
    );
    assert_eq!(
        header(&resp, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    // Its refusals too: the route's policy does not depend on who answered.
    let resp = c.get(gw.url("/api/catalog/1")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "x-frame-options"), None);

    // Over TLS: HSTS on every answer (the upstream's max-age=0 overwritten), HTTP/2 and 1.1.
    let port = gw.envoy.port("gateway_tls");
    for http1 in [false, true] {
        let tls = gw.tls_client(http1, true);
        let url = |path: &str| format!("https://gateway.localhost:{port}{path}");
        for (path, token, status) in [
            ("/api/products/1", Some(&tok), 200),
            ("/api/products/boom", Some(&tok), 500),
            ("/api/users/1", None, 401),
            ("/nowhere", Some(&tok), 404),
        ] {
            let mut req = tls.get(url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            let what = format!("TLS (http1: {http1}) {path}");
            assert_eq!(resp.status(), status, "{what}");
            assert_eq!(
                header(&resp, "strict-transport-security").as_deref(),
                Some(HSTS),
                "{what}"
            );
            for (name, value) in DEFAULTS {
                assert_eq!(
                    header(&resp, name).as_deref(),
                    Some(value),
                    "{what}: {name}"
                );
            }
        }
    }
}
