//! envoyproxy/ratelimit's `test/config/config_test.go` (at f2fb157), ported: every limit lookup
//! (`GetLimit`) it asserts, on the same fixture or the same inline config (written here as
//! YAML), with the same descriptor entries and the same expected limit or no limit. Its stats
//! key is our metrics label with the domain in front (`<domain>.<stats name>`), its
//! `ShareThresholdKeyPattern` the value a bucket key uses, its `Metadata` our limit's metadata.
//! The four override lookups of `TestConfigLimitOverride` need the limiter and live in
//! `limiter/tests.rs` (`envoyproxy_config_limit_override`).

use super::*;
use crate::keys;

/// Lookups ported here: every `GetLimit` of config_test.go, loops expanded, except the four
/// of `TestConfigLimitOverride` (see the module comment).
const PORTED: usize = 98;

fn fixture(names: &[&str]) -> Config {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/envoyproxy-ratelimit");
    let sources: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.to_string(), std::fs::read_to_string(dir.join(n)).unwrap()))
        .collect();
    Config::from_sources(&sources).unwrap()
}

fn inline(yaml: &str) -> Config {
    Config::from_yaml_str("inline.yaml", yaml).unwrap()
}

/// What config_test.go asserts about one lookup; `None` fields are not asserted there.
#[derive(Default, Clone, Copy)]
struct Want {
    rpu: Option<u32>,
    unit: Option<Unit>,
    /// `Some("")`: no name.
    name: Option<&'static str>,
    shadow: Option<bool>,
    unlimited: Option<bool>,
    detailed: Option<bool>,
    /// The stats key, domain first.
    stats: Option<&'static str>,
    /// The descriptor part of the bucket key (`k=v|k=v`), where share_threshold is asserted.
    bucket: Option<&'static str>,
}

fn limit(rpu: u32, unit: Unit) -> Want {
    Want {
        rpu: Some(rpu),
        unit: Some(unit),
        ..Want::default()
    }
}

fn stats(key: &'static str) -> Want {
    Want {
        stats: Some(key),
        ..Want::default()
    }
}

impl Want {
    fn stats(self, key: &'static str) -> Want {
        Want {
            stats: Some(key),
            ..self
        }
    }
    fn bucket(self, key: &'static str) -> Want {
        Want {
            bucket: Some(key),
            ..self
        }
    }
    fn shadow(self, on: bool) -> Want {
        Want {
            shadow: Some(on),
            ..self
        }
    }
    fn name(self, name: &'static str) -> Want {
        Want {
            name: Some(name),
            ..self
        }
    }
}

/// Counts the lookups checked, so the port cannot silently lose one.
#[derive(Default)]
struct Port {
    checked: usize,
}

impl Port {
    /// Looks the entries up and asserts `want` (`None`: no limit applies).
    fn get<'c>(
        &mut self,
        config: &'c Config,
        domain: &str,
        entries: &[(&str, &str)],
        want: Option<Want>,
    ) -> Option<&'c Limit> {
        self.checked += 1;
        let got = config
            .domain(domain)
            .and_then(|d| d.find(entries.iter().copied()))
            .and_then(|node| node.limits.first());
        let (got, want) = match (got, want) {
            (None, None) => return None,
            (Some(got), Some(want)) => (got, want),
            (got, want) => panic!(
                "{domain} {entries:?}: expected a limit: {}, got {:?}",
                want.is_some(),
                got.map(|l| &l.stats_path)
            ),
        };
        let at = format!("{domain} {entries:?}");
        if let Some(rpu) = want.rpu {
            assert_eq!(got.requests_per_unit, rpu, "{at}: requests_per_unit");
        }
        if let Some(unit) = want.unit {
            assert_eq!(got.unit, unit, "{at}: unit");
        }
        if let Some(name) = want.name {
            assert_eq!(got.name.as_deref().unwrap_or(""), name, "{at}: name");
        }
        if let Some(shadow) = want.shadow {
            assert_eq!(got.shadow_mode, shadow, "{at}: shadow_mode");
        }
        if let Some(unlimited) = want.unlimited {
            assert_eq!(got.unlimited, unlimited, "{at}: unlimited");
        }
        if let Some(detailed) = want.detailed {
            assert_eq!(got.detailed_metric, detailed, "{at}: detailed_metric");
        }
        if let Some(key) = want.stats {
            assert_eq!(stats_key(domain, got, entries), key, "{at}: stats key");
        }
        if let Some(key) = want.bucket {
            let values = entries
                .iter()
                .enumerate()
                .map(|(i, (k, v))| (*k, got.bucket_value(i, v)));
            assert_eq!(keys::bucket_key("", values), key, "{at}: bucket key");
        }
        Some(got)
    }
}

