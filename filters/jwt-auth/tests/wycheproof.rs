//! Google's Wycheproof vectors for every signature family jwt_auth verifies, through the same
//! path a token takes: the key as a JWK through the JWKS parser, then `verify::verify_with`
//! with the JOSE algorithm. A valid vector must verify, an invalid one must not; an
//! "acceptable" one may go either way (counted, not asserted).
//!
//! Sets: RSASSA-PKCS1-v1_5 (RS256/384/512) with 2048-, 3072- and 4096-bit keys; RSASSA-PSS with
//! MGF1 on the same hash and salt = hash length (PS256/384/512, as RFC 7518 fixes them); ECDSA
//! in the P1363 encoding JWS uses (ES256 on P-256, ES384 on P-384, ES512 on P-521); Ed25519;
//! HMAC-SHA-256/384/512 with full-length tags (HS256/384/512, keys of at least the hash size).

#[cfg(test)]
mod wycheproof_vectors {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jwt_auth::jwks::{JwksOrigin, KeyMaterial, KeySet};
    use jwt_auth::token::Algorithm;
    use jwt_auth::verify::verify_with;
    use serde_json::{json, Value};
    use wycheproof::TestResult;

    /// What a set of vectors gave: checked, and the failures.
    #[derive(Default)]
    struct Tally {
        checked: usize,
        acceptable: usize,
        failures: Vec<String>,
    }

    impl Tally {
        fn record(&mut self, set: &str, id: usize, expected: TestResult, verified: bool) {
            self.checked += 1;
            match (expected, verified) {
                (TestResult::Acceptable, _) => self.acceptable += 1,
                (TestResult::Valid, true) | (TestResult::Invalid, false) => {}
                (TestResult::Valid, false) => {
                    self.failures.push(format!("{set} #{id}: valid, refused"))
                }
                (TestResult::Invalid, true) => self
                    .failures
                    .push(format!("{set} #{id}: INVALID, ACCEPTED")),
            }
        }

        fn assert(&self, min: usize) {
            assert!(self.checked >= min, "only {} vectors", self.checked);
            assert!(
                self.failures.is_empty(),
                "{} of {} vectors:\n{}",
                self.failures.len(),
                self.checked,
                self.failures.join("\n")
            );
        }
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The key material of `jwk`, parsed as a JWKS key (None: the parser refused it).
    fn material(jwk: Value, origin: JwksOrigin) -> Option<KeyMaterial> {
        let set = KeySet::from_value(&json!({ "keys": [jwk] }), origin).ok()?;
        set.keys.into_iter().next().map(|k| k.material)
    }

    /// A big-endian integer without its leading zero bytes (a JWK writes none).
    fn unsigned(bytes: &[u8]) -> &[u8] {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        &bytes[start..]
    }

    /// One group's vectors `(id, expected, message, signature)` against the key `jwk` parses to.
    fn check_group(
        t: &mut Tally,
        set: &str,
        (jwk, origin): (Value, JwksOrigin),
        alg: Algorithm,
        tests: impl IntoIterator<Item = (usize, TestResult, Vec<u8>, Vec<u8>)>,
    ) {
        let key = material(jwk, origin).unwrap_or_else(|| panic!("{set}: key refused"));
        for (id, expected, msg, sig) in tests {
            t.record(set, id, expected, verify_with(&key, alg, &msg, &sig));
        }
    }

    fn rsa_jwk(n: &[u8], e: &[u8]) -> (Value, JwksOrigin) {
        let jwk = json!({"kty": "RSA", "n": b64(unsigned(n)), "e": b64(unsigned(e))});
        (jwk, JwksOrigin::Remote)
    }

    /// Every group of every set `(name, alg)` of the Wycheproof signature module `$module`: the
    /// group's key as `$jwk` (a JWK and its origin, from the group `$g`), its vectors through
    /// [`check_group`].
    macro_rules! run_sets {
        ($t:expr, $module:ident, $sets:expr, |$g:ident, $alg:ident| $jwk:expr) => {
            for (name, $alg) in $sets {
                let set = wycheproof::$module::TestSet::load(name).unwrap();
                for $g in set.test_groups {
                    let jwk = $jwk;
                    let tests = ($g.tests.into_iter())
                        .map(|v| (v.tc_id, v.result, v.msg.to_vec(), v.sig.to_vec()));
                    check_group(&mut $t, &format!("{name:?}"), jwk, $alg, tests);
                }
            }
        };
    }

