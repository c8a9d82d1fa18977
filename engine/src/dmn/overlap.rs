//! Static overlap check for UNIQUE tables: two rules overlap when, column by column, some input
//! passes both entries. Entries whose values are literals (numbers, text, booleans, comparisons,
//! ranges, lists, `not(...)`) are checked exactly; any other entry (one that reads variables or
//! calls functions) is taken as "cannot tell", so only certain overlaps are reported.

use super::compile::CompiledRule;
use crate::feel::{Ast, CmpOp, UnaryTest, Value};
use rust_decimal::Decimal;

/// One end of an interval: the value and whether it is included; `None` is unbounded.
type End = Option<(Decimal, bool)>;

#[derive(Debug, Clone, PartialEq)]
struct Interval {
    low: End,
    high: End,
}

/// The inputs an entry lets through, as far as it can be known without running it.
#[derive(Debug, Clone, PartialEq)]
enum Domain {
    Any,
    Numbers(Vec<Interval>),
    /// Text values; `negated` means every text except these.
    Texts {
        values: Vec<String>,
        negated: bool,
    },
    Bools(Vec<bool>),
    Unknown,
}

/// The pairs `(earlier, later)` of rules (indexes into `rules`) that certainly overlap; each later
/// rule is reported with its first overlapping partner only.
pub(super) fn overlapping_pairs(rules: &[CompiledRule]) -> Vec<(usize, usize)> {
    let domains: Vec<Vec<Domain>> = rules
        .iter()
        .map(|rule| rule.tests.iter().map(|t| domain(t.test())).collect())
        .collect();
    let mut pairs = Vec::new();
    for later in 1..rules.len() {
        for earlier in 0..later {
            let all = domains[earlier]
                .iter()
                .zip(&domains[later])
                .all(|(a, b)| intersects(a, b) == Some(true));
            if all {
                pairs.push((earlier, later));
                break;
            }
        }
    }
    pairs
}

fn domain(test: &UnaryTest) -> Domain {
    match test {
        UnaryTest::Any => Domain::Any,
        UnaryTest::Compare(op, Ast::Literal(value)) => compare_domain(*op, value),
        UnaryTest::Expr {
            expr,
            uses_input: false,
        } => match expr {
            Ast::Literal(value) => compare_domain(CmpOp::Eq, value),
            Ast::List(items) => union(
                items
                    .iter()
                    .map(|item| match item {
                        Ast::Literal(value) => compare_domain(CmpOp::Eq, value),
                        _ => Domain::Unknown,
                    })
                    .collect(),
            ),
            _ => Domain::Unknown,
        },
        UnaryTest::Range {
            start: Ast::Literal(Value::Number(low)),
            start_closed,
            end: Ast::Literal(Value::Number(high)),
            end_closed,
        } => Domain::Numbers(vec![Interval {
            low: Some((*low, *start_closed)),
            high: Some((*high, *end_closed)),
        }]),
        UnaryTest::AnyOf(tests) => union(tests.iter().map(domain).collect()),
        UnaryTest::Not(tests) => complement(union(tests.iter().map(domain).collect())),
        _ => Domain::Unknown,
    }
}

fn compare_domain(op: CmpOp, value: &Value) -> Domain {
    match value {
        Value::Number(n) => {
            let n = *n;
            let intervals = match op {
                CmpOp::Eq => vec![Interval {
                    low: Some((n, true)),
                    high: Some((n, true)),
                }],
                CmpOp::Ne => {
                    return complement(Domain::Numbers(vec![Interval {
                        low: Some((n, true)),
                        high: Some((n, true)),
                    }]))
                }
                CmpOp::Lt => vec![Interval {
                    low: None,
                    high: Some((n, false)),
                }],
                CmpOp::Le => vec![Interval {
                    low: None,
                    high: Some((n, true)),
                }],
                CmpOp::Gt => vec![Interval {
                    low: Some((n, false)),
                    high: None,
                }],
                CmpOp::Ge => vec![Interval {
                    low: Some((n, true)),
                    high: None,
                }],
            };
            Domain::Numbers(intervals)
        }
        Value::String(s) if matches!(op, CmpOp::Eq | CmpOp::Ne) => Domain::Texts {
            values: vec![s.clone()],
            negated: op == CmpOp::Ne,
        },
        Value::Bool(b) if op == CmpOp::Eq => Domain::Bools(vec![*b]),
        Value::Bool(b) if op == CmpOp::Ne => Domain::Bools(vec![!*b]),
        _ => Domain::Unknown,
    }
}

fn union(domains: Vec<Domain>) -> Domain {
    let mut iter = domains.into_iter();
    let Some(mut acc) = iter.next() else {
        return Domain::Unknown;
    };
    for next in iter {
        acc = match (acc, next) {
            (Domain::Any, _) | (_, Domain::Any) => Domain::Any,
            (Domain::Numbers(mut a), Domain::Numbers(b)) => {
                a.extend(b);
                Domain::Numbers(a)
            }
            (
                Domain::Texts {
                    values: mut a,
                    negated: false,
                },
                Domain::Texts {
                    values: b,
                    negated: false,
                },
            ) => {
                a.extend(b);
                Domain::Texts {
                    values: a,
                    negated: false,
                }
            }
            (Domain::Bools(mut a), Domain::Bools(b)) => {
                a.extend(b);
                Domain::Bools(a)
            }
            _ => Domain::Unknown,
        };
    }
    acc
}