fn stats_key(domain: &str, limit: &Limit, entries: &[(&str, &str)]) -> String {
    let name = limit
        .stats_name(entries.iter().copied())
        .unwrap_or_else(|| limit.stats_path.clone());
    format!("{domain}.{name}")
}

#[test]
fn every_lookup_of_config_test_go_agrees() {
    let mut port = Port::default();
    basic_config(&mut port);
    domain_merge(&mut port);
    shadow_mode_config(&mut port);
    wildcard_config(&mut port);
    detailed_metric(&mut port);
    value_to_metric(&mut port);
    share_threshold(&mut port);
    wildcard_stats_behavior(&mut port);
    metadata(&mut port);
    assert_eq!(port.checked, PORTED);
}

/// TestBasicConfig.
fn basic_config(port: &mut Port) {
    let c = fixture(&["basic_config.yaml"]);
    let d = "test-domain";
    port.get(&c, "foo_domain", &[], None);
    port.get(&c, d, &[], None);
    port.get(&c, d, &[("key1", "something")], None);
    port.get(&c, d, &[("key1", "value1")], None);
    port.get(&c, d, &[("key2", "value2"), ("subkey", "subvalue")], None);
    port.get(&c, d, &[("key5", "value5"), ("subkey5", "subvalue")], None);
    let cases: [(&[(&str, &str)], Want); 7] = [
        (
            &[("key1", "value1"), ("subkey1", "something")],
            limit(5, Unit::Second).stats("test-domain.key1_value1.subkey1"),
        ),
        (
            &[("key1", "value1"), ("subkey1", "subvalue1")],
            limit(10, Unit::Second).stats("test-domain.key1_value1.subkey1_subvalue1"),
        ),
        (
            &[("key2", "something")],
            limit(20, Unit::Minute).stats("test-domain.key2"),
        ),
        (
            &[("key2", "value2")],
            limit(30, Unit::Minute).stats("test-domain.key2_value2"),
        ),
        (
            &[("key3", "foo")],
            limit(1, Unit::Hour).name("").stats("test-domain.key3"),
        ),
        (
            &[("key4", "foo")],
            limit(1, Unit::Day)
                .name("key4_rate_limit")
                .stats("test-domain.key4"),
        ),
        (
            &[("key7", "unspecified_value")],
            limit(70, Unit::Minute).stats("test-domain.key7_unspecified_value"),
        ),
    ];
    for (entries, want) in cases {
        port.get(&c, d, entries, Some(want));
    }
    port.get(&c, d, &[("key2", "value3")], None);
    let unlimited = Want {
        unlimited: Some(true),
        ..stats("test-domain.key6")
    };
    port.get(&c, d, &[("key6", "foo")], Some(unlimited));
    let another = limit(70, Unit::Minute).stats("test-domain.key7_another_value");
    port.get(&c, d, &[("key7", "another_value")], Some(another));
}

/// TestDomainMerge: two files of one domain, merged as with the reference's
/// MERGE_DOMAIN_CONFIG (`merge_domains` here).
fn domain_merge(port: &mut Port) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/envoyproxy-ratelimit");
    let sources: Vec<(String, String)> = ["merge_domain_key1.yaml", "merge_domain_key2.yaml"]
        .iter()
        .map(|n| (n.to_string(), std::fs::read_to_string(dir.join(n)).unwrap()))
        .collect();
    let c = Config::from_sources_with(
        &sources,
        LoadOptions {
            merge_domains: true,
        },
    )
    .unwrap();
    port.get(&c, "foo_domain", &[], None);
    port.get(&c, "test-domain", &[], None);
    let want = |rpu| Want {
        rpu: Some(rpu),
        ..Want::default()
    };
    port.get(&c, "test-domain", &[("key1", "value1")], Some(want(10)));
    port.get(&c, "test-domain", &[("key2", "value2")], Some(want(20)));
}

