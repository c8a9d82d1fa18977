//! The shipped order process (`workflows/order_processing.bpmn` and `.yaml`) run with the shipped rules
//! (`rules/`) through the executor: guards refuse actions without changing anything, event
//! policies notify, send the invoice and update the freight charge in the step that triggers them.

use chrono::{TimeZone, Utc};
use flowbot_engine::bpmn::parse_bpmn_file;
use flowbot_engine::dmn::{parse_dmn_file, Decisions};
use flowbot_engine::executor::{ExecError, Instance, InstanceStatus};
use flowbot_engine::graph::{compile_with, Catalog, CompiledProcess};
use flowbot_engine::rules::{Effect, RuleEngine, RuleHooks, RulesConfig, StdlibConfig};
use flowbot_engine::yaml::parse_yaml_bytes;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn setup(workflow: &str) -> (RuleEngine, CompiledProcess) {
    let stdlib = StdlibConfig {
        time_zone: chrono_tz::Europe::Berlin,
        ..StdlibConfig::default()
    }
    .with_fixed_now(Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap());
    let rules = RuleEngine::load(
        repo("rules"),
        &RulesConfig {
            stdlib,
            ..RulesConfig::default()
        },
    )
    .unwrap();
    assert!(rules.errors().is_empty(), "{:?}", rules.errors());
    let path = repo(workflow);
    let (definitions, diagnostics) = if workflow.ends_with(".bpmn") {
        parse_bpmn_file(&path)
    } else {
        parse_yaml_bytes(&path, &std::fs::read(&path).unwrap())
    };
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let (review, problems) = parse_dmn_file(&repo("workflows/order_review.dmn"));
    assert!(problems.is_empty(), "{problems:?}");
    let (decisions, problems) = Decisions::build(&[review.unwrap()]);
    assert!(problems.is_empty(), "{problems:?}");
    let catalog = Catalog::with_decisions(Arc::new(decisions));
    let (process, diagnostics) = compile_with(
        &definitions.unwrap(),
        None,
        &rules.script_runtime(),
        &catalog,
    );
    (rules, process.unwrap_or_else(|| panic!("{diagnostics:?}")))
}

fn start_variables() -> Map<String, Value> {
    json!({"order_id": "SO-7", "customer": "ACME", "amount": 250.5, "currency": "EUR", "paid": false})
        .as_object()
        .cloned()
        .unwrap()
}

/// One step: a fresh snapshot and hooks, the executor call, the effects of the step.
fn complete(
    rules: &RuleEngine,
    process: &CompiledProcess,
    instance: &mut Instance,
    node: &str,
    outputs: Value,
) -> Result<Vec<Effect>, ExecError> {
    let activation = instance
        .waits()
        .iter()
        .find(|w| w.node == node)
        .unwrap_or_else(|| panic!("no wait at {node}"))
        .activation;
    let hooks = RuleHooks::new(rules.snapshot());
    instance.complete(
        process,
        activation,
        outputs.as_object().cloned().unwrap(),
        &hooks,
    )?;
    Ok(hooks.take_effects())
}

fn notifications(effects: &[Effect]) -> Vec<(String, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify {
                receiver, message, ..
            } => Some((receiver.clone(), message.clone())),
            Effect::Emit { .. } => None,
        })
        .collect()
}

fn emitted(effects: &[Effect]) -> Vec<(String, Value)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Emit { event, payload, .. } => Some((event.clone(), payload.clone())),
            Effect::Notify { .. } => None,
        })
        .collect()
}

#[test]
fn bpmn_order_process_enforces_the_order_rules() {
    order_process_enforces_the_order_rules("workflows/order_processing.bpmn");
}

#[test]
fn yaml_order_process_enforces_the_order_rules() {
    order_process_enforces_the_order_rules("workflows/order_processing.yaml");
}

