//! Dates and times in the common export formats, read into one time zone.
//!
//! Read: ISO 8601 / RFC 3339 with or without a zone (`2026-12-01T08:00:00Z`,
//! `2026-12-01 08:00:00+08:00`, `2026-12-01T08:00`), slashes (`2026/12/01 08:00`), Chinese dates
//! (`2026年12月1日`, with or without a time), plain dates, compact dates (`20261201`), epoch seconds
//! and epoch milliseconds, and a `date_format` (chrono's `strftime` syntax) named in the mapping.
//! A time without a zone is read in the source's zone; a date alone is midnight there.

use crate::text::fold_width;
use chrono::{
    DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;

/// Why a time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// None of the known formats (nor the mapping's `date_format`) reads it.
    #[error("is not a date or time in a known format")]
    Unknown,
    /// A local time that the zone skips (clocks moved forward).
    #[error("does not exist in {0} (the clocks moved forward)")]
    Skipped(Tz),
    /// Outside the range of dates that can be represented.
    #[error("is out of range")]
    OutOfRange,
}

/// How a file writes its times and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeStyle {
    /// The zone of times written without one.
    pub source_zone: Tz,
    /// The zone every time is converted into.
    pub target_zone: Tz,
    /// A `strftime` format tried before the common ones (e.g. `%d.%m.%Y %H:%M`).
    pub format: Option<String>,
}

impl Default for TimeStyle {
    fn default() -> Self {
        TimeStyle {
            source_zone: Tz::UTC,
            target_zone: Tz::UTC,
            format: None,
        }
    }
}

/// Date-and-time formats, and the date-alone format, by the character after the year.
const LAYOUTS: [(char, [&str; 4], &str); 4] = [
    (
        '-',
        [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ],
        "%Y-%m-%d",
    ),
    (
        '/',
        [
            "%Y/%m/%dT%H:%M:%S%.f",
            "%Y/%m/%dT%H:%M",
            "%Y/%m/%d %H:%M:%S%.f",
            "%Y/%m/%d %H:%M",
        ],
        "%Y/%m/%d",
    ),
    (
        '.',
        [
            "%Y.%m.%dT%H:%M:%S%.f",
            "%Y.%m.%dT%H:%M",
            "%Y.%m.%d %H:%M:%S%.f",
            "%Y.%m.%d %H:%M",
        ],
        "%Y.%m.%d",
    ),
    (
        '年',
        [
            "%Y年%m月%d日 %H:%M:%S%.f",
            "%Y年%m月%d日 %H:%M",
            "%Y年%m月%d日%H:%M:%S%.f",
            "%Y年%m月%d日%H:%M",
        ],
        "%Y年%m月%d日",
    ),
];
/// ISO 8601 with a numeric zone (after any `Z` or `UTC` became `+00:00`).
const ZONED: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M%#z",
];

/// Reads `text` as a point in time in the style's target zone.
pub fn parse_time(text: &str, style: &TimeStyle) -> Result<DateTime<Tz>, TimeError> {
    let folded = fold_width(text);
    let text = folded.split_whitespace().collect::<Vec<_>>().join(" ");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return epoch_or_compact(&text, style);
    }
    if let Some(format) = &style.format {
        if let Some(time) = with_format(&text, format, style)? {
            return Ok(time);
        }
    }
    if let Some(zoned) = zoned(&text) {
        return Ok(zoned.with_timezone(&style.target_zone));
    }
    let after_year = text.chars().nth(4);
    let (_, with_time, date) = LAYOUTS
        .iter()
        .find(|(mark, _, _)| Some(*mark) == after_year)
        .ok_or(TimeError::Unknown)?;
    if let Some(naive) = with_time
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(&text, format).ok())
    {
        return local(naive, style);
    }
    let day = NaiveDate::parse_from_str(&text, date).map_err(|_| TimeError::Unknown)?;
    local(day.and_time(NaiveTime::MIN), style)
}

