//! An API key's `not_after`: when it stops verifying, written as RFC 3339 text
//! (`2026-07-01T00:00:00Z`, an offset such as `+02:00` allowed, fractions of a second ignored)
//! or as Unix seconds (a JSON integer). Read once at configuration time into Unix milliseconds.

use serde_json::Value;

/// The latest instant accepted: 9999-12-31T23:59:59Z (beyond it is a typo, not a plan).
const MAX_SECONDS: u64 = 253_402_300_799;

/// `value` as Unix milliseconds, or why it is not a `not_after`.
pub fn parse_not_after(value: &Value) -> Result<u64, String> {
    let seconds = match value {
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            format!("{n} is not a time: give Unix seconds (a whole number, not negative) or RFC 3339 text")
        })?,
        Value::String(s) => parse_rfc3339(s).ok_or_else(|| {
            format!(
                "{s:?} is not an RFC 3339 time such as \"2026-07-01T00:00:00Z\" \
                 (date, 'T', time, then 'Z' or an offset like +02:00)"
            )
        })?,
        other => {
            return Err(format!(
                "{other} is not a time: give RFC 3339 text or Unix seconds"
            ))
        }
    };
    if seconds > MAX_SECONDS {
        return Err(format!("{value} is after the year 9999"));
    }
    Ok(seconds * 1000)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` as Unix seconds (fractions dropped); `t`, `z` and a
/// space for `T` accepted as RFC 3339 allows.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let digits = b.get(r)?;
        digits.iter().try_fold(0u64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // A leap second (60) is accepted as RFC 3339 allows and counts as the next second.
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &rest[1 + digits..];
    }
    let offset: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| -> Option<i64> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let (h, m) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + i64::try_from(hour * 3600 + minute * 60 + second).ok()?;
    u64::try_from(local - offset).ok()
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: u64, month: u64, day: u64) -> i64 {
    let (y, m, d) = (year as i64, month as i64, day as i64);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ms(v: Value) -> Result<u64, String> {
        parse_not_after(&v)
    }

    #[test]
    fn rfc3339_and_unix_seconds() {
        assert_eq!(ms(json!("1970-01-01T00:00:00Z")), Ok(0));
        assert_eq!(ms(json!("2026-07-01T00:00:00Z")), Ok(1_782_864_000_000));
        assert_eq!(ms(json!(1_782_864_000)), Ok(1_782_864_000_000));
        assert_eq!(
            ms(json!("2026-07-01t02:00:00+02:00")),
            Ok(1_782_864_000_000)
        );
        assert_eq!(
            ms(json!("2026-06-30 19:30:00.999-04:30")),
            Ok(1_782_864_000_000)
        );
        assert_eq!(ms(json!("2024-02-29T00:00:00Z")), Ok(1_709_164_800_000));
        assert_eq!(ms(json!("9999-12-31T23:59:59Z")), Ok(MAX_SECONDS * 1000));
    }

    #[test]
    fn refused_with_a_reason() {
        for bad in [
            json!("2026-07-01"),
            json!("2026-07-01T00:00:00"),
            json!("2026-02-29T00:00:00Z"),
            json!("2026-13-01T00:00:00Z"),
            json!("2026-07-01T24:00:00Z"),
            json!("2026-07-01T00:00:00.Z"),
            json!("2026-07-01T00:00:00+0200"),
            json!("+2026-07-01T00:00:00Z"),
            json!("1969-12-31T23:59:59Z"),
            json!(-1),
            json!(1.5),
            json!(true),
            json!(MAX_SECONDS + 1),
        ] {
            assert!(ms(bad.clone()).is_err(), "{bad}");
        }
        assert!(ms(json!("soon")).unwrap_err().contains("RFC 3339"));
    }
}
