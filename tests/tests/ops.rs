//! The operations assets in `ops/`: the Prometheus rules (`ops/prometheus/alerts.yaml`) pass
//! `promtool check rules`, fire and resolve on synthetic series (`promtool test rules` on
//! `alerts_test.yaml`) and each have a runbook section in docs/operations.md; the Grafana
//! dashboard (`ops/grafana/edgegate.json`) has the structure Grafana loads and queries promtool
//! parses; and, against a live gateway (real Envoy with the wasm filters, the real
//! ratelimit-service and Redis) scraped by a real Prometheus, every recorded signal and every
//! dashboard query returns series and the alerts the traffic calls for go off.
//!
//! promtool and prometheus come from Debian's `prometheus` package (`scripts/bootstrap.sh`).

use assets::*;
use live::*;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn alert_rules_pass_promtool_check() {
    let out = promtool(&["check", "rules", &ops_path("prometheus/alerts.yaml")]);
    let rules = rule_groups().iter().map(|g| g.rules.len()).sum::<usize>();
    assert!(
        out.contains(&format!("SUCCESS: {rules} rules found")),
        "{out}"
    );
}

#[test]
fn alerts_fire_and_resolve_on_synthetic_series() {
    let out = promtool(&["test", "rules", &ops_path("prometheus/alerts_test.yaml")]);
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has a case where it fires and one where it is quiet (pending or resolved).
    let (fired, quiet) = test_cases();
    for alert in alerts() {
        let name = alert.alert.as_deref().unwrap_or_default();
        assert!(fired.contains(name), "no test case in which {name} fires");
        assert!(
            quiet.contains(name),
            "no test case in which {name} is quiet"
        );
    }
}

