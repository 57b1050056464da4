use super::*;

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

fn limit_of<'a>(
    config: &'a Config,
    domain: &str,
    entries: &[(&'a str, &'a str)],
) -> Option<&'a Limit> {
    let domain = config.domain(domain)?;
    domain
        .find(entries.iter().copied())
        .and_then(|node| node.limits.first())
}

/// Every file in `tests/fixtures/invalid` with the exact message it must produce.
const INVALID: &[(&str, &str)] = &[
    (
        "bad_unit.yaml",
        "invalid/bad_unit.yaml: descriptors[0].rate_limit.unit: unknown unit \"fortnight\" (expected second, minute, hour, day, week, month or year)",
    ),
    (
        "unknown_key.yaml",
        "invalid/unknown_key.yaml: descriptors[0].rate_limit: unknown field `requests_per_unti`, expected one of `unit`, `requests_per_unit`, `unlimited`, `name`, `unit_multiplier`, `algorithm`, `burst`, `mode`, `lease_size`, `lease_ttl`, `replaces` at line 6 column 7",
    ),
    (
        "yaml_syntax.yaml",
        "invalid/yaml_syntax.yaml: did not find expected key at line 6 column 6, while parsing a block mapping at line 3 column 5",
    ),
    (
        "duplicate_key.yaml",
        "invalid/duplicate_key.yaml: descriptors[1]: duplicate descriptor key \"database\" with value \"users\" among siblings",
    ),
    (
        "negative_requests.yaml",
        "invalid/negative_requests.yaml: descriptors[0].rate_limit.requests_per_unit: must be between 0 and 4294967295, got -5",
    ),
    (
        "zero_multiplier.yaml",
        "invalid/zero_multiplier.yaml: descriptors[0].rate_limit.unit_multiplier: must be between 1 and 4294967295, got 0",
    ),
    (
        "zero_burst.yaml",
        "invalid/zero_burst.yaml: descriptors[0].rate_limits[1].burst: must be between 1 and 4294967295, got 0",
    ),
    (
        "missing_key.yaml",
        "invalid/missing_key.yaml: descriptors[0].descriptors[0]: descriptor has no `key`",
    ),
    (
        "empty_domain.yaml",
        "invalid/empty_domain.yaml: domain: must be a non-empty string",
    ),
    (
        "unlimited_with_unit.yaml",
        "invalid/unlimited_with_unit.yaml: descriptors[0].rate_limit.unit: must not be set when `unlimited: true`",
    ),
    (
        "bad_algorithm.yaml",
        "invalid/bad_algorithm.yaml: descriptors[0].rate_limit.algorithm: unknown algorithm \"leaky_bucket\" (expected token_bucket, fixed_window or sliding_window)",
    ),
    (
        "both_rate_limit_forms.yaml",
        "invalid/both_rate_limit_forms.yaml: descriptors[0]: use either `rate_limit` or `rate_limits`, not both",
    ),
    (
        "bad_mode.yaml",
        "invalid/bad_mode.yaml: descriptors[0].rate_limit.mode: unknown mode \"lazy\" (expected exact or leased)",
    ),
    (
        "lease_size_zero.yaml",
        "invalid/lease_size_zero.yaml: descriptors[0].rate_limit.lease_size: must be at least 1, got 0",
    ),
    (
        "lease_size_over_limit.yaml",
        "invalid/lease_size_over_limit.yaml: descriptors[1].rate_limit.lease_size: 5 is larger than the limit (requests_per_unit: 3)",
    ),
    (
        "lease_size_over_burst.yaml",
        "invalid/lease_size_over_burst.yaml: descriptors[0].rate_limits[0].lease_size: 25 is larger than the bucket's capacity (burst: 20)",
    ),
    (
        "lease_ttl_zero.yaml",
        "invalid/lease_ttl_zero.yaml: descriptors[0].rate_limit.lease_ttl: must be positive, got \"0s\"",
    ),
    (
        "lease_ttl_negative.yaml",
        "invalid/lease_ttl_negative.yaml: descriptors[0].rate_limit.lease_ttl: must be positive, got \"-5s\"",
    ),
    (
        "lease_ttl_unparseable.yaml",
        "invalid/lease_ttl_unparseable.yaml: descriptors[0].rate_limit.lease_ttl: invalid duration \"5\" (expected e.g. 500ms, 5s or 1m)",
    ),
    (
        "leased_unlimited.yaml",
        "invalid/leased_unlimited.yaml: descriptors[0].rate_limit.mode: `leased` does not apply to an `unlimited: true` limit (it has no tokens to lease)",
    ),
    (
        "lease_size_without_leased.yaml",
        "invalid/lease_size_without_leased.yaml: descriptors[0].rate_limit.lease_size: only applies to `mode: leased`",
    ),
    (
        "lease_ttl_without_leased.yaml",
        "invalid/lease_ttl_without_leased.yaml: descriptors[0].rate_limit.lease_ttl: only applies to `mode: leased`",
    ),
];

