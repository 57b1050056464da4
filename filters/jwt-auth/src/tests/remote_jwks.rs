//! Remote JWKS through shared data, with injected time.

use super::*;

fn remote_config() -> Arc<FilterConfig> {
    let cfg = json!({"providers": {"idp": {"issuer": "https://idp", "remote_jwks": {
        "cluster": "idp", "uri": "https://idp.example/jwks", "cache_duration": "600s", "max_stale": "3600s"}}},
        "rules": [{"requires": {"provider_name": "idp"}}]});
    Arc::new(FilterConfig::parse(cfg.to_string().as_bytes()).unwrap())
}

fn jwks_bytes(keys: &[Value]) -> Vec<u8> {
    json!({"keys": keys}).to_string().into_bytes()
}

#[test]
fn shared_jwks_one_fetch_serves_all_workers() {
    let cfg = remote_config();
    let shared = MemShared::default();
    let (mut w1, mut w2) = (
        WorkerKeys::new(cfg.clone(), "jwt"),
        WorkerKeys::new(cfg.clone(), "jwt"),
    );
    let (mut f1, mut f2) = (Fetches::default(), Fetches::default());
    let t0 = NOW * 1000;
    w1.tick(&shared, &mut f1, t0);
    w2.tick(&shared, &mut f2, t0 + 10);
    assert_eq!(
        (f1.0.len(), f2.0.len()),
        (1, 0),
        "worker 2 sees worker 1's lease"
    );
    // Until keys arrive, requests wait (the fetch is in flight).
    let mut a2 = Authenticator::new(cfg.clone(), 2);
    let h = request("GET", "/x", Some(&token("RS256")));
    let d = a2.authenticate(
        &h,
        Governing::Matchers,
        t0 + 20,
        &mut w2.store(&shared, &mut f2),
        &NoRevocation,
    );
    assert_eq!(d.outcome, Outcome::Wait(vec![0]));
    let k = keys();
    let body = jwks_bytes(&[k.rsa.jwk("rsa-1")]);
    assert_eq!(
        w1.on_fetch_result(&shared, 0, Some(&body), t0 + 100),
        crate::keystore::FetchResult::Accepted { skipped: vec![] }
    );
    // A worker whose tick has not run since the keys landed reads them on demand instead of
    // fetching again (found through Envoy with two workers).
    let mut w3 = WorkerKeys::new(cfg.clone(), "jwt");
    let mut f3 = Fetches::default();
    let mut a3 = Authenticator::new(cfg.clone(), 5);
    let d = a3.authenticate(
        &h,
        Governing::Matchers,
        t0 + 150,
        &mut w3.store(&shared, &mut f3),
        &NoRevocation,
    );
    assert_eq!((d.outcome, f3.0.len()), (Outcome::Allow, 0));
    assert_eq!(
        w2.tick(&shared, &mut f2, t0 + 200),
        vec![0],
        "worker 2 picks the keys up"
    );
    let d = a2.authenticate(
        &h,
        Governing::Matchers,
        t0 + 300,
        &mut w2.store(&shared, &mut f2),
        &NoRevocation,
    );
    assert_eq!(d.outcome, Outcome::Allow);
    // Garbage from the IdP never replaces good keys; backoff follows.
    let refresh_at = t0 + 100 + 540_000;
    w1.tick(&shared, &mut f1, refresh_at);
    assert_eq!(f1.0.len(), 2, "background refresh before expiry");
    assert!(matches!(
        w1.on_fetch_result(&shared, 0, Some(b"<html>oops</html>"), refresh_at + 10),
        crate::keystore::FetchResult::Rejected(_)
    ));
    w1.tick(&shared, &mut f1, refresh_at + 20);
    assert_eq!(f1.0.len(), 2, "backing off");
    // Stale but within max_stale: still served. Past it: refused.
    let stale = t0 + 100 + 600_000 + 1_000;
    let mut a1 = Authenticator::new(cfg.clone(), 3);
    let d = a1.authenticate(
        &h,
        Governing::Matchers,
        stale,
        &mut w1.store(&shared, &mut Fetches::default()),
        &NoRevocation,
    );
    assert_eq!(d.outcome, Outcome::Allow);
    let expired = t0 + 100 + 600_000 + 3_600_000;
    let mut none = Fetches::default();
    // Expired keys: the request asks for a fetch and waits for it.
    let d = a1.authenticate(
        &h,
        Governing::Matchers,
        expired,
        &mut w1.store(&shared, &mut none),
        &NoRevocation,
    );
    assert_eq!((d.outcome, none.0.len()), (Outcome::Wait(vec![0]), 1));
    w1.on_fetch_result(&shared, 0, None, expired + 5);
    let d = a1.authenticate(
        &h,
        Governing::Matchers,
        expired + 6,
        &mut w1.store(&shared, &mut none),
        &NoRevocation,
    );
    assert_eq!(denial(&d), Denial::KEYS_UNAVAILABLE);
}

