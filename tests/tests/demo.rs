//! `make demo` end to end: the real `gateway-demo` binary in auto-port mode (every port from the
//! OS, loopback only). The test reads the banner it prints, walks the banner's key steps with
//! reqwest, a WebSocket client and a gRPC client (token, 401 without it, 200 with it, a stripped
//! field, 429 with Retry-After, the per-tenant catalog cache, both canary versions, the WebSocket echo, gRPC health,
//! the rate-limit service's revocation API behind its generated token), then
//! sends SIGINT and checks that the demo and every process it started have exited.

use futures_util::{SinkExt, StreamExt};
use gateway_tests::demo::{self, ServingStatus};
use gateway_tests::process::{signal, Signal};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Startup includes an RSA key, Envoy compiling three wasm modules and the first health checks
/// of every cluster, on a loaded 2-core machine.
const STARTUP: Duration = Duration::from_secs(240);
const BANNER_END: &str = "Ctrl-C stops every process.";

/// The demo process; a test that fails midway still stops it (SIGINT, then SIGKILL).
struct DemoProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: tempfile::NamedTempFile,
}

impl DemoProcess {
    fn start() -> DemoProcess {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway-demo"))
            .arg("--auto")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        DemoProcess {
            child,
            lines,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// Stdout lines up to and including the one containing `end`.
    fn read_until(&mut self, end: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut out = String::new();
        loop {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    out.push_str(&line);
                    out.push('\n');
                    if line.contains(end) {
                        return out;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "the demo closed stdout before {end:?}; stdout:\n{out}\nstderr:\n{}",
                    self.stderr()
                ),
            }
            assert!(
                Instant::now() < deadline,
                "no {end:?} from the demo within {within:?}; stdout:\n{out}\nstderr:\n{}",
                self.stderr()
            );
        }
    }

    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), Signal::SIGINT);
            if self.wait_exit(Duration::from_secs(20)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// pid -> (parent pid, state) for every process, from /proc.
fn process_table() -> BTreeMap<u32, (u32, char)> {
    let mut table = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        table.insert(pid, (ppid, state));
    }
    table
}

