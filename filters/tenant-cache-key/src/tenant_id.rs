//! What a tenant id (and a plan name) may look like: a value written into a request header and
//! used as a cache-key part and a rate-limit descriptor value, so a client must not be able to
//! smuggle separators, spaces or control characters into it.

/// The characters allowed, for error messages.
pub const TENANT_ID_SHAPE: &str =
    "letters, digits, '.', '_' and '-', starting with a letter or digit";

/// True when `value` is 1 to `max_len` characters of `[A-Za-z0-9._-]` starting with a letter or
/// digit.
pub fn is_valid_tenant_id(value: &str, max_len: usize) -> bool {
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.len() <= max_len
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks a configured tenant id or plan, with a reason an operator can act on. The value is
/// echoed: configured ids are not secrets.
pub fn check_configured_id(what: &str, value: &str, max_len: usize) -> Result<(), String> {
    if is_valid_tenant_id(value, max_len) {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid {what} (1 to {max_len} {TENANT_ID_SHAPE})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        for ok in ["acme", "a", "ACME-2.eu_west", "0day"] {
            assert!(is_valid_tenant_id(ok, 64), "{ok}");
        }
        for bad in [
            "",
            "-acme",
            ".acme",
            "ac me",
            "acme,globex",
            "acme;x=1",
            "acme\r\nx: y",
            "ácme",
            "acme/1",
            "acme%20",
        ] {
            assert!(!is_valid_tenant_id(bad, 64), "{bad:?}");
        }
        assert!(is_valid_tenant_id(&"a".repeat(64), 64));
        assert!(!is_valid_tenant_id(&"a".repeat(65), 64));
        assert_eq!(
            check_configured_id("tenant id", "a b", 8).unwrap_err(),
            format!("\"a b\" is not a valid tenant id (1 to 8 {TENANT_ID_SHAPE})")
        );
    }
}
