//! Dates, times and durations as FEEL writes them (ISO 8601): reading `date("2024-05-01")`,
//! `time("10:30:00+02:00")`, `date and time("2024-05-01T10:30:00@Europe/Paris")`,
//! `duration("P1DT2H")`, `@"..."` literals, and writing them back.

use super::value::{DateTime, Time, Value, Zone};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Reads `YYYY-MM-DD` (a leading `-` or more than four year digits allowed).
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut parts = rest.splitn(3, '-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if year.len() < 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    if ![year, month, day]
        .iter()
        .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let year: i32 = year.parse().ok()?;
    let year = if negative { -year } else { year };
    NaiveDate::from_ymd_opt(year, month.parse().ok()?, day.parse().ok()?)
}

/// Splits a zone off the end of a time: `Z`, `+02:00`, `-05:00` or `@Area/City`.
fn split_zone(text: &str) -> Option<(&str, Option<Zone>)> {
    if let Some((time, zone)) = text.split_once('@') {
        let tz: chrono_tz::Tz = zone.parse().ok()?;
        return Some((time, Some(Zone::Named(tz))));
    }
    if let Some(time) = text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
        return Some((time, Some(Zone::Offset(0))));
    }
    // An offset starts at the last `+` or `-` (times have none before it).
    if let Some(at) = text.rfind(['+', '-']) {
        let (time, offset) = text.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let digits = &offset[1..];
        let (hours, minutes) = match digits.split_once(':') {
            Some((h, m)) => (h, m),
            None if digits.len() == 4 => digits.split_at(2),
            None => (digits, "0"),
        };
        let hours: i32 = hours.parse().ok()?;
        let minutes: i32 = minutes.parse().ok()?;
        if hours > 18 || minutes > 59 {
            return None;
        }
        return Some((
            time,
            Some(Zone::Offset(sign * (hours * 3600 + minutes * 60))),
        ));
    }
    Some((text, None))
}

/// Reads `hh:mm:ss[.fff][zone]`.
pub fn parse_time(text: &str) -> Option<Time> {
    let (time, zone) = split_zone(text.trim())?;
    let time = parse_local_time(time)?;
    Some(Time { time, zone })
}

fn parse_local_time(text: &str) -> Option<NaiveTime> {
    let mut parts = text.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || h.len() != 2 || m.len() != 2 || s.len() < 2 {
        return None;
    }
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if whole.len() != 2 || !fraction.bytes().all(|b| b.is_ascii_digit()) || fraction.len() > 9 {
        return None;
    }
    // FEEL keeps times to the millisecond (the DMN TCK compares `10:30:00.0001` and
    // `10:30:00.0002` as equal).
    let nanos = if fraction.is_empty() {
        0
    } else {
        let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
        nanos - nanos % 1_000_000
    };
    let (h, m, s): (u32, u32, u32) = (h.parse().ok()?, m.parse().ok()?, whole.parse().ok()?);
    if h == 24 && m == 0 && s == 0 && nanos == 0 {
        return NaiveTime::from_hms_opt(0, 0, 0);
    }
    NaiveTime::from_hms_nano_opt(h, m, s, nanos)
}

/// Reads `YYYY-MM-DDThh:mm:ss[zone]`, or a date alone (midnight).
pub fn parse_date_time(text: &str) -> Option<DateTime> {
    let text = text.trim();
    match text.split_once('T') {
        Some((date, time)) => {
            let date = parse_date(date)?;
            let time = parse_time(time)?;
            Some(DateTime {
                naive: NaiveDateTime::new(date, time.time),
                zone: time.zone,
            })
        }
        None => parse_date(text).and_then(|date| {
            Some(DateTime {
                naive: date.and_hms_opt(0, 0, 0)?,
                zone: None,
            })
        }),
    }
}

