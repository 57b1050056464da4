//! Exact outputs: formatting is preserved.

use super::*;

#[test]
fn strips_members_with_the_right_comma() {
    let ops = r#"{"strip":["b"]}"#;
    assert_eq!(rewritten(ops, r#"{"a":1,"b":2,"c":3}"#), r#"{"a":1,"c":3}"#);
    assert_eq!(rewritten(ops, r#"{"b":2,"c":3}"#), r#"{"c":3}"#);
    assert_eq!(rewritten(ops, r#"{"a":1,"b":2}"#), r#"{"a":1}"#);
    assert_eq!(rewritten(ops, r#"{"b":2}"#), r#"{}"#);
    assert_eq!(
        rewritten(ops, r#"{"b":2,"b":{"x":[1,2]},"c":3,"b":4}"#),
        r#"{"c":3}"#
    );
    assert_eq!(
        rewritten(ops, "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3\n}"),
        "{\n  \"a\": 1,\n  \"c\": 3\n}"
    );
    assert_eq!(
        rewritten(ops, "{\n  \"b\": 2,\n  \"c\": 3\n}"),
        "{\n  \"c\": 3\n}"
    );
    assert_eq!(
        rewritten(ops, "{\n  \"a\": 1,\n  \"b\": 2\n}"),
        "{\n  \"a\": 1\n}"
    );
    // Whitespace around dropped members may stay behind; the document stays valid.
    assert_eq!(
        rewritten(r#"{"strip":["a","b"]}"#, r#"{ "a" : 1 , "b" : 2 }"#),
        r#"{  }"#
    );
    assert_eq!(check(ops, r#"{"a":1,"c":{"b":2}}"#), BodyOutcome::Unchanged);
}

#[test]
fn nested_and_wildcard_strips() {
    let ops = r#"{"strip":["debug_info","user.ssn","items[*].internal_id","items[0].x"]}"#;
    assert_eq!(
        rewritten(
            ops,
            r#"{"user":{"name":"n","ssn":"1"},"debug_info":{"t":[1]},"items":[{"id":1,"internal_id":9,"x":0},{"internal_id":8,"x":1}]}"#
        ),
        r#"{"user":{"name":"n"},"items":[{"id":1},{"x":1}]}"#
    );
    // Wrong shapes leave the document alone.
    assert_eq!(
        check(
            ops,
            r#"{"user":"ssn","items":{"internal_id":1},"x":[{"ssn":1}]}"#
        ),
        BodyOutcome::Unchanged
    );
    assert_eq!(
        rewritten(r#"{"strip":["[*].id"]}"#, r#"[{"id":1,"k":2},3,{"id":2}]"#),
        r#"[{"k":2},3,{}]"#
    );
}

#[test]
fn renames_keys_in_place() {
    let ops = r#"{"rename":{"user.fullName":"name","a":"é\"q"}}"#;
    assert_eq!(
        rewritten(ops, r#"{"a":[1],"user":{"id":1,"fullName":"Ann"}}"#),
        r#"{"é\"q":[1],"user":{"id":1,"name":"Ann"}}"#
    );
    // An existing member with the new name gives way, wherever it is.
    assert_eq!(
        rewritten(ops, r#"{"user":{"name":"old","fullName":"Ann"}}"#),
        r#"{"user":{"name":"Ann"}}"#
    );
    assert_eq!(
        rewritten(ops, r#"{"user":{"fullName":"Ann", "name":"old"}}"#),
        r#"{"user":{"name":"Ann"}}"#
    );
    assert_eq!(
        check(ops, r#"{"user":{"name":"kept"}}"#),
        BodyOutcome::Unchanged
    );
}

#[test]
fn adds_and_sets_create_members_and_intermediate_objects() {
    let ops = r#"{"add":{"meta.version":2,"meta.tag":"t"},"set":{"client":"legacy"}}"#;
    assert_eq!(
        rewritten(ops, r#"{}"#),
        r#"{"meta":{"version":2,"tag":"t"},"client":"legacy"}"#
    );
    assert_eq!(
        rewritten(ops, r#"{"client":{"old":true}}"#),
        r#"{"client":"legacy","meta":{"version":2,"tag":"t"}}"#
    );
    assert_eq!(
        rewritten(ops, "{\n  \"meta\": {\"version\": 1}\n}"),
        "{\n  \"meta\": {\"version\": 1,\"tag\":\"t\"},\"client\":\"legacy\"\n}"
    );
    assert_eq!(
        rewritten(ops, r#"{"meta":5}"#),
        r#"{"meta":5,"client":"legacy"}"#,
        "never replaces a non-object"
    );
    assert_eq!(check(ops, r#"[1,2]"#), BodyOutcome::Unchanged);
    assert_eq!(
        rewritten(r#"{"strip":["a"],"add":{"b":1}}"#, r#"{ "a":1 }"#),
        r#"{  "b":1}"#
    );
    assert_eq!(
        rewritten(r#"{"strip":["a"],"add":{"b":1}}"#, r#"{"x":0, "a":1 }"#),
        r#"{"x":0,"b":1 }"#
    );
    assert_eq!(
        rewritten(
            r#"{"set":{"items[*].v":null}}"#,
            r#"{"items":[{},{"v":1},2]}"#
        ),
        r#"{"items":[{"v":null},{"v":null},2]}"#
    );
    assert_eq!(
        rewritten(r#"{"add":{"a.b[0].c":1,"a.d":2}}"#, r#"{}"#),
        r#"{"a":{"d":2}}"#,
        "array steps create nothing"
    );
}

#[test]
fn keys_with_escapes_are_matched_decoded() {
    assert_eq!(
        rewritten(r#"{"strip":["ab"]}"#, r#"{"a\u0062":1,"c":2}"#),
        r#"{"c":2}"#
    );
    assert_eq!(
        rewritten(r#"{"strip":["é"]}"#, r#"{"\u00e9":1,"c":2}"#),
        r#"{"c":2}"#
    );
    assert_eq!(
        rewritten(r#"{"strip":["😀"]}"#, r#"{"\ud83d\ude00":1,"c":2}"#),
        r#"{"c":2}"#
    );
    assert_eq!(
        check(r#"{"strip":["a\"b"]}"#, r#"{"a\\\"b":1}"#),
        BodyOutcome::Unchanged
    );
    assert_eq!(rewritten(r#"{"strip":["a\"b"]}"#, r#"{"a\"b":1}"#), r#"{}"#);
}