#[test]
fn every_alert_has_severity_for_annotations_and_a_runbook() {
    let recorded: BTreeSet<String> = rule_groups()
        .iter()
        .flat_map(|g| g.rules.iter().filter_map(|r| r.record.clone()))
        .collect();
    assert_eq!(
        identifiers(r#"sum by (le) (rate(x_total{a="b"}[5m])) / y:z > 0.5 and on (k) w"#),
        ["x_total", "y:z", "w"]
    );
    let anchors = doc_anchors("docs/operations.md");
    let alerts = alerts();
    assert!(alerts.len() >= 10, "{} alerts", alerts.len());
    for alert in alerts {
        let name = alert.alert.clone().unwrap_or_default();
        let severity = alert.labels.get("severity").map(String::as_str);
        assert!(
            matches!(severity, Some("warning" | "critical")),
            "{name}: severity {severity:?}"
        );
        assert!(alert.r#for.is_some(), "{name}: no `for:`");
        for key in ["summary", "description", "runbook"] {
            assert!(alert.annotations.contains_key(key), "{name}: no {key}");
        }
        let runbook = &alert.annotations["runbook"];
        let anchor = runbook.strip_prefix("docs/operations.md#");
        assert!(
            anchor.is_some_and(|a| a == name.to_lowercase() && anchors.contains(a)),
            "{name}: runbook {runbook} is not its section of docs/operations.md"
        );
        // Alerts compare recorded signals with thresholds: what the dashboard and the live
        // test read is what the alerts read.
        for name_in_expr in identifiers(&alert.expr) {
            assert!(
                recorded.contains(&name_in_expr),
                "{name}: `{name_in_expr}` is not a recorded signal of alerts.yaml"
            );
        }
    }
}

#[test]
fn dashboard_loads_and_its_queries_parse() {
    let dash = dashboard();
    assert!(!dash.title.is_empty() && !dash.uid.is_empty());
    assert!(
        dash.schema_version >= 36,
        "schemaVersion {}",
        dash.schema_version
    );
    let var = dash.templating.list.iter().find(|v| v.name == "datasource");
    assert!(
        var.is_some_and(|v| v.r#type == "datasource" && v.query == "prometheus"),
        "no `datasource` variable of type datasource (prometheus)"
    );
    check_layout(&dash.panels);
    let mut ids = BTreeSet::new();
    for panel in &dash.panels {
        assert!(ids.insert(panel.id), "panel id {} twice", panel.id);
        assert_eq!(panel.datasource.uid, "${datasource}", "{}", panel.title);
        assert!(!panel.targets.is_empty(), "{}: no targets", panel.title);
        let refs: BTreeSet<&str> = panel.targets.iter().map(|t| t.ref_id.as_str()).collect();
        assert_eq!(refs.len(), panel.targets.len(), "{}: refIds", panel.title);
        for target in &panel.targets {
            assert!(
                !target.expr.trim().is_empty(),
                "{}: empty expr",
                panel.title
            );
            // A default would hide a metric that does not exist.
            assert!(
                !target.expr.contains(" or "),
                "{}: `or` in {}",
                panel.title,
                target.expr
            );
        }
    }
    // Panels for the alerts: each alert is named by the panel that shows its signal.
    for alert in alerts() {
        let name = alert.alert.unwrap_or_default();
        assert!(
            dash.panels.iter().any(|p| p.description.contains(&name)),
            "no dashboard panel names {name}"
        );
    }
    // promtool parses each query (as a recording rule of a generated file).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&file, queries_as_rules(&dash)).unwrap();
    let out = promtool(&["check", "rules", &file.display().to_string()]);
    let count = dash.panels.iter().map(|p| p.targets.len()).sum::<usize>();
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "{out}"
    );
}

/// What the live traffic of [`live::drive_traffic`] must set off (pending or firing): p99 above
/// 500 ms, 5xx above 5%, denials above 10%, refusals above 20%, a cluster without a healthy
/// host, and the test certificate, valid for a day.
const LIVE_ALERTS: [&str; 9] = [
    "EdgegateLatencyP99High",
    "EdgegateLatencyP99Critical",
    "EdgegateErrorRateHigh",
    "EdgegateErrorRateCritical",
    "EdgegateAuthFailureRatioHigh",
    "EdgegateRateLimitedShareHigh",
    "EdgegateBackendDown",
    "EdgegateCertificateExpiringSoon",
    "EdgegateCertificateExpiryCritical",
];

/// What it must not: no cluster is partly healthy, the IdP and the service stay up, and the
/// service's over-limit answers are a handful.
const QUIET_ALERTS: [&str; 4] = [
    "EdgegateBackendDegraded",
    "EdgegateJwksFetchFailing",
    "EdgegateRateLimitFailOpen",
    "EdgegateRateLimitDescriptorSpike",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_dashboard_read_what_a_live_gateway_exports() {
    let gw = start_gateway().await;
    let prom = Prometheus::start(&gw).await;
    warm_up(&gw, &prom).await;
    drive_traffic(&gw).await;

    let seen = wait_for_alerts(&prom, &LIVE_ALERTS, Duration::from_secs(90)).await;
    let down: BTreeSet<&str> = seen["EdgegateBackendDown"]
        .iter()
        .map(|labels| labels["envoy_cluster_name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(down, BTreeSet::from(["ops_dead"]), "clusters seen down");
    for name in QUIET_ALERTS {
        assert!(
            !seen.contains_key(name),
            "{name} went off: {:?}",
            seen[name]
        );
    }

    // Every signal the alerts read, and every dashboard query, has series: each name and
    // label they use is one the live components export.
    for record in rule_groups().iter().flat_map(|g| g.rules.iter()) {
        let Some(name) = &record.record else { continue };
        let series = prom.query(name).await;
        assert!(!series.is_empty(), "{name} ({}) has no series", record.expr);
    }
    for panel in dashboard().panels {
        for target in &panel.targets {
            let series = prom.query(&target.expr).await;
            assert!(
                !series.is_empty(),
                "panel {:?} query {} has no series: a name or label the live gateway does not \
                 export",
                panel.title,
                target.expr
            );
        }
    }
    let active = prom.alerts().await;
    for name in QUIET_ALERTS {
        assert!(
            active.iter().all(|a| a["labels"]["alertname"] != name),
            "{name}"
        );
    }
}

#[cfg(test)]
mod assets {
    use gateway_tests::tools::{repo_root, system_bin};
    use serde::Deserialize;
    use std::collections::{BTreeMap, BTreeSet};
    use std::process::Command;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RuleFile {
        pub groups: Vec<RuleGroup>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RuleGroup {
        pub name: String,
        pub rules: Vec<Rule>,
    }

    #[derive(Deserialize, Clone)]
    #[serde(deny_unknown_fields)]
    pub struct Rule {
        pub record: Option<String>,
        pub alert: Option<String>,
        pub expr: String,
        pub r#for: Option<String>,
        #[serde(default)]
        pub labels: BTreeMap<String, String>,
        #[serde(default)]
        pub annotations: BTreeMap<String, String>,
    }

    /// The fields of a Grafana dashboard model this repository relies on; serde refuses a file
    /// without them or with a wrong type.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Dashboard {
        pub title: String,
        pub uid: String,
        pub schema_version: u32,
        pub time: TimeRange,
        pub templating: Templating,
        pub panels: Vec<Panel>,
    }

    #[derive(Deserialize)]
    pub struct TimeRange {
        pub from: String,
        pub to: String,
    }

    #[derive(Deserialize)]
    pub struct Templating {
        pub list: Vec<Variable>,
    }

    #[derive(Deserialize)]
    pub struct Variable {
        pub name: String,
        pub r#type: String,
        pub query: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Panel {
        pub id: u32,
        pub r#type: String,
        pub title: String,
        pub description: String,
        pub datasource: Datasource,
        pub grid_pos: GridPos,
        pub targets: Vec<Target>,
    }

    #[derive(Deserialize)]
    pub struct Datasource {
        pub r#type: String,
        pub uid: String,
    }

    #[derive(Deserialize, Clone, Copy)]
    pub struct GridPos {
        pub h: u32,
        pub w: u32,
        pub x: u32,
        pub y: u32,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Target {
        pub ref_id: String,
        pub expr: String,
        pub datasource: Datasource,
    }

    pub fn ops_path(rel: &str) -> String {
        repo_root().join("ops").join(rel).display().to_string()
    }

    /// Runs promtool; its output, or a panic with it when promtool fails.
    pub fn promtool(args: &[&str]) -> String {
        let bin = system_bin("promtool").unwrap_or_else(|e| {
            panic!("{e}: promtool is in Debian's `prometheus` package (apt-get install prometheus)")
        });
        let out = Command::new(bin).args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
        text
    }

    pub fn rule_groups() -> Vec<RuleGroup> {
        let text = std::fs::read_to_string(ops_path("prometheus/alerts.yaml")).unwrap();
        let file: RuleFile = serde_yaml::from_str(&text).unwrap();
        assert!(file.groups.iter().all(|g| !g.name.is_empty()));
        file.groups
    }

    pub fn alerts() -> Vec<Rule> {
        rule_groups()
            .into_iter()
            .flat_map(|g| g.rules)
            .filter(|r| r.alert.is_some())
            .collect()
    }

    /// Alert names of alerts_test.yaml's cases: those expected to fire, those expected quiet.
    pub fn test_cases() -> (BTreeSet<String>, BTreeSet<String>) {
        let text = std::fs::read_to_string(ops_path("prometheus/alerts_test.yaml")).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let (mut fired, mut quiet) = (BTreeSet::new(), BTreeSet::new());
        let tests = doc["tests"].as_sequence().cloned().unwrap_or_default();
        for case in tests.iter().flat_map(|t| {
            t["alert_rule_test"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        }) {
            let name = case["alertname"].as_str().unwrap_or_default().to_string();
            match case["exp_alerts"].as_sequence() {
                Some(list) if !list.is_empty() => fired.insert(name),
                _ => quiet.insert(name),
            };
        }
        (fired, quiet)
    }

    /// GitHub's anchors of a Markdown file's headings.
    pub fn doc_anchors(rel: &str) -> BTreeSet<String> {
        let text = std::fs::read_to_string(repo_root().join(rel)).unwrap();
        text.lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| {
                l.trim_start_matches('#')
                    .trim()
                    .to_lowercase()
                    .chars()
                    .filter_map(|c| match c {
                        ' ' => Some('-'),
                        c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                        _ => None,
                    })
                    .collect()
            })
            .collect()
    }

    /// Series names in a PromQL expression: words outside strings, label matchers, brackets and
    /// `by (...)`-style label lists, and not followed by `(` (functions, aggregations).
    pub fn identifiers(expr: &str) -> Vec<String> {
        let chars: Vec<char> = expr.chars().collect();
        let (mut out, mut depth, mut i) = (Vec::new(), 0i32, 0);
        while i < chars.len() {
            let c = chars[i];
            if c == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            } else if c == '{' || c == '[' {
                depth += 1;
            } else if c == '}' || c == ']' {
                depth -= 1;
            } else if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_:.".contains(chars[i]))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                while i < chars.len() && chars[i].is_whitespace() {
                    i += 1;
                }
                let call = chars.get(i) == Some(&'(');
                if call && LABEL_LISTS.contains(&word.as_str()) {
                    while i < chars.len() && chars[i] != ')' {
                        i += 1;
                    }
                } else if depth == 0
                    && !call
                    && !c.is_ascii_digit()
                    && !PROMQL_WORDS.contains(&word.as_str())
                {
                    out.push(word);
                }
                continue;
            }
            i += 1;
        }
        out
    }

    /// Words of PromQL that are not series names (aggregations may be followed by `by`).
    const PROMQL_WORDS: [&str; 20] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];

    /// Keywords followed by a list of label names.
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];

    pub fn dashboard() -> Dashboard {
        let text = std::fs::read_to_string(ops_path("grafana/edgegate.json")).unwrap();
        let dash: Dashboard = serde_json::from_str(&text).unwrap();
        assert!(!dash.time.from.is_empty() && !dash.time.to.is_empty());
        for panel in &dash.panels {
            assert!(
                matches!(panel.r#type.as_str(), "timeseries" | "stat"),
                "{}: type {}",
                panel.title,
                panel.r#type
            );
            assert_eq!(panel.datasource.r#type, "prometheus", "{}", panel.title);
            for t in &panel.targets {
                assert_eq!(t.datasource.r#type, "prometheus", "{}", panel.title);
                assert_eq!(t.datasource.uid, "${datasource}", "{}", panel.title);
            }
        }
        dash
    }

    /// Panels sit inside Grafana's 24 columns and never overlap.
    pub fn check_layout(panels: &[Panel]) {
        let boxes: Vec<(&str, GridPos)> = panels
            .iter()
            .map(|p| (p.title.as_str(), p.grid_pos))
            .collect();
        for (i, (title, a)) in boxes.iter().enumerate() {
            assert!(
                a.w > 0 && a.h > 0 && a.x + a.w <= 24,
                "{title}: {}+{}",
                a.x,
                a.w
            );
            for (other, b) in &boxes[i + 1..] {
                let apart =
                    a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
                assert!(apart, "panels {title} and {other} overlap");
            }
        }
    }

    /// Every dashboard query as a recording rule, for `promtool check rules`.
    pub fn queries_as_rules(dash: &Dashboard) -> String {
        let mut rules = Vec::new();
        for panel in &dash.panels {
            for t in &panel.targets {
                rules.push(serde_json::json!({
                    "record": format!("dashboard:panel{}:{}", panel.id, t.ref_id),
                    "expr": t.expr,
                }));
            }
        }
        let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
        serde_yaml::to_string(&file).unwrap()
    }
}

#[cfg(test)]
mod live {
    use gateway_tests::gateway::{client, service, token, Gateway, Opts};
    use gateway_tests::process::Process;
    use gateway_tests::tools::{repo_root, system_bin};
    use gateway_tests::upstream::{Recorded, Reply};
    use gateway_tests::wait;
    use ratelimit_service::proto::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use ratelimit_service::proto::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    use ratelimit_service::proto::rls::rate_limit_response::Code;
    use ratelimit_service::proto::rls::rate_limit_service_client::RateLimitServiceClient;
    use ratelimit_service::proto::rls::RateLimitRequest;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;
    use std::process::Command;
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A loopback port nothing listens on, for the `ops_dead` cluster.
    static DEAD_PORT: AtomicU16 = AtomicU16::new(0);

    /// The shipped gateway plus a cluster whose one host never passes a health check; the users
    /// service answers `/slow` paths after 600 ms and `/fail` paths with 500.
    pub async fn start_gateway() -> Gateway {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        DEAD_PORT.store(closed.local_addr().unwrap().port(), Ordering::SeqCst);
        drop(closed);
        let users = service("users");
        Gateway::start(Opts {
            users: Arc::new(move |r: &Recorded| {
                if r.path.contains("/slow") {
                    Reply::json(200, &json!({"slow": true})).delay(Duration::from_millis(600))
                } else if r.path.contains("/fail") {
                    Reply::json(500, &json!({"error": "boom"}))
                } else {
                    users(r)
                }
            }),
            edit_config: Some(with_dead_cluster),
            ..Opts::default()
        })
        .await
    }

    fn with_dead_cluster(text: &str) -> String {
        let port = DEAD_PORT.load(Ordering::SeqCst);
        let cluster = format!(
            "\n  clusters:\n  - name: ops_dead\n    connect_timeout: 0.25s\n    type: STATIC\n    \
             health_checks:\n    - {{ timeout: 1s, interval: 1s, unhealthy_threshold: 1, \
             healthy_threshold: 1, http_health_check: {{ path: /healthz }} }}\n    \
             load_assignment:\n      cluster_name: ops_dead\n      endpoints:\n      - \
             lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: \
             127.0.0.1, port_value: {port} }} }} }}\n"
        );
        assert!(
            text.contains("\n  clusters:\n"),
            "gateway.yaml has no clusters list"
        );
        text.replacen("\n  clusters:\n", &cluster, 1)
    }

    /// A real Prometheus on loopback scraping the gateway's Envoy and ratelimit-service every
    /// second and evaluating `ops/prometheus/alerts.yaml` every second.
    pub struct Prometheus {
        base: String,
        http: reqwest::Client,
        _process: Process,
        _dir: tempfile::TempDir,
    }

    impl Prometheus {
        pub async fn start(gw: &Gateway) -> Prometheus {
            let bin = system_bin("prometheus")
                .unwrap_or_else(|e| panic!("{e}: prometheus is in Debian's `prometheus` package"));
            let dir = tempfile::tempdir().unwrap();
            let envoy = gw.envoy.admin_url("").replace("http://", "");
            let rls = format!("127.0.0.1:{}", gw.rls.http_port());
            let rules = repo_root().join("ops/prometheus/alerts.yaml");
            let config = format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
                 rule_files: [\"{}\"]\n\
                 scrape_configs:\n\
                 - job_name: envoy\n  metrics_path: /stats/prometheus\n  \
                 static_configs: [{{ targets: [\"{envoy}\"] }}]\n\
                 - job_name: ratelimit-service\n  static_configs: [{{ targets: [\"{rls}\"] }}]\n",
                rules.display()
            );
            std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
            let log = dir.path().join("prometheus.log");
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new(bin)
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg("--web.listen-address=127.0.0.1:0")
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap();
            let process = Process::new("prometheus", child, vec![log]);
            let text = process.wait_log("msg=\"Listening on\"").await.unwrap();
            let addr = text
                .lines()
                .find(|l| l.contains("msg=\"Listening on\""))
                .and_then(|l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix("address="))
                })
                .unwrap()
                .to_string();
            let prom = Prometheus {
                base: format!("http://{addr}"),
                http: client(),
                _process: process,
                _dir: dir,
            };
            prom.wait_for("both targets up", "up == 1", 2).await;
            prom
        }

        async fn api(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
            let resp = self
                .http
                .get(format!("{}{path}", self.base))
                .query(query)
                .send();
            let body: Value = resp.await?.json().await?;
            anyhow::ensure!(body["status"] == "success", "{path} {query:?}: {body}");
            Ok(body["data"].clone())
        }

        /// The series of an instant query.
        pub async fn query(&self, expr: &str) -> Vec<Value> {
            let data = self.api("/api/v1/query", &[("query", expr)]).await.unwrap();
            data["result"].as_array().cloned().unwrap_or_default()
        }

        /// Alerts pending or firing.
        pub async fn alerts(&self) -> Vec<Value> {
            let data = self.api("/api/v1/alerts", &[]).await.unwrap();
            data["alerts"].as_array().cloned().unwrap_or_default()
        }

        pub async fn wait_for(&self, what: &str, expr: &str, series: usize) {
            wait::until(what, Duration::from_secs(30), || async move {
                // Until its storage is up Prometheus answers 503 in plain text.
                let data = self.api("/api/v1/query", &[("query", expr)]).await?;
                let found = data["result"].as_array().map_or(0, Vec::len);
                Ok((found >= series).then_some(()))
            })
            .await
            .unwrap();
        }
    }

    /// Series created by their first event (a denial reason, a domain's first ShouldRateLimit
    /// call) start at their first value, so rate() sees only what follows: create them and let
    /// Prometheus scrape them before the traffic.
    pub async fn warm_up(gw: &Gateway, prom: &Prometheus) {
        let resp = client().get(gw.url("/api/users/1")).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(should_rate_limit(gw, 1).await, [Code::Ok]);
        prom.wait_for("the first denial", "jwt_auth_denied_missing", 1)
            .await;
        prom.wait_for(
            "the first call",
            "ratelimit_should_rate_limit_requests_total",
            1,
        )
        .await;
    }

    /// `n` ShouldRateLimit calls for consumer `greedy` (2 an hour): their answers.
    pub async fn should_rate_limit(gw: &Gateway, n: usize) -> Vec<Code> {
        let url = format!("http://{}", gw.rls.grpc_addr());
        let mut rls = RateLimitServiceClient::connect(url).await.unwrap();
        let mut codes = Vec::new();
        for _ in 0..n {
            let req = RateLimitRequest {
                domain: "edge".into(),
                descriptors: vec![RateLimitDescriptor {
                    entries: vec![Entry {
                        key: "consumer".into(),
                        value: "greedy".into(),
                    }],
                    ..RateLimitDescriptor::default()
                }],
                hits_addend: 1,
            };
            let code = rls
                .should_rate_limit(req)
                .await
                .unwrap()
                .into_inner()
                .overall_code;
            codes.push(Code::try_from(code).unwrap());
        }
        codes
    }

    async fn statuses(reqs: Vec<reqwest::RequestBuilder>) -> Vec<u16> {
        let sent = reqs.into_iter().map(|r| async move {
            r.send()
                .await
                .map(|resp| resp.status().as_u16())
                .unwrap_or(0)
        });
        futures_util::future::join_all(sent).await
    }

    /// 20 fast and 10 slow answers, 10 answers 500, 20 requests without a token (401), 40 of
    /// tenant `tiny` (3 an hour: 429 after 3), 4 more ShouldRateLimit calls over the limit.
    pub async fn drive_traffic(gw: &Gateway) {
        let paths = |kind: &str, n: usize| -> Vec<reqwest::RequestBuilder> {
            (0..n)
                .map(|i| gw.get(&format!("/api/users/{kind}-{i}")))
                .collect()
        };
        assert!(statuses(paths("ok", 20)).await.iter().all(|s| *s == 200));
        assert!(statuses(paths("slow", 10)).await.iter().all(|s| *s == 200));
        let failed = statuses(paths("fail", 10)).await;
        assert!(failed.iter().all(|s| (500..600).contains(s)), "{failed:?}");
        let anonymous = (0..19)
            .map(|_| client().get(gw.url("/api/users/1")))
            .collect();
        assert!(statuses(anonymous).await.iter().all(|s| *s == 401));
        let tiny = token("user-9", "tiny", "orders:read");
        let tiny = (0..40).map(|i| {
            client()
                .get(gw.url(&format!("/api/users/tiny-{i}")))
                .bearer_auth(&tiny)
        });
        let answers = statuses(tiny.collect()).await;
        let refused = answers.iter().filter(|s| **s == 429).count();
        assert_eq!(refused, 37, "{answers:?}");
        let codes = should_rate_limit(gw, 4).await;
        assert_eq!(
            codes,
            [Code::Ok, Code::OverLimit, Code::OverLimit, Code::OverLimit]
        );
    }

    /// Polls the alerts until each of `names` has been pending or firing; every alert seen on
    /// the way with the label sets it had.
    pub async fn wait_for_alerts(
        prom: &Prometheus,
        names: &[&str],
        within: Duration,
    ) -> BTreeMap<String, Vec<Value>> {
        let seen: Mutex<BTreeMap<String, Vec<Value>>> = Mutex::default();
        let outcome = wait::until("the alerts", within, || async {
            let active = prom.alerts().await;
            let mut seen = seen.lock().unwrap();
            for alert in active {
                let name = alert["labels"]["alertname"].as_str().unwrap_or_default();
                let labels = seen.entry(name.to_string()).or_default();
                if !labels.contains(&alert["labels"]) {
                    labels.push(alert["labels"].clone());
                }
            }
            let missing: Vec<&&str> = names.iter().filter(|n| !seen.contains_key(**n)).collect();
            if missing.is_empty() {
                return Ok(Some(()));
            }
            anyhow::bail!(
                "not yet pending or firing: {missing:?}; seen: {:?}",
                seen.keys()
            )
        })
        .await;
        if let Err(e) = outcome {
            let mut signals = String::new();
            for record in [
                "edgegate:request_p99_ms:rate1m",
                "edgegate:request_5xx:ratio_rate1m",
                "edgegate:auth_denied:ratio_rate5m",
                "edgegate:ratelimit_refused:ratio_rate5m",
                "edgegate:cluster_hosts_healthy:ratio",
                "edgegate:certificate_expiry:days",
            ] {
                signals += &format!("\n{record}: {:?}", prom.query(record).await);
            }
            panic!("{e}{signals}");
        }
        seen.into_inner().unwrap()
    }
}
