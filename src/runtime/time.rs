//! Timestamps as the runtime writes them in logs and state files: RFC 3339 in UTC with
//! nanoseconds and a fixed width (`2024-05-01T12:34:56.000000001Z`), so that they also sort as
//! strings. Pure: formatting and parsing only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats `t` as fixed-width RFC 3339 UTC with nanoseconds. Times before 1970 print as the
/// epoch.
pub fn format(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_nanos()
    )
}

/// The current time, formatted.
pub fn now() -> String {
    format(SystemTime::now())
}

/// Parses RFC 3339 (`2024-05-01T12:34:56Z`, optional fraction, `Z` or `±hh:mm`), or Unix
/// seconds with an optional fraction (`1714566896.5`), as Docker's `--since` accepts.
pub fn parse(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Some(t) = parse_unix(text) {
        return Some(t);
    }
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u32>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let mut n: u64 = 0;
        for (i, c) in frac[..digits].bytes().enumerate() {
            if i < 9 {
                n = n * 10 + u64::from(c - b'0');
            }
        }
        for _ in digits..9 {
            n *= 10;
        }
        nanos = n as u32;
        rest = &frac[digits..];
    }
    let offset: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || rb[3] != b':' || !matches!(rb[0], b'+' | b'-') {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            let o = oh * 3600 + om * 60;
            if rb[0] == b'-' { -o } else { o }
        }
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s) - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

fn parse_unix(text: &str) -> Option<SystemTime> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_fixed_width_utc() {
        assert_eq!(format(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_714_566_896, 7);
        assert_eq!(format(t), "2024-05-01T12:34:56.000000007Z");
        let leap = UNIX_EPOCH + Duration::new(951_782_400, 0);
        assert_eq!(format(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for secs in [0u64, 951_782_400, 1_714_566_896, 4_102_444_800] {
            let t = UNIX_EPOCH + Duration::new(secs, 123_456_789);
            assert_eq!(parse(&format(t)), Some(t));
        }
        assert_eq!(
            parse("2024-05-01T14:34:56+02:00"),
            parse("2024-05-01T12:34:56Z")
        );
        assert_eq!(
            parse("2024-05-01T12:34:56.5Z"),
            Some(UNIX_EPOCH + Duration::new(1_714_566_896, 500_000_000))
        );
        assert_eq!(
            parse("1714566896.25"),
            Some(UNIX_EPOCH + Duration::new(1_714_566_896, 250_000_000))
        );
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-05-01T00:00:00",
            "1.x",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
