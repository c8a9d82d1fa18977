//! `flowbot intake` on the example exports of `examples/data`, checked against
//! `examples/data/expected/intake.json`, which `examples/data/generate.py` computes from how it
//! built the data (which rows it made bad and why, which records of an order are newest).

use flowbot_e2e::{flowbot, repo_root};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

const EXAMPLES: &str = "examples/data";
const MAPPING: &str = "examples/data/mapping.toml";

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn base_name(path: &Value) -> &str {
    let path = path.as_str().expect("a file name");
    path.rsplit('/').next().unwrap_or(path)
}

/// The `amount` of an order line as written (the exact decimal text, not through a float).
fn amount_text(line: &str) -> &str {
    let rest = line.split_once("\"amount\":").expect("an amount field").1;
    &rest[..rest.find(',').expect("a field after amount")]
}

#[test]
fn intake_of_the_example_exports_reports_every_bad_row_and_aligns_every_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("orders.jsonl");
    let report_file = dir.path().join("report.json");
    let run = flowbot(&[
        "intake",
        EXAMPLES,
        "--mapping",
        MAPPING,
        "--time-zone",
        "Asia/Shanghai",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report_file.to_str().unwrap(),
    ]);
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let expected = read_json(&repo_root().join("examples/data/expected/intake.json"));
    let report = read_json(&report_file);

    // Files: how each was read, and its counts.
    let files = report["files"].as_array().expect("files");
    let read_as: Vec<(&str, &str, &str, bool, &Value)> = files
        .iter()
        .map(|f| {
            (
                base_name(&f["file"]),
                f["source"].as_str().unwrap(),
                f["encoding"].as_str().unwrap(),
                f["bom"].as_bool().unwrap(),
                &f["delimiter"],
            )
        })
        .collect();
    assert_eq!(
        read_as,
        [
            ("finance.json", "finance", "UTF-8", false, &Value::Null),
            (
                "order_system.csv",
                "order_system",
                "UTF-8",
                true,
                &Value::from(",")
            ),
            ("sales.csv", "sales", "gb18030", false, &Value::from(";")),
        ]
    );
    let sales = files
        .iter()
        .find(|f| base_name(&f["file"]) == "sales.csv")
        .unwrap();
    assert_eq!(sales["columns"]["order_id"], "订单编号");
    assert_eq!(sales["columns"]["currency"], "币种");
    assert_eq!(sales["ignored_columns"], serde_json::json!(["备注"]));
    assert_eq!(sales["time_zone"], "Asia/Shanghai");
    for want in expected["files"].as_array().unwrap() {
        let got = files
            .iter()
            .find(|f| base_name(&f["file"]) == want["file"])
            .unwrap();
        for count in ["rows", "bad_rows", "blank_rows"] {
            assert_eq!(got[count], want[count], "{} {count}", want["file"]);
        }
    }

    // Every bad row, with file, row, line and the kinds of its problems.
    let bad_row = |b: &Value| {
        let kinds: Vec<String> = b["kinds"]
            .as_array()
            .or_else(|| b["problems"].as_array())
            .unwrap()
            .iter()
            .map(|k| {
                k.as_str()
                    .or_else(|| k["kind"].as_str())
                    .unwrap()
                    .to_string()
            })
            .collect();
        (
            base_name(&b["file"]).to_string(),
            b["row"].as_u64().unwrap(),
            b["line"].as_u64().unwrap(),
            kinds,
        )
    };
    let got_bad: BTreeSet<_> = report["bad_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(bad_row)
        .collect();
    let want_bad: BTreeSet<_> = expected["bad_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(bad_row)
        .collect();
    assert_eq!(got_bad, want_bad);
    let reason_of = |file: &str, needle: &str| -> String {
        report["bad_rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| base_name(&b["file"]) == file)
            .map(|b| b["reason"].as_str().unwrap().to_string())
            .find(|reason| reason.contains(needle))
            .unwrap_or_else(|| panic!("no bad row of {file} mentions {needle}"))
    };
    assert_eq!(
        reason_of("order_system.csv", "N/A"),
        "column `total_amount`: amount `N/A` is not a number (decimal separator `.`)"
    );
    assert_eq!(
        reason_of("order_system.csv", "Dollars"),
        "column `currency`: `Dollars` is not a currency"
    );
    assert_eq!(
        reason_of("sales.csv", "待定"),
        "column `金额`: amount `待定` is not a number (decimal separator `.`)"
    );
    assert_eq!(
        reason_of("sales.csv", "2026年13月1日"),
        "column `创建时间`: `2026年13月1日` is not a date or time in a known format"
    );
    assert!(reason_of("finance.json", "C-099").contains("has customer id C-099 here but C-"));
    assert_eq!(reason_of("finance.json", "JSON"), "is not a JSON object");

    // Every order: its fields, exact amount, sources and conflicted fields.
    let text = std::fs::read_to_string(&out).expect("orders written");
    let lines: Vec<&str> = text.lines().collect();
    let want_orders = expected["orders"].as_array().unwrap();
    assert_eq!(lines.len(), want_orders.len());
    for want in want_orders {
        let id = want["order_id"].as_str().unwrap();
        let line = lines
            .iter()
            .find(|line| line.starts_with(&format!("{{\"order_id\":\"{id}\",")))
            .unwrap_or_else(|| panic!("no {id}"));
        let got: Value = serde_json::from_str(line).unwrap();
        for field in [
            "customer_id",
            "customer",
            "currency",
            "status",
            "created_at",
            "updated_at",
            "paid_at",
            "paid",
        ] {
            assert_eq!(got[field], want[field], "{id} {field}");
        }
        assert_eq!(
            amount_text(line),
            want["amount"].as_str().unwrap(),
            "{id} amount"
        );
        let sources = |list: &Value| -> BTreeSet<(String, u64)> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        base_name(&s["file"]).to_string(),
                        s["row"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(
            sources(&got["intake"]["sources"]),
            sources(&want["sources"]),
            "{id} sources"
        );
        let conflicts: Vec<&str> = got["intake"]["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["field"].as_str().unwrap())
            .collect();
        let want_conflicts: Vec<&str> = want["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(conflicts, want_conflicts, "{id} conflicts");
    }

    // Sorted by creation time, orders without one (paid in finance only) last.
    let created: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["created_at"].clone())
        .collect();
    let first_missing = created
        .iter()
        .position(Value::is_null)
        .expect("finance-only orders have no creation time");
    assert!(created[first_missing..].iter().all(Value::is_null));
    assert!(created[..first_missing]
        .windows(2)
        .all(|pair| pair[0].as_str() <= pair[1].as_str()));

    // Totals.
    let totals = &report["totals"];
    let rows: u64 = expected["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(totals["rows"], rows);
    assert_eq!(totals["bad_rows"], want_bad.len());
    assert_eq!(totals["good_rows"], rows - want_bad.len() as u64);
    assert_eq!(totals["orders"], want_orders.len());
    let merged = want_orders
        .iter()
        .filter(|o| o["sources"].as_array().unwrap().len() > 1)
        .count();
    assert_eq!(totals["merged_orders"], merged);
    let conflicts: usize = want_orders
        .iter()
        .map(|o| o["conflicts"].as_array().unwrap().len())
        .sum();
    assert_eq!(totals["conflicts"], conflicts);
    assert!(
        run.stdout
            .contains(&format!("{} orders from", want_orders.len())),
        "{}",
        run.stdout
    );
}

#[test]
fn json_output_sorted_by_payment_time() {
    let run = flowbot(&[
        "intake",
        EXAMPLES,
        "--mapping",
        MAPPING,
        "--sort",
        "paid",
        "--json",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let output = run.json();
    assert_eq!(output["report"]["sorted_by"], "paid");
    let orders = output["orders"].as_array().unwrap();
    let paid: Vec<&Value> = orders.iter().map(|order| &order["paid_at"]).collect();
    let first_unpaid = paid
        .iter()
        .position(|at| at.is_null())
        .expect("some orders are not paid");
    assert!(paid[first_unpaid..].iter().all(|at| at.is_null()));
    assert!(paid[..first_unpaid]
        .windows(2)
        .all(|pair| pair[0].as_str() <= pair[1].as_str()));
    assert!(orders[..first_unpaid]
        .iter()
        .all(|order| order["paid"] == true));
    assert!(
        paid[0].as_str().unwrap().ends_with('Z'),
        "UTC by default: {}",
        paid[0]
    );
}

#[test]
fn a_file_that_cannot_be_read_fails_the_batch_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("orders.jsonl");
    let broken = dir.path().join("broken.csv");
    std::fs::write(&broken, "id,amount\n1,2\n").unwrap();
    let run = flowbot(&[
        "intake",
        "examples/data/order_system.csv",
        broken.to_str().unwrap(),
        "examples/data/no_such_export.csv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("broken.csv: no column gives the order id (columns: id, amount)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("examples/data/no_such_export.csv: cannot read"),
        "{}",
        run.stderr
    );
    assert!(!out.exists());

    let run = flowbot(&[
        "intake",
        "examples/data/order_system.csv",
        "--time-zone",
        "Mars/Olympus",
    ]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("unknown time zone `Mars/Olympus`"),
        "{}",
        run.stderr
    );
}

/// Every file under `dir`, as paths relative to `root`.
fn files_under(root: &Path, dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("folder entry").path();
        if path.is_dir() {
            files_under(root, &path, found);
        } else {
            found.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
}

#[test]
fn the_committed_example_data_is_what_its_generator_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let examples = repo_root().join(EXAMPLES);
    let status = std::process::Command::new("python3")
        .arg(examples.join("generate.py"))
        .arg("--out")
        .arg(dir.path())
        .status()
        .expect("python3 runs");
    assert!(status.success());
    let mut written = Vec::new();
    files_under(dir.path(), dir.path(), &mut written);
    assert!(written.len() > 40, "{written:?}");
    for file in written {
        let fresh = std::fs::read(dir.path().join(&file)).unwrap();
        let committed = std::fs::read(examples.join(&file))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            fresh == committed,
            "{} differs from what generate.py writes",
            file.display()
        );
    }
}
