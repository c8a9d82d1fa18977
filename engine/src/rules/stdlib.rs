//! The business-rule standard library registered on the sandboxed Rhai engine: dates and times in
//! a configured time zone, exact money arithmetic, text helpers, and the effect functions
//! (`notify`, `emit`, `reject`). Documented for analysts in `docs/rules.md`.
//!
//! Representation: dates are `"YYYY-MM-DD"` strings and instants RFC 3339 strings, so they travel
//! through instance variables (JSON) unchanged; money amounts are decimal strings (`"12.30"`),
//! computed with `rust_decimal`, never with floats.

use super::effects;
use crate::script::to_json;
use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc,
};
use chrono_tz::Tz;
use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map as RhaiMap};
use rust_decimal::{Decimal, RoundingStrategy};
use std::cmp::Ordering;
use std::str::FromStr;
use std::sync::Arc;

/// The clock rules read `now()` and `today()` from.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// How money is rounded to cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rounding {
    /// Banker's rounding: halves go to the even cent (`0.125` → `0.12`).
    #[default]
    HalfEven,
    /// Commercial rounding: halves go away from zero (`0.125` → `0.13`).
    HalfUp,
}

impl Rounding {
    fn strategy(self) -> RoundingStrategy {
        match self {
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
        }
    }
}

/// Settings of the rule standard library.
#[derive(Clone)]
pub struct StdlibConfig {
    /// The business time zone: `today()`, day boundaries and local date-times use it.
    pub time_zone: Tz,
    /// The rounding `money(x)` applies.
    pub rounding: Rounding,
    /// Where `now()` comes from (the system clock unless a test fixes it).
    pub clock: Clock,
}

impl std::fmt::Debug for StdlibConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdlibConfig")
            .field("time_zone", &self.time_zone)
            .field("rounding", &self.rounding)
            .finish_non_exhaustive()
    }
}

impl Default for StdlibConfig {
    fn default() -> Self {
        Self {
            time_zone: Tz::UTC,
            rounding: Rounding::default(),
            clock: Arc::new(Utc::now),
        }
    }
}

impl StdlibConfig {
    /// The same settings with a fixed clock (for tests and replays).
    pub fn with_fixed_now(mut self, now: DateTime<Utc>) -> Self {
        self.clock = Arc::new(move || now);
        self
    }

    /// The same settings reading time from the engine's clock, so that `today()` and `now()`
    /// agree with timers (and move with a [`VirtualClock`](crate::clock::VirtualClock)).
    pub fn with_engine_clock(mut self, clock: Arc<dyn crate::clock::Clock>) -> Self {
        self.clock = Arc::new(move || {
            let ms = i64::try_from(clock.now_ms()).unwrap_or(i64::MAX);
            DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
        });
        self
    }
}

type Fallible<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(message: impl Into<String>) -> Fallible<T> {
    Err(message.into().into())
}

/// Registers the whole standard library on `engine`.
pub fn register(engine: &mut Engine, config: &StdlibConfig) {
    register_dates(engine, config);
    register_money(engine, config.rounding);
    register_text(engine);
    register_effects(engine);
}

// ---------------------------------------------------------------- dates and times

/// A parsed date or instant.
#[derive(Debug, Clone, Copy)]
enum When {
    Date(NaiveDate),
    Instant(DateTime<Tz>),
}

fn local(tz: Tz, naive: NaiveDateTime) -> Fallible<DateTime<Tz>> {
    match tz.from_local_datetime(&naive).earliest() {
        Some(t) => Ok(t),
        // A local time inside a daylight-saving gap: take the instant one hour later.
        None => match naive
            .checked_add_signed(Duration::hours(1))
            .and_then(|later| tz.from_local_datetime(&later).earliest())
        {
            Some(t) => Ok(t),
            None => fail(format!("{naive} does not exist in time zone {tz}")),
        },
    }
}

fn parse_when(tz: Tz, text: &str) -> Fallible<When> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(When::Instant(t.with_timezone(&tz)));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return local(tz, naive).map(When::Instant);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(When::Date(date));
    }
    fail(format!(
        "`{text}` is not a date or time (expected YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] or RFC 3339 like 2026-11-29T08:00:00Z)"
    ))
}