#[test]
fn every_invalid_fixture_fails_with_its_exact_message() {
    let dir = fixture_dir("invalid");
    let mut listed: Vec<&str> = INVALID.iter().map(|(f, _)| *f).collect();
    listed.sort_unstable();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk, "each fixture needs an expected message");
    for (file, expected) in INVALID {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let err = Config::from_yaml_str(&format!("invalid/{file}"), &text).unwrap_err();
        assert_eq!(err.to_string(), *expected, "fixture {file}");
    }
}

#[test]
fn valid_directory_loads_every_domain() {
    let config = Config::load(&fixture_dir("valid"), LoadOptions::default()).unwrap();
    let mut names: Vec<&str> = config.domains().map(|d| d.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["edge", "mongo_cps"]);
    let users = limit_of(&config, "mongo_cps", &[("database", "users")]).unwrap();
    assert_eq!(users.requests_per_unit, 500);
    assert_eq!(users.unit, Unit::Second);
    assert_eq!(users.key_prefix, "rl:{mongo_cps}:t1:");
    let tenant = config
        .domain("edge")
        .unwrap()
        .find([("tenant", "acme")].into_iter())
        .unwrap();
    assert_eq!(tenant.limits.len(), 2);
    assert_eq!(tenant.limits[0].period_secs(), 10);
    assert_eq!(tenant.limits[0].burst, 20);
    assert!(tenant.limits[0].shadow_mode);
    assert_eq!(tenant.limits[1].algorithm, Algorithm::FixedWindow);
    assert_eq!(tenant.limits[1].burst, 10_000);
    assert_eq!(tenant.limits[1].name.as_deref(), Some("daily"));
    assert_eq!(tenant.limits[1].key_prefix, "rl:{edge}:f86400.1:");
    assert_eq!(config.limit_count(), config.limits().len());
}

#[test]
fn duplicate_domain_across_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "domain: shared\n").unwrap();
    std::fs::write(dir.path().join("b.yml"), "domain: shared\n").unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "not: [valid").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let err = Config::load(dir.path(), LoadOptions::default())
        .unwrap_err()
        .to_string();
    let a = dir.path().join("a.yaml").display().to_string();
    let b = dir.path().join("b.yml").display().to_string();
    assert_eq!(
        err,
        format!(
            "{b}: domain: duplicate domain \"shared\" (already defined in {a}; \
             --merge-domain-config merges them)"
        )
    );
    let merged = Config::load(
        dir.path(),
        LoadOptions {
            merge_domains: true,
        },
    )
    .unwrap();
    assert_eq!(merged.domains().count(), 1);
}

#[test]
fn missing_file_is_reported() {
    let err = Config::load(Path::new("/nonexistent/rl.yaml"), LoadOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/rl.yaml: cannot read:"),
        "{err}"
    );
}

