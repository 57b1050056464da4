//! `make demo`: Envoy with the transform filter in front of a demo upstream, on fixed loopback
//! ports, with curl commands that show each rewrite. Ctrl-C stops everything.

use anyhow::{Context, Result};
use gateway_tests::envoy::EnvoyBuilder;
use gateway_tests::upstream::{describe, Recorded, Reply, Upstream};
use serde_json::json;

fn port(var: &str, default: u16) -> Result<u16> {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{var}={v} is not a port")),
        Err(_) => Ok(default),
    }
}

/// The demo upstream: an orders API that leaks internal fields (for the filter to strip) and
/// echoes everything else, so the curl output shows what the upstream received.
fn demo_upstream(r: &Recorded) -> Reply {
    let seen = describe(r);
    if r.method == "GET" && r.path.starts_with("/api/orders/") {
        let id = r
            .path
            .trim_start_matches("/api/orders/")
            .split('?')
            .next()
            .unwrap_or("");
        return Reply::json(
            200,
            &json!({
                "id": id,
                "status": "shipped",
                "customer": { "fullName": "Ada Lovelace", "ssn": "078-05-1120" },
                "items": [
                    { "sku": "BOOK-1", "qty": 1, "internal_id": "inv-88" },
                    { "sku": "PEN-7", "qty": 3, "internal_id": "inv-91" }
                ],
                "debug_info": { "db_ms": 3, "host": "orders-7f9c" },
                "upstream_saw": { "path": seen["path"], "headers": seen["headers"] }
            }),
        )
        .header("server", "demo-upstream/1.0")
        .header("x-powered-by", "Express/4.18");
    }
    Reply::json(200, &seen).header("x-powered-by", "Express/4.18")
}

#[tokio::main]
async fn main() -> Result<()> {
    let listen = port("DEMO_LISTEN_PORT", 10000)?;
    let admin = port("DEMO_ADMIN_PORT", 9901)?;
    let upstream_port = port("DEMO_UPSTREAM_PORT", 10001)?;

    let upstream = Upstream::start_on(&format!("127.0.0.1:{upstream_port}"), demo_upstream)
        .await
        .context("starting the demo upstream (set DEMO_UPSTREAM_PORT to use another port)")?;
    let envoy = EnvoyBuilder::from_repo_file("demo", "envoy/demo-transform.yaml")?
        .var("LISTEN_PORT", listen)
        .var("ADMIN_PORT", admin)
        .var("UPSTREAM_PORT", upstream.port())
        .wasm("TRANSFORM_WASM", "transform")?
        .start()
        .await
        .context("starting Envoy (set DEMO_LISTEN_PORT / DEMO_ADMIN_PORT to use other ports)")?;

    let base = format!("http://127.0.0.1:{listen}");
    println!(
        r#"
edgegate demo is running (Ctrl-C stops everything)
  Envoy 1.40 + dist/transform.wasm   {base}
  Envoy admin                        http://127.0.0.1:{admin}
  demo upstream                      http://127.0.0.1:{up}
  filter config                      envoy/demo-transform.yaml

1. Response JSON rewritten: debug_info, customer.ssn and items[*].internal_id stripped,
   customer.fullName renamed to name, api_version added; server and x-powered-by removed:
     curl -si '{base}/api/orders/42'
   Compare with the upstream's own answer:
     curl -si 'http://127.0.0.1:{up}/api/orders/42'

2. Request rewritten: x-debug removed, x-client-version renamed to x-api-version,
   x-gateway-route and x-original-path set, ?debug removed and ?source=gateway added
   (see "upstream_saw" in the reply):
     curl -s '{base}/api/orders/7?debug=1&page=2' -H 'x-debug: 1' -H 'x-client-version: 3.1'

3. An old client's request body shimmed (user_name -> username, password_confirmation dropped):
     curl -s -X POST '{base}/api/users' -H 'content-type: application/json' \
          -d '{{"user_name":"ada","password":"s3cret","password_confirmation":"s3cret"}}'

4. The filter's counters:
     curl -s 'http://127.0.0.1:{admin}/stats?filter=wasmcustom'
"#,
        up = upstream.port()
    );

    wait_for_shutdown().await;
    println!("stopping Envoy and the demo upstream");
    drop(envoy);
    drop(upstream);
    Ok(())
}

async fn wait_for_shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