/// All digits: a compact date (8 digits), epoch seconds (9–11) or epoch milliseconds (12–14).
fn epoch_or_compact(digits: &str, style: &TimeStyle) -> Result<DateTime<Tz>, TimeError> {
    let utc = match digits.len() {
        8 => {
            let day =
                NaiveDate::parse_from_str(digits, "%Y%m%d").map_err(|_| TimeError::Unknown)?;
            return local(day.and_time(NaiveTime::MIN), style);
        }
        9..=11 => {
            DateTime::<Utc>::from_timestamp(digits.parse().map_err(|_| TimeError::OutOfRange)?, 0)
        }
        12..=14 => DateTime::<Utc>::from_timestamp_millis(
            digits.parse().map_err(|_| TimeError::OutOfRange)?,
        ),
        _ => return Err(TimeError::Unknown),
    };
    utc.map(|time| time.with_timezone(&style.target_zone))
        .ok_or(TimeError::OutOfRange)
}

/// The mapping's own format: with a zone, a date and time, or a date alone.
fn with_format(
    text: &str,
    format: &str,
    style: &TimeStyle,
) -> Result<Option<DateTime<Tz>>, TimeError> {
    if let Ok(zoned) = DateTime::parse_from_str(text, format) {
        return Ok(Some(zoned.with_timezone(&style.target_zone)));
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
        return local(naive, style).map(Some);
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, format) {
        return local(day.and_time(NaiveTime::MIN), style).map(Some);
    }
    Ok(None)
}

/// An ISO 8601 time with a zone: `Z`, `UTC`, `+08:00`, `+0800` or `+08`, after `T` or a space,
/// with or without a space before the zone.
fn zoned(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = match text
        .strip_suffix(['Z', 'z'])
        .or_else(|| text.strip_suffix(" UTC"))
    {
        Some(rest) => format!("{}+00:00", rest.trim_end()),
        None => text.to_string(),
    };
    if let Ok(time) = DateTime::parse_from_rfc3339(&text) {
        return Some(time);
    }
    let offset_at = text.rfind(['+', '-']).filter(|&at| at > 10)?;
    let joined = format!("{}{}", text[..offset_at].trim_end(), &text[offset_at..]);
    ZONED
        .iter()
        .find_map(|format| DateTime::parse_from_str(&joined, format).ok())
}

/// A local time in the source zone, converted to the target zone; the earlier of two when the
/// clocks went back.
fn local(naive: NaiveDateTime, style: &TimeStyle) -> Result<DateTime<Tz>, TimeError> {
    match style.source_zone.from_local_datetime(&naive) {
        LocalResult::Single(time) | LocalResult::Ambiguous(time, _) => {
            Ok(time.with_timezone(&style.target_zone))
        }
        LocalResult::None => Err(TimeError::Skipped(style.source_zone)),
    }
}

