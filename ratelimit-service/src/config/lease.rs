//! The leased-quota fields of a limit (our extension): `mode: exact | leased`, `lease_size` and
//! `lease_ttl`. See docs/ratelimit-service.md, "Leased quotas".
//!
//! A leased limit whose lease size is 1 (given, or the default for a limit under 40 requests per
//! unit) is served as `exact`: a lease of one token spent by the request that asked for it is
//! the exact path, and answering EXACT tells the gateway not to hold it.

use std::time::Duration;

/// `lease_ttl` when not given (and the hold time reported for exact limits).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// The default lease size is `requests_per_unit / DEFAULT_LEASE_DIVISOR` (at least 1).
pub const DEFAULT_LEASE_DIVISOR: u32 = 20;

/// How gateways take a limit's tokens through the QuotaLease API. ShouldRateLimit charges every
/// limit per request whatever its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMode {
    /// One token per Lease call, spent at once by the request that asked.
    Exact,
    /// Up to `size` tokens per Lease call (`size` >= 2), held until the lease expires.
    Leased { size: u32 },
}

impl LimitMode {
    /// Tokens one Lease call may take for this limit.
    pub fn lease_size(self) -> u32 {
        match self {
            LimitMode::Exact => 1,
            LimitMode::Leased { size } => size,
        }
    }

    pub fn is_leased(self) -> bool {
        matches!(self, LimitMode::Leased { .. })
    }
}

/// The raw lease fields of one limit.
pub(super) struct LeaseFields {
    pub mode: Option<String>,
    pub lease_size: Option<i64>,
    pub lease_ttl: Option<String>,
}

/// What the rest of the limit says about leasing it.
pub(super) struct LimitShape {
    pub unlimited: bool,
    pub requests_per_unit: u32,
    /// Token bucket `burst`, or `None` for the window algorithms.
    pub burst: Option<u64>,
}

/// Validates the lease fields: `Err((field, reason))` names the refused field.
pub(super) fn compile(
    fields: LeaseFields,
    shape: &LimitShape,
) -> Result<(LimitMode, Duration), (&'static str, String)> {
    let leased = match fields.mode.as_deref() {
        None | Some("exact") => false,
        Some("leased") => true,
        Some(other) => {
            return Err((
                "mode",
                format!("unknown mode {other:?} (expected exact or leased)"),
            ))
        }
    };
    if !leased {
        let only_leased = "only applies to `mode: leased`".to_owned();
        if fields.lease_size.is_some() {
            return Err(("lease_size", only_leased));
        }
        if fields.lease_ttl.is_some() {
            return Err(("lease_ttl", only_leased));
        }
        return Ok((LimitMode::Exact, DEFAULT_LEASE_TTL));
    }
    if shape.unlimited {
        return Err((
            "mode",
            "`leased` does not apply to an `unlimited: true` limit (it has no tokens to lease)"
                .into(),
        ));
    }
    let ttl = match fields.lease_ttl {
        None => DEFAULT_LEASE_TTL,
        Some(text) => parse_ttl(&text).map_err(|reason| ("lease_ttl", reason))?,
    };
    let size = lease_size(fields.lease_size, shape).map_err(|reason| ("lease_size", reason))?;
    let mode = if size <= 1 {
        LimitMode::Exact
    } else {
        LimitMode::Leased { size }
    };
    Ok((mode, ttl))
}

/// The lease size: given (1 ..= the bucket's capacity) or `requests_per_unit / 20`, at least 1
/// and at most the capacity.
fn lease_size(given: Option<i64>, shape: &LimitShape) -> Result<u32, String> {
    let rpu = u64::from(shape.requests_per_unit);
    let capacity = shape.burst.map_or(rpu, |burst| burst.min(rpu));
    match given {
        None => {
            let size = (shape.requests_per_unit / DEFAULT_LEASE_DIVISOR).max(1);
            Ok(u32::try_from(u64::from(size).min(capacity.max(1))).unwrap_or(1))
        }
        Some(n) if n < 1 => Err(format!("must be at least 1, got {n}")),
        Some(n) if u64::try_from(n).unwrap_or(u64::MAX) > capacity => Err(match shape.burst {
            Some(burst) if burst < rpu => {
                format!("{n} is larger than the bucket's capacity (burst: {burst})")
            }
            _ => format!("{n} is larger than the limit (requests_per_unit: {rpu})"),
        }),
        // At most the capacity, itself at most requests_per_unit: fits in u32.
        Some(n) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
    }
}

