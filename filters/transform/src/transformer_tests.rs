//! Rule selection and the per-phase plans, end to end from a configuration.

use super::*;
use crate::HeaderEdit::{Add, Remove};

const CONFIG: &str = r#"{
  "max_body_bytes": 100,
  "rules": [
    {
      "name": "orders",
      "match": {"path_prefix": "/api/orders", "methods": ["GET", "POST"]},
      "request": {
        "headers": {"remove": ["x-internal"], "rename": {"x-old": "x-new"}, "set": {"x-a": "${header.x-b}"}, "add": {"x-b": "v"}, "append": {"x-c": "v"}},
        "query": {"remove": ["debug"], "set": {"page": "1"}, "add": {"source": "gw-${method}"}},
        "body": {"strip": ["password"]}
      },
      "response": {
        "headers": {"remove": ["server"], "set": {"x-req": "${method} ${path} ${query.debug}"}},
        "body": {"strip": ["debug_info"]}
      }
    },
    {"name": "shadowed", "match": {"path_prefix": "/api"}, "request": {"headers": {"set": {"x-rule": "second"}}}},
    {"name": "empty", "match": {"path_exact": "/nothing"}}
  ],
  "default": {"request": {"headers": {"set": {"x-rule": "default"}}}, "response": {"headers": {"add": {"x-default": "1"}}}}
}"#;

fn t() -> Transformer {
    Transformer::new(CONFIG.as_bytes()).unwrap()
}

fn req(method: &str, path: &str, extra: &[(&str, &str)]) -> HeaderMap {
    let mut pairs = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "h".to_string()),
    ];
    pairs.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    HeaderMap::new(pairs)
}

