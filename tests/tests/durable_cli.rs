//! `flowbot run --store DIR [--clock virtual]`, `flowbot resume --store DIR` and `flowbot history
//! ID --store DIR`.

use flowbot_e2e::flowbot_bin;
use std::process::Command;

const THREE_DAYS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="http://example.org/t">
  <bpmn:process id="wait_three_days" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="pay_later"/>
    <bpmn:intermediateCatchEvent id="pay_later">
      <bpmn:timerEventDefinition><bpmn:timeDuration>P3D</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="pay_later" targetRef="remind"/>
    <bpmn:userTask id="remind"/>
    <bpmn:sequenceFlow id="f3" sourceRef="remind" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>
"#;

fn json_of(output: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)))
}

#[test]
fn a_three_day_timer_finishes_on_the_virtual_clock_and_leaves_a_history() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("three_days.bpmn");
    std::fs::write(&file, THREE_DAYS).unwrap();
    let store = dir.path().join("store");
    let out = Command::new(flowbot_bin())
        .arg("run")
        .arg(&file)
        .args(["--clock", "virtual", "--auto-complete", "--json", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = json_of(&out);
    assert_eq!(report["status"], "completed");
    assert_eq!(
        report["path"],
        serde_json::json!(["start", "pay_later", "remind", "end"])
    );
    let id = report["id"].as_str().unwrap().to_string();

    let history = Command::new(flowbot_bin())
        .args(["history", &id, "--json", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        history.status.success(),
        "{}",
        String::from_utf8_lossy(&history.stderr)
    );
    let records = json_of(&history);
    let records = records.as_array().unwrap();
    let armed = records
        .iter()
        .find(|r| r["entry"]["kind"] == "timer_armed")
        .expect("timer armed");
    let fired = records
        .iter()
        .position(|r| r["entry"]["kind"] == "timer_fired")
        .expect("timer fired");
    let started_at = records[0]["at_ms"].as_u64().unwrap();
    assert_eq!(
        armed["entry"]["due_ms"].as_u64().unwrap() - started_at,
        3 * 24 * 3600 * 1000
    );
    assert!(records[fired]["at_ms"].as_u64().unwrap() >= started_at + 3 * 24 * 3600 * 1000);

    // Without the virtual clock the timer keeps the instance waiting.
    let waiting = Command::new(flowbot_bin())
        .arg("run")
        .arg(&file)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(json_of(&waiting)["status"], "waiting");
}

#[test]
fn history_of_an_unknown_instance_or_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Command::new(flowbot_bin())
        .args(["history", "x-1", "--store"])
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no store at"));
    let file = dir.path().join("three_days.bpmn");
    std::fs::write(&file, THREE_DAYS).unwrap();
    let store = dir.path().join("store");
    let run = Command::new(flowbot_bin())
        .arg("run")
        .arg(&file)
        .args(["--clock", "virtual", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(run.status.success());
    let unknown = Command::new(flowbot_bin())
        .args(["history", "x-1", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no instance `x-1`"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}

#[test]
fn bench_reports_one_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("three_days.bpmn");
    std::fs::write(
        &file,
        THREE_DAYS.replace(
            "<bpmn:timeDuration>P3D</bpmn:timeDuration>",
            "<bpmn:timeDuration>PT0S</bpmn:timeDuration>",
        ),
    )
    .unwrap();
    for store in ["memory", "sled"] {
        let out = Command::new(flowbot_bin())
            .arg("bench")
            .arg(&file)
            .args([
                "--instances",
                "50",
                "--vars",
                r#"[{"a":1},{"a":2}]"#,
                "--store",
                store,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = json_of(&out);
        assert_eq!(report["instances"], 50);
        assert_eq!(report["completed"], 50);
        for key in ["seconds", "instances_per_s", "steps_per_s"] {
            assert!(report[key].as_f64().unwrap() > 0.0, "{key}: {report}");
        }
    }
    let bad = Command::new(flowbot_bin())
        .arg("bench")
        .arg(&file)
        .args(["--vars", "[1]"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected an object"));
}

const ONE_SECOND: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">
  <process id="short_wait" isExecutable="true">
    <startEvent id="start"/>
    <sequenceFlow id="f1" sourceRef="start" targetRef="pause"/>
    <intermediateCatchEvent id="pause">
      <timerEventDefinition><timeDuration>PT1S</timeDuration></timerEventDefinition>
    </intermediateCatchEvent>
    <sequenceFlow id="f2" sourceRef="pause" targetRef="end"/>
    <endEvent id="end"/>
  </process>
</definitions>
"#;

#[test]
fn a_store_run_returns_while_a_timer_waits_and_resume_carries_on_when_it_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    for (name, text) in [
        ("three_days.bpmn", THREE_DAYS),
        ("short_wait.bpmn", ONE_SECOND),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let out = Command::new(flowbot_bin())
            .arg("run")
            .arg(&file)
            .args(["--auto-complete", "--json", "--store"])
            .arg(&store)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = json_of(&out);
        assert_eq!(
            report["status"], "waiting",
            "{name}: the run does not wait for the timer"
        );
        assert_eq!(report["waiting_on"][0]["kind"], "timer");
        assert!(report["waiting_on"][0]["due"].is_string());
    }
    // One second later the short timer is due: resume fires it; the three-day one still waits.
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let resumed = Command::new(flowbot_bin())
        .args(["resume", "--json", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let instances = json_of(&resumed);
    let status: std::collections::BTreeMap<String, String> = instances
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["process"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(status["short_wait"], "completed");
    assert_eq!(status["wait_three_days"], "waiting");
}