/// Reads an ISO 8601 duration: `P1Y2M` (years and months) or `P1DT2H3M4.5S` (days and time).
pub fn parse_duration(text: &str) -> Option<Value> {
    let text = text.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let rest = rest.strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let (date_part, time_part) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (rest, None),
    };
    let mut years = 0i64;
    let mut months = 0i64;
    let mut days = 0i128;
    let mut year_month = false;
    let mut day_time = time_part.is_some();
    for (number, unit) in components(date_part)? {
        let n: i64 = number.parse().ok()?;
        match unit {
            'Y' => (years, year_month) = (n, true),
            'M' => (months, year_month) = (n, true),
            'D' => (days, day_time) = (n.into(), true),
            _ => return None,
        }
    }
    if year_month && day_time {
        return None;
    }
    let sign = if negative { -1 } else { 1 };
    if year_month {
        return Some(Value::YearMonth(sign * (years * 12 + months)));
    }
    let mut nanos = days * 86_400 * NANOS_PER_SECOND;
    for (number, unit) in components(time_part.unwrap_or(""))? {
        let scale = match unit {
            'H' => 3600,
            'M' => 60,
            'S' => 1,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if unit != 'S' && !fraction.is_empty() {
            return None;
        }
        let whole: i128 = whole.parse().ok()?;
        nanos += whole * scale * NANOS_PER_SECOND;
        if !fraction.is_empty() {
            let digits = &fraction[..fraction.len().min(9)];
            let part: i128 = format!("{digits:0<9}").parse().ok()?;
            nanos += part;
        }
    }
    Some(Value::DayTime(sign as i128 * nanos))
}

/// The `number unit` pairs of a duration part (`1Y2M` → `[("1", 'Y'), ("2", 'M')]`).
fn components(text: &str) -> Option<Vec<(&str, char)>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c.is_ascii_alphabetic() {
            let number = &text[start..i];
            if number.is_empty() {
                return None;
            }
            out.push((number, c));
            start = i + 1;
        } else if !(c.is_ascii_digit() || c == '.') {
            return None;
        }
    }
    (start == text.len()).then_some(out)
}

/// Reads an `@"..."` literal: a duration, a date and time, a date or a time.
pub fn parse_at_literal(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if trimmed.starts_with('P') || trimmed.starts_with("-P") {
        return parse_duration(trimmed);
    }
    if trimmed.contains('T') {
        return parse_date_time(trimmed).map(Value::DateTime);
    }
    if let Some(date) = parse_date(trimmed) {
        return Some(Value::Date(date));
    }
    parse_time(trimmed).map(Value::Time)
}