/// TestShadowModeConfig.
fn shadow_mode_config(port: &mut Port) {
    let c = fixture(&["shadowmode_config.yaml"]);
    let cases: [(&[(&str, &str)], Want); 4] = [
        (
            &[("key1", "value1"), ("subkey1", "something")],
            limit(5, Unit::Second)
                .shadow(false)
                .stats("test-domain.key1_value1.subkey1"),
        ),
        (
            &[("key1", "value1"), ("subkey1", "subvalue1")],
            limit(10, Unit::Second)
                .shadow(true)
                .stats("test-domain.key1_value1.subkey1_subvalue1"),
        ),
        (
            &[("key2", "something")],
            limit(20, Unit::Minute)
                .shadow(true)
                .stats("test-domain.key2"),
        ),
        (
            &[("key2", "value2")],
            limit(30, Unit::Minute)
                .shadow(false)
                .stats("test-domain.key2_value2"),
        ),
    ];
    for (entries, want) in cases {
        port.get(&c, "test-domain", entries, Some(want));
    }
}

/// TestWildcardConfig.
fn wildcard_config(port: &mut Port) {
    let c = fixture(&["wildcard.yaml"]);
    let d = "test-domain";
    let same = |port: &mut Port, values: &[&str], key: &str, want: Want| {
        let ids: Vec<usize> = values
            .iter()
            .map(|v| port.get(&c, d, &[(key, v)], Some(want)).unwrap().id)
            .collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{key}: one limit");
    };
    same(port, &["foo1", "foo2"], "noVal", stats("test-domain.noVal"));
    same(
        port,
        &["foo1", "foo2"],
        "wild",
        stats("test-domain.wild_foo*"),
    );
    let nested = stats("test-domain.nestedWild_val1.wild_goo*");
    port.get(
        &c,
        d,
        &[("nestedWild", "val1"), ("wild", "goo2")],
        Some(nested),
    );
    port.get(&c, d, &[("wild", "bar")], None);
    port.get(&c, d, &[("noWild", "foo1")], None);
    let mid = stats("test-domain.midWild_bar*b");
    same(port, &["barab", "bar123b"], "midWild", mid);
    port.get(&c, d, &[("midWild", "barb")], Some(Want::default()));
    port.get(&c, d, &[("midWild", "bara")], None);
    port.get(&c, d, &[("midWild", "xbarb")], None);
    let multi = stats("test-domain.multiWild_foo*bar*baz");
    same(port, &["foo123bar456baz", "foobarbaz"], "multiWild", multi);
    port.get(&c, d, &[("multiWild", "foo123baz")], None);
    port.get(&c, d, &[("multiWild", "bar456baz")], None);
}

/// A config, the entries looked up, the stats key expected.
type DetailedCase<'a> = (Config, &'a [(&'a str, &'a str)], &'static str);

/// TestDetailedMetric: its table, configs written as YAML.
fn detailed_metric(port: &mut Port) {
    let two_levels = |top: bool, leaf: bool| {
        inline(&format!(
            "domain: nested
descriptors:
  - key: key-1
    detailed_metric: {top}
    rate_limit: {{ requests_per_unit: 100, unit: minute }}
    descriptors:
      - key: key-2
        detailed_metric: {leaf}
        rate_limit: {{ requests_per_unit: 5, unit: minute }}
"
        ))
    };
    let realistic = || {
        inline(
            "domain: nested
descriptors:
  - key: key_1
    detailed_metric: true
    rate_limit: { requests_per_unit: 500, unit: minute }
  - key: key_1
    value: some-value-for-key-1
    rate_limit: { requests_per_unit: 500, unit: minute }
  - key: key_2
    detailed_metric: true
    rate_limit: { requests_per_unit: 5000, unit: minute }
    descriptors:
      - key: key_3
        detailed_metric: true
      - key: key_3
        value: requested-key3-value
        detailed_metric: true
        rate_limit: { requests_per_unit: 5, unit: minute }
  - key: key_2
    value: specific-id
    detailed_metric: true
    rate_limit: { requests_per_unit: 50000, unit: minute }
    descriptors:
      - key: key_3
        detailed_metric: true
      - key: key_3
        value: requested-key3-value
        detailed_metric: true
        rate_limit: { requests_per_unit: 100, unit: minute }
",
        )
    };
    let one = [("key-1", "value-1")];
    let both = [("key-1", "value-1"), ("key-2", "value-2")];
    let cases: [DetailedCase<'_>; 7] = [
        (two_levels(true, false), &one, "nested.key-1_value-1"),
        (two_levels(false, false), &one, "nested.key-1"),
        (
            two_levels(true, true),
            &both,
            "nested.key-1_value-1.key-2_value-2",
        ),
        (two_levels(false, false), &both, "nested.key-1.key-2"),
        (
            realistic(),
            &[("key_1", "value-for-key-1")],
            "nested.key_1_value-for-key-1",
        ),
        (
            realistic(),
            &[("key_2", "key-2-value")],
            "nested.key_2_key-2-value",
        ),
        (
            realistic(),
            &[("key_2", "key-2-value"), ("key_3", "requested-key3-value")],
            "nested.key_2_key-2-value.key_3_requested-key3-value",
        ),
    ];
    for (config, entries, key) in cases {
        port.get(&config, "nested", entries, Some(stats(key)));
    }
}