fn complement(domain: Domain) -> Domain {
    match domain {
        Domain::Texts { values, negated } => Domain::Texts {
            values,
            negated: !negated,
        },
        Domain::Bools(values) => Domain::Bools(
            [true, false]
                .into_iter()
                .filter(|b| !values.contains(b))
                .collect(),
        ),
        Domain::Numbers(intervals) => {
            // Sweep the intervals by their low ends and keep the gaps between them.
            let mut sorted: Vec<Interval> = intervals.into_iter().filter(non_empty).collect();
            sorted.sort_by_key(|interval| low_key(&interval.low));
            let mut gaps = Vec::new();
            // `None`: nothing covered yet; `Some(None)`: covered to +inf; else covered up to.
            let mut covered: Option<End> = None;
            for interval in sorted {
                let gap_low = match covered {
                    None => Some(None),
                    Some(None) => break,
                    Some(Some((high, closed))) => Some(Some((high, !closed))),
                };
                if let (Some(gap_low), Some((low, closed))) = (gap_low, interval.low) {
                    let gap = Interval {
                        low: gap_low,
                        high: Some((low, !closed)),
                    };
                    if non_empty(&gap) {
                        gaps.push(gap);
                    }
                }
                covered = Some(match (covered, interval.high) {
                    (_, None) | (Some(None), _) => None,
                    (None, high) => high,
                    (Some(Some(c)), Some(h)) => Some(if h.0 > c.0 || (h.0 == c.0 && h.1) {
                        h
                    } else {
                        c
                    }),
                });
            }
            match covered {
                None => gaps.push(Interval {
                    low: None,
                    high: None,
                }),
                Some(None) => {}
                Some(Some((high, closed))) => gaps.push(Interval {
                    low: Some((high, !closed)),
                    high: None,
                }),
            }
            Domain::Numbers(gaps)
        }
        Domain::Any => Domain::Numbers(Vec::new()),
        Domain::Unknown => Domain::Unknown,
    }
}

fn low_key(end: &End) -> (bool, Decimal) {
    match end {
        None => (false, Decimal::MIN),
        Some((v, _)) => (true, *v),
    }
}

fn non_empty(interval: &Interval) -> bool {
    match (interval.low, interval.high) {
        (Some((low, low_closed)), Some((high, high_closed))) => {
            low < high || (low == high && low_closed && high_closed)
        }
        _ => true,
    }
}

fn intersect(a: &Interval, b: &Interval) -> bool {
    let low = match (a.low, b.low) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) => Some(if x.0 > y.0 || (x.0 == y.0 && !x.1) {
            x
        } else {
            y
        }),
    };
    let high = match (a.high, b.high) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) => Some(if x.0 < y.0 || (x.0 == y.0 && !x.1) {
            x
        } else {
            y
        }),
    };
    non_empty(&Interval { low, high })
}

fn is_empty(domain: &Domain) -> Option<bool> {
    match domain {
        Domain::Any => Some(false),
        Domain::Numbers(intervals) => Some(!intervals.iter().any(non_empty)),
        Domain::Texts { values, negated } => Some(!negated && values.is_empty()),
        Domain::Bools(values) => Some(values.is_empty()),
        Domain::Unknown => None,
    }
}

/// Whether some input passes both: `Some(true)` certainly, `Some(false)` certainly not, `None`
/// when it cannot be told.
fn intersects(a: &Domain, b: &Domain) -> Option<bool> {
    match (a, b) {
        (Domain::Unknown, _) | (_, Domain::Unknown) => None,
        (Domain::Any, other) | (other, Domain::Any) => is_empty(other).map(|e| !e),
        (Domain::Numbers(x), Domain::Numbers(y)) => {
            Some(x.iter().any(|p| y.iter().any(|q| intersect(p, q))))
        }
        (
            Domain::Texts {
                values: x,
                negated: nx,
            },
            Domain::Texts {
                values: y,
                negated: ny,
            },
        ) => Some(match (nx, ny) {
            (false, false) => x.iter().any(|v| y.contains(v)),
            (false, true) => x.iter().any(|v| !y.contains(v)),
            (true, false) => y.iter().any(|v| !x.contains(v)),
            (true, true) => true,
        }),
        (Domain::Bools(x), Domain::Bools(y)) => Some(x.iter().any(|v| y.contains(v))),
        _ => Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feel::UnaryTests;

    fn d(text: &str) -> Domain {
        domain(UnaryTests::parse(text, &[]).unwrap().test())
    }

    #[test]
    fn literal_entries_are_checked_exactly() {
        assert_eq!(intersects(&d("< 10"), &d(">= 10")), Some(false));
        assert_eq!(intersects(&d("<= 10"), &d(">= 10")), Some(true));
        assert_eq!(intersects(&d("[1..5)"), &d("[5..9]")), Some(false));
        assert_eq!(intersects(&d("[1..5]"), &d("]5..9]")), Some(false));
        assert_eq!(intersects(&d("\"a\",\"b\""), &d("\"b\"")), Some(true));
        assert_eq!(intersects(&d("not(\"a\")"), &d("\"a\"")), Some(false));
        assert_eq!(intersects(&d("not(\"a\")"), &d("\"b\"")), Some(true));
        assert_eq!(intersects(&d("-"), &d("true")), Some(true));
        assert_eq!(intersects(&d("true"), &d("false")), Some(false));
        assert_eq!(intersects(&d("< 18, >= 60"), &d("[18..60)")), Some(false));
        assert_eq!(intersects(&d("not(< 18)"), &d("< 18")), Some(false));
        assert_eq!(intersects(&d("not(< 18)"), &d("[17..19]")), Some(true));
        assert_eq!(intersects(&d("!= 5"), &d("5")), Some(false));
        assert_eq!(intersects(&d("limit"), &d("5")), None);
        assert_eq!(intersects(&d("5"), &d("\"5\"")), Some(false));
    }
}