#[test]
fn first_matching_rule_wins_then_default() {
    let t = t();
    assert_eq!(
        t.select(&req("GET", "/api/orders/1", &[])),
        Some(RuleRef::Rule(0))
    );
    assert_eq!(
        t.select(&req("DELETE", "/api/orders/1", &[])),
        Some(RuleRef::Rule(1))
    );
    assert_eq!(
        t.select(&req("GET", "/api/users", &[])),
        Some(RuleRef::Rule(1))
    );
    assert_eq!(
        t.select(&req("GET", "/nothing?x", &[])),
        Some(RuleRef::Rule(2))
    );
    assert_eq!(t.select(&req("GET", "/other", &[])), Some(RuleRef::Default));
    assert_eq!(t.rule_name(RuleRef::Rule(1)), "shadowed");
    let plan = t.request_plan(&req("GET", "/other", &[]));
    assert_eq!(plan.headers, [Add("x-rule".into(), "default".into())]);
    let no_default = Transformer::new(br#"{"rules":[{"match":{"path_prefix":"/a"}}]}"#).unwrap();
    assert_eq!(no_default.request_plan(&req("GET", "/b", &[])).rule, None);
    let empty = t.request_plan(&req("GET", "/nothing", &[]));
    assert_eq!(
        (empty.rule, empty.rewrites_headers(), empty.body),
        (Some(RuleRef::Rule(2)), false, BodyPlan::None)
    );
}

#[test]
fn request_plan_carries_every_edit() {
    let t = t();
    let h = req(
        "POST",
        "/api/orders?debug=1&page=3&q=%7e",
        &[
            ("x-internal", "s"),
            ("x-old", "o"),
            ("x-b", "bee"),
            ("content-type", "application/json"),
            ("content-length", "20"),
        ],
    );
    let plan = t.request_plan(&h);
    assert_eq!(plan.rule, Some(RuleRef::Rule(0)));
    assert_eq!(
        plan.headers,
        [
            Remove("x-internal".into()),
            Remove("x-old".into()),
            Add("x-new".into(), "o".into()),
            Add("x-a".into(), "bee".into()),
            Add("x-c".into(), "v".into()),
        ]
    );
    assert_eq!(
        plan.path.as_deref(),
        Some("/api/orders?page=1&q=%7e&source=gw-POST")
    );
    assert_eq!(
        plan.body,
        BodyPlan::Buffer {
            content_length: true
        }
    );
    assert!(plan.rewrites_headers());

    // Response templates read the request captured here.
    let resp = HeaderMap::from([
        (":status", "200"),
        ("server", "upstream"),
        ("content-type", "text/html"),
    ]);
    let out = t.response_plan(RuleRef::Rule(0), &plan.captured, Some(&resp));
    assert_eq!(
        out.headers,
        [
            Remove("server".into()),
            Add("x-req".into(), "POST /api/orders 1".into())
        ]
    );
    // A strip rule fails closed: a non-JSON response body will be refused.
    assert_eq!(out.body, BodyPlan::Refuse(SkipReason::NotJson));
    assert_eq!(out.on_unprocessable, OnUnprocessable::Reject);
    let default = t.response_plan(RuleRef::Default, &Captured::default(), Some(&resp));
    assert_eq!(default.headers, [Add("x-default".into(), "1".into())]);
    assert_eq!(default.body, BodyPlan::None);
}

#[test]
fn body_plans_follow_the_headers() {
    let plan = |h: &[(&str, &str)]| body_plan(&HeaderMap::from_iter_pairs(h), 100);
    assert_eq!(
        plan(&[("content-type", "application/json")]),
        BodyPlan::Buffer {
            content_length: false
        }
    );
    assert_eq!(
        plan(&[
            ("content-type", "Application/JSON; charset=utf-8"),
            ("content-length", "100")
        ]),
        BodyPlan::Buffer {
            content_length: true
        }
    );
    assert_eq!(
        plan(&[("content-type", "application/problem+json")]),
        BodyPlan::Buffer {
            content_length: false
        }
    );
    assert_eq!(
        plan(&[("content-type", "text/plain")]),
        BodyPlan::Skip(SkipReason::NotJson)
    );
    assert_eq!(plan(&[]), BodyPlan::Skip(SkipReason::NotJson));
    assert_eq!(
        plan(&[
            ("content-type", "application/json"),
            ("content-encoding", "gzip")
        ]),
        BodyPlan::Skip(SkipReason::Encoded)
    );
    assert_eq!(
        plan(&[
            ("content-type", "application/json"),
            ("content-encoding", "identity")
        ]),
        BodyPlan::Buffer {
            content_length: false
        }
    );
    assert_eq!(
        plan(&[
            ("content-type", "application/json"),
            ("content-length", "101")
        ]),
        BodyPlan::Skip(SkipReason::Oversize)
    );
    for (ct, json) in [
        ("application/json", true),
        ("application/vnd.api+json", true),
        ("text/x+json ; q=1", true),
        ("application/jsonx", false),
        ("application/+json", false),
        ("json", false),
        ("application/x-www-form-urlencoded", false),
    ] {
        assert_eq!(is_json_content_type(ct), json, "{ct}");
    }
}

#[test]
fn routes_with_response_body_rules_ask_for_identity_bodies() {
    let t = Transformer::new(
        br#"{"rules":[
            {"match":{"path_prefix":"/strip"},"response":{"body":{"strip":["secret"]}}},
            {"match":{"path_prefix":"/own"},"request":{"headers":{"remove":["Accept-Encoding"]}},
             "response":{"body":{"strip":["secret"]}}},
            {"match":{"path_prefix":"/req"},"request":{"body":{"strip":["secret"]}}}
        ]}"#,
    )
    .unwrap();
    let ae = [("accept-encoding", "gzip, br")];
    let strip = t.request_plan(&req("GET", "/strip", &ae));
    assert_eq!(strip.headers, [Remove("accept-encoding".into())]);
    assert!(strip.rewrites_headers());
    // Removed once when the rule removes it itself; nothing to do when the client sent none.
    assert_eq!(
        t.request_plan(&req("GET", "/own", &ae)).headers,
        [Remove("accept-encoding".into())]
    );
    assert!(t
        .request_plan(&req("GET", "/strip", &[]))
        .headers
        .is_empty());
    // The request id is kept for the 502 that may replace the response.
    let with_id = t.request_plan(&req("GET", "/strip", &[("x-request-id", "r-1")]));
    assert_eq!(with_id.captured.request_id(), Some("r-1"));
    assert_eq!(strip.captured.request_id(), None);
    assert_eq!(
        t.request_plan(&req("GET", "/req", &[("x-request-id", "r-1")]))
            .captured
            .request_id(),
        None,
        "captured only where a response may be refused"
    );
    // Request body rules do not change what the client accepts.
    assert!(t.request_plan(&req("GET", "/req", &ae)).headers.is_empty());
}