const MATCHING: &str = r#"
domain: m
descriptors:
  - key: path
    value: /api/health
    rate_limit: { unit: second, requests_per_unit: 1 }
  - key: path
    value: /api/*
    rate_limit: { unit: second, requests_per_unit: 2 }
  - key: path
    value: /*
    rate_limit: { unit: second, requests_per_unit: 3 }
  - key: path
    rate_limit: { unit: second, requests_per_unit: 4 }
  - key: tenant
    value: 42
    descriptors:
      - key: user
        rate_limit: { unit: minute, requests_per_unit: 5 }
  - key: tenant
    rate_limit: { unit: minute, requests_per_unit: 6 }
    descriptors:
      - key: user
        value: root
        rate_limit: { unit: minute, requests_per_unit: 0 }
"#;

fn rpu(config: &Config, entries: &[(&str, &str)]) -> Option<u32> {
    limit_of(config, "m", entries).map(|l| l.requests_per_unit)
}

#[test]
fn exact_beats_wildcard_beats_key_only() {
    let config = Config::from_yaml_str("m.yaml", MATCHING).unwrap();
    assert_eq!(rpu(&config, &[("path", "/api/health")]), Some(1));
    assert_eq!(rpu(&config, &[("path", "/api/users")]), Some(2));
    assert_eq!(
        rpu(&config, &[("path", "/static/x")]),
        Some(3),
        "first wildcard in file order"
    );
    assert_eq!(rpu(&config, &[("path", "relative")]), Some(4));
    assert_eq!(rpu(&config, &[("other", "x")]), None);
}

#[test]
fn entries_walk_the_tree_and_must_all_be_consumed() {
    let config = Config::from_yaml_str("m.yaml", MATCHING).unwrap();
    // `tenant: 42` has no limit of its own: the walk must reach `user`.
    assert_eq!(rpu(&config, &[("tenant", "42")]), None);
    assert_eq!(rpu(&config, &[("tenant", "42"), ("user", "bob")]), Some(5));
    // Another tenant falls back to the key-only node, with its own children.
    assert_eq!(rpu(&config, &[("tenant", "7")]), Some(6));
    assert_eq!(rpu(&config, &[("tenant", "7"), ("user", "root")]), Some(0));
    assert_eq!(rpu(&config, &[("tenant", "7"), ("user", "bob")]), None);
    // A longer descriptor than the tree is not matched.
    assert_eq!(rpu(&config, &[("path", "/api/x"), ("extra", "1")]), None);
    assert_eq!(rpu(&config, &[]), None);
}

#[test]
fn numbers_and_booleans_are_accepted_as_values_like_go_yaml() {
    let config = Config::from_yaml_str("m.yaml", MATCHING).unwrap();
    let node = config
        .domain("m")
        .unwrap()
        .find([("tenant", "42"), ("user", "x")].into_iter());
    assert!(node.is_some());
}

#[test]
fn unlimited_and_zero_limits_compile() {
    let text = "domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n      unlimited: true\n  - key: b\n    rate_limit: {unit: hour, requests_per_unit: 0}\n";
    let config = Config::from_yaml_str("d.yaml", text).unwrap();
    let a = config
        .domain("d")
        .unwrap()
        .find([("a", "1")].into_iter())
        .unwrap();
    assert!(a.limits[0].unlimited);
    let b = config
        .domain("d")
        .unwrap()
        .find([("b", "1")].into_iter())
        .unwrap();
    assert_eq!(b.limits[0].requests_per_unit, 0);
}

const LEASED: &str = r#"
domain: edge
descriptors:
  - key: tenant
    rate_limit: { unit: minute, requests_per_unit: 1000, mode: leased, lease_ttl: 2s }
  - key: tenant
    value: tiny
    rate_limit: { unit: minute, requests_per_unit: 3, mode: leased }
  - key: route
    rate_limits:
      - { unit: second, requests_per_unit: 500, mode: leased, lease_size: 25, lease_ttl: 500ms }
      - { unit: day, requests_per_unit: 100000, algorithm: fixed_window, mode: exact }
"#;

#[test]
fn lease_fields_compile_with_defaults_and_lease_size_one_is_exact() {
    let config = Config::from_yaml_str("edge.yaml", LEASED).unwrap();
    let tenant = limit_of(&config, "edge", &[("tenant", "acme")]).unwrap();
    assert_eq!(tenant.mode, LimitMode::Leased { size: 50 }, "1000 / 20");
    assert_eq!(tenant.lease_ttl, std::time::Duration::from_secs(2));
    let tiny = limit_of(&config, "edge", &[("tenant", "tiny")]).unwrap();
    assert_eq!(
        tiny.mode,
        LimitMode::Exact,
        "3 / 20 rounds to a lease of 1: exact"
    );
    assert_eq!(tiny.lease_ttl, DEFAULT_LEASE_TTL);
    let route = config
        .domain("edge")
        .unwrap()
        .find([("route", "orders")].into_iter())
        .unwrap();
    assert_eq!(route.limits[0].mode, LimitMode::Leased { size: 25 });
    assert_eq!(route.limits[1].mode, LimitMode::Exact);
    let domain = config.domain("edge").unwrap();
    assert_eq!(domain.unlimited_ttl, std::time::Duration::from_millis(500));
    let plain = Config::from_yaml_str("m.yaml", MATCHING).unwrap();
    assert_eq!(plain.domain("m").unwrap().unlimited_ttl, DEFAULT_LEASE_TTL);
    assert!(plain
        .limits()
        .iter()
        .all(|(_, l)| l.mode == LimitMode::Exact));
}

/// `*` anywhere in a value, any number of times, matching any run of characters (the empty
/// one too); everything else is literal, regex metacharacters included.
#[test]
fn wildcards_match_anywhere_in_the_value() {
    let yaml = r#"
domain: w
descriptors:
  - { key: k, value: "foo*bar*baz", rate_limit: { unit: second, requests_per_unit: 1 } }
  - { key: k, value: "bar*b", rate_limit: { unit: second, requests_per_unit: 2 } }
  - { key: k, value: "a.c*", rate_limit: { unit: second, requests_per_unit: 3 } }
  - { key: k, value: "*", rate_limit: { unit: second, requests_per_unit: 4 } }
"#;
    let config = Config::from_yaml_str("w.yaml", yaml).unwrap();
    let rpu = |v: &str| limit_of(&config, "w", &[("k", v)]).map(|l| l.requests_per_unit);
    for (value, expected) in [
        ("fooXbarYbaz", 1),
        ("foobarbaz", 1),
        ("foo-bar-baz-bar-baz", 1),
        ("barb", 2),
        ("bar--b", 2),
        ("a.c", 3),
        ("a.cdef", 3),
        ("abc", 4),
        ("fooXbar", 4),
        ("", 4),
        ("line\nbreak", 4),
    ] {
        assert_eq!(rpu(value), Some(expected), "{value:?}");
    }
    let dup =
        "domain: d\ndescriptors:\n  - { key: k, value: \"a*\" }\n  - { key: k, value: \"a*\" }\n";
    let e = Config::from_yaml_str("d.yaml", dup)
        .unwrap_err()
        .to_string();
    assert!(e.contains("duplicate descriptor key"), "{e}");
}

/// envoyproxy/ratelimit's forms: `unit: week`, `requests_per_unit` omitted (0: every request
/// over the limit), and `replaces` inside the `rate_limit` as well as beside it.
#[test]
fn week_an_omitted_requests_per_unit_and_limit_level_replaces() {
    let yaml = r#"
domain: r
descriptors:
  - key: a
    rate_limit: { unit: week, requests_per_unit: 7, replaces: [ { name: old } ] }
    replaces: [ { name: older } ]
  - key: b
    rate_limit: { unit: minute }
"#;
    let config = Config::from_yaml_str("r.yaml", yaml).unwrap();
    let a = limit_of(&config, "r", &[("a", "x")]).unwrap();
    assert_eq!((a.unit, a.unit.seconds()), (Unit::Week, 7 * 86_400));
    assert_eq!(a.replaces, ["older", "old"]);
    assert_eq!(
        limit_of(&config, "r", &[("b", "x")])
            .unwrap()
            .requests_per_unit,
        0
    );
    let unnamed =
        "domain: u\ndescriptors:\n  - key: a\n    rate_limit: { unit: second, replaces: [ {} ] }\n";
    let e = Config::from_yaml_str("u.yaml", unnamed)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("descriptors[0].rate_limit.replaces[0].name: must be set"),
        "{e}"
    );
}

/// envoyproxy/ratelimit's own configuration fixtures (its `test/config/`, copied into
/// `tests/fixtures/envoyproxy-ratelimit/`), accepted or refused as its `config_test.go`
/// expects, files loaded together where it loads them together (merging one domain across
/// files only with `merge_domains`, as it does only with MERGE_DOMAIN_CONFIG).
#[test]
fn envoyproxy_ratelimits_fixtures_are_accepted_and_refused_as_there() {
    let dir = fixture_dir("envoyproxy-ratelimit");
    let read = |f: &str| (f.to_string(), std::fs::read_to_string(dir.join(f)).unwrap());
    let merge = LoadOptions {
        merge_domains: true,
    };
    let plain = LoadOptions::default();
    let cases: [(&[&str], LoadOptions, Result<(), &str>); 23] = [
        (&["basic_config.yaml"], plain, Ok(())),
        (&["shadowmode_config.yaml"], plain, Ok(())),
        (&["wildcard.yaml"], plain, Ok(())),
        (&["metadata.yaml"], plain, Ok(())),
        (&["share_threshold.yaml"], plain, Ok(())),
        (&["merge_domain_key1.yaml"], plain, Ok(())),
        (
            &["merge_domain_key1.yaml", "merge_domain_key2.yaml"],
            merge,
            Ok(()),
        ),
        (&["bad_limit_unit.yaml"], plain, Err("unknown unit \"foo\"")),
        (&["bad_yaml.yaml"], plain, Err("bad_yaml.yaml")),
        (
            &["basic_config.yaml", "duplicate_domain.yaml"],
            plain,
            Err("duplicate domain \"test-domain\""),
        ),
        // Without MERGE_DOMAIN_CONFIG (off by default) the reference refuses these too.
        (
            &["merge_domain_key1.yaml", "merge_domain_key2.yaml"],
            plain,
            Err("duplicate domain"),
        ),
        (
            &["merge_domain_key1.yaml", "merge_domain_key1.yaml"],
            merge,
            Err("duplicate descriptor key \"key1\" with value \"value1\""),
        ),
        (&["empty_domain.yaml"], plain, Err("domain")),
        (&["empty_key.yaml"], plain, Err("no `key`")),
        (
            &["duplicate_key.yaml"],
            plain,
            Err("duplicate descriptor key"),
        ),
        (&["replaces_self.yaml"], plain, Err("replaces itself")),
        (&["replaces_empty.yaml"], plain, Err("name: must be set")),
        (
            &["misspelled_key.yaml"],
            plain,
            Err("unknown field `ratelimit`"),
        ),
        (
            &["misspelled_key2.yaml"],
            plain,
            Err("unknown field `requestsperunit`"),
        ),
        (&["non_string_key.yaml"], plain, Err("unknown field")),
        (&["non_map_list.yaml"], plain, Err("invalid type")),
        (
            &["unlimited_with_unit.yaml"],
            plain,
            Err("must not be set when `unlimited: true`"),
        ),
        (&["duplicate_domain.yaml"], plain, Ok(())),
    ];
    for (files, options, expected) in cases {
        let sources: Vec<(String, String)> = files.iter().map(|f| read(f)).collect();
        let got = Config::from_sources_with(&sources, options)
            .map(drop)
            .map_err(|e| e.to_string());
        match (expected, got) {
            (Ok(()), Ok(())) => {}
            (Err(part), Err(e)) => assert!(e.contains(part), "{files:?}: {e}"),
            (expected, got) => panic!("{files:?}: expected {expected:?}, got {got:?}"),
        }
    }
}

/// The fields envoyproxy/ratelimit reads that are refused or limited here, with the reason.
#[test]
fn share_threshold_off_a_wildcard_quota_mode_and_non_map_metadata_are_refused() {
    let refused = [
        (
            "descriptors:\n  - key: a\n    value: b\n    share_threshold: true\n",
            "descriptors[0].share_threshold: only applies to a wildcard `value` (one with `*`), and \"a\" has the value \"b\"",
        ),
        (
            "descriptors:\n  - key: a\n    share_threshold: true\n",
            "descriptors[0].share_threshold: only applies to a wildcard `value` (one with `*`), and \"a\" has no value",
        ),
        (
            "descriptors:\n  - key: a\n    quota_mode: true\n    rate_limit: { unit: second }\n",
            "descriptors[0].quota_mode: not supported",
        ),
        (
            "descriptors:\n  - key: a\n    metadata: [1, 2]\n",
            "descriptors[0].metadata: must be a map (key: value, ...), got [1,2]",
        ),
    ];
    for (descriptors, message) in refused {
        let yaml = format!("domain: d\n{descriptors}");
        let e = Config::from_yaml_str("d.yaml", &yaml)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("d.yaml: {message}")), "{e}");
    }
    let quota_off = "domain: d\ndescriptors:\n  - key: a\n    quota_mode: false\n";
    assert!(Config::from_yaml_str("d.yaml", quota_off).is_ok());
}