/// The three-level config the TestValueToMetric_* tests share: `route` and `http_method`
/// key-only, with `value_to_metric` where asked, and `subject_id` holding the limit.
fn route_method_subject(domain: &str, flags: bool, leaf_detailed: bool) -> Config {
    inline(&format!(
        "domain: {domain}
descriptors:
  - key: route
    value_to_metric: {flags}
    descriptors:
      - key: http_method
        value_to_metric: {flags}
        descriptors:
          - key: subject_id
            detailed_metric: {leaf_detailed}
            rate_limit: {{ requests_per_unit: 60, unit: minute }}
"
    ))
}

/// The nine TestValueToMetric_* tests.
fn value_to_metric(port: &mut Port) {
    let request = [
        ("route", "draw"),
        ("http_method", "GET"),
        ("subject_id", "123"),
    ];
    let c = route_method_subject("domain", true, false);
    let runtime = stats("domain.route_draw.http_method_GET.subject_id");
    port.get(&c, "domain", &request, Some(runtime));
    let c = route_method_subject("domain", true, true);
    let detailed = stats("domain.route_draw.http_method_GET.subject_id_123");
    port.get(&c, "domain", &request, Some(detailed));

    let c = inline(
        "domain: d
descriptors:
  - key: k1
    value_to_metric: true
    descriptors:
      - key: k2
        rate_limit: { requests_per_unit: 1, unit: second }
",
    );
    port.get(
        &c,
        "d",
        &[("k1", "A"), ("k2", "foo")],
        Some(stats("d.k1_A.k2")),
    );
    let c = inline(
        "domain: d
descriptors:
  - key: k1
    descriptors:
      - key: k2
        value_to_metric: true
        descriptors:
          - key: k3
            rate_limit: { requests_per_unit: 1, unit: second }
",
    );
    let entries = [("k1", "X"), ("k2", "Y"), ("k3", "Z")];
    port.get(&c, "d", &entries, Some(stats("d.k1.k2_Y.k3")));
    let c = inline(
        "domain: d
descriptors:
  - key: k1
    descriptors:
      - key: k2
        rate_limit: { requests_per_unit: 1, unit: second }
",
    );
    port.get(&c, "d", &[("k1", "X"), ("k2", "Y")], Some(stats("d.k1.k2")));
    value_to_metric_configured_and_wildcard(port);
    value_to_metric_empty_values_and_full_key(port);
}

/// TestValueToMetric_WithConfiguredValues and _WithWildcard.
fn value_to_metric_configured_and_wildcard(port: &mut Port) {
    let c = inline(
        "domain: test-domain
descriptors:
  - key: route
    value_to_metric: true
    descriptors:
      - key: http_method
        value: GET
        value_to_metric: true
        descriptors:
          - key: subject_id
            rate_limit: { requests_per_unit: 60, unit: minute }
      - key: http_method
        value: POST
        value_to_metric: true
        descriptors:
          - key: subject_id
            rate_limit: { requests_per_unit: 30, unit: minute }
",
    );
    for (method, rpu, key) in [
        (
            "GET",
            60,
            "test-domain.route_api.http_method_GET.subject_id",
        ),
        (
            "POST",
            30,
            "test-domain.route_api.http_method_POST.subject_id",
        ),
    ] {
        let entries = [
            ("route", "api"),
            ("http_method", method),
            ("subject_id", "u"),
        ];
        let want = Want {
            rpu: Some(rpu),
            ..stats(key)
        };
        port.get(&c, "test-domain", &entries, Some(want));
    }
    let c = inline(
        "domain: domain
descriptors:
  - key: user
    value_to_metric: true
    descriptors:
      - key: action
        value: read*
        value_to_metric: true
        descriptors:
          - key: resource
            rate_limit: { requests_per_unit: 100, unit: minute }
",
    );
    for (user, action, resource, key) in [
        (
            "alice",
            "readfile",
            "documents",
            "domain.user_alice.action_readfile.resource",
        ),
        (
            "bob",
            "readdata",
            "database",
            "domain.user_bob.action_readdata.resource",
        ),
    ] {
        let entries = [("user", user), ("action", action), ("resource", resource)];
        let want = Want {
            rpu: Some(100),
            ..stats(key)
        };
        port.get(&c, "domain", &entries, Some(want));
    }
}

