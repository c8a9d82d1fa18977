//! `flowbot demo --exit`: the order robot's day in one process (on the suite's tiny model): the
//! example exports imported, reviews, payments and shipments played, the daily settlement run.

use flowbot_e2e::flowbot_with_limit;
use std::time::Duration;

/// The number before `word` in `line` (`"162 completed"` → 162).
fn count_before(line: &str, word: &str) -> usize {
    let at = line
        .find(word)
        .unwrap_or_else(|| panic!("`{word}` not in `{line}`"));
    line[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_matches(['(', ',']).parse().ok())
        .unwrap_or_else(|| panic!("no count before `{word}` in `{line}`"))
}

/// The number after `word` in `line` (`"shipped 162"` → 162).
fn count_after(line: &str, word: &str) -> usize {
    let at = line
        .find(word)
        .unwrap_or_else(|| panic!("`{word}` not in `{line}`"))
        + word.len();
    line[at..]
        .split_whitespace()
        .next()
        .and_then(|n| n.trim_end_matches([',', ';']).parse().ok())
        .unwrap_or_else(|| panic!("no count after `{word}` in `{line}`"))
}

fn line<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{stdout}"))
}

#[test]
fn the_demo_plays_a_day_of_orders_and_stops_with_exit() {
    let output = flowbot_with_limit(&["demo", "--exit"], Duration::from_secs(300));
    output.assert_success();
    let stdout = &output.stdout;
    assert!(
        output.stderr.contains("dashboard: http://127.0.0.1:"),
        "{}",
        output.stderr
    );

    let intake = line(stdout, "intake:");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            flowbot_e2e::repo_root().join("examples/data/expected/intake.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let bad_rows = expected["bad_rows"].as_array().unwrap().len();
    assert_eq!(
        count_before(intake, "bad rows reported"),
        bad_rows,
        "{intake}"
    );
    let started = count_before(intake, "orders started");
    assert!(started > 100, "{intake}");

    let clerk = line(stdout, "clerk:");
    let reviewed = count_before(clerk, "large orders reviewed");
    let shipped = count_after(clerk, "the warehouse shipped");
    assert!(reviewed > 0 && reviewed < started, "{clerk}");

    // Two of three orders are shipped and run to their end; the others wait for shipment.
    let orders = line(stdout, "orders now:");
    let completed = count_before(orders, "completed");
    let waiting = count_before(orders, "waiting");
    assert_eq!(completed + waiting, started, "{orders}");
    assert_eq!(completed, shipped, "{orders} / {clerk}");

    // Every completed order told the warehouse of its shipment; the end of the day told finance
    // of the settlements.
    let notifications = line(stdout, "notifications:");
    assert!(
        notifications.contains(&format!("warehouse {shipped}")),
        "{notifications}"
    );
    let at_end = count_before(notifications, "of them at the end of the day");
    assert!(at_end > 0, "{notifications}");
    assert!(line(stdout, "a confirmation the model wrote:").len() > 32);
}
