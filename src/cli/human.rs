//! Human-readable renderings shared by the commands, matching Docker's CLI so output reads the
//! same: sizes in decimal units with three significant digits (`4.26MB`), ages like `2 hours ago`,
//! RFC 3339 timestamps (as image configs carry them) parsed to Unix seconds and printed in UTC,
//! and space-aligned tables.

/// `bytes` in decimal units with three significant digits, like `docker images` (`4.26MB`).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let mut text = significant(value, 3);
    // 999.7kB rounds to 1000kB: say 1MB instead.
    if text == "1000" && unit + 1 < UNITS.len() {
        unit += 1;
        text = "1".to_string();
    }
    format!("{text}{}", UNITS[unit])
}

/// `value` (0 ≤ value < 1000) with `digits` significant digits and no trailing zeros (Go's `%.3g`
/// for that range).
fn significant(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let exponent = value.log10().floor() as i32;
    let decimals = usize::try_from((digits - 1 - exponent).max(0)).unwrap_or(0);
    let mut text = format!("{value:.decimals$}");
    // Rounding may have added a digit (9.996 → 10.00): one decimal fewer then.
    let integer_digits = text.split('.').next().map_or(0, str::len);
    if decimals > 0 && integer_digits as i32 > exponent + 1 {
        let decimals = decimals - 1;
        text = format!("{value:.decimals$}");
    }
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    text
}

/// How long ago, like Docker's `units.HumanDuration` (`Less than a second`, `About a minute`,
/// `3 hours`, `2 weeks`), for a duration in seconds.
pub fn duration(seconds: u64) -> String {
    let minutes = seconds / 60;
    // Hours are rounded to the nearest hour, as Docker does.
    let hours = (seconds + 1800) / 3600;
    match () {
        _ if seconds < 1 => "Less than a second".to_string(),
        _ if seconds == 1 => "1 second".to_string(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_string(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// `2 hours ago` for a timestamp `then` (Unix seconds) seen at `now`; a future time counts as now.
pub fn ago(then: i64, now: i64) -> String {
    format!("{} ago", duration(u64::try_from(now - then).unwrap_or(0)))
}

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Parses an RFC 3339 timestamp (`2026-01-01T00:00:00Z`, `…T10:00:00.123+02:00`) to Unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Leap seconds (60) are accepted and counted as the next second.
    if second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let (h, m) = rest.get(1..)?.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day number since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unix seconds as Docker prints a creation time: `2026-01-01 00:00:00 +0000 UTC`.
pub fn utc(seconds: i64) -> String {
    let (year, month, day) = civil_from_days(seconds.div_euclid(86400));
    let second_of_day = seconds.rem_euclid(86400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} +0000 UTC",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Rows as a table: columns left-aligned, separated by three spaces, no trailing spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("   ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let width = widths.get(i).copied().unwrap_or(0);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(999), "999B");
        assert_eq!(size(1000), "1kB");
        assert_eq!(size(1234), "1.23kB");
        assert_eq!(size(4_261_234), "4.26MB");
        assert_eq!(size(12_345_678), "12.3MB");
        assert_eq!(size(123_456_789), "123MB");
        assert_eq!(size(999_700), "1MB");
        assert_eq!(size(9_996), "10kB");
        assert_eq!(size(1_500_000_000), "1.5GB");
        assert_eq!(size(u64::MAX), "18.4EB");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(duration(0), "Less than a second");
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(59), "59 seconds");
        assert_eq!(duration(60), "About a minute");
        assert_eq!(duration(119), "About a minute");
        assert_eq!(duration(45 * 60), "45 minutes");
        assert_eq!(duration(3600), "About an hour");
        assert_eq!(duration(2 * 3600 + 100), "2 hours");
        assert_eq!(duration(47 * 3600), "47 hours");
        assert_eq!(duration(3 * 86400), "3 days");
        assert_eq!(duration(20 * 86400), "2 weeks");
        assert_eq!(duration(90 * 86400), "3 months");
        assert_eq!(duration(3 * 365 * 86400), "3 years");
        assert_eq!(ago(100, 100 + 7200), "2 hours ago");
        assert_eq!(ago(200, 100), "Less than a second ago");
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:30:15.123456789Z"),
            Some(1_709_209_815)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T14:30:15+02:00"),
            Some(1_709_209_815)
        );
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59-00:00"),
            Some(-1),
            "before the epoch"
        );
        for bad in [
            "",
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0200",
            "yyyy-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(utc(1_767_225_600), "2026-01-01 00:00:00 +0000 UTC");
        assert_eq!(utc(1_709_209_815), "2024-02-29 12:30:15 +0000 UTC");
    }

    #[test]
    fn tables_align() {
        let text = table(
            &["A", "LONG HEADER", "C"],
            &[vec!["xyz".into(), "1".into(), "".into()]],
        );
        assert_eq!(text, "A     LONG HEADER   C\nxyz   1\n");
    }
}