/// TestValueToMetric_WithEmptyValue and _FullKeyMatchesStatsKey.
fn value_to_metric_empty_values_and_full_key(port: &mut Port) {
    let c = route_method_subject("domain", true, false);
    for (route, method, key) in [
        ("", "GET", "domain.route.http_method_GET.subject_id"),
        ("draw", "", "domain.route_draw.http_method.subject_id"),
        ("", "", "domain.route.http_method.subject_id"),
    ] {
        let entries = [
            ("route", route),
            ("http_method", method),
            ("subject_id", "123"),
        ];
        port.get(&c, "domain", &entries, Some(stats(key)));
    }
    let request = [
        ("route", "api"),
        ("http_method", "GET"),
        ("subject_id", "user123"),
    ];
    let c = route_method_subject("test-domain", true, false);
    let key = "test-domain.route_api.http_method_GET.subject_id";
    port.get(&c, "test-domain", &request, Some(stats(key)));
    // FullKey equals the stats key by construction here: only one name exists.
    let c = route_method_subject("test-domain-2", false, false);
    let key = "test-domain-2.route.http_method.subject_id";
    port.get(&c, "test-domain-2", &request, Some(stats(key)));
    let c = route_method_subject("test-domain-3", false, true);
    let key = "test-domain-3.route_api.http_method_GET.subject_id_user123";
    port.get(&c, "test-domain-3", &request, Some(stats(key)));
}

/// TestShareThreshold (share_threshold.yaml): its cases 1 to 4.
fn share_threshold(port: &mut Port) {
    let c = fixture(&["share_threshold.yaml"]);
    let d = "test-domain";
    for value in ["files/a.pdf", "files/b.csv", "files/c.txt"] {
        let want = limit(100, Unit::Minute)
            .stats("test-domain.files_files/*")
            .bucket("files=files/*");
        port.get(&c, d, &[("files", value)], Some(want));
    }
    let route = stats("test-domain.route_api/*.method").bucket("route=api/*|method=GET");
    port.get(
        &c,
        d,
        &[("route", "api/v1"), ("method", "GET")],
        Some(route),
    );
    let service = Want {
        detailed: Some(true),
        ..stats("test-domain.service_svc/*.endpoint_get").bucket("service=svc/*|endpoint=get")
    };
    let entries = [("service", "svc/user"), ("endpoint", "get")];
    port.get(&c, d, &entries, Some(service));
    let cases: [(&[(&str, &str)], Want); 4] = [
        (
            &[("nested", "parent"), ("files", "nested/file1.txt")],
            limit(200, Unit::Minute)
                .stats("test-domain.nested_parent.files_nested/*")
                .bucket("nested=parent|files=nested/*"),
        ),
        (
            &[("files", "top/file1.txt"), ("files", "nested/file1.txt")],
            stats("test-domain.files_top/*.files_nested/*").bucket("files=top/*|files=nested/*"),
        ),
        (
            &[("path", "path/foo"), ("file", "file/doc1"), ("type", "pdf")],
            stats("test-domain.path_path/*.file_file/*.type")
                .bucket("path=path/*|file=file/doc1|type=pdf"),
        ),
        (
            &[
                ("user", "user/alice"),
                ("resource", "res/file1"),
                ("action", "read"),
            ],
            stats("test-domain.user_user/*.resource_res/*.action")
                .bucket("user=user/*|resource=res/*|action=read"),
        ),
    ];
    for (entries, want) in cases {
        port.get(&c, d, entries, Some(want));
    }
    let own = limit(50, Unit::Minute)
        .stats("test-domain.file_test1")
        .bucket("file=test1");
    port.get(&c, d, &[("file", "test1")], Some(own));
    for value in ["test2", "test23", "test123"] {
        let want = limit(100, Unit::Minute)
            .stats("test-domain.file_test*")
            .bucket("file=test*");
        port.get(&c, d, &[("file", value)], Some(want));
    }
    share_threshold_inner_wildcards(port, &c);
}

