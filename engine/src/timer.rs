//! Timer definitions: ISO 8601 durations (`PT10M`, `P3D`, `P1DT2H`), dates (RFC 3339), repeating
//! intervals (`R5/PT10M`, `R/2026-01-01T00:00:00Z/P1D`, `R3/PT1H/2026-06-01T00:00:00Z`) and cron
//! expressions for calendar jobs (`0 0 18 * * *`: seconds, minutes, hours, day of month, month,
//! day of week; a five-field form without seconds is accepted too).
//!
//! Cron expressions and dates written without an offset may name a business time zone (an IANA
//! name such as `Asia/Shanghai`, see [`TimerSpec::parse_in`]); the default is UTC. Cron times are
//! wall-clock times in that zone, across daylight-saving changes:
//! - a time that does not exist (skipped by a spring-forward change) fires at the instant the
//!   same wall-clock time has with the offset in force before the change (02:30 in a gap from
//!   02:00 to 03:00 fires at 03:30 new time, one hour after 01:30), so the day is never skipped;
//! - a time that exists twice (repeated by a fall-back change) fires once, at its first
//!   occurrence, unless the expression names every hour (`0 30 * * * *`), which fires in both
//!   repeated hours, as every real hour has its firing.
//!
//! [`TimerSpec::parse`] gives a clear error naming the text and what is wrong;
//! [`TimerSpec::first_due`] and [`TimerSpec::next_due`] compute due times in milliseconds since
//! the Unix epoch.

use crate::model::{Timer, TimerKind};
use chrono::{
    DateTime, Duration as ChronoDuration, LocalResult, Months, NaiveDateTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use cron::TimeUnitSpec;
use std::str::FromStr;

/// An ISO 8601 duration. Years and months are calendar units (added with month arithmetic),
/// the rest is exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IsoDuration {
    /// Calendar months (years × 12 + months).
    pub months: u32,
    /// Exact part in milliseconds (weeks, days, hours, minutes, seconds).
    pub millis: u64,
}

impl IsoDuration {
    /// Adds the duration to a moment; `None` on overflow.
    pub fn after(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let with_months = if self.months == 0 {
            from
        } else {
            from.checked_add_months(Months::new(self.months))?
        };
        with_months.checked_add_signed(ChronoDuration::milliseconds(
            i64::try_from(self.millis).ok()?,
        ))
    }

    /// Whether the duration is zero.
    pub fn is_zero(&self) -> bool {
        self.months == 0 && self.millis == 0
    }
}

impl FromStr for IsoDuration {
    type Err = TimerError;

    fn from_str(text: &str) -> Result<Self, TimerError> {
        parse_duration(text)
    }
}

/// A parsed timer definition.
#[derive(Debug, Clone)]
pub enum TimerSpec {
    /// Due once, this long after the timer is armed.
    Duration(IsoDuration),
    /// Due once, at this moment.
    Date(DateTime<Utc>),
    /// Due repeatedly: every `interval` from `start` (the arming time when absent), at most
    /// `repetitions` times (unbounded when `None`), never after `end`.
    Cycle {
        /// How many times it fires; `None` for `R/...` (forever).
        repetitions: Option<u32>,
        /// First moment, when given (`R/2026-01-01T00:00:00Z/P1D` fires first at the start).
        start: Option<DateTime<Utc>>,
        /// Time between firings.
        interval: IsoDuration,
        /// No firing after this moment, when given.
        end: Option<DateTime<Utc>>,
    },
    /// Due at every moment matching a cron expression, read as wall-clock time in `zone`.
    Cron {
        /// The schedule.
        schedule: Box<cron::Schedule>,
        /// The business time zone (UTC by default).
        zone: Tz,
    },
}