impl When {
    fn start(self, tz: Tz) -> Fallible<DateTime<Tz>> {
        match self {
            When::Date(d) => local(tz, d.and_time(chrono::NaiveTime::MIN)),
            When::Instant(t) => Ok(t),
        }
    }

    fn date(self) -> NaiveDate {
        match self {
            When::Date(d) => d,
            When::Instant(t) => t.date_naive(),
        }
    }
}

fn instant_text(t: DateTime<Tz>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn start_of(tz: Tz, date: NaiveDate) -> Fallible<DateTime<Tz>> {
    local(tz, date.and_time(chrono::NaiveTime::MIN))
}

fn add_days_to(tz: Tz, when: When, days: i64) -> Fallible<String> {
    let shift = |d: NaiveDate| {
        Duration::try_days(days)
            .and_then(|delta| d.checked_add_signed(delta))
            .ok_or("date out of range".to_string())
    };
    match when {
        When::Date(d) => Ok(date_text(shift(d)?)),
        // Calendar days: the local wall-clock time is kept across daylight-saving changes.
        When::Instant(t) => {
            let date = shift(t.date_naive())?;
            Ok(instant_text(local(tz, date.and_time(t.time()))?))
        }
    }
}

fn register_dates(engine: &mut Engine, config: &StdlibConfig) {
    let tz = config.time_zone;
    let clock = config.clock.clone();
    engine.register_fn("now", move || instant_text(clock().with_timezone(&tz)));
    let clock = config.clock.clone();
    engine.register_fn("today", move || {
        date_text(clock().with_timezone(&tz).date_naive())
    });
    engine.register_fn("time_zone", move || tz.name().to_string());
    engine.register_fn("parse_date", move |text: &str| -> Fallible<String> {
        Ok(match parse_when(tz, text)? {
            When::Date(d) => date_text(d),
            When::Instant(t) => instant_text(t),
        })
    });
    engine.register_fn("date_of", move |text: &str| -> Fallible<String> {
        Ok(date_text(parse_when(tz, text)?.date()))
    });
    engine.register_fn("compare_dates", move |a: &str, b: &str| -> Fallible<i64> {
        let (a, b) = (parse_when(tz, a)?.start(tz)?, parse_when(tz, b)?.start(tz)?);
        Ok(ordering_number(a.cmp(&b)))
    });
    engine.register_fn("is_before", move |a: &str, b: &str| -> Fallible<bool> {
        Ok(parse_when(tz, a)?.start(tz)? < parse_when(tz, b)?.start(tz)?)
    });
    engine.register_fn("is_after", move |a: &str, b: &str| -> Fallible<bool> {
        Ok(parse_when(tz, a)?.start(tz)? > parse_when(tz, b)?.start(tz)?)
    });
    engine.register_fn(
        "add_days",
        move |text: &str, days: i64| -> Fallible<String> {
            add_days_to(tz, parse_when(tz, text)?, days)
        },
    );
    engine.register_fn("days_between", move |a: &str, b: &str| -> Fallible<i64> {
        Ok((parse_when(tz, b)?.date() - parse_when(tz, a)?.date()).num_days())
    });
    engine.register_fn("start_of_day", move |text: &str| -> Fallible<String> {
        Ok(instant_text(start_of(tz, parse_when(tz, text)?.date())?))
    });
    engine.register_fn("end_of_day", move |text: &str| -> Fallible<String> {
        let date = parse_when(tz, text)?.date();
        let next = date.succ_opt().ok_or("date out of range".to_string())?;
        let end = start_of(tz, next)?
            .checked_sub_signed(Duration::seconds(1))
            .ok_or("date out of range".to_string())?;
        Ok(instant_text(end))
    });
    engine.register_fn("timestamp", move |text: &str| -> Fallible<i64> {
        Ok(parse_when(tz, text)?.start(tz)?.timestamp())
    });
    engine.register_fn("weekday", move |text: &str| -> Fallible<i64> {
        Ok(i64::from(
            parse_when(tz, text)?.date().weekday().number_from_monday(),
        ))
    });
}

fn ordering_number(ordering: Ordering) -> i64 {
    match ordering {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }
}

// ---------------------------------------------------------------- money

/// Reads a money amount from an integer, a float (through its shortest decimal text, so `0.1` is
/// exactly `0.1`) or a decimal string.
fn decimal_of(value: &Dynamic) -> Fallible<Decimal> {
    if let Ok(i) = value.as_int() {
        return Ok(Decimal::from(i));
    }
    if let Ok(f) = value.as_float() {
        if !f.is_finite() {
            return fail(format!("{f} is not a money amount"));
        }
        return Decimal::from_str(&f.to_string())
            .or_else(|_| Decimal::from_scientific(&format!("{f:e}")))
            .or_else(|e| fail(format!("{f} is not a money amount: {e}")));
    }
    if let Some(text) = value.read_lock::<ImmutableString>() {
        let text = text.trim();
        return Decimal::from_str(text)
            .or_else(|_| fail(format!("`{text}` is not a money amount")));
    }
    fail(format!(
        "expected a money amount (number or decimal string), found {}",
        value.type_name()
    ))
}

fn money_text(d: Decimal) -> String {
    d.normalize().to_string()
}

fn rounded(d: Decimal, places: i64, rounding: Rounding) -> Fallible<String> {
    let places = u32::try_from(places)
        .ok()
        .filter(|p| *p <= 12)
        .ok_or("decimal places must be 0..=12".to_string())?;
    let mut r = d.round_dp_with_strategy(places, rounding.strategy());
    r.rescale(places);
    Ok(r.to_string())
}

fn register_money(engine: &mut Engine, rounding: Rounding) {
    engine.register_fn("money", move |x: Dynamic| {
        rounded(decimal_of(&x)?, 2, rounding)
    });
    engine.register_fn("round_half_even", |x: Dynamic| {
        rounded(decimal_of(&x)?, 2, Rounding::HalfEven)
    });
    engine.register_fn("round_half_even", |x: Dynamic, places: i64| {
        rounded(decimal_of(&x)?, places, Rounding::HalfEven)
    });
    engine.register_fn("round_half_up", |x: Dynamic| {
        rounded(decimal_of(&x)?, 2, Rounding::HalfUp)
    });
    engine.register_fn("round_half_up", |x: Dynamic, places: i64| {
        rounded(decimal_of(&x)?, places, Rounding::HalfUp)
    });
    engine.register_fn("money_add", |a: Dynamic, b: Dynamic| -> Fallible<String> {
        let sum = decimal_of(&a)?
            .checked_add(decimal_of(&b)?)
            .ok_or("money overflow".to_string())?;
        Ok(money_text(sum))
    });
    engine.register_fn("money_sub", |a: Dynamic, b: Dynamic| -> Fallible<String> {
        let diff = decimal_of(&a)?
            .checked_sub(decimal_of(&b)?)
            .ok_or("money overflow".to_string())?;
        Ok(money_text(diff))
    });
    engine.register_fn("money_mul", |a: Dynamic, b: Dynamic| -> Fallible<String> {
        let product = decimal_of(&a)?
            .checked_mul(decimal_of(&b)?)
            .ok_or("money overflow".to_string())?;
        Ok(money_text(product))
    });
    engine.register_fn("money_sum", |items: Array| -> Fallible<String> {
        let mut total = Decimal::ZERO;
        for item in &items {
            total = total
                .checked_add(decimal_of(item)?)
                .ok_or("money overflow".to_string())?;
        }
        Ok(money_text(total))
    });
    engine.register_fn("money_cmp", |a: Dynamic, b: Dynamic| -> Fallible<i64> {
        Ok(ordering_number(decimal_of(&a)?.cmp(&decimal_of(&b)?)))
    });
}

// ---------------------------------------------------------------- text

/// Refuses a text result longer than the sandbox's string limit *before* building it (Rhai checks
/// sizes only after a function returns, too late for an allocation that large).
fn bounded(length: usize, limit: usize) -> Fallible<()> {
    if limit > 0 && length > limit {
        return fail(format!(
            "the result would be {length} bytes long, more than the limit of {limit}"
        ));
    }
    Ok(())
}

fn register_text(engine: &mut Engine) {
    let limit = engine.max_string_size();
    engine.register_fn("is_blank", |x: Dynamic| -> bool {
        x.is_unit()
            || x.read_lock::<ImmutableString>()
                .is_some_and(|s| s.trim().is_empty())
    });
    engine.register_fn("or_default", |x: Dynamic, fallback: Dynamic| -> Dynamic {
        let blank = x.is_unit()
            || x.read_lock::<ImmutableString>()
                .is_some_and(|s| s.trim().is_empty());
        if blank {
            fallback
        } else {
            x
        }
    });
    engine.register_fn(
        "join",
        move |items: Array, separator: &str| -> Fallible<String> {
            let mut out = String::new();
            for (index, item) in items.iter().enumerate() {
                let text = item.to_string();
                let sep = if index == 0 { "" } else { separator };
                bounded(out.len() + sep.len() + text.len(), limit)?;
                out.push_str(sep);
                out.push_str(&text);
            }
            Ok(out)
        },
    );
    engine.register_fn(
        "pad_left",
        move |text: &str, width: i64, fill: char| -> Fallible<String> {
            let missing = usize::try_from(width)
                .unwrap_or(0)
                .saturating_sub(text.chars().count());
            bounded(
                missing
                    .saturating_mul(fill.len_utf8())
                    .saturating_add(text.len()),
                limit,
            )?;
            Ok(format!("{}{text}", fill.to_string().repeat(missing)))
        },
    );
    engine.register_fn("truncate_text", |text: &str, max_chars: i64| -> String {
        let max = usize::try_from(max_chars).unwrap_or(0);
        if text.chars().count() <= max {
            return text.to_string();
        }
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    });
    engine.register_fn("normalize_space", |text: &str| -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    });
    engine.register_fn("fill_template", move |template: &str, values: RhaiMap| {
        fill_template(template, &values, limit)
    });
}

