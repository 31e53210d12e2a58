//! Wall-clock times as the API shows and takes them: milliseconds since the Unix epoch printed
//! as UTC RFC 3339, and parsed back from a number, a date or a UTC time. Pure functions over
//! numbers (the core has no clock: times come in as inputs), shared by the node's history and
//! statements and the wallet's journal.

/// `at_ms` (milliseconds since the Unix epoch) as UTC in RFC 3339, to the millisecond:
/// `2026-12-03T02:05:09.123Z` (the proleptic Gregorian calendar, from the day count).
pub fn utc_time(at_ms: u64) -> String {
    let at_ms = at_ms.min(253_402_300_799_999); // 9999-12-31T23:59:59.999Z
    let (days, ms_of_day) = (at_ms / 86_400_000, at_ms % 86_400_000);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm, eras of 400 years).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let (h, m, sec, ms) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1_000 % 60, ms_of_day % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}.{ms:03}Z")
}

/// Which end of a date range a time names: a bare date means the start of its day for `From`
/// and its last millisecond for `To`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeEnd {
    /// The range's start.
    From,
    /// The range's end (inclusive).
    To,
}

/// A time as an API takes it, in milliseconds since the Unix epoch: a number of milliseconds,
/// a UTC date `YYYY-MM-DD`, or a UTC time `YYYY-MM-DDTHH:MM:SS[.mmm]Z`. `None` if it is none
/// of these or not a real date.
pub fn parse_utc_time(text: &str, end: RangeEnd) -> Option<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<u64>().ok()).flatten();
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let (y, m, d) = (digits(parts.next()?)?, digits(parts.next()?)?, digits(parts.next()?)?);
    if parts.next().is_some() || !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if d > month_days[(m - 1) as usize] {
        return None;
    }
    // Days from 1970-01-01 (H. Hinnant's algorithm, the inverse of `utc_time`'s).
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy / 400;
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let day_ms = days * 86_400_000;
    let Some(time) = time else {
        return Some(if end == RangeEnd::To { day_ms + 86_399_999 } else { day_ms });
    };
    let (hms, ms) = match time.split_once('.') {
        Some((hms, ms)) if ms.len() == 3 => (hms, digits(ms)?),
        Some(_) => return None,
        None => (time, 0),
    };
    let mut t = hms.split(':');
    let (h, mi, sec) = (digits(t.next()?)?, digits(t.next()?)?, digits(t.next()?)?);
    if t.next().is_some() || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    Some(day_ms + h * 3_600_000 + mi * 60_000 + sec * 1_000 + ms)
}

#[cfg(test)]
mod tests {
    use super::{parse_utc_time, utc_time, RangeEnd};

    #[test]
    fn times_parse_back_to_what_they_print_and_bad_dates_are_refused() {
        for ms in [0, 951_782_400_000, 1_796_263_509_123, 4_107_542_399_999] {
            assert_eq!(parse_utc_time(&utc_time(ms), RangeEnd::From), Some(ms), "{}", utc_time(ms));
        }
        assert_eq!(parse_utc_time("1796263509123", RangeEnd::To), Some(1_796_263_509_123));
        assert_eq!(parse_utc_time("2026-12-03", RangeEnd::From), Some(1_796_256_000_000));
        assert_eq!(parse_utc_time("2026-12-03", RangeEnd::To), Some(1_796_342_399_999), "the day's last ms");
        assert_eq!(parse_utc_time("2026-12-03T02:05:09Z", RangeEnd::From), Some(1_796_263_509_000));
        for bad in [
            "2026-02-29",
            "2100-02-29",
            "2026-13-01",
            "2026-12-03T24:00:00Z",
            "2026-12-03T02:05:09",
            "yesterday",
            "2026-12",
            "-5",
            "2026-12-03T02:05:09.1Z",
            "",
        ] {
            assert_eq!(parse_utc_time(bad, RangeEnd::From), None, "{bad}");
        }
        assert_eq!(parse_utc_time("2024-02-29", RangeEnd::From), Some(1_709_164_800_000), "a leap day");
    }

    #[test]
    fn utc_times_match_known_dates() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29T00:00:00.000Z", "a leap day of a century leap year");
        assert_eq!(utc_time(1_796_263_509_123), "2026-12-03T02:05:09.123Z");
        assert_eq!(utc_time(4_107_542_399_999), "2100-02-28T23:59:59.999Z", "2100 is no leap year");
        assert_eq!(utc_time(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
    }
}