/// Why a timer definition could not be parsed or scheduled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// The text is not a valid definition of the declared kind.
    #[error("invalid timer {kind} '{text}': {reason}")]
    Invalid {
        /// `duration`, `date`, `cycle` or `time zone`.
        kind: &'static str,
        /// The text as written.
        text: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(kind: &'static str, text: &str, reason: impl Into<String>) -> TimerError {
    TimerError::Invalid {
        kind,
        text: text.to_string(),
        reason: reason.into(),
    }
}

impl TimerSpec {
    /// Parses `text` as a timer of the given kind. A cycle is an ISO 8601 repeating interval
    /// (starting with `R`) or a cron expression.
    pub fn parse(kind: TimerKind, text: &str) -> Result<Self, TimerError> {
        Self::parse_in(kind, text, None)
    }

    /// Parses `text` as a timer of the given kind whose cron expression, or date written without
    /// an offset (`2026-12-01T08:00:00`), is read in the IANA time zone `zone` (UTC when `None`).
    /// Durations and ISO 8601 cycles count exact time and take no zone.
    pub fn parse_in(kind: TimerKind, text: &str, zone: Option<&str>) -> Result<Self, TimerError> {
        let text = text.trim();
        let tz = zone.map(parse_zone).transpose()?;
        let exact_time =
            kind == TimerKind::Duration || (kind == TimerKind::Cycle && text.starts_with('R'));
        if exact_time && tz.is_some() {
            let what = if kind == TimerKind::Duration {
                "duration"
            } else {
                "cycle"
            };
            return Err(invalid(
                what,
                text,
                "a time zone applies to cron expressions and dates only; durations and ISO 8601 cycles count exact time",
            ));
        }
        match kind {
            TimerKind::Duration => Ok(TimerSpec::Duration(parse_duration(text)?)),
            TimerKind::Date => Ok(TimerSpec::Date(
                parse_zoned_date(text, tz).map_err(|r| invalid("date", text, r))?,
            )),
            TimerKind::Cycle if text.starts_with('R') => parse_repeating(text),
            TimerKind::Cycle => parse_cron(text, tz.unwrap_or(Tz::UTC)),
        }
    }

    /// Parses a timer of the model (its kind, text and time zone).
    pub fn of(timer: &Timer) -> Result<Self, TimerError> {
        Self::parse_in(
            timer.kind,
            &timer.expression.source,
            timer.time_zone.as_deref(),
        )
    }

    /// When the timer is first due if armed at `armed_ms`; `None` if it never fires (a cycle
    /// whose end has passed, a cron expression with no future match).
    pub fn first_due(&self, armed_ms: u64) -> Option<u64> {
        self.first_occurrence(armed_ms).map(|(due, _)| due)
    }

    /// When the timer is first due if armed at `armed_ms`, with the number (1-based) of that
    /// occurrence, to pass to [`TimerSpec::next_due`]. A cycle with a start date in the past
    /// starts at its first occurrence not before `armed_ms` (earlier ones count towards its
    /// repetitions); a cron expression at its next match after `armed_ms`.
    pub fn first_occurrence(&self, armed_ms: u64) -> Option<(u64, u32)> {
        let armed = from_ms(armed_ms)?;
        match self {
            TimerSpec::Duration(d) => Some((to_ms(d.after(armed)?)?, 1)),
            TimerSpec::Date(at) => Some((to_ms(*at)?, 1)),
            TimerSpec::Cycle {
                repetitions: Some(0),
                ..
            } => None,
            TimerSpec::Cycle {
                start: None,
                interval,
                end,
                ..
            } => Some((within(interval.after(armed)?, end)?, 1)),
            TimerSpec::Cycle {
                repetitions,
                start: Some(start),
                interval,
                end,
            } => {
                let (first, index) = first_not_before(*start, interval, armed)?;
                if repetitions.is_some_and(|r| index > r) {
                    return None;
                }
                Some((within(first, end)?, index))
            }
            TimerSpec::Cron { schedule, zone } => Some((next_cron(schedule, *zone, armed_ms)?, 1)),
        }
    }

    /// For a repeating timer: when it is due after firing its `fired`-th occurrence (1-based) at
    /// `previous_ms`. `None` for one-shot timers and exhausted cycles.
    pub fn next_due(&self, previous_ms: u64, fired: u32) -> Option<u64> {
        let previous = from_ms(previous_ms)?;
        match self {
            TimerSpec::Duration(_) | TimerSpec::Date(_) => None,
            TimerSpec::Cycle {
                repetitions,
                interval,
                end,
                ..
            } => {
                if repetitions.is_some_and(|r| fired >= r) {
                    return None;
                }
                within(interval.after(previous)?, end)
            }
            TimerSpec::Cron { schedule, zone } => next_cron(schedule, *zone, previous_ms),
        }
    }

    /// Whether the timer can fire more than once.
    pub fn repeats(&self) -> bool {
        match self {
            TimerSpec::Cycle { repetitions, .. } => *repetitions != Some(1),
            TimerSpec::Cron { .. } => true,
            TimerSpec::Duration(_) | TimerSpec::Date(_) => false,
        }
    }
}

/// Checks that `name` is an IANA time zone name (front ends report a bad one where it is written).
pub fn check_time_zone(name: &str) -> Result<(), TimerError> {
    parse_zone(name).map(|_| ())
}

/// Reads an IANA time zone name.
fn parse_zone(name: &str) -> Result<Tz, TimerError> {
    let name = name.trim();
    Tz::from_str(name).map_err(|_| {
        invalid(
            "time zone",
            name,
            "not an IANA time zone name (such as Asia/Shanghai, Europe/Berlin or UTC)",
        )
    })
}

/// The first occurrence `start + n × interval` (n ≥ 0) not before `armed`, with its 1-based number.
fn first_not_before(
    start: DateTime<Utc>,
    interval: &IsoDuration,
    armed: DateTime<Utc>,
) -> Option<(DateTime<Utc>, u32)> {
    if start >= armed {
        return Some((start, 1));
    }
    if interval.months == 0 {
        // Exact intervals: jump straight to the occurrence.
        let step = i64::try_from(interval.millis).ok()?.max(1);
        let behind = (armed - start).num_milliseconds();
        let n = (behind + step - 1) / step;
        let at = start.checked_add_signed(ChronoDuration::milliseconds(n.checked_mul(step)?))?;
        return Some((at, u32::try_from(n).ok()?.checked_add(1)?));
    }
    // Calendar intervals: walk (at most one step per month since the start).
    let mut at = start;
    let mut index = 1u32;
    while at < armed {
        at = interval.after(at)?;
        index = index.checked_add(1)?;
    }
    Some((at, index))
}

/// The next instant strictly after `after_ms` matching `schedule` read as wall-clock time in
/// `zone`, with the daylight-saving rules of the module documentation.
fn next_cron(schedule: &cron::Schedule, zone: Tz, after_ms: u64) -> Option<u64> {
    let after = from_ms(after_ms)?;
    let local = after
        .with_timezone(&zone)
        .naive_local()
        .with_nanosecond(0)?;
    // Candidates are wall-clock times; the one equal to `local` is included so that the second
    // of two repeated wall-clock times can be found.
    let from = Utc.from_utc_datetime(&(local - ChronoDuration::seconds(1)));
    let every_hour = schedule.hours().is_all();
    for candidate in schedule.after(&from).take(1_000) {
        let wall = candidate.naive_utc();
        let instants: Vec<DateTime<Utc>> = match zone.from_local_datetime(&wall) {
            LocalResult::Single(at) => vec![at.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) if every_hour => {
                vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
            }
            LocalResult::Ambiguous(first, _) => vec![first.with_timezone(&Utc)],
            LocalResult::None => vec![in_gap(zone, wall)?],
        };
        if let Some(at) = instants.into_iter().find(|at| *at > after) {
            return to_ms(at);
        }
    }
    None
}

/// The instant of a wall-clock time skipped by a daylight-saving change: the time read with the
/// offset in force before the change.
fn in_gap(zone: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    let before = zone
        .from_local_datetime(&(wall - ChronoDuration::hours(26)))
        .earliest()?;
    let offset = before.offset().fix().local_minus_utc();
    Some(Utc.from_utc_datetime(&(wall - ChronoDuration::seconds(i64::from(offset)))))
}

fn within(at: DateTime<Utc>, end: &Option<DateTime<Utc>>) -> Option<u64> {
    match end {
        Some(end) if at > *end => None,
        _ => to_ms(at),
    }
}

fn from_ms(ms: u64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(i64::try_from(ms).ok()?).single()
}

fn to_ms(at: DateTime<Utc>) -> Option<u64> {
    u64::try_from(at.timestamp_millis()).ok()
}

fn parse_date(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 date such as 2026-12-01T08:00:00Z ({e})"))
}

/// A date with an offset, or, when `zone` is given, a date without one read in that zone.
fn parse_zoned_date(text: &str, zone: Option<Tz>) -> Result<DateTime<Utc>, String> {
    match (parse_date(text), zone) {
        (Ok(at), _) => Ok(at),
        (Err(err), None) => Err(err),
        (Err(_), Some(zone)) => {
            let wall = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").map_err(|e| {
                format!("expected a date such as 2026-12-01T08:00:00 (in {zone}) or 2026-12-01T08:00:00Z ({e})")
            })?;
            match zone.from_local_datetime(&wall) {
                LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => {
                    Ok(at.with_timezone(&Utc))
                }
                LocalResult::None => {
                    in_gap(zone, wall).ok_or_else(|| format!("{text} does not exist in {zone}"))
                }
            }
        }
    }
}