#[test]
fn unprocessable_response_bodies_fail_closed_unless_the_rule_passes_them() {
    use OnUnprocessable::{Pass, Reject};
    let plan = |h: &[(&str, &str)], policy| {
        response_body_plan(&HeaderMap::from_iter_pairs(h), 100, policy)
    };
    let json = ("content-type", "application/json");
    for (headers, reason) in [
        (vec![("content-type", "text/plain")], SkipReason::NotJson),
        (
            vec![json, ("content-encoding", "gzip")],
            SkipReason::Encoded,
        ),
        (vec![json, ("content-length", "101")], SkipReason::Oversize),
    ] {
        assert_eq!(plan(&headers, Reject), BodyPlan::Refuse(reason));
        assert_eq!(plan(&headers, Pass), BodyPlan::Skip(reason));
    }
    assert_eq!(
        plan(&[json], Reject),
        BodyPlan::Buffer {
            content_length: false
        }
    );
    // 204 and 304 carry no body, whatever their headers say; nor does content-length: 0.
    for status in ["204", "304"] {
        assert_eq!(
            plan(&[(":status", status), ("content-encoding", "gzip")], Reject),
            BodyPlan::None
        );
    }
    for zero in ["0", " 0", "00"] {
        assert_eq!(
            plan(
                &[("content-type", "text/html"), ("content-length", zero)],
                Reject
            ),
            BodyPlan::None,
            "{zero:?}"
        );
    }
    assert_eq!(
        plan(
            &[("content-type", "text/html"), ("content-length", "1")],
            Reject
        ),
        BodyPlan::Refuse(SkipReason::NotJson)
    );
    let passing = Transformer::new(
        br#"{"rules":[{"response":{"body":{"strip":["a"],"on_unprocessable":"pass"}}}]}"#,
    )
    .unwrap();
    let resp = HeaderMap::from([(":status", "200"), ("content-type", "text/plain")]);
    let out = passing.response_plan(RuleRef::Rule(0), &Captured::default(), Some(&resp));
    assert_eq!(
        (out.body, out.on_unprocessable),
        (BodyPlan::Skip(SkipReason::NotJson), Pass)
    );
}

