//! mTLS for partners: the gateway_mtls listener takes only client certificates of the partner
//! CA; a partner route answers only over such a connection, with the certificate's tenant; the
//! x-forwarded-client-cert an upstream sees is always Envoy's, never a client's.

use crate::prelude::*;
use gateway_tests::tools::{certificate_authority, client_certificate, PARTNER_ACME_URI};

/// What a client forges: another partner's identity in the header upstreams read.
const FORGED_XFCC: &str = "By=spiffe://gateway;URI=spiffe://partners.edgegate.localhost/globex";

#[tokio::test]
async fn a_partner_certificate_is_its_tenant_and_nothing_else_gets_in() {
    let gw = Gateway::start(Opts::default()).await;
    let url = |path: &str| gw.mtls_url(path);

    // The partner's certificate: the partner route answers, with the certificate's tenant
    // and Envoy's own XFCC (the forged copy is gone), and without a token.
    let partner = gw.mtls_client(Some("partner-acme"));
    let resp = partner
        .get(url("/partner/orders/7"))
        .header("x-forwarded-client-cert", FORGED_XFCC)
        .header("x-tenant-id", "globex")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = gw.orders_v1.last();
    assert_eq!(seen.path, "/orders/7");
    assert_eq!(seen.header_all("x-tenant-id"), ["acme"]);
    let xfcc = seen.header_all("x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1, "{xfcc:?}");
    assert!(
        xfcc[0].contains(&format!("URI={PARTNER_ACME_URI}")),
        "{xfcc:?}"
    );
    assert!(xfcc[0].contains("CN=acme-partner"), "{xfcc:?}");
    assert!(
        !xfcc[0].contains("globex"),
        "the client's copy reached the upstream: {xfcc:?}"
    );
    assert_eq!(seen.header("x-user-id"), None, "no token, no user");

    // A certificate is a credential: a partner's burst does not spend the anonymous budget
    // (40 requests per address, then 20 a second), as a token's does not.
    for i in 0..60 {
        let resp = partner
            .get(url(&format!("/partner/orders/burst-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i} of a partner's burst");
    }

    // The certificate does not stand in for a token elsewhere; partner routes are reads only.
    let resp = partner.get(url("/api/users/1")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = partner.post(url("/partner/orders")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    // A token on this listener works as on the others.
    let tok = token("user-1", "acme", "orders:read");
    let resp = partner
        .get(url("/api/users/1"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // No certificate, or one of another CA with the partner's very identity: no handshake.
    // The rogue CA has the partner CA's name; Envoy trusts only client-ca.pem's key.
    certificate_authority(gw.cert_dir(), "rogue-ca", "edgegate partner CA").unwrap();
    client_certificate(
        gw.cert_dir(),
        "rogue-ca",
        "rogue-acme",
        "acme-partner",
        PARTNER_ACME_URI,
    )
    .unwrap();
    for (what, client) in [
        ("no certificate", gw.mtls_client(None)),
        ("another CA", gw.mtls_client(Some("rogue-acme"))),
    ] {
        let err = client
            .get(url("/partner/orders/7"))
            .send()
            .await
            .expect_err(what);
        assert!(err.is_connect() || err.is_request(), "{what}: {err:?}");
    }

    // The other listeners: no partner route (404), and a client's XFCC never reaches an
    // upstream.
    let c = client();
    let resp = c
        .get(gw.url("/partner/orders/7"))
        .header("x-forwarded-client-cert", FORGED_XFCC)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let tls_url = format!(
        "https://gateway.localhost:{}/api/users/xfcc-tls",
        gw.envoy.port("gateway_tls")
    );
    for (plain, url) in [
        (c, gw.url("/api/users/xfcc")),
        (gw.tls_client(false, true), tls_url),
    ] {
        let resp = plain
            .get(&url)
            .bearer_auth(&tok)
            .header("x-forwarded-client-cert", FORGED_XFCC)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        let seen = gw.users.last();
        assert_eq!(seen.header("x-forwarded-client-cert"), None, "{url}");
    }
}