/// Replaces `{name}` in `template` with `values.name` (left as is when there is no such key).
fn fill_template(template: &str, values: &RhaiMap, limit: usize) -> Fallible<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if values.contains_key(&after[..close]) => {
                let value = values[&after[..close]].to_string();
                bounded(out.len() + value.len(), limit)?;
                out.push_str(&value);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    bounded(out.len() + rest.len(), limit)?;
    out.push_str(rest);
    Ok(out)
}

// ---------------------------------------------------------------- effects

fn register_effects(engine: &mut Engine) {
    engine.register_fn(
        "notify",
        |receiver: Dynamic, message: Dynamic| -> Fallible<()> {
            if receiver.is_unit() || receiver.to_string().trim().is_empty() {
                return fail("`notify` needs a receiver, got nothing");
            }
            effects::push_notify(receiver.to_string(), message.to_string()).or_else(fail)
        },
    );
    engine.register_fn("emit", |event: &str, payload: Dynamic| -> Fallible<()> {
        let payload = to_json(&payload).or_else(|e| fail(format!("`emit` payload: {e}")))?;
        effects::push_emit(event.to_string(), payload).or_else(fail)
    });
    engine.register_fn("emit", |event: &str| -> Fallible<()> {
        effects::push_emit(event.to_string(), serde_json::Value::Null).or_else(fail)
    });
    engine.register_fn("set", |name: &str, value: Dynamic| -> Fallible<()> {
        if name.trim().is_empty() {
            return fail("`set` needs a variable name");
        }
        let value = to_json(&value).or_else(|e| fail(format!("`set(\"{name}\", ..)`: {e}")))?;
        effects::push_update(name.to_string(), value).or_else(fail)
    });
    engine.register_fn("reject", |message: Dynamic| -> Fallible<()> {
        let message = message.to_string();
        effects::push_rejection(message.clone()).or_else(fail)?;
        fail(format!("rejected: {message}"))
    });
}
