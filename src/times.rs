//! Instants and durations as kubeforge reads and writes them. A leaf module: everything that parses or formats a
//! time goes through here, so that `--now`, the spec's validities, `check --within` and every date in PKI.md,
//! index.json and messages agree.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Parses a UTC instant written as `YYYY-MM-DDTHH:MM:SSZ` (for `--now` and tests).
pub fn parse_instant(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    if !b.iter().enumerate().all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19) || c.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let month = time::Month::try_from(n(5..7)? as u8).ok()?;
    let date = time::Date::from_calendar_date(n(0..4)? as i32, month, n(8..10)? as u8).ok()?;
    let t = time::Time::from_hms(n(11..13)? as u8, n(14..16)? as u8, n(17..19)? as u8).ok()?;
    Some(PrimitiveDateTime::new(date, t).assume_utc())
}

/// `2026-01-01T00:00:00Z`: RFC 3339 in UTC, whole seconds (index.json, JSON reports, messages).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC).replace_nanosecond(0).expect("0 is a valid nanosecond");
    // What `format(&Rfc3339)` writes for a UTC instant without fractions, written directly: the index formats
    // two dates per certificate it lists, thousands of them.
    if (0..=9999).contains(&t.year()) {
        return format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
    }
    t.format(&Rfc3339).unwrap_or_else(|_| format!("{t}"))
}

/// `2026-01-01 00:00:00Z`: the same instant for a Markdown table cell (PKI.md), where a space reads better.
pub fn readable(t: OffsetDateTime) -> String {
    rfc3339(t).replacen('T', " ", 1)
}

/// The instants X.509 can write (RFC 5280 §4.1.2.5: UTCTime to 2049, then GeneralizedTime to year 9999).
pub fn x509_range() -> (OffsetDateTime, OffsetDateTime) {
    let first = parse_instant("1950-01-01T00:00:00Z").expect("a valid instant");
    let last = parse_instant("9999-12-31T23:59:59Z").expect("a valid instant");
    (first, last)
}

/// A Go duration of whole hours, minutes and seconds (`87600h`, `8760h0m0s`, `90m`), in seconds. At most 1000
/// years, far beyond any sane validity.
pub fn parse_duration(value: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut any = false;
    for ch in value.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let unit = match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: i64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        num.clear();
        any = true;
    }
    (num.is_empty() && any && total <= 1000 * 365 * 86400).then_some(total)
}

/// `30d`, `720h`, `90m`, `45s`, `0`, or a Go duration of h/m/s: the window of `check --within`.
pub fn parse_window(s: &str) -> Option<i64> {
    if let Some(d) = s.strip_suffix('d') {
        if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return d.parse::<i64>().ok().filter(|d| *d <= 1000 * 365).map(|d| d * 86400);
    }
    if s == "0" {
        return Some(0);
    }
    parse_duration(s)
}

/// A residual time as `check` prints it: `1y 12d`, `29d`, `29d 23h`, `5h 3m`, or `EXPIRED`.
pub fn residual(seconds: i64) -> String {
    if seconds <= 0 {
        return "EXPIRED".into();
    }
    let days = seconds / 86400;
    if days >= 365 {
        format!("{}y {}d", days / 365, days % 365)
    } else if days > 0 && seconds % 86400 < 3600 {
        format!("{days}d")
    } else if days > 0 {
        format!("{days}d {}h", (seconds % 86400) / 3600)
    } else {
        format!("{}h {}m", seconds / 3600, (seconds % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_and_reject_what_is_not_one() {
        for s in ["2026-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "2024-02-29T12:00:00Z", "9999-12-31T23:59:59Z"] {
            assert_eq!(rfc3339(parse_instant(s).unwrap()), s);
        }
        assert_eq!(readable(parse_instant("2026-01-01T00:00:00Z").unwrap()), "2026-01-01 00:00:00Z");
        for bad in [
            "",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-01-01 00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "+026-01-01T00:00:00Z",
            "2026-01-01T00:00:0xZ",
            "20x6-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_writes_what_the_time_crate_writes() {
        let mut t = parse_instant("1950-01-01T00:00:00Z").unwrap();
        let end = parse_instant("9999-12-31T23:59:59Z").unwrap();
        while let Some(next) = t.checked_add(time::Duration::seconds(86_400 * 97 + 3_671)).filter(|n| *n < end) {
            assert_eq!(rfc3339(t), t.format(&Rfc3339).unwrap());
            t = next;
        }
        assert_eq!(rfc3339(end), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn durations_are_go_durations_of_whole_units() {
        assert_eq!(parse_duration("87600h"), Some(87600 * 3600));
        assert_eq!(parse_duration("8760h0m0s"), Some(8760 * 3600));
        assert_eq!(parse_duration("90m"), Some(5400));
        assert_eq!(parse_duration("1h30m15s"), Some(5415));
        for bad in ["", "h", "10", "10d", "1.5h", "-1h", "1h 2m", "9999999999999999999h", "8760001h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_window("30d"), Some(30 * 86400));
        assert_eq!(parse_window("0"), Some(0));
        assert_eq!(parse_window("720h"), Some(720 * 3600));
        for bad in ["d", "-1d", "1.5d", "99999999999999999999d", "x"] {
            assert_eq!(parse_window(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn residual_times_read_like_kubeadm() {
        assert_eq!(residual(0), "EXPIRED");
        assert_eq!(residual(-5), "EXPIRED");
        assert_eq!(residual(400 * 86400), "1y 35d");
        assert_eq!(residual(29 * 86400), "29d");
        assert_eq!(residual(29 * 86400 + 5 * 3600), "29d 5h");
        assert_eq!(residual(5 * 3600 + 3 * 60), "5h 3m");
    }
}
