//! The demo walkthrough's core steps (docs/demo.md steps 1-5), checked against any running copy
//! of the topology: `make demo`'s processes (tests/tests/demo.rs) or the compose file's
//! containers (tests/tests/deploy_compose.rs).

use super::{token, TINY_LIMIT};
use anyhow::{anyhow, ensure, Context, Result};
use serde_json::Value;
use std::time::Duration;

/// Where the steps send their requests: base URLs like `http://127.0.0.1:10000`.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub gateway: String,
    pub idp: String,
    /// The users service itself, to see what it leaks without the gateway.
    pub users: String,
}

/// Status and JSON body (every answer of the demo, refusals included, is JSON).
async fn get_json(req: reqwest::RequestBuilder) -> Result<(u16, Value)> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.context("a JSON body")?))
}

/// Steps 1-5: a token; 401 without it and 200 with the identity headers upstream; the users
/// service's leaked fields stripped; tenant `tiny`'s 429 with `Retry-After` after its limit; the
/// catalog cached per tenant. Returns acme's token (alice, orders:read) for further steps.
pub async fn core_steps(http: &reqwest::Client, at: &Endpoints) -> Result<String> {
    let (gw, idp) = (&at.gateway, &at.idp);
    // 1. A token from the IdP.
    let token = token(http, idp, "alice", "acme", "orders:read").await?;
    ensure!(token.split('.').count() == 3, "not a JWT: {token}");

    // 2. 401 without it (with the challenge), 200 with it and the identity headers upstream.
    let resp = http.get(format!("{gw}/api/orders/42")).send().await?;
    ensure!(resp.status() == 401, "without a token: {}", resp.status());
    ensure!(
        resp.headers().contains_key("www-authenticate"),
        "no challenge"
    );
    let (status, body) =
        get_json(http.get(format!("{gw}/api/orders/42")).bearer_auth(&token)).await?;
    ensure!(status == 200, "with a token: {status} {body}");
    ensure!(
        body["service"] == "orders" && body["path"] == "/orders/42",
        "{body}"
    );
    ensure!(body["upstream_saw"]["x-user-id"] == "alice", "{body}");
    ensure!(body["upstream_saw"]["x-tenant-id"] == "acme", "{body}");

    // 3. The users service leaks two fields; through the gateway they are gone.
    let (status, direct) = get_json(http.get(format!("{}/users/1", at.users))).await?;
    ensure!(
        status == 200 && direct.get("password_hash").is_some() && direct.get("internal").is_some(),
        "the users service itself: {status} {direct}"
    );
    let (status, body) =
        get_json(http.get(format!("{gw}/api/users/1")).bearer_auth(&token)).await?;
    ensure!(
        status == 200 && body["name"] == "Ada Lovelace",
        "{status} {body}"
    );
    ensure!(
        body.get("password_hash").is_none() && body.get("internal").is_none(),
        "not stripped: {body}"
    );

    tiny_is_limited(http, at).await?;
    catalog_is_cached_per_tenant(http, at, &token).await?;
    Ok(token)
}

/// Step 4: tenant tiny gets its limit, then a 429 with Retry-After.
async fn tiny_is_limited(http: &reqwest::Client, at: &Endpoints) -> Result<()> {
    let tiny = token(http, &at.idp, "bob", "tiny", "orders:read").await?;
    let mut last = None;
    for i in 1..=TINY_LIMIT + 1 {
        let resp = http
            .get(format!("{}/api/orders/1", at.gateway))
            .bearer_auth(&tiny)
            .send()
            .await?;
        let expected = if i <= TINY_LIMIT { 200 } else { 429 };
        ensure!(
            resp.status() == expected,
            "tiny request {i}: {}",
            resp.status()
        );
        last = Some(resp);
    }
    let resp = last.ok_or_else(|| anyhow!("no request sent"))?;
    let retry_after: u64 = resp
        .headers()
        .get("retry-after")
        .ok_or_else(|| anyhow!("no retry-after on the 429"))?
        .to_str()?
        .parse()?;
    ensure!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    Ok(())
}

/// Step 5: the catalog, cached per tenant: acme's repeat is a hit (an age header, and the
/// served_count of an acme answer already served: a fresh fetch would count higher; the file
/// cache stores in the background, so a repeat may miss again first: repeat for up to 5 s),
/// globex gets its own entry.
async fn catalog_is_cached_per_tenant(
    http: &reqwest::Client,
    at: &Endpoints,
    acme: &str,
) -> Result<()> {
    let catalog = format!("{}/api/catalog/7", at.gateway);
    let (status, first) = get_json(http.get(&catalog).bearer_auth(acme)).await?;
    ensure!(
        status == 200 && first["for_tenant"] == "acme",
        "{status} {first}"
    );
    let mut served = vec![first["served_count"].clone()];
    let mut hit = None;
    for _ in 0..50 {
        let resp = http.get(&catalog).bearer_auth(acme).send().await?;
        let cached = resp.headers().contains_key("age");
        let body = resp.json::<Value>().await?;
        if cached {
            hit = Some(body);
            break;
        }
        served.push(body["served_count"].clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hit = hit.ok_or_else(|| anyhow!("acme's repeat was never a cache hit"))?;
    ensure!(hit["for_tenant"] == "acme", "{hit}");
    ensure!(
        served.contains(&hit["served_count"]),
        "{hit} not among {served:?}"
    );
    let other = token(http, &at.idp, "carol", "globex", "orders:read").await?;
    let (status, theirs) = get_json(http.get(&catalog).bearer_auth(&other)).await?;
    ensure!(
        status == 200 && theirs["for_tenant"] == "globex",
        "{status} {theirs}"
    );
    ensure!(
        !served.contains(&theirs["served_count"]),
        "acme's entry served to globex: {theirs}"
    );
    Ok(())
}
