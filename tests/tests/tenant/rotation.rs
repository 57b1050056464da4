//! API key rotation through Envoy: a tenant holds its old key (with a `not_after` a few seconds
//! ahead) and its new one; both resolve the tenant until `not_after`, then only the new one.

use crate::prelude::*;
use crate::support::*;
use sha2::{Digest, Sha256};

const OLD_KEY: &str = "acme-key-2025";
const NEW_KEY: &str = "acme-key-2026";

fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn old_and_new_keys_both_work_until_not_after_then_only_the_new_one() {
    // RFC 3339, whole seconds: the old key lapses 4 to 5 s from now.
    let not_after = tools::now() + 5;
    let not_after_text =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(not_after))
            .to_string();
    let acme = format!(
        r#"{{ "tenant": "acme", "plan": "pro", "hashes": [
                            {{ "sha256": "{}" }},
                            {{ "sha256": "{}", "not_after": "{not_after_text}" }} ] }},"#,
        sha256_hex(NEW_KEY),
        sha256_hex(OLD_KEY),
    );
    let s = stack_with(NO_LIMITS, |text| {
        let shipped = r#"{ "sha256": "8649cdebee753898fd50e01408a9e438aa5090249bc3e51b65f33dce973b0873",
                            "tenant": "acme", "plan": "pro" },"#;
        assert!(text.contains(shipped), "the shipped acme key entry moved");
        text.replace(shipped, &acme)
    })
    .await;

    // Before not_after: either key is acme's; the key itself never reaches the upstream.
    for key in [OLD_KEY, NEW_KEY] {
        let got = get(&s.envoy, "/profile", &[("x-api-key", key)]).await;
        assert_eq!(got.status, 200, "{key}: {}", got.body);
        assert_eq!(got.tenant(), ["acme"], "{key}");
        assert_eq!(got.body["api_key_seen"], false, "{key}");
    }
    // Until not_after both keep working; from then on (the host's clock) the old key is
    // refused as any unknown key is, and the new one still works. Polled: each answer is checked
    // against when it was asked for.
    let not_after_ms = not_after * 1000;
    let now_ms = || {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        u64::try_from(since.unwrap().as_millis()).unwrap()
    };
    let refused_at = wait::until("the old key to lapse", Duration::from_secs(15), || async {
        let sent = now_ms();
        let got = get(&s.envoy, "/profile", &[("x-api-key", OLD_KEY)]).await;
        let answered = now_ms();
        match got.status {
            200 => {
                assert!(sent < not_after_ms, "the old key worked after not_after");
                Ok(None)
            }
            401 => {
                assert_eq!(got.body["error"], "invalid_api_key");
                Ok(Some(answered))
            }
            other => panic!("old key: {other} {}", got.body),
        }
    })
    .await
    .unwrap();
    assert!(refused_at >= not_after_ms, "refused before not_after");
    let got = get(&s.envoy, "/profile", &[("x-api-key", NEW_KEY)]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.tenant(), ["acme"]);
    s.envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::EXPIRED_API_KEY), 1)
        .await
        .unwrap();
}
