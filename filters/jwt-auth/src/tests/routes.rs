//! Requirements chosen by the route Envoy matched (`edgegate.jwt` route metadata, or the
//! route's name through `routes`), through the plugin over the fake host: a route that names
//! none is refused unless Envoy answers it itself, and an undefined name is never guessed at.

use super::glue::{header, local_config, only_reply, send, start, token, token_with, Jwt};
use filter_core::route::METADATA_PATH;
use filter_core::testing::FakeHost;
use filter_core::Action;
use serde_json::{json, Value};

fn route_config() -> Value {
    let mut c = local_config();
    c.as_object_mut().unwrap().remove("rules");
    c["requirements"] = json!({
        "user": {"requires": {"provider_name": "idp"}},
        "orders_write": {"requires": {"provider_name": "idp"}, "required_scopes": ["orders:write"]},
    });
    c
}

/// [`route_config`] binding by route name (as under Istio): the metadata is not read.
fn name_config() -> Value {
    let mut c = route_config();
    c["routes"] = json!({"health": "public", "orders-read": "user"});
    c
}

fn on_route(host: &FakeHost, metadata: &[(&str, &str)], name: Option<&str>, cluster: bool) {
    host.set_route(metadata, name, cluster);
}

fn no_token(host: &FakeHost, plugin: &Jwt, ctx: u32) -> Action {
    send(host, plugin, ctx, "", &[("x-user-id", "spoofed")]).1
}

#[test]
fn the_routes_requirement_decides_and_public_routes_still_lose_owned_headers() {
    let (host, plugin) = start(&route_config());
    on_route(
        &host,
        &[("jwt", "user"), ("tenant", "required")],
        None,
        true,
    );
    assert_eq!(send(&host, &plugin, 2, &token(), &[]).1, Action::Continue);
    assert_eq!(header(&host, 2, "x-user-id").as_deref(), Some("user-1"));
    assert_eq!(no_token(&host, &plugin, 3), Action::Pause);
    assert_eq!(only_reply(&host).status, 401);

    // The same token on a route that needs a scope it lacks.
    on_route(&host, &[("jwt", "orders_write")], Some("orders"), true);
    assert_eq!(send(&host, &plugin, 4, &token(), &[]).1, Action::Pause);
    let reply = only_reply(&host);
    assert_eq!(
        (reply.status, reply.json()["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let scoped = token_with(|c| c["scope"] = json!("orders:read orders:write"));
    assert_eq!(send(&host, &plugin, 5, &scoped, &[]).1, Action::Continue);

    on_route(&host, &[("jwt", "public")], None, true);
    assert_eq!(no_token(&host, &plugin, 6), Action::Continue);
    assert_eq!(
        header(&host, 6, "x-user-id"),
        None,
        "a public route still strips"
    );
    assert!(host.take_replies().is_empty());
}

#[test]
fn a_route_naming_no_requirement_is_refused_unless_envoy_answers_it() {
    let (host, plugin) = start(&route_config());
    on_route(&host, &[("tenant", "required")], Some("new-route"), true);
    assert_eq!(send(&host, &plugin, 2, &token(), &[]).1, Action::Pause);
    let reply = only_reply(&host);
    assert_eq!((reply.context, reply.status), (2, 403));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json()["error"], "forbidden");
    assert_eq!(
        reply.json()["message"],
        "no authentication policy applies to this route"
    );
    plugin.worker().borrow().flush();
    assert_eq!(host.metric("jwt_auth.denied.unbound_route"), 1);

    // A direct response (or no route at all): no cluster, Envoy answers; owned headers go.
    on_route(&host, &[], None, false);
    assert_eq!(no_token(&host, &plugin, 3), Action::Continue);
    assert_eq!(header(&host, 3, "x-user-id"), None);
    assert!(host.take_replies().is_empty());
}

#[test]
fn an_undefined_or_mistyped_requirement_is_a_500_never_a_guess() {
    let (host, plugin) = start(&route_config());
    for (ctx, value) in [(2, "nobody"), (3, "orders write"), (4, "")] {
        on_route(&host, &[("jwt", value)], Some("health"), true);
        assert_eq!(
            send(&host, &plugin, ctx, &token(), &[]).1,
            Action::Pause,
            "{value:?}"
        );
        let reply = only_reply(&host);
        assert_eq!(
            (reply.status, reply.json()["error"].as_str()),
            (500, Some("policy_error"))
        );
    }
    let logs = host.logs(filter_core::host::Level::Debug).join("\n");
    assert!(
        logs.contains("edgegate.jwt") && logs.contains("\"nobody\""),
        "{logs}"
    );
    plugin.worker().borrow().flush();
    assert_eq!(host.metric("jwt_auth.denied.invalid_route_policy"), 3);
}

#[test]
fn route_names_bind_where_routes_carry_no_metadata() {
    let (host, plugin) = start(&name_config());
    on_route(&host, &[], Some("orders-read"), true);
    assert_eq!(no_token(&host, &plugin, 2), Action::Pause);
    assert_eq!(only_reply(&host).status, 401);
    on_route(&host, &[], Some("health"), true);
    assert_eq!(no_token(&host, &plugin, 3), Action::Continue);
    // A filter that binds by name never reads the metadata: the name decides.
    on_route(&host, &[("jwt", "user")], Some("health"), true);
    assert_eq!(no_token(&host, &plugin, 4), Action::Continue);
    // A route whose name is not mapped is refused, whatever its metadata says.
    on_route(&host, &[("jwt", "public")], Some("new-route"), true);
    assert_eq!(no_token(&host, &plugin, 5), Action::Pause);
    assert_eq!(only_reply(&host).status, 403);
    let reads = std::mem::take(&mut host.state_mut().property_reads);
    assert!(
        !reads.iter().any(|r| r.contains("route_metadata")),
        "{reads:?}"
    );
}

#[test]
fn reads_are_one_property_call_and_none_for_the_deprecated_matchers() {
    let (host, plugin) = start(&route_config());
    on_route(&host, &[("jwt", "user")], Some("orders"), true);
    host.state_mut().property_reads.clear();
    assert_eq!(send(&host, &plugin, 2, &token(), &[]).1, Action::Continue);
    let reads = std::mem::take(&mut host.state_mut().property_reads);
    assert_eq!(
        reads,
        [METADATA_PATH.join(".")],
        "no name read without a routes map"
    );

    let (host, plugin) = start(&local_config());
    host.state_mut().property_reads.clear();
    assert_eq!(send(&host, &plugin, 2, &token(), &[]).1, Action::Continue);
    assert!(host.state().property_reads.is_empty());
}