/// TestShareThreshold cases 5 to 8: `*` inside the value.
fn share_threshold_inner_wildcards(port: &mut Port, c: &Config) {
    let d = "test-domain";
    for value in ["/api/v1", "/api-beta-v1", "/apiXYZv1"] {
        let want = limit(100, Unit::Minute)
            .stats("test-domain.midpath_/api*v1")
            .bucket("midpath=/api*v1");
        port.get(c, d, &[("midpath", value)], Some(want));
    }
    port.get(c, d, &[("midpath", "/api/v2")], None);
    for value in ["svcAepBrpc", "svcXXXepYYYrpc", "svceprpc"] {
        let want = limit(50, Unit::Minute)
            .stats("test-domain.multiroute_svc*ep*rpc")
            .bucket("multiroute=svc*ep*rpc");
        port.get(c, d, &[("multiroute", value)], Some(want));
    }
    port.get(c, d, &[("multiroute", "svcABCrpc")], None);
    for value in ["/api/v2", "/api-beta-v2"] {
        let want = stats("test-domain.midroute_/api*v2").bucket("midroute=/api*v2");
        port.get(c, d, &[("midroute", value)], Some(want));
    }
    for (tenant, resource) in [("t1prod", "resAv2"), ("t99prod", "resBBBv2")] {
        let want = stats("test-domain.tenant_t*prod.resource_res*v2")
            .bucket("tenant=t*prod|resource=res*v2");
        let entries = [("tenant", tenant), ("resource", resource)];
        port.get(c, d, &entries, Some(want));
    }
}

/// TestWildcardStatsBehavior: its inline configs, one `wild` descriptor each.
fn wildcard_stats_behavior(port: &mut Port) {
    let wild = |value: &str, flags: &[&str]| {
        let flags: String = flags.iter().map(|f| format!("    {f}: true\n")).collect();
        inline(&format!(
            "domain: test-domain
descriptors:
  - key: wild
    value: \"{value}\"
{flags}    rate_limit: {{ requests_per_unit: 20, unit: minute }}
"
        ))
    };
    let d = "test-domain";
    let foo1 = [("wild", "foo1")];
    let cases: [(&[&str], &str, &str); 4] = [
        (&[], "test-domain.wild_foo*", "wild=foo1"),
        (&["value_to_metric"], "test-domain.wild_foo1", "wild=foo1"),
        (&["share_threshold"], "test-domain.wild_foo*", "wild=foo*"),
        (
            &["share_threshold", "value_to_metric"],
            "test-domain.wild_foo*",
            "wild=foo*",
        ),
    ];
    for (flags, key, bucket) in cases {
        let want = stats(key).bucket(bucket);
        port.get(&wild("foo*", flags), d, &foo1, Some(want));
    }
    let c = inline(
        "domain: test-domain
descriptors:
  - key: wild
    value: foo*
    descriptors:
      - key: other
        value_to_metric: true
        descriptors:
          - key: limit
            rate_limit: { requests_per_unit: 20, unit: minute }
",
    );
    let entries = [("wild", "foo1"), ("other", "bar"), ("limit", "X")];
    let want = stats("test-domain.wild_foo*.other_bar.limit");
    port.get(&c, d, &entries, Some(want));
    let c = wild("foo*bar*", &[]);
    for value in ["foo123bar456", "fooXbarY"] {
        let want = stats("test-domain.wild_foo*bar*");
        port.get(&c, d, &[("wild", value)], Some(want));
    }
    let c = wild("foo*bar*", &["value_to_metric"]);
    let want = stats("test-domain.wild_foo123bar456");
    port.get(&c, d, &[("wild", "foo123bar456")], Some(want));
}

/// TestMetadata (metadata.yaml).
fn metadata(port: &mut Port) {
    let c = fixture(&["metadata.yaml"]);
    let d = "test-domain";
    port.get(&c, d, &[], None);
    let want = limit(5, Unit::Second).stats("test-domain.key1_value1.subkey1");
    let got = port.get(
        &c,
        d,
        &[("key1", "value1"), ("subkey1", "something")],
        Some(want),
    );
    let meta = got.unwrap().metadata.as_deref().unwrap();
    assert_eq!(meta["name"], "service_1");
    let want = limit(20, Unit::Minute).stats("test-domain.key2");
    let got = port.get(&c, d, &[("key2", "something")], Some(want));
    let meta = got.unwrap().metadata.as_deref().unwrap();
    assert_eq!(meta["service_with_quota"]["name"], "service_2");
}
