//! The rules: header, query and request-body operations, which rule applies, non-UTF-8 values and bad configs.

use crate::prelude::*;
use crate::support::envoy_with;

#[tokio::test]
async fn request_header_operations() {
    let up = Upstream::echo().await.unwrap();
    let config = json!({ "rules": [{
        "match": { "path_prefix": "/h" },
        "request": { "headers": {
            "remove": ["x-internal"],
            "rename": { "x-old": "x-new" },
            "set": { "x-route": "h-${method}", "x-copied": "${header.x-source}", "x-page": "${query.page}", "x-path": "${path}" },
            "add": { "x-added": "default", "x-kept": "default" },
            "append": { "x-multi": "from-gateway" }
        }}
    }]});
    let envoy = envoy_with(&config, &up).await;
    let resp = client()
        .get(envoy.url("main", "/h/items?page=3"))
        .header("x-internal", "secret")
        .header("x-old", "legacy")
        .header("x-new", "overwritten-by-rename")
        .header("x-route", "client-value")
        .header("x-source", "abc")
        .header("x-kept", "client")
        .header("x-multi", "from-client")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.last();
    assert_eq!(got.header("x-internal"), None, "removed");
    assert_eq!(got.header("x-old"), None, "renamed away");
    assert_eq!(
        got.header_all("x-new"),
        ["legacy"],
        "renamed, replacing the old x-new"
    );
    assert_eq!(
        got.header_all("x-route"),
        ["h-GET"],
        "set replaces the client value"
    );
    assert_eq!(got.header("x-copied").as_deref(), Some("abc"));
    assert_eq!(got.header("x-page").as_deref(), Some("3"));
    assert_eq!(got.header("x-path").as_deref(), Some("/h/items"));
    assert_eq!(
        got.header("x-added").as_deref(),
        Some("default"),
        "add when absent"
    );
    assert_eq!(got.header_all("x-kept"), ["client"], "add never overrides");
    let multi: Vec<String> = got
        .header_all("x-multi")
        .iter()
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(multi, ["from-client", "from-gateway"], "append keeps both");
    assert_eq!(
        envoy
            .wait_stat_at_least(&custom(transform::metrics::RULES_MATCHED), 1)
            .await
            .unwrap(),
        1
    );
    assert!(
        envoy
            .stat(&custom(transform::metrics::HEADERS_REWRITTEN))
            .await
            .unwrap()
            .unwrap_or(0)
            >= 1
    );
}