#[test]
fn unknown_kid_refetches_once_per_interval() {
    let cfg = remote_config();
    let shared = MemShared::default();
    let mut w = WorkerKeys::new(cfg.clone(), "jwt");
    let mut f = Fetches::default();
    let t0 = NOW * 1000;
    w.tick(&shared, &mut f, t0);
    let k = keys();
    w.on_fetch_result(&shared, 0, Some(&jwks_bytes(&[k.rsa.jwk("rsa-1")])), t0 + 1);
    let mut a = Authenticator::new(cfg.clone(), 4);
    let rotated = sign(&json!({"alg": "ES256", "kid": "ec-1"}), &claims());
    let h = request("GET", "/x", Some(&rotated));
    let d = a.authenticate(
        &h,
        Governing::Matchers,
        t0 + 10,
        &mut w.store(&shared, &mut f),
        &NoRevocation,
    );
    assert_eq!((d.outcome, f.0.len()), (Outcome::Wait(vec![0]), 2));
    // A random kid storm while the fetch is in flight waits on the same fetch.
    for i in 0..20 {
        let t = sign(
            &json!({"alg": "RS256", "kid": format!("random-{i}")}),
            &claims(),
        );
        let d = a.authenticate(
            &request("GET", "/x", Some(&t)),
            Governing::Matchers,
            t0 + 20,
            &mut w.store(&shared, &mut f),
            &NoRevocation,
        );
        assert_eq!(d.outcome, Outcome::Wait(vec![0]));
    }
    assert_eq!(f.0.len(), 2, "no fetch storm");
    w.on_fetch_result(
        &shared,
        0,
        Some(&jwks_bytes(&[k.rsa.jwk("rsa-1"), p256_jwk("ec-1")])),
        t0 + 50,
    );
    let d = a.authenticate(
        &h,
        Governing::Matchers,
        t0 + 60,
        &mut w.store(&shared, &mut f),
        &NoRevocation,
    );
    assert_eq!(d.outcome, Outcome::Allow, "the waiting request resumes");
    let t = sign(&json!({"alg": "RS256", "kid": "random-x"}), &claims());
    let d = a.authenticate(
        &request("GET", "/x", Some(&t)),
        Governing::Matchers,
        t0 + 70,
        &mut w.store(&shared, &mut f),
        &NoRevocation,
    );
    assert_eq!(
        (denial(&d).reason, f.0.len()),
        ("unknown_kid", 2),
        "rate limited: 401 at once"
    );
    let d = a.authenticate(
        &request("GET", "/x", Some(&t)),
        Governing::Matchers,
        t0 + 30_011,
        &mut w.store(&shared, &mut f),
        &NoRevocation,
    );
    assert_eq!(
        (d.outcome, f.0.len()),
        (Outcome::Wait(vec![0]), 3),
        "next interval refetches"
    );
}