    #[test]
    fn rsa_pkcs1_v1_5() {
        use wycheproof::rsa_pkcs1_verify::TestName;
        let mut t = Tally::default();
        let sets = [
            (TestName::Rsa2048Sha256, Algorithm::RS256),
            (TestName::Rsa2048Sha384, Algorithm::RS384),
            (TestName::Rsa2048Sha512, Algorithm::RS512),
            (TestName::Rsa3072Sha256, Algorithm::RS256),
            (TestName::Rsa3072Sha384, Algorithm::RS384),
            (TestName::Rsa3072Sha512, Algorithm::RS512),
            (TestName::Rsa4096Sha256, Algorithm::RS256),
            (TestName::Rsa4096Sha384, Algorithm::RS384),
            (TestName::Rsa4096Sha512, Algorithm::RS512),
        ];
        run_sets!(t, rsa_pkcs1_verify, sets, |g, alg| rsa_jwk(
            &g.key.n, &g.key.e
        ));
        t.assert(500);
    }

    #[test]
    fn rsa_pss_with_salt_of_the_hash_length() {
        use wycheproof::rsa_pss_verify::TestName;
        let mut t = Tally::default();
        let sets = [
            (TestName::RsaPss2048Sha256Mgf1SaltLen32, Algorithm::PS256),
            (TestName::RsaPss3072Sha256Mgf1SaltLen32, Algorithm::PS256),
            (TestName::RsaPss4096Sha256Mgf1SaltLen32, Algorithm::PS256),
            (TestName::RsaPss2048Sha384Mgf1SaltLen48, Algorithm::PS384),
            (TestName::RsaPss4096Sha384Mgf1SaltLen48, Algorithm::PS384),
            (TestName::RsaPss4096Sha512Mgf1SaltLen64, Algorithm::PS512),
        ];
        run_sets!(t, rsa_pss_verify, sets, |g, alg| rsa_jwk(
            &g.key.n, &g.key.e
        ));
        t.assert(200);
    }

    /// The curve and coordinate size JWS pairs with an ECDSA algorithm.
    fn curve(alg: Algorithm) -> (&'static str, usize) {
        match alg {
            Algorithm::ES256 => ("P-256", 32),
            Algorithm::ES384 => ("P-384", 48),
            _ => ("P-521", 66),
        }
    }

    #[test]
    fn ecdsa_p1363_on_p256_p384_p521() {
        use wycheproof::ecdsa::TestName;
        let mut t = Tally::default();
        let sets = [
            (TestName::EcdsaSecp256r1Sha256P1363, Algorithm::ES256),
            (TestName::EcdsaSecp384r1Sha384P1363, Algorithm::ES384),
            (TestName::EcdsaSecp521r1Sha512P1363, Algorithm::ES512),
        ];
        run_sets!(t, ecdsa, sets, |g, alg| {
            // The uncompressed SEC1 point: 04 || x || y.
            let (crv, size) = curve(alg);
            let point: &[u8] = &g.key.key;
            assert_eq!(point.len(), 1 + 2 * size, "{crv}");
            let (x, y) = point[1..].split_at(size);
            let jwk = json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)});
            (jwk, JwksOrigin::Remote)
        });
        t.assert(800);
    }

    #[test]
    fn ed25519() {
        use wycheproof::eddsa::TestName;
        let mut t = Tally::default();
        let sets = [(TestName::Ed25519, Algorithm::EdDSA)];
        run_sets!(t, eddsa, sets, |g, alg| {
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&g.key.pk)});
            (jwk, JwksOrigin::Remote)
        });
        t.assert(100);
    }

    /// HMAC with the full tag of the hash and a key of at least the hash's size (RFC 7518 3.2:
    /// shorter keys are refused by the JWKS parser, shorter tags are no HS256/384/512 signature).
    #[test]
    fn hmac_sha2_with_full_tags() {
        use wycheproof::mac::{TestName, TestSet};
        let mut t = Tally::default();
        let sets = [
            (TestName::HmacSha256, Algorithm::HS256, 32),
            (TestName::HmacSha384, Algorithm::HS384, 48),
            (TestName::HmacSha512, Algorithm::HS512, 64),
        ];
        for (name, alg, size) in sets {
            let set = TestSet::load(name).unwrap();
            for group in set.test_groups {
                if group.tag_size != size * 8 || group.key_size < size * 8 {
                    continue;
                }
                for v in group.tests {
                    let jwk = json!({"kty": "oct", "k": b64(&v.key)});
                    let test = [(v.tc_id, v.result, v.msg.to_vec(), v.tag.to_vec())];
                    check_group(
                        &mut t,
                        &format!("{name:?}"),
                        (jwk, JwksOrigin::Local),
                        alg,
                        test,
                    );
                }
            }
        }
        t.assert(50);
    }
}