#[tokio::test]
async fn query_operations_keep_untouched_parameters_verbatim() {
    let up = Upstream::echo().await.unwrap();
    let config = json!({ "rules": [{ "request": { "query": {
        "remove": ["debug"],
        "set": { "page": "1" },
        "add": { "source": "gw ${method}", "keep": "never" }
    }}}]});
    let envoy = envoy_with(&config, &up).await;
    let resp = client()
        .get(envoy.url(
            "main",
            "/q?debug=1&keep=a%2Fb&page=7&page=8&debug=2&x=%C3%A9",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let path = up.last().path;
    let (p, q) = path.split_once('?').unwrap();
    assert_eq!(p, "/q");
    let params: Vec<&str> = q.split('&').collect();
    assert!(!q.contains("debug"), "{path}");
    assert!(
        params.contains(&"keep=a%2Fb"),
        "untouched bytes kept: {path}"
    );
    assert!(params.contains(&"x=%C3%A9"), "{path}");
    assert_eq!(
        params
            .iter()
            .filter(|p| p.starts_with("page="))
            .collect::<Vec<_>>(),
        [&"page=1"],
        "{path}"
    );
    let source: Vec<&&str> = params.iter().filter(|p| p.starts_with("source=")).collect();
    assert_eq!(source.len(), 1, "{path}");
    assert!(
        source[0] == &"source=gw+GET" || source[0] == &"source=gw%20GET",
        "{path}"
    );
}

#[tokio::test]
async fn response_header_operations() {
    let up = Upstream::start(|_| {
        Reply::text(200, "hi")
            .header("x-powered-by", "php/5")
            .header("x-upstream-old", "v")
            .header("x-replace", "upstream")
    })
    .await
    .unwrap();
    let config = json!({ "rules": [{ "response": { "headers": {
        "remove": ["x-powered-by"],
        "rename": { "x-upstream-old": "x-upstream-new" },
        "set": { "x-replace": "gateway", "x-req-path": "${path}" },
        "add": { "x-frame-options": "DENY" },
        "append": { "x-replace": "also" }
    }}}]});
    let envoy = envoy_with(&config, &up).await;
    let resp = client()
        .get(envoy.url("main", "/r/1"))
        .send()
        .await
        .unwrap();
    let h = resp.headers();
    assert!(h.get("x-powered-by").is_none());
    assert!(h.get("x-upstream-old").is_none());
    assert_eq!(h["x-upstream-new"], "v");
    let replace: Vec<_> = h
        .get_all("x-replace")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(replace, ["gateway", "also"]);
    assert_eq!(
        h["x-req-path"], "/r/1",
        "response templates see the request"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(resp.text().await.unwrap(), "hi");
}

#[tokio::test]
async fn request_json_body_shimmed_for_old_clients() {
    let up = Upstream::echo().await.unwrap();
    let config = json!({ "rules": [{ "match": { "path_exact": "/signup", "methods": ["POST"] },
        "request": { "body": { "rename": { "user_name": "username" }, "strip": ["password_confirmation"], "set": { "client": "legacy" } } } }]});
    let envoy = envoy_with(&config, &up).await;
    let resp = client()
        .post(envoy.url("main", "/signup"))
        .header("content-type", "application/json")
        .body(r#"{"user_name":"ada","password":"x","password_confirmation":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.last();
    assert_eq!(
        got.json(),
        json!({ "username": "ada", "password": "x", "client": "legacy" })
    );
    // The filter removes content-length when it may rewrite (see docs/transform.md): the body then goes
    // chunked, or with a content-length that Envoy computed from the rewritten body.
    match got.header("content-length") {
        Some(len) => assert_eq!(len.parse::<usize>().unwrap(), got.body.len()),
        None => assert_eq!(got.header("transfer-encoding").as_deref(), Some("chunked")),
    }
}

#[tokio::test]
async fn first_match_wins_and_default_applies_otherwise() {
    let up = Upstream::echo().await.unwrap();
    let config = json!({
        "rules": [
            { "name": "a", "match": { "path_prefix": "/a", "headers": [{ "name": "x-tier", "exact": "gold" }] },
              "request": { "headers": { "set": { "x-rule": "gold" } } } },
            { "name": "b", "match": { "path_prefix": "/a" }, "request": { "headers": { "set": { "x-rule": "a" } } } },
            { "name": "c", "match": { "path_prefix": "/a/b" }, "request": { "headers": { "set": { "x-rule": "never" } } } }
        ],
        "default": { "request": { "headers": { "set": { "x-rule": "default" } } } }
    });
    let envoy = envoy_with(&config, &up).await;
    let c = client();
    c.get(envoy.url("main", "/a/b"))
        .header("x-tier", "gold")
        .send()
        .await
        .unwrap();
    assert_eq!(up.last().header("x-rule").as_deref(), Some("gold"));
    c.get(envoy.url("main", "/a/b")).send().await.unwrap();
    assert_eq!(up.last().header("x-rule").as_deref(), Some("a"));
    c.get(envoy.url("main", "/other")).send().await.unwrap();
    assert_eq!(up.last().header("x-rule").as_deref(), Some("default"));
}

#[tokio::test]
async fn non_utf8_header_values_do_not_crash_the_vm() {
    let up = Upstream::echo().await.unwrap();
    let config = json!({ "rules": [{ "request": { "headers": { "set": { "x-copy": "${header.x-bin}" } } } }] });
    let envoy = envoy_with(&config, &up).await;
    let c = client();
    for _ in 0..3 {
        let v = reqwest::header::HeaderValue::from_bytes(b"caf\xe9 \xff").unwrap();
        let resp = c
            .get(envoy.url("main", "/bin"))
            .header("x-bin", v)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // The VM is still alive and still applying rules.
    let resp = c
        .get(envoy.url("main", "/ok"))
        .header("x-bin", "plain")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header("x-copy").as_deref(), Some("plain"));
    assert!(!envoy.log().contains("panicked"), "{}", envoy.log());
}

/// Every bad-config fixture of the filter crate is refused by a real Envoy, and the reason
/// (the fixture's expected message) shows up in Envoy's log.
#[tokio::test]
async fn bad_configs_are_refused_with_their_reason_in_envoys_log() {
    let dir = tools::repo_root().join("filters/transform/tests/fixtures/invalid");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 5,
        "expected bad-config fixtures in {}",
        dir.display()
    );
    let wasm = tools::wasm("transform").unwrap().display().to_string();
    // A handful through Envoy (each start costs a second); the crate's unit test covers all.
    for case in cases.iter().take(4) {
        let config = std::fs::read_to_string(case).unwrap();
        let expected = std::fs::read_to_string(case.with_extension("expected")).unwrap();
        let builder = single_upstream(
            "bad-config",
            vec![chain::wasm_at("transform", &wasm, &config)],
            9,
        )
        .unwrap();
        let (status, log) = builder
            .start_expecting_exit(Duration::from_secs(20))
            .await
            .unwrap();
        assert!(
            !status.success(),
            "{}: Envoy accepted a bad config",
            case.display()
        );
        assert!(
            log.contains(expected.trim()),
            "{}: expected {:?} in Envoy's log:\n{log}",
            case.display(),
            expected.trim()
        );
    }
}