/// `YYYY-MM-DD`.
pub fn format_date(date: &NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

fn format_zone(zone: Option<Zone>) -> String {
    match zone {
        None => String::new(),
        Some(Zone::Offset(0)) => "Z".into(),
        Some(Zone::Offset(seconds)) => {
            let sign = if seconds < 0 { '-' } else { '+' };
            let seconds = seconds.abs();
            format!("{sign}{:02}:{:02}", seconds / 3600, (seconds % 3600) / 60)
        }
        Some(Zone::Named(tz)) => format!("@{}", tz.name()),
    }
}

fn format_local_time(time: &NaiveTime) -> String {
    let mut text = format!(
        "{:02}:{:02}:{:02}",
        time.hour(),
        time.minute(),
        time.second()
    );
    let nanos = time.nanosecond();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text
}

/// `hh:mm:ss[.fff][zone]`.
pub fn format_time(time: &Time) -> String {
    format!(
        "{}{}",
        format_local_time(&time.time),
        format_zone(time.zone)
    )
}

/// `YYYY-MM-DDThh:mm:ss[zone]`.
pub fn format_date_time(value: &DateTime) -> String {
    format!(
        "{}T{}{}",
        format_date(&value.naive.date()),
        format_local_time(&value.naive.time()),
        format_zone(value.zone)
    )
}

/// `P1DT2H3M4S` (`PT0S` for zero).
pub fn format_day_time(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let nanos = nanos.abs();
    let total_seconds = nanos / NANOS_PER_SECOND;
    let fraction = nanos % NANOS_PER_SECOND;
    let (days, hours, minutes, seconds) = (
        total_seconds / 86_400,
        (total_seconds % 86_400) / 3600,
        (total_seconds % 3600) / 60,
        total_seconds % 60,
    );
    let mut text = format!("{sign}P");
    if days > 0 {
        text.push_str(&format!("{days}D"));
    }
    if hours > 0 || minutes > 0 || seconds > 0 || fraction > 0 || days == 0 {
        text.push('T');
        if hours > 0 {
            text.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            text.push_str(&format!("{minutes}M"));
        }
        if seconds > 0 || fraction > 0 || (days == 0 && hours == 0 && minutes == 0) {
            text.push_str(&seconds.to_string());
            if fraction > 0 {
                let digits = format!("{fraction:09}");
                text.push('.');
                text.push_str(digits.trim_end_matches('0'));
            }
            text.push('S');
        }
    }
    text
}

/// `P1Y2M` (`P0M` for zero).
pub fn format_year_month(months: i64) -> String {
    let sign = if months < 0 { "-" } else { "" };
    let months = months.abs();
    let (years, rest) = (months / 12, months % 12);
    match (years, rest) {
        (0, m) => format!("{sign}P{m}M"),
        (y, 0) => format!("{sign}P{y}Y"),
        (y, m) => format!("{sign}P{y}Y{m}M"),
    }
}

/// Adds `months` to a date, clamping the day to the end of the month.
pub fn add_months(date: NaiveDate, months: i64) -> Option<NaiveDate> {
    let total = i64::from(date.year()) * 12 + i64::from(date.month0()) + months;
    let year = i32::try_from(total.div_euclid(12)).ok()?;
    let month = (total.rem_euclid(12) + 1) as u32;
    let mut day = date.day();
    loop {
        if let Some(d) = NaiveDate::from_ymd_opt(year, month, day) {
            return Some(d);
        }
        if day <= 28 {
            return None;
        }
        day -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_write_back() {
        for text in [
            "P1Y",
            "P1Y2M",
            "P2M",
            "P1D",
            "PT2H",
            "P1DT2H3M4S",
            "-PT1.5S",
            "PT0S",
        ] {
            let value = parse_duration(text).unwrap();
            assert_eq!(value.to_string(), text, "{text}");
        }
        assert_eq!(parse_duration("P1Y2D"), None);
        assert_eq!(parse_duration("P"), None);
        assert_eq!(parse_duration("PT"), None);
    }

    #[test]
    fn times_carry_zones() {
        let t = parse_time("10:30:00+02:00").unwrap();
        assert_eq!(t.zone, Some(Zone::Offset(7200)));
        assert_eq!(format_time(&t), "10:30:00+02:00");
        let t = parse_time("10:30:00.25@Europe/Paris").unwrap();
        assert_eq!(format_time(&t), "10:30:00.25@Europe/Paris");
        assert_eq!(parse_time("10:30:00.0001"), parse_time("10:30:00"));
        assert!(parse_time("25:00:00").is_none());
    }

    #[test]
    fn dates_and_date_times() {
        assert_eq!(
            format_date(&parse_date("2018-12-08").unwrap()),
            "2018-12-08"
        );
        assert!(parse_date("2018-13-08").is_none());
        let dt = parse_date_time("2018-12-08T10:30:00Z").unwrap();
        assert_eq!(format_date_time(&dt), "2018-12-08T10:30:00Z");
        let midnight = parse_date_time("2018-12-08").unwrap();
        assert_eq!(format_date_time(&midnight), "2018-12-08T00:00:00");
        assert_eq!(
            add_months(parse_date("2024-01-31").unwrap(), 1),
            parse_date("2024-02-29")
        );
    }
}