/// Every live process below `root`, with its command name.
fn descendants(root: u32) -> BTreeMap<u32, String> {
    let table = process_table();
    let mut found = BTreeSet::from([root]);
    for _ in 0..16 {
        let before = found.len();
        for (pid, (ppid, _)) in &table {
            if found.contains(ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    found.remove(&root);
    found
        .into_iter()
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (pid, comm.trim().to_string())
        })
        .collect()
}

/// Still running: present in /proc and not a zombie.
fn alive(pid: u32) -> bool {
    process_table()
        .get(&pid)
        .is_some_and(|(_, state)| *state != 'Z')
}

/// Status and JSON body (every answer of the demo, refusals included, is JSON).
async fn get_json(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_walkthrough_works_and_ctrl_c_stops_every_process() {
    let mut demo = DemoProcess::start();
    let banner = demo.read_until(BANNER_END, STARTUP);
    let addrs = demo::parse_banner(&banner);
    let addr = |label: &str| -> String {
        addrs
            .get(label)
            .unwrap_or_else(|| panic!("no {label} line in the banner:\n{banner}"))
            .clone()
    };
    let (gw, idp, users) = (addr("gateway"), addr("idp"), addr("users"));
    for label in [
        "gateway-tls",
        "gateway-mtls",
        "admin",
        "orders-v1",
        "orders-v2",
        "products",
    ] {
        addr(label);
    }
    assert!(
        gw.starts_with("http://127.0.0.1:") && idp.starts_with("http://127.0.0.1:"),
        "{addrs:?}"
    );
    // The banner's commands use the ports that are actually in use.
    assert!(
        banner.contains(&format!("TOKEN=$(curl -s '{idp}/token?")),
        "{banner}"
    );
    assert!(banner.contains(&format!("{gw}/api/users/1")), "{banner}");
    let http = demo::client().unwrap();

    // 1-5. Token, 401/200 with identity headers, stripped fields, tiny's 429, the per-tenant
    // cache (shared with the compose test).
    let at = demo::Endpoints {
        gateway: gw.clone(),
        idp: idp.clone(),
        users: users.clone(),
    };
    let token = demo::core_steps(&http, &at)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    // 6. The canary: both versions answer (95/5), until both are seen or 400 requests.
    let mut versions = BTreeMap::<String, u32>::new();
    for _ in 0..400 {
        let (status, body) =
            get_json(http.get(format!("{gw}/api/orders/1")).bearer_auth(&token)).await;
        assert_eq!(status, 200, "{body}");
        *versions
            .entry(body["version"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
        if versions.contains_key("v1") && versions.contains_key("v2") && versions["v1"] >= 20 {
            break;
        }
    }
    assert_eq!(
        versions.keys().collect::<Vec<_>>(),
        ["v1", "v2"],
        "{versions:?}"
    );
    assert!(versions["v1"] > versions["v2"], "{versions:?}");

    // 7. WebSocket through the gateway: refused without a token, an echo with one.
    let ws_url = format!("{}/api/events", gw.replacen("http://", "ws://", 1));
    match tokio_tungstenite::connect_async(ws_url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 401)
        }
        other => panic!("a WebSocket without a token: {:?}", other.map(|(_, r)| r)),
    }
    let mut request = ws_url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello through the gateway"))
        .await
        .unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("no WebSocket echo within 10 s")
        .expect("the WebSocket closed")
        .unwrap();
    assert_eq!(echo, Message::text("hello through the gateway"));
    let _ = ws.close(None).await;

    // 8. gRPC health through the gateway: SERVING with a token, UNAUTHENTICATED without.
    assert_eq!(
        demo::grpc_health(&gw, &token).await.unwrap(),
        ServingStatus::Serving
    );
    let denied = demo::grpc_health(&gw, "not-a-token").await.unwrap_err();
    let status = denied
        .downcast_ref::<tonic::Status>()
        .unwrap_or_else(|| panic!("not a gRPC status: {denied:#}"));
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    // 10. The rate-limit service's revocation API: 401 without the run's token (only its file
    // is in the banner, never the token), the list with it.
    let rls = addr("ratelimit-http");
    let token_file = demo::banner_revocation_token_file(&banner)
        .unwrap_or_else(|| panic!("no ratelimit-token line in the banner:\n{banner}"));
    let rls_token = std::fs::read_to_string(&token_file).unwrap();
    let rls_token = rls_token.trim();
    assert!(rls_token.len() >= 32, "a generated token, not a fixed one");
    assert!(!banner.contains(rls_token), "the banner prints the token");
    assert!(
        banner.contains(&format!("$(cat {})", token_file.display())),
        "{banner}"
    );
    let resp = http.get(format!("{rls}/revocations")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let (status, list) = get_json(
        http.get(format!("{rls}/revocations"))
            .bearer_auth(rls_token),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["full"], true, "{list}");

    // 11. A partner over mTLS: the banner's certificate files; acme's orders without a token,
    // and no handshake without the certificate.
    let mtls = addr("gateway-mtls");
    let tls_dir = banner
        .split_whitespace()
        .find_map(|w| w.strip_suffix("/partner-acme.key"))
        .unwrap_or_else(|| panic!("no partner key in the banner:\n{banner}"));
    let file = |name: &str| std::fs::read(format!("{tls_dir}/{name}")).unwrap();
    let mut identity = file("partner-acme.pem");
    identity.extend(file("partner-acme.key"));
    let partner = |with_cert: bool| {
        let ca = reqwest::Certificate::from_pem(&file("ca.pem")).unwrap();
        let b = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .add_root_certificate(ca);
        let b = if with_cert {
            b.identity(reqwest::Identity::from_pem(&identity).unwrap())
        } else {
            b
        };
        b.build().unwrap()
    };
    let (status, body) = get_json(partner(true).get(format!("{mtls}/partner/orders/1"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upstream_saw"]["x-tenant-id"], "acme", "{body}");
    let xfcc = body["upstream_saw"]["x-forwarded-client-cert"].as_str();
    assert!(
        xfcc.is_some_and(|x| x.contains("URI=spiffe://partners.edgegate.localhost/acme")),
        "{body}"
    );
    let refused = partner(false)
        .get(format!("{mtls}/partner/orders/1"))
        .send()
        .await;
    assert!(refused.is_err(), "no certificate, yet {refused:?}");

    // 12. An opaque token: introspected by the IdP, its claims as for a JWT; an unknown one 401.
    let opaque = http
        .get(format!(
            "{idp}/opaque-token?sub=svc-reports&tenant=acme&scope=orders:read"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let opaque = opaque.trim();
    assert!(!opaque.contains('.'), "not a JWT: {opaque}");
    let (status, body) =
        get_json(http.get(format!("{gw}/api/orders/42")).bearer_auth(opaque)).await;
    assert_eq!(status, 200, "{body}");
    let saw = &body["upstream_saw"];
    assert_eq!(
        (saw["x-user-id"].as_str(), saw["x-tenant-id"].as_str()),
        (Some("svc-reports"), Some("acme")),
        "{body}"
    );
    let (status, body) = get_json(
        http.get(format!("{gw}/api/orders/42"))
            .bearer_auth("0123456789abcdef"),
    )
    .await;
    assert_eq!(status, 401, "{body}");

    // 13. The dashboard: three services in one answer, the user stripped as /api/users is.
    let (status, body) =
        get_json(http.get(format!("{gw}/api/dashboard")).bearer_auth(&token)).await;
    assert_eq!(status, 200, "{body}");
    for (leg, service) in [
        ("user", "users"),
        ("orders", "orders"),
        ("catalog", "products"),
    ] {
        assert_eq!(body[leg]["service"], service, "{leg}: {body}");
        assert_eq!(
            body[leg]["upstream_saw"]["x-tenant-id"], "acme",
            "{leg}: {body}"
        );
    }
    assert!(body["user"].get("password_hash").is_none(), "{body}");

    // 14. Transcoding: REST in, the inventory gRPC service's answer out, errors as statuses.
    let inventory = format!("{gw}/api/v1/inventory/items");
    let (status, body) = get_json(http.get(format!("{inventory}/sku-1")).bearer_auth(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["name"], &body["tenant"], &body["user"]),
        (&json!("Widget"), &json!("acme"), &json!("alice")),
        "{body}"
    );
    // The banner's TOKEN: reserving is a write (orders:write).
    let writer = http
        .get(format!(
            "{idp}/token?sub=alice&tenant=acme&org=7&scope=orders:read%20orders:write"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reserve = |quantity: i32| {
        http.post(format!("{inventory}/sku-2/reservations"))
            .bearer_auth(writer.trim())
            .json(&json!({ "quantity": quantity }))
    };
    let (status, body) = get_json(reserve(2)).await;
    assert_eq!((status, &body["quantity"]), (200, &json!(2)), "{body}");
    let (status, body) = get_json(reserve(99)).await;
    assert_eq!((status, &body["code"]), (400, &json!(9)), "{body}");
    let (status, body) =
        get_json(http.get(format!("{inventory}/sku-404")).bearer_auth(&token)).await;
    assert_eq!((status, &body["code"]), (404, &json!(5)), "{body}");

    // Ctrl-C: the demo exits cleanly and takes every process it started with it.
    let pid = demo.child.id();
    let children = descendants(pid);
    let names: BTreeSet<&str> = children.values().map(String::as_str).collect();
    for name in ["envoy", "redis-server", "demo-service", "demo-idp"] {
        assert!(names.contains(name), "no {name} among {children:?}");
    }
    assert!(
        names.iter().any(|n| n.starts_with("ratelimit")),
        "{children:?}"
    );
    assert_eq!(
        children.values().filter(|n| *n == "demo-service").count(),
        demo::ROLES.len(),
        "{children:?}"
    );
    signal(pid, Signal::SIGINT);
    let tail = demo.read_until("stopped", Duration::from_secs(30));
    let status = demo
        .wait_exit(Duration::from_secs(15))
        .expect("the demo did not exit after SIGINT");
    assert!(
        status.success(),
        "{status}; stdout:\n{tail}\nstderr:\n{}",
        demo.stderr()
    );
    let left: Vec<_> = children.iter().filter(|(pid, _)| alive(**pid)).collect();
    assert!(
        left.is_empty(),
        "still running after the demo exited: {left:?}"
    );
}