/// A time as RFC 3339 text in its zone, `Z` for UTC, fractions of seconds only when present.
pub fn time_text(time: &DateTime<Tz>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(source: Tz, target: Tz) -> TimeStyle {
        TimeStyle {
            source_zone: source,
            target_zone: target,
            format: None,
        }
    }

    fn utc(text: &str) -> String {
        parse_time(text, &TimeStyle::default())
            .map(|time| time_text(&time))
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn iso_8601_with_a_zone_is_converted_to_the_target_zone() {
        assert_eq!(utc("2026-12-01T08:00:00Z"), "2026-12-01T08:00:00Z");
        assert_eq!(utc("2026-12-01T08:00:00+08:00"), "2026-12-01T00:00:00Z");
        assert_eq!(utc("2026-12-01 08:00:00+0800"), "2026-12-01T00:00:00Z");
        assert_eq!(utc("2026-12-01 08:00:00 +08:00"), "2026-12-01T00:00:00Z");
        assert_eq!(utc("2026-12-01T08:00+08"), "2026-12-01T00:00:00Z");
        assert_eq!(
            utc("2026-12-01T08:00:00.250-05:00"),
            "2026-12-01T13:00:00.250Z"
        );
        assert_eq!(utc("2026-12-01 08:00:00 UTC"), "2026-12-01T08:00:00Z");
        let shanghai = style(Tz::UTC, Tz::Asia__Shanghai);
        assert_eq!(
            time_text(&parse_time("2026-12-01T00:00:00Z", &shanghai).unwrap()),
            "2026-12-01T08:00:00+08:00"
        );
    }

    #[test]
    fn zone_less_times_are_read_in_the_source_zone() {
        let shanghai_to_utc = style(Tz::Asia__Shanghai, Tz::UTC);
        let read = |text: &str| time_text(&parse_time(text, &shanghai_to_utc).unwrap());
        assert_eq!(read("2026-12-01T08:00:00"), "2026-12-01T00:00:00Z");
        assert_eq!(read("2026-12-01 08:00:00"), "2026-12-01T00:00:00Z");
        assert_eq!(read("2026-12-01 08:00"), "2026-12-01T00:00:00Z");
        assert_eq!(read("2026/12/01 08:00"), "2026-12-01T00:00:00Z");
        assert_eq!(read("2026/12/1 8:05:09"), "2026-12-01T00:05:09Z");
        // A zone in the text wins over the source zone.
        assert_eq!(read("2026-12-01T08:00:00Z"), "2026-12-01T08:00:00Z");
    }

    #[test]
    fn chinese_dates_with_and_without_time() {
        let shanghai = style(Tz::Asia__Shanghai, Tz::Asia__Shanghai);
        let read = |text: &str| time_text(&parse_time(text, &shanghai).unwrap());
        assert_eq!(read("2026年12月1日"), "2026-12-01T00:00:00+08:00");
        assert_eq!(read("2026年12月01日 08:30"), "2026-12-01T08:30:00+08:00");
        assert_eq!(read("2026年12月1日08:30:15"), "2026-12-01T08:30:15+08:00");
        assert_eq!(
            read("２０２６年１２月１日　０８:３０"),
            "2026-12-01T08:30:00+08:00"
        );
    }

    #[test]
    fn dates_alone_are_midnight_in_the_source_zone() {
        assert_eq!(utc("2026-12-01"), "2026-12-01T00:00:00Z");
        assert_eq!(utc("2026/12/01"), "2026-12-01T00:00:00Z");
        assert_eq!(utc("20261201"), "2026-12-01T00:00:00Z");
        let berlin = style(Tz::Europe__Berlin, Tz::UTC);
        assert_eq!(
            time_text(&parse_time("2026-12-01", &berlin).unwrap()),
            "2026-11-30T23:00:00Z"
        );
    }

    #[test]
    fn epoch_seconds_and_milliseconds() {
        assert_eq!(utc("1796112000"), "2026-12-01T08:00:00Z");
        assert_eq!(utc("1796112000000"), "2026-12-01T08:00:00Z");
        assert_eq!(utc("1796112000123"), "2026-12-01T08:00:00.123Z");
        let shanghai = style(Tz::UTC, Tz::Asia__Shanghai);
        assert_eq!(
            time_text(&parse_time("1796112000", &shanghai).unwrap()),
            "2026-12-01T16:00:00+08:00"
        );
    }

    #[test]
    fn the_mapping_format_reads_what_the_common_ones_cannot() {
        let dotted = TimeStyle {
            format: Some("%d.%m.%Y %H:%M".into()),
            ..TimeStyle::default()
        };
        assert_eq!(
            time_text(&parse_time("01.12.2026 08:00", &dotted).unwrap()),
            "2026-12-01T08:00:00Z"
        );
        let us = TimeStyle {
            format: Some("%m/%d/%Y".into()),
            ..TimeStyle::default()
        };
        assert_eq!(
            time_text(&parse_time("12/01/2026", &us).unwrap()),
            "2026-12-01T00:00:00Z"
        );
        assert_eq!(
            parse_time("12/01/2026", &TimeStyle::default()),
            Err(TimeError::Unknown)
        );
    }

    #[test]
    fn unreadable_times_are_refused() {
        for text in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30 10:00",
            "2026-12-01 25:00",
            "12345",
            "2026-12-01T08:00:00+99:00",
        ] {
            assert_eq!(
                parse_time(text, &TimeStyle::default()),
                Err(TimeError::Unknown),
                "{text}"
            );
        }
    }

    #[test]
    fn local_times_the_clocks_skip_are_refused_and_repeated_ones_take_the_first() {
        let berlin = style(Tz::Europe__Berlin, Tz::UTC);
        assert_eq!(
            parse_time("2026-03-29 02:30", &berlin),
            Err(TimeError::Skipped(Tz::Europe__Berlin))
        );
        assert_eq!(
            time_text(&parse_time("2026-10-25 02:30", &berlin).unwrap()),
            "2026-10-25T00:30:00Z"
        );
    }
}