#[test]
fn on_unprocessable_and_accept_encoding_are_validated() {
    let err = |json: &str| Transformer::new(json.as_bytes()).unwrap_err();
    let e = err(r#"{"rules":[{"response":{"body":{"strip":["a"],"on_unprocessable":"allow"}}}]}"#);
    assert_eq!(e.field, "rules[0].response.body.on_unprocessable");
    assert!(e.reason.contains("expected `reject` or `pass`"), "{e}");
    let e = err(r#"{"default":{"request":{"body":{"strip":["a"],"on_unprocessable":"pass"}}}}"#);
    assert_eq!(e.field, "default.request.body.on_unprocessable");
    let e = err(r#"{"rules":[{"response":{"body":{"on_unprocessable":"pass"}}}]}"#);
    assert_eq!(e.field, "rules[0].response.body.on_unprocessable");
    let e = err(
        r#"{"rules":[{"request":{"headers":{"set":{"Accept-Encoding":"gzip"}}},"response":{"body":{"strip":["a"]}}}]}"#,
    );
    assert_eq!(e.field, "rules[0].request.headers.set.Accept-Encoding");
    assert!(e.reason.starts_with("conflicts with response.body"), "{e}");
    let e = err(
        r#"{"rules":[{"request":{"headers":{"rename":{"x-ae":"accept-encoding"}}},"response":{"body":{"strip":["a"]}}}]}"#,
    );
    assert_eq!(e.field, "rules[0].request.headers.rename.x-ae");
    // Without response body operations the header is the rule's to write.
    assert!(Transformer::new(
        br#"{"rules":[{"request":{"headers":{"set":{"accept-encoding":"gzip"}}}}]}"#
    )
    .is_ok());
    assert!(Transformer::new(
        br#"{"rules":[{"response":{"body":{"strip":["a"],"on_unprocessable":"reject"}}}]}"#
    )
    .is_ok());
}

#[test]
fn rewrite_json_uses_the_rule_operations() {
    let t = t();
    let ops = t.response_body_ops(RuleRef::Rule(0)).unwrap();
    assert_eq!(
        t.rewrite_json(ops, br#"{"a":1,"debug_info":{"x":[]}}"#),
        BodyOutcome::Rewritten(br#"{"a":1}"#.to_vec())
    );
    assert_eq!(t.rewrite_json(ops, br#"{"a":1}"#), BodyOutcome::Unchanged);
    assert!(matches!(
        t.rewrite_json(ops, br#"{"a":1"#),
        BodyOutcome::Invalid(_)
    ));
    assert!(t.request_body_ops(RuleRef::Default).is_none());
}

#[test]
fn config_errors_name_the_field() {
    let err = |json: &str| Transformer::new(json.as_bytes()).unwrap_err().to_string();
    assert_eq!(
        err(r#"{"rules":[{},{"match":{"methods":["G T"]}}]}"#),
        "invalid configuration: field `rules[1].match.methods[0]`: \"G T\" is not an HTTP method"
    );
    assert_eq!(
        err(r#"{"max_body_bytes":67108865}"#),
        "invalid configuration: field `max_body_bytes`: must be between 1 and 67108864"
    );
    assert!(
        err(r#"{"default":{"request":{"query":{"set":{"a":"${x}"}}}}}"#)
            .contains("field `default.request.query.set.a`")
    );
    assert!(Transformer::new(b"{}").is_ok());
}

trait FromPairs {
    fn from_iter_pairs(pairs: &[(&str, &str)]) -> HeaderMap;
}

impl FromPairs for HeaderMap {
    fn from_iter_pairs(pairs: &[(&str, &str)]) -> HeaderMap {
        HeaderMap::new(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }
}

#[test]
fn response_headers_mode_is_top_level_and_strict() {
    use crate::ResponseHeadersMode;
    let rule = r#""rules":[{"response":{"body":{"strip":["a"]}}}]"#;
    let mode = |extra: &str| Transformer::new(format!("{{{extra}{rule}}}").as_bytes());
    assert_eq!(
        mode("").unwrap().response_headers_mode(),
        ResponseHeadersMode::Hold,
        "hold is the default"
    );
    assert_eq!(
        mode(r#""response_headers_mode":"hold","#)
            .unwrap()
            .response_headers_mode(),
        ResponseHeadersMode::Hold
    );
    assert_eq!(
        mode(r#""response_headers_mode":"stream","#)
            .unwrap()
            .response_headers_mode(),
        ResponseHeadersMode::Stream
    );
    for bad in [r#""Stream""#, r#""streaming""#, "false", "null", "1"] {
        let e = mode(&format!(r#""response_headers_mode":{bad},"#)).unwrap_err();
        assert_eq!(e.field, "response_headers_mode", "{bad}: {e}");
    }
    let e = mode(r#""response_headers_mode":"buffer","#).unwrap_err();
    assert!(e.reason.contains("expected `hold` or `stream`"), "{e}");
    // Not a rule setting.
    let e = Transformer::new(
        br#"{"rules":[{"response_headers_mode":"stream","response":{"body":{"strip":["a"]}}}]}"#,
    )
    .unwrap_err();
    assert!(e.field.starts_with("rules[0]"), "{e}");
}
