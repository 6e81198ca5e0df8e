//! Wall-clock timestamps as Kubernetes and CRI logs write them (RFC 3339, UTC), without a
//! date library: the civil date comes from Howard Hinnant's days-from-epoch algorithm.

/// RFC 3339 UTC with `fraction_digits` (0-9) of the second, from nanoseconds since the epoch.
pub fn rfc3339(ns: i128, fraction_digits: usize) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let nanos = ns.rem_euclid(1_000_000_000) as u64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let digits = fraction_digits.min(9);
    let fraction = if digits == 0 {
        String::new()
    } else {
        format!(
            ".{:0width$}",
            nanos / 10u64.pow(9 - digits as u32),
            width = digits
        )
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Nanoseconds since the epoch of a system time (before 1970 counts negative).
pub fn epoch_nanos(time: std::time::SystemTime) -> i128 {
    match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_around_leap_years_and_fractions() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        // 2024-02-29T23:59:59.123456789Z
        let ns = 1_709_251_199_i128 * 1_000_000_000 + 123_456_789;
        assert_eq!(rfc3339(ns, 9), "2024-02-29T23:59:59.123456789Z");
        assert_eq!(rfc3339(ns, 3), "2024-02-29T23:59:59.123Z");
        assert_eq!(
            rfc3339(1_796_054_400_000_000_000, 3),
            "2026-11-30T16:00:00.000Z"
        );
        assert_eq!(rfc3339(-1_000_000_000, 0), "1969-12-31T23:59:59Z");
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400);
        assert_eq!(epoch_nanos(now), 86_400_000_000_000);
    }
}
