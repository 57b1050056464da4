//! The banner: what runs where and the walkthrough's curl commands, and reading a banner back
//! (the test takes the ports and the token file from it).

use super::{Demo, RLS_CONFIG, ROLES, TINY_LIMIT};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

impl Demo {
    /// What runs where and the curl commands of the walkthrough.
    pub fn banner(&self) -> String {
        let p = &self.ports;
        let gw = self.gateway();
        let idp = self.idp();
        let dir = self.dir.path().display();
        let out = self.address_table();
        let auth = "-H \"authorization: Bearer $TOKEN\"";
        format!(
            r#"
edgegate gateway demo: everything runs (logs in {dir}/logs)
{out}
Paste these into another shell:

1. Get a token from the demo IdP (RS256, 1 hour; alice of tenant acme, org 7):
     TOKEN=$(curl -s '{idp}/token?sub=alice&tenant=acme&org=7&scope=orders:read%20orders:write')

2. Without a token: 401 and a WWW-Authenticate challenge. With it: 200, and the upstream shows
   the identity headers jwt_auth set (x-user-id, x-tenant-id, x-org-id under "upstream_saw"):
     curl -si {gw}/api/orders/42
     curl -s {auth} {gw}/api/orders/42

3. A stripped field: the users service sends password_hash and internal, the gateway drops them:
     curl -s http://127.0.0.1:{users}/users/1
     curl -s {auth} {gw}/api/users/1

4. Exceed a limit: tenant tiny may make {tiny} requests a minute; the next gets 429 with Retry-After
   (-w %header{{...}} needs curl 7.84 or later):
     TINY=$(curl -s '{idp}/token?sub=bob&tenant=tiny')
     for i in 1 2 3 4; do curl -s -o /dev/null -H "authorization: Bearer $TINY" \
       -w '%{{http_code}} remaining=%header{{x-ratelimit-remaining}} retry-after=%header{{retry-after}}\n' \
       {gw}/api/orders/1; done

5. A per-tenant cached response (/api/catalog, served by products, 60 s): acme twice (the
   second is a hit: the same served_count, an age header), then globex (its own entry, a new
   served_count):
     OTHER=$(curl -s '{idp}/token?sub=carol&tenant=globex')
     curl -s {auth} -w ' age=%header{{age}}\n' {gw}/api/catalog/7
     curl -s {auth} -w ' age=%header{{age}}\n' {gw}/api/catalog/7
     curl -s -H "authorization: Bearer $OTHER" -w ' age=%header{{age}}\n' {gw}/api/catalog/7

6. The canary split: 95 % orders v1, 5 % v2 (a header pins v2):
     for i in $(seq 40); do curl -s {auth} {gw}/api/orders/1 | grep -o '"version":"v[12]"'; done | sort | uniq -c
     curl -s {auth} -H 'x-canary: true' {gw}/api/orders/1

7. WebSocket (/api/events, upgrade passed through, token required). curl 7.x has no WebSocket
   client, but the handshake shows the 101 (Ctrl-C or --max-time ends it):
     curl -si --http1.1 --max-time 2 {auth} -H 'connection: upgrade' -H 'upgrade: websocket' \
       -H 'sec-websocket-version: 13' -H 'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==' {gw}/api/events
   With a WebSocket client, every text message comes back, e.g.:
     websocat -H "authorization: Bearer $TOKEN" ws://127.0.0.1:{gwp}/api/events

8. gRPC over HTTP/2 (grpc.health.v1.Health/Check on the gRPC upstream, token required). A raw
   unary call with curl: the reply is one frame, 00 00 00 00 02 08 01 (status 1 = SERVING):
     printf '\0\0\0\0\0' | curl -s --http2-prior-knowledge {auth} \
       -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- \
       {gw}/grpc.health.v1.Health/Check | od -An -tx1
   Without the token: HTTP 200 with grpc-status: 16 (UNAUTHENTICATED), as gRPC clients expect:
     curl -s --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' \
       --data-binary '' -D - -o /dev/null {gw}/grpc.health.v1.Health/Check

9. TLS, and what Envoy saw:
     curl -s --cacert {dir}/tls/ca.pem {auth} https://127.0.0.1:{tls}/api/orders/1
     curl -s 'http://127.0.0.1:{admin}/stats?filter=wasmcustom'
     tail -n 3 {dir}/access.log

10. The rate-limit service's revocation API is for operators: 401 without its bearer token,
    the (empty) list with it:
     curl -s http://127.0.0.1:{rls_http}/revocations
     curl -s -H "authorization: Bearer $(cat {token_file})" http://127.0.0.1:{rls_http}/revocations

11. A partner over mTLS: no token, a client certificate of the partner CA (made at start, like
    the server's), its SPIFFE id mapped to tenant acme; without the certificate, no handshake:
     curl -s --cacert {dir}/tls/ca.pem --cert {dir}/tls/partner-acme.pem --key {dir}/tls/partner-acme.key https://127.0.0.1:{mtls}/partner/orders/1
     curl -s --cacert {dir}/tls/ca.pem https://127.0.0.1:{mtls}/partner/orders/1

12. An opaque access token (not a JWT): the gateway asks the IdP's introspection endpoint
    (RFC 7662) once, caches the answer, and maps its claims as for a JWT:
     OPAQUE=$(curl -s '{idp}/opaque-token?sub=svc-reports&tenant=acme&scope=orders:read')
     curl -s -H "authorization: Bearer $OPAQUE" {gw}/api/orders/42
     curl -s -H "authorization: Bearer 0123456789abcdef" {gw}/api/orders/42

13. The dashboard: one GET, answered by the aggregate stage from the users, orders and products
    services called in parallel (the user without its internal fields):
     curl -s {auth} {gw}/api/dashboard

14. REST in front of gRPC: Envoy's gRPC-JSON transcoder turns these into calls to the inventory
    gRPC service (the JSON body and the path make the request message; a gRPC error comes back
    as its HTTP status, here 404 and 400):
     curl -s {auth} {gw}/api/v1/inventory/items/sku-1
     curl -s {auth} -H 'content-type: application/json' -d '{{"quantity": 2}}' \
       {gw}/api/v1/inventory/items/sku-2/reservations
     curl -s {auth} {gw}/api/v1/inventory/items/sku-404
     curl -s {auth} -H 'content-type: application/json' -d '{{"quantity": 99}}' \
       {gw}/api/v1/inventory/items/sku-2/reservations

Ctrl-C stops every process.
"#,
            users = p.users,
            tiny = TINY_LIMIT,
            gwp = p.gateway,
            tls = p.gateway_tls,
            mtls = p.gateway_mtls,
            admin = p.admin,
            rls_http = p.rls_http,
            token_file = self.revocation_token_file().display(),
        )
    }

    /// The `label address what` lines: every process of the demo.
    fn address_table(&self) -> String {
        let p = &self.ports;
        let gw = self.gateway();
        let idp = self.idp();

        let mut rows = vec![
            (
                "gateway".to_string(),
                gw.clone(),
                format!("Envoy 1.40 on {} (HTTP/1.1, h2c)", self.template.display()),
            ),
            (
                "gateway-tls".into(),
                format!("https://127.0.0.1:{}", p.gateway_tls),
                "the same over TLS (h2, http/1.1)".into(),
            ),
            (
                "gateway-mtls".into(),
                format!("https://127.0.0.1:{}", p.gateway_mtls),
                "partners: client certificates of the partner CA (mTLS)".into(),
            ),
            (
                "admin".into(),
                format!("http://127.0.0.1:{}", p.admin),
                "Envoy admin: /stats/prometheus, /clusters".into(),
            ),
            (
                "idp".into(),
                idp.clone(),
                "demo-idp: /.well-known/jwks.json, /token".into(),
            ),
        ];
        for role in ROLES {
            let scheme = if role == "grpc" { "h2c" } else { "http" };
            rows.push((
                role.into(),
                format!("{scheme}://127.0.0.1:{}", p.role(role).unwrap_or(0)),
                format!("demo-service --role {role}"),
            ));
        }
        rows.extend([
            (
                "ratelimit-grpc".into(),
                format!("127.0.0.1:{}", p.rls_grpc),
                format!("ratelimit-service, {RLS_CONFIG}"),
            ),
            (
                "ratelimit-http".into(),
                format!("http://127.0.0.1:{}", p.rls_http),
                "its /healthz, /ready, /metrics; /revocations (token below)".into(),
            ),
            (
                "ratelimit-token".into(),
                self.revocation_token_file().display().to_string(),
                "bearer token of /revocations (a file, made for this run)".into(),
            ),
            (
                "redis".into(),
                format!("127.0.0.1:{}", p.redis),
                "redis-server (rate-limit buckets)".into(),
            ),
        ]);
        let mut out = String::new();
        for (label, addr, what) in rows {
            // At least one space after the address: a long one (the token file) must stay a word.
            let _ = writeln!(out, "  {label:<16}{addr:<31} {what}");
        }

        out
    }
}

/// The revocation token file a banner names (its `ratelimit-token` line).
pub fn banner_revocation_token_file(banner: &str) -> Option<PathBuf> {
    banner.lines().find_map(|line| {
        let rest = line.strip_prefix("  ratelimit-token")?;
        rest.split_whitespace().next().map(PathBuf::from)
    })
}

/// The `label address` lines of a banner (the test reads the ports from them).
pub fn parse_banner(banner: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for line in banner.lines() {
        let Some(rest) = line.strip_prefix("  ") else {
            continue;
        };
        if rest.starts_with(' ') {
            continue;
        }
        let mut words = rest.split_whitespace();
        if let (Some(label), Some(addr)) = (words.next(), words.next()) {
            if addr.contains("127.0.0.1:") {
                found.insert(label.to_string(), addr.to_string());
            }
        }
    }
    found
}