fn parse_duration(text: &str) -> Result<IsoDuration, TimerError> {
    let fail = |reason: &str| invalid("duration", text, reason.to_string());
    let rest = text
        .strip_prefix('P')
        .ok_or_else(|| fail("an ISO 8601 duration starts with 'P', e.g. PT10M or P3D"))?;
    if rest.is_empty() || rest == "T" {
        return Err(fail("no amount after 'P'"));
    }
    let mut duration = IsoDuration::default();
    let mut in_time = false;
    let mut number = String::new();
    let mut seen = String::new();
    for c in rest.chars() {
        if c == 'T' {
            if in_time || !number.is_empty() {
                return Err(fail("misplaced 'T'"));
            }
            in_time = true;
            continue;
        }
        if c.is_ascii_digit() || c == '.' || c == ',' {
            number.push(if c == ',' { '.' } else { c });
            continue;
        }
        if number.is_empty() {
            return Err(fail(&format!("'{c}' has no number before it")));
        }
        let unit = if in_time { c.to_ascii_lowercase() } else { c };
        if seen.contains(unit) {
            return Err(fail(&format!("unit '{c}' given twice")));
        }
        seen.push(unit);
        let value: f64 = number
            .parse()
            .map_err(|_| fail(&format!("'{number}' is not a number")))?;
        let whole = |what: &str| -> Result<u32, TimerError> {
            if value.fract() != 0.0 || value > u32::MAX as f64 {
                Err(fail(&format!("{what} must be a whole number")))
            } else {
                Ok(value as u32)
            }
        };
        let exact = |unit_ms: f64| -> Result<u64, TimerError> {
            let ms = value * unit_ms;
            if !ms.is_finite() || ms > 1e15 {
                Err(fail("the duration is too long"))
            } else {
                Ok(ms.round() as u64)
            }
        };
        match (in_time, c) {
            (false, 'Y') => {
                duration.months = duration
                    .months
                    .saturating_add(whole("years")?.saturating_mul(12))
            }
            (false, 'M') => duration.months = duration.months.saturating_add(whole("months")?),
            (false, 'W') => duration.millis += exact(7.0 * 86_400_000.0)?,
            (false, 'D') => duration.millis += exact(86_400_000.0)?,
            (true, 'H') => duration.millis += exact(3_600_000.0)?,
            (true, 'M') => duration.millis += exact(60_000.0)?,
            (true, 'S') => duration.millis += exact(1_000.0)?,
            (false, 'H' | 'S') => {
                return Err(fail(&format!(
                    "'{c}' belongs after 'T' (e.g. PT{number}{c})"
                )))
            }
            _ => {
                return Err(fail(&format!(
                    "unknown unit '{c}' (use Y, M, W, D, then T and H, M, S)"
                )))
            }
        }
        number.clear();
    }
    if !number.is_empty() {
        return Err(fail(&format!("'{number}' has no unit")));
    }
    Ok(duration)
}

