//! Envoy's own jwt_authn configurations (tests/fixtures/jwt-authn: the examples of Envoy's
//! documentation, each with the statuses the documentation gives), loaded verbatim into the
//! native filter and into jwt_auth.wasm, in two real Envoys over the same upstream and JWKS
//! server: both must answer every case with the documented status.

use crate::prelude::*;
use std::path::{Path, PathBuf};

const TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";

#[tokio::test(flavor = "multi_thread")]
async fn documented_configs_behave_alike_in_native_jwt_authn_and_jwt_auth() {
    let dir = fixtures::dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "fixtures in {}", dir.display());
    let keys = jwks(false);
    let jwks_server = JwksServer::start(keys.clone()).await.unwrap();
    let up = Upstream::echo().await.unwrap();
    let (mut failures, mut cases) = (Vec::new(), 0);
    for file in &files {
        let (config, list) = fixtures::load(file, &keys.to_string());
        let native = fixtures::envoy(&jwks_server, &up, fixtures::native_filter(&config)).await;
        let ours =
            fixtures::envoy(&jwks_server, &up, chain::wasm("jwt_auth", &config).unwrap()).await;
        for case in &list {
            cases += 1;
            for (side, envoy) in [("native jwt_authn", &native), ("jwt_auth.wasm", &ours)] {
                if let Err(why) = fixtures::run(envoy, &up, case).await {
                    let name = file.file_name().unwrap().to_string_lossy();
                    failures.push(format!("{name}: {side}: {case}: {why}"));
                }
            }
        }
    }
    assert!(cases >= 40, "{cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[cfg(test)]
mod fixtures {
    use super::*;

    pub fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jwt-authn")
    }

    /// The fixture's `config` with the documentation's placeholders filled in (the JWKS for
    /// `PUBLIC-KEY`, this Envoy's `jwks` cluster for the example's), and `@type` added as a
    /// native `typed_config` carries it; and its cases.
    pub fn load(file: &Path, jwks_text: &str) -> (Value, Vec<Value>) {
        let text = std::fs::read_to_string(file).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let mut config = doc["config"].clone();
        fill(&mut config, jwks_text);
        config["@type"] = json!(TYPE_URL);
        (config, doc["cases"].as_array().unwrap().clone())
    }

    fn fill(v: &mut Value, jwks_text: &str) {
        match v {
            Value::String(s) if s == "PUBLIC-KEY" => *s = jwks_text.to_string(),
            Value::String(s) if s == "example_jwks_cluster" => *s = "jwks".to_string(),
            Value::Array(list) => list.iter_mut().for_each(|x| fill(x, jwks_text)),
            Value::Object(map) => map.values_mut().for_each(|x| fill(x, jwks_text)),
            _ => {}
        }
    }

    pub fn native_filter(config: &Value) -> Value {
        json!({"name": "envoy.filters.http.jwt_authn", "typed_config": config})
    }

    pub async fn envoy(jwks: &JwksServer, up: &Upstream, filter: Value) -> Envoy {
        EnvoyBuilder::from_repo_file("jwt-native", "tests/envoy/jwt.yaml")
            .unwrap()
            .var("HTTP_FILTERS", chain::with_router(vec![filter]))
            .var("UPSTREAM_PORT", up.port())
            .var("JWKS_PORT", jwks.port())
            .var("REVOCATION_PORT", 9)
            .start()
            .await
            .unwrap()
    }

    /// The case's token: its claims signed ES256 under the test key, expired or with a broken
    /// signature when it says so.
    fn token(spec: &Value) -> Option<String> {
        let spec = spec.as_object()?;
        let t0 = now();
        let mut c = claims(t0);
        let map = c.as_object_mut().unwrap();
        map.remove("aud");
        for k in ["iss", "aud"] {
            if let Some(v) = spec.get(k) {
                map.insert(k.into(), v.clone());
            }
        }
        if spec.get("exp").and_then(Value::as_str) == Some("past") {
            map.insert("iat".into(), json!(t0 - 7200));
            map.insert("exp".into(), json!(t0 - 3600));
        }
        let mut t = sign(
            &json!({"alg": "ES256", "kid": jwt_auth::testing::kid_for("ES256")}),
            &c,
        );
        if spec.get("sig").and_then(Value::as_str) == Some("bad") {
            // A character well inside the signature: the last one may carry only padding
            // bits, which a lenient base64 decoder ignores.
            let at = t.len() - 10;
            let flipped = if &t[at..=at] == "A" { "B" } else { "A" };
            t.replace_range(at..=at, flipped);
        }
        Some(t)
    }

    /// Sends the case to `envoy`: `Err` says how the answer differs from the documented one.
    pub async fn run(envoy: &Envoy, up: &Upstream, case: &Value) -> Result<(), String> {
        let first = token(&case["token"]);
        let mut path = case["path"].as_str().unwrap().to_string();
        let mut req_headers = Vec::new();
        match (&first, case["param"].as_str(), case["header"].as_str()) {
            (Some(t), Some(param), _) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                path = format!("{path}{sep}{param}={t}");
            }
            (Some(t), None, Some(h)) => req_headers.push((h.to_string(), t.clone())),
            (Some(t), None, None) => {
                req_headers.push(("authorization".into(), format!("Bearer {t}")))
            }
            (None, ..) => {}
        }
        // A second token (`also`), in the query parameter it names.
        if let (Some(t), Some(param)) = (
            token(&case["also"]["token"]),
            case["also"]["param"].as_str(),
        ) {
            let sep = if path.contains('?') { '&' } else { '?' };
            path = format!("{path}{sep}{param}={t}");
        }
        if let Some(extra) = case["headers"].as_object() {
            for (k, v) in extra {
                req_headers.push((k.clone(), v.as_str().unwrap().to_string()));
            }
        }
        let hits = up.hits();
        let mut req = client().get(envoy.url("main", &path));
        for (k, v) in &req_headers {
            req = req.header(k, v);
        }
        let status = req
            .send()
            .await
            .map_err(|e| e.to_string())?
            .status()
            .as_u16();
        let want = case["status"].as_u64().unwrap() as u16;
        if status != want {
            return Err(format!("status {status}, documented {want}"));
        }
        if want != 200 {
            return Ok(());
        }
        if up.hits() != hits + 1 {
            return Err("200 without reaching the upstream".into());
        }
        upstream_headers(&up.last(), case)
    }

    fn upstream_headers(
        seen: &gateway_tests::upstream::Recorded,
        case: &Value,
    ) -> Result<(), String> {
        let names = |k: &str| -> Vec<String> {
            case[k].as_array().map_or(Vec::new(), |l| {
                l.iter().map(|v| v.as_str().unwrap().to_string()).collect()
            })
        };
        for h in names("upstream_has") {
            if seen.header(&h).is_none() {
                return Err(format!("the upstream did not get {h}"));
            }
        }
        for h in names("upstream_lacks") {
            if seen.header(&h).is_some() {
                return Err(format!("the upstream got {h}"));
            }
        }
        Ok(())
    }
}