fn order_process_enforces_the_order_rules(workflow: &str) {
    let (rules, process) = setup(workflow);
    let hooks = RuleHooks::new(rules.snapshot());
    let (mut instance, _) = Instance::start(&process, "i-1", start_variables(), &hooks).unwrap();
    assert!(hooks.take_effects().is_empty());

    // Rule 1: shipment information before the order awaits shipment is refused; nothing changes.
    let before = instance.clone();
    let err = complete(
        &rules,
        &process,
        &mut instance,
        "import_order",
        json!({"shipment": {"carrier": "DHL"}}),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ExecError::Rejected { node, reason }
        if node == "import_order" && reason.contains("shipment information can only be filled in while the order is awaiting shipment")),
        "{err}"
    );
    assert_eq!(instance, before);

    // Confirming: rule 3 (status change notifies the customer) and rule 5 (invoice) in one step.
    let effects = complete(&rules, &process, &mut instance, "import_order", json!({})).unwrap();
    assert_eq!(
        notifications(&effects),
        [
            (
                "ACME".to_string(),
                "Your order SO-7 is now confirmed.".to_string()
            ),
            (
                "ACME".to_string(),
                "Invoice INV-20261129-SO-7 for order SO-7: 250.50 EUR.".to_string()
            ),
        ]
    );
    assert_eq!(emitted(&effects)[0].0, "send_invoice");
    assert_eq!(
        instance.variables()["invoice_number"],
        json!("INV-20261129-SO-7")
    );

    assert!(
        complete(&rules, &process, &mut instance, "send_invoice", json!({}))
            .unwrap()
            .is_empty()
    );
    assert!(complete(
        &rules,
        &process,
        &mut instance,
        "notify_customer",
        json!({})
    )
    .unwrap()
    .is_empty());
    let effects = complete(
        &rules,
        &process,
        &mut instance,
        "warehouse_inbound",
        json!({}),
    )
    .unwrap();
    assert_eq!(
        notifications(&effects),
        [(
            "ACME".to_string(),
            "Your order SO-7 is now awaiting shipment.".to_string()
        )]
    );

    // Shipping: rule 1 lets it through, rule 4 tells the warehouse, rule 6 sets the freight
    // charge (DHL: 4.90 + 3 started kg x 1.10), rule 3 announces "shipped".
    let shipment = json!({"carrier": "DHL", "weight_kg": 2.5});
    let effects = complete(
        &rules,
        &process,
        &mut instance,
        "ship_order",
        json!({ "shipment": shipment }),
    )
    .unwrap();
    let told = notifications(&effects);
    assert_eq!(told[0].0, "warehouse");
    assert!(
        told[0]
            .1
            .starts_with("Shipment information of order SO-7 changed: shipment is now"),
        "{told:?}"
    );
    assert_eq!(
        told[1],
        (
            "ACME".to_string(),
            "Your order SO-7 is now shipped.".to_string()
        )
    );
    assert_eq!(instance.variables()["freight_charge"], json!("8.20"));
    assert!(emitted(&effects)
        .iter()
        .any(|(event, payload)| event == "freight_charge_updated"
            && payload["freight_charge"] == "8.20"));

    complete(
        &rules,
        &process,
        &mut instance,
        "accounting_period",
        json!({}),
    )
    .unwrap();
    complete(
        &rules,
        &process,
        &mut instance,
        "freight_settlement",
        json!({}),
    )
    .unwrap();
    assert_eq!(instance.status(), InstanceStatus::Completed);
}

#[test]
fn a_broken_rule_reload_keeps_the_process_running_on_the_old_rules() {
    let dir = tempfile::tempdir().unwrap();
    for entry in walk(&repo("rules")) {
        let relative = entry.strip_prefix(repo("rules")).unwrap();
        std::fs::create_dir_all(dir.path().join(relative).parent().unwrap()).unwrap();
        std::fs::copy(&entry, dir.path().join(relative)).unwrap();
    }
    let rules = RuleEngine::load(dir.path(), &RulesConfig::default()).unwrap();
    let (_, process) = setup("workflows/order_processing.bpmn");
    let (mut instance, _) = Instance::start(
        &process,
        "i-2",
        start_variables(),
        &RuleHooks::new(rules.snapshot()),
    )
    .unwrap();

    std::fs::write(dir.path().join("notify_customer_status.rhai"), "notify(").unwrap();
    let report = rules.reload().unwrap();
    assert_eq!(report.rejected.len(), 1);
    let effects = complete(&rules, &process, &mut instance, "import_order", json!({})).unwrap();
    assert!(
        notifications(&effects)
            .iter()
            .any(|(_, m)| m == "Your order SO-7 is now confirmed."),
        "old rule still serves"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}