fn parse_repeating(text: &str) -> Result<TimerSpec, TimerError> {
    let fail = |reason: String| invalid("cycle", text, reason);
    let parts: Vec<&str> = text.split('/').collect();
    let count = &parts[0][1..];
    let repetitions = if count.is_empty() {
        None
    } else {
        Some(
            count
                .parse::<u32>()
                .map_err(|_| fail(format!("'{count}' after R is not a repetition count")))?,
        )
    };
    let duration = |part: &str| {
        parse_duration(part).map_err(|e| match e {
            TimerError::Invalid { reason, .. } => fail(format!("interval '{part}': {reason}")),
        })
    };
    let date = |part: &str| parse_date(part).map_err(|r| fail(format!("'{part}': {r}")));
    let (start, interval, end) = match parts.as_slice() {
        [_, interval] => (None, duration(interval)?, None),
        [_, first, second] if first.starts_with('P') => {
            (None, duration(first)?, Some(date(second)?))
        }
        [_, start, interval] => (Some(date(start)?), duration(interval)?, None),
        _ => {
            return Err(fail(
                "expected R[n]/interval, R[n]/start/interval or R[n]/interval/end".into(),
            ))
        }
    };
    if interval.is_zero() {
        return Err(fail("the interval is zero".into()));
    }
    Ok(TimerSpec::Cycle {
        repetitions,
        start,
        interval,
        end,
    })
}