/// `500ms`, `5s`, `1.5s`, `1m`, `1h`: a positive number and a unit.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (expected e.g. 500ms, 5s or 1m)");
    let trimmed = text.trim();
    let (number, ms_per_unit) = if let Some(n) = trimmed.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = trimmed.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = trimmed.strip_suffix('m') {
        (n, 60e3)
    } else if let Some(n) = trimmed.strip_suffix('h') {
        (n, 3_600e3)
    } else {
        return Err(invalid());
    };
    let value: f64 = number.trim().parse().map_err(|_| invalid())?;
    if !value.is_finite() {
        return Err(invalid());
    }
    if value <= 0.0 {
        return Err(format!("must be positive, got {text:?}"));
    }
    let ms = (value * ms_per_unit).round();
    if ms < 1.0 {
        return Err(format!("must be at least 1ms, got {text:?}"));
    }
    Ok(Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(rpu: u32, burst: Option<u64>) -> LimitShape {
        LimitShape {
            unlimited: false,
            requests_per_unit: rpu,
            burst,
        }
    }

    fn leased(size: Option<i64>, ttl: Option<&str>) -> LeaseFields {
        LeaseFields {
            mode: Some("leased".into()),
            lease_size: size,
            lease_ttl: ttl.map(str::to_owned),
        }
    }

    #[test]
    fn ttl_accepts_units_and_refuses_the_rest() {
        assert_eq!(parse_ttl("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_ttl("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_ttl(" 1.5s "), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_ttl("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["5", "soon", "5 sec", "", "nans", "infs", "s"] {
            assert!(
                parse_ttl(bad).unwrap_err().starts_with("invalid duration"),
                "{bad}"
            );
        }
        assert_eq!(parse_ttl("0s").unwrap_err(), "must be positive, got \"0s\"");
        assert_eq!(
            parse_ttl("-5s").unwrap_err(),
            "must be positive, got \"-5s\""
        );
        assert_eq!(
            parse_ttl("0.1ms").unwrap_err(),
            "must be at least 1ms, got \"0.1ms\""
        );
    }

    #[test]
    fn default_lease_size_is_a_twentieth_capped_by_capacity() {
        let size = |rpu, burst| compile(leased(None, None), &shape(rpu, burst)).unwrap().0;
        assert_eq!(size(1000, None), LimitMode::Leased { size: 50 });
        assert_eq!(size(1000, Some(20)), LimitMode::Leased { size: 20 });
        assert_eq!(size(40, None), LimitMode::Leased { size: 2 });
        assert_eq!(size(39, None), LimitMode::Exact, "lease size 1 is exact");
        assert_eq!(size(3, None), LimitMode::Exact);
        assert_eq!(size(0, None), LimitMode::Exact);
        let (_, ttl) = compile(leased(None, None), &shape(100, None)).unwrap();
        assert_eq!(ttl, DEFAULT_LEASE_TTL);
    }

    #[test]
    fn given_lease_size_must_fit_the_bucket() {
        let refuse = |n, rpu, burst| compile(leased(Some(n), None), &shape(rpu, burst)).err();
        assert_eq!(
            refuse(0, 10, None),
            Some(("lease_size", "must be at least 1, got 0".into()))
        );
        assert_eq!(
            refuse(11, 10, None),
            Some((
                "lease_size",
                "11 is larger than the limit (requests_per_unit: 10)".into()
            ))
        );
        assert_eq!(
            refuse(30, 100, Some(20)),
            Some((
                "lease_size",
                "30 is larger than the bucket's capacity (burst: 20)".into()
            ))
        );
        assert_eq!(
            refuse(10, 5, Some(50)),
            Some((
                "lease_size",
                "10 is larger than the limit (requests_per_unit: 5)".into()
            ))
        );
        let ok = compile(leased(Some(10), Some("250ms")), &shape(10, None)).unwrap();
        assert_eq!(
            ok,
            (LimitMode::Leased { size: 10 }, Duration::from_millis(250))
        );
        let one = compile(leased(Some(1), None), &shape(1000, None)).unwrap();
        assert_eq!(one.0, LimitMode::Exact);
    }

    #[test]
    fn lease_fields_need_leased_mode_and_a_limited_bucket() {
        let exact = |size: Option<i64>, ttl: Option<&str>, mode: Option<&str>| {
            compile(
                LeaseFields {
                    mode: mode.map(str::to_owned),
                    lease_size: size,
                    lease_ttl: ttl.map(str::to_owned),
                },
                &shape(100, None),
            )
            .err()
            .map(|(field, _)| field)
        };
        assert_eq!(exact(Some(5), None, None), Some("lease_size"));
        assert_eq!(exact(None, Some("5s"), Some("exact")), Some("lease_ttl"));
        assert_eq!(exact(None, None, Some("lazy")), Some("mode"));
        assert_eq!(exact(None, None, Some("exact")), None);
        let unlimited = LimitShape {
            unlimited: true,
            ..shape(0, None)
        };
        assert_eq!(
            compile(leased(None, None), &unlimited).unwrap_err().0,
            "mode"
        );
    }
}