fn parse_cron(text: &str, zone: Tz) -> Result<TimerSpec, TimerError> {
    let fields = text.split_whitespace().count();
    let normalized = match fields {
        5 => format!("0 {text}"),
        6 | 7 => text.to_string(),
        _ => {
            return Err(invalid(
                "cycle",
                text,
                format!("expected an ISO 8601 cycle (R5/PT10M) or a cron expression with 6 fields (sec min hour day month weekday), found {fields} fields"),
            ))
        }
    };
    cron::Schedule::from_str(&normalized)
        .map(|schedule| TimerSpec::Cron {
            schedule: Box::new(schedule),
            zone,
        })
        .map_err(|e| invalid("cycle", text, format!("bad cron expression: {e}")))
}

/// Parses the short durations of retry delays and timeouts in both front ends: `500ms`, `2s`,
/// `5m` (or `5min`), `1h`, or a bare number of milliseconds. `None` for anything else, and for a
/// value that overflows.
pub fn parse_short_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_read_with_units() {
        let parse = parse_short_duration_ms;
        assert_eq!(parse("250"), Some(250));
        assert_eq!(parse(" 250ms "), Some(250));
        assert_eq!(parse("2s"), Some(2_000));
        assert_eq!(parse("2 s"), Some(2_000));
        assert_eq!(parse("5m"), Some(300_000));
        assert_eq!(parse("5min"), Some(300_000));
        assert_eq!(parse("1h"), Some(3_600_000));
        assert_eq!(parse("2 days"), None);
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("s"), None);
        assert_eq!(parse("-1s"), None);
        assert_eq!(parse("99999999999999999999h"), None);
        assert_eq!(parse("9999999999999999h"), None);
    }

    fn ms(text: &str) -> u64 {
        to_ms(parse_date(text).unwrap()).unwrap()
    }

    #[test]
    fn durations_parse_to_exact_milliseconds() {
        let cases = [
            ("PT10M", 0, 600_000),
            ("P3D", 0, 3 * 86_400_000),
            ("P1DT2H", 0, 86_400_000 + 2 * 3_600_000),
            ("PT1.5S", 0, 1_500),
            ("P2W", 0, 14 * 86_400_000),
            ("P1Y2M", 14, 0),
            ("PT36H", 0, 36 * 3_600_000),
        ];
        for (text, months, millis) in cases {
            assert_eq!(
                parse_duration(text).unwrap(),
                IsoDuration { months, millis },
                "{text}"
            );
        }
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        let cases = [
            ("10M", "starts with 'P'"),
            ("P", "no amount"),
            ("PT", "no amount"),
            ("P1H", "belongs after 'T'"),
            ("PT5", "has no unit"),
            ("PTM", "no number"),
            ("P1X", "unknown unit"),
            ("PT1M1M", "twice"),
            ("P1.5M", "whole number"),
        ];
        for (text, expected) in cases {
            let err = parse_duration(text).unwrap_err().to_string();
            assert!(
                err.contains(expected) && err.contains(text),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn duration_timer_is_due_after_arming() {
        let spec = TimerSpec::parse(TimerKind::Duration, "P3D").unwrap();
        let armed = ms("2026-03-01T10:00:00Z");
        assert_eq!(spec.first_due(armed), Some(ms("2026-03-04T10:00:00Z")));
        assert_eq!(spec.next_due(ms("2026-03-04T10:00:00Z"), 1), None);
        assert!(!spec.repeats());
    }

    #[test]
    fn month_durations_use_the_calendar() {
        let spec = TimerSpec::parse(TimerKind::Duration, "P1M").unwrap();
        assert_eq!(
            spec.first_due(ms("2026-01-31T00:00:00Z")),
            Some(ms("2026-02-28T00:00:00Z"))
        );
    }

    #[test]
    fn date_timer_is_due_at_the_date_in_utc() {
        let spec = TimerSpec::parse(TimerKind::Date, "2026-12-01T08:00:00+01:00").unwrap();
        assert_eq!(spec.first_due(0), Some(ms("2026-12-01T07:00:00Z")));
        let err = TimerSpec::parse(TimerKind::Date, "tomorrow")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RFC 3339") && err.contains("tomorrow"),
            "{err}"
        );
    }

    #[test]
    fn bounded_cycle_fires_the_given_number_of_times() {
        let spec = TimerSpec::parse(TimerKind::Cycle, "R5/PT10M").unwrap();
        let mut due = spec.first_due(0).unwrap();
        let mut fired = Vec::new();
        let mut count = 0;
        loop {
            fired.push(due);
            count += 1;
            match spec.next_due(due, count) {
                Some(next) => due = next,
                None => break,
            }
        }
        assert_eq!(
            fired,
            vec![600_000, 1_200_000, 1_800_000, 2_400_000, 3_000_000]
        );
    }

    #[test]
    fn unbounded_cycle_with_start_fires_daily_from_the_start() {
        let spec = TimerSpec::parse(TimerKind::Cycle, "R/2026-01-01T00:00:00Z/P1D").unwrap();
        let first = spec.first_due(0).unwrap();
        assert_eq!(first, ms("2026-01-01T00:00:00Z"));
        assert_eq!(spec.next_due(first, 1000), Some(ms("2026-01-02T00:00:00Z")));
    }

    #[test]
    fn cycle_with_end_stops_at_the_end() {
        let spec = TimerSpec::parse(TimerKind::Cycle, "R/PT1H/1970-01-01T02:30:00Z").unwrap();
        let first = spec.first_due(0).unwrap();
        assert_eq!(first, 3_600_000);
        let second = spec.next_due(first, 1).unwrap();
        assert_eq!(second, 7_200_000);
        assert_eq!(spec.next_due(second, 2), None);
    }

    #[test]
    fn bad_cycles_say_what_is_wrong() {
        let cases = [
            ("Rx/PT1M", "repetition count"),
            ("R5", "expected R[n]/interval"),
            ("R5/PT0S", "interval is zero"),
            ("R5/PT10Q", "unknown unit"),
            ("R/a/b/c", "expected R[n]/interval"),
            ("0 0 99 * * *", "bad cron expression"),
            ("every day", "found 2 fields"),
        ];
        for (text, expected) in cases {
            let err = TimerSpec::parse(TimerKind::Cycle, text)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected) && err.contains(text),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn daily_cron_fires_every_evening_at_six() {
        let spec = TimerSpec::parse(TimerKind::Cycle, "0 0 18 * * *").unwrap();
        assert!(spec.repeats());
        let first = spec.first_due(ms("2026-05-04T09:30:00Z")).unwrap();
        assert_eq!(first, ms("2026-05-04T18:00:00Z"));
        assert_eq!(spec.next_due(first, 1), Some(ms("2026-05-05T18:00:00Z")));
        // The five-field form (no seconds) means the same.
        let short = TimerSpec::parse(TimerKind::Cycle, "0 18 * * *").unwrap();
        assert_eq!(
            short.first_due(ms("2026-05-04T18:00:00Z")),
            Some(ms("2026-05-05T18:00:00Z"))
        );
    }

    fn zoned_cron(text: &str, zone: &str) -> TimerSpec {
        TimerSpec::parse_in(TimerKind::Cycle, text, Some(zone)).unwrap()
    }

    /// The first `n` firings after `from`.
    fn firings(spec: &TimerSpec, from: &str, n: usize) -> Vec<u64> {
        let mut due = spec.first_due(ms(from)).unwrap();
        let mut out = vec![due];
        while out.len() < n {
            due = spec.next_due(due, out.len() as u32).unwrap();
            out.push(due);
        }
        out
    }

    #[test]
    fn cron_in_a_business_time_zone_fires_at_local_wall_clock_time() {
        let spec = zoned_cron("0 18 * * *", "Asia/Shanghai");
        // 18:00 in Shanghai (UTC+8, no daylight saving) is 10:00 UTC.
        assert_eq!(
            firings(&spec, "2026-05-04T09:30:00Z", 2),
            vec![ms("2026-05-04T10:00:00Z"), ms("2026-05-05T10:00:00Z")]
        );
        let utc = TimerSpec::parse(TimerKind::Cycle, "0 18 * * *").unwrap();
        assert_eq!(
            utc.first_due(ms("2026-05-04T09:30:00Z")),
            Some(ms("2026-05-04T18:00:00Z")),
            "UTC by default"
        );
    }

    #[test]
    fn cron_follows_daylight_saving_changes() {
        // New York moves from EST (UTC-5) to EDT (UTC-4) on 2026-03-08 at 02:00.
        let evening = zoned_cron("0 18 * * *", "America/New_York");
        assert_eq!(
            firings(&evening, "2026-03-07T12:00:00Z", 3),
            vec![
                ms("2026-03-07T23:00:00Z"),
                ms("2026-03-08T22:00:00Z"),
                ms("2026-03-09T22:00:00Z")
            ]
        );
        // 02:30 does not exist on 2026-03-08: it fires at 03:30 EDT (02:30 read as EST), not skipped.
        let in_gap = zoned_cron("0 30 2 * * *", "America/New_York");
        assert_eq!(
            firings(&in_gap, "2026-03-07T00:00:00Z", 3),
            vec![
                ms("2026-03-07T07:30:00Z"),
                ms("2026-03-08T07:30:00Z"),
                ms("2026-03-09T06:30:00Z")
            ]
        );
        // Back from EDT to EST on 2026-11-01 at 02:00: 01:30 happens twice; a daily job fires once.
        let repeated = zoned_cron("0 30 1 * * *", "America/New_York");
        assert_eq!(
            firings(&repeated, "2026-10-31T00:00:00Z", 3),
            vec![
                ms("2026-10-31T05:30:00Z"),
                ms("2026-11-01T05:30:00Z"),
                ms("2026-11-02T06:30:00Z")
            ]
        );
        // An every-hour job fires in both repeated hours: every real hour has its firing.
        let hourly = zoned_cron("0 30 * * * *", "America/New_York");
        assert_eq!(
            firings(&hourly, "2026-11-01T04:00:00Z", 4),
            vec![
                ms("2026-11-01T04:30:00Z"),
                ms("2026-11-01T05:30:00Z"),
                ms("2026-11-01T06:30:00Z"),
                ms("2026-11-01T07:30:00Z")
            ]
        );
    }

    #[test]
    fn dates_without_offset_are_read_in_the_time_zone() {
        let spec = TimerSpec::parse_in(
            TimerKind::Date,
            "2026-12-01T08:00:00",
            Some("Asia/Shanghai"),
        )
        .unwrap();
        assert_eq!(spec.first_due(0), Some(ms("2026-12-01T00:00:00Z")));
        let err = TimerSpec::parse(TimerKind::Date, "2026-12-01T08:00:00")
            .unwrap_err()
            .to_string();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn bad_time_zones_say_what_is_wrong() {
        let err = TimerSpec::parse_in(TimerKind::Cycle, "0 18 * * *", Some("Mars/Olympus"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Mars/Olympus") && err.contains("IANA"),
            "{err}"
        );
        let err = TimerSpec::parse_in(TimerKind::Duration, "PT1H", Some("Asia/Shanghai"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cron expressions and dates only"), "{err}");
        assert!(check_time_zone("Europe/Berlin").is_ok());
    }

    #[test]
    fn a_cycle_whose_start_has_passed_resumes_at_its_next_occurrence() {
        let spec = TimerSpec::parse(TimerKind::Cycle, "R5/2026-01-01T00:00:00Z/P1D").unwrap();
        // Armed on 2026-01-03 at noon: occurrences 1-3 have passed, the 4th is next.
        assert_eq!(
            spec.first_occurrence(ms("2026-01-03T12:00:00Z")),
            Some((ms("2026-01-04T00:00:00Z"), 4))
        );
        assert_eq!(
            spec.next_due(ms("2026-01-04T00:00:00Z"), 4),
            Some(ms("2026-01-05T00:00:00Z"))
        );
        assert_eq!(spec.next_due(ms("2026-01-05T00:00:00Z"), 5), None);
        assert_eq!(
            spec.first_due(ms("2026-01-06T00:00:01Z")),
            None,
            "all five have passed"
        );
        let monthly = TimerSpec::parse(TimerKind::Cycle, "R/2026-01-31T00:00:00Z/P1M").unwrap();
        assert_eq!(
            monthly.first_occurrence(ms("2026-03-01T00:00:00Z")),
            Some((ms("2026-03-28T00:00:00Z"), 3))
        );
        assert!(!TimerSpec::parse(TimerKind::Cycle, "R1/PT1H")
            .unwrap()
            .repeats());
    }
}
