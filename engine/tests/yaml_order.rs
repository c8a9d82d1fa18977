//! The shipped order process in YAML: it parses cleanly, has the expected nodes and flows, and
//! every node, flow and expression carries the position where it is written.

use flowbot_engine::model::*;
use flowbot_engine::yaml::parse_yaml;
use std::path::{Path, PathBuf};

fn order_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/order_processing.yaml")
}

fn load() -> (String, Process) {
    let text =
        std::fs::read_to_string(order_file()).expect("workflows/order_processing.yaml exists");
    let (definitions, diagnostics) =
        parse_yaml(Path::new("workflows/order_processing.yaml"), &text);
    assert!(
        diagnostics.is_empty(),
        "unexpected diagnostics: {diagnostics:#?}"
    );
    let mut definitions = definitions.expect("definitions");
    assert_eq!(definitions.processes.len(), 1);
    (text, definitions.processes.remove(0))
}

fn node<'a>(process: &'a Process, id: &str) -> &'a Node {
    process
        .nodes
        .iter()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("no node `{id}`"))
}

#[test]
fn order_process_has_the_specified_nodes() {
    let (_, process) = load();
    assert_eq!(process.id, "order_processing");
    assert_eq!(process.name.as_deref(), Some("Sales order processing"));
    assert!(process.executable);
    let ids: Vec<&str> = process.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "order_received",
            "order_from_email",
            "import_order",
            "confirm_order",
            "review_policy",
            "amount_check",
            "review_order",
            "review_merge",
            "invoice_and_notify",
            "send_invoice",
            "notify_customer",
            "invoice_and_notify_done",
            "warehouse_inbound",
            "mark_awaiting_shipment",
            "ship_order",
            "mark_shipped",
            "accounting_period",
            "freight_settlement",
            "order_done",
        ]
    );
    assert_eq!(
        node(&process, "order_received").kind,
        NodeKind::StartEvent {
            trigger: None,
            interrupting: true
        }
    );
    assert_eq!(
        node(&process, "order_done").kind,
        NodeKind::EndEvent { result: None }
    );
    for (id, handler) in [
        ("import_order", "import_order"),
        ("send_invoice", "send_invoice"),
        ("warehouse_inbound", "warehouse_inbound"),
        ("accounting_period", "book_accounting_period"),
        ("freight_settlement", "settle_freight"),
    ] {
        match &node(&process, id).kind {
            NodeKind::Task(Activity {
                body: TaskKind::Service { handler: Some(h) },
                ..
            }) => {
                assert_eq!(h, handler, "{id}")
            }
            other => panic!("{id} is not a service task: {other:?}"),
        }
    }
    // The confirmation is written by the language model inside the process.
    match &node(&process, "notify_customer").kind {
        NodeKind::Task(Activity {
            body: TaskKind::Llm(task),
            ..
        }) => {
            assert_eq!(task.mode, LlmMode::Generate);
            assert_eq!(task.output.as_deref(), Some("confirmation"));
        }
        other => panic!("notify_customer is not an llm step: {other:?}"),
    }
    for (id, source) in [
        ("confirm_order", r#"let status = "confirmed";"#),
        (
            "mark_awaiting_shipment",
            r#"let status = "awaiting_shipment";"#,
        ),
        ("mark_shipped", r#"let status = "shipped";"#),
    ] {
        match &node(&process, id).kind {
            NodeKind::Task(Activity {
                body: TaskKind::Script { script: Some(s) },
                ..
            }) => assert!(
                s.source.starts_with(source),
                "{id} begins with `{source}`: {}",
                s.source
            ),
            other => panic!("{id} is not a script task: {other:?}"),
        }
    }
    for (id, name) in [
        ("review_order", "Review large order"),
        ("ship_order", "Fill in shipment information and ship"),
    ] {
        let n = node(&process, id);
        assert!(
            matches!(
                &n.kind,
                NodeKind::Task(Activity {
                    body: TaskKind::User,
                    ..
                })
            ),
            "{id}"
        );
        assert_eq!(n.name.as_deref(), Some(name));
    }
    for (id, kind) in [
        ("amount_check", GatewayKind::Exclusive),
        ("review_merge", GatewayKind::Exclusive),
        ("invoice_and_notify", GatewayKind::Parallel),
        ("invoice_and_notify_done", GatewayKind::Parallel),
    ] {
        assert_eq!(node(&process, id).kind, NodeKind::Gateway(kind), "{id}");
    }
}

#[test]
fn order_process_has_the_specified_flows() {
    let (_, process) = load();
    let flows: Vec<(&str, &str, &str)> = process
        .flows
        .iter()
        .map(|f| (f.id.as_str(), f.source.as_str(), f.target.as_str()))
        .collect();
    assert_eq!(
        flows,
        [
            (
                "order_received_to_import_order",
                "order_received",
                "import_order"
            ),
            (
                "order_from_email_to_import_order",
                "order_from_email",
                "import_order"
            ),
            (
                "import_order_to_confirm_order",
                "import_order",
                "confirm_order"
            ),
            (
                "confirm_order_to_review_policy",
                "confirm_order",
                "review_policy"
            ),
            (
                "review_policy_to_amount_check",
                "review_policy",
                "amount_check"
            ),
            ("to_review", "amount_check", "review_order"),
            ("to_merge", "amount_check", "review_merge"),
            (
                "review_order_to_review_merge",
                "review_order",
                "review_merge"
            ),
            (
                "review_merge_to_invoice_and_notify",
                "review_merge",
                "invoice_and_notify"
            ),
            (
                "invoice_and_notify_to_send_invoice",
                "invoice_and_notify",
                "send_invoice"
            ),
            (
                "invoice_and_notify_to_notify_customer",
                "invoice_and_notify",
                "notify_customer"
            ),
            (
                "send_invoice_to_invoice_and_notify_done",
                "send_invoice",
                "invoice_and_notify_done"
            ),
            (
                "notify_customer_to_invoice_and_notify_done",
                "notify_customer",
                "invoice_and_notify_done"
            ),
            (
                "invoice_and_notify_done_to_warehouse_inbound",
                "invoice_and_notify_done",
                "warehouse_inbound"
            ),
            (
                "warehouse_inbound_to_mark_awaiting_shipment",
                "warehouse_inbound",
                "mark_awaiting_shipment"
            ),
            (
                "mark_awaiting_shipment_to_ship_order",
                "mark_awaiting_shipment",
                "ship_order"
            ),
            ("ship_order_to_mark_shipped", "ship_order", "mark_shipped"),
            (
                "mark_shipped_to_accounting_period",
                "mark_shipped",
                "accounting_period"
            ),
            (
                "accounting_period_to_freight_settlement",
                "accounting_period",
                "freight_settlement"
            ),
            (
                "freight_settlement_to_order_done",
                "freight_settlement",
                "order_done"
            ),
        ]
    );
    let to_review = process
        .flows
        .iter()
        .find(|f| f.id == "to_review")
        .expect("to_review");
    assert_eq!(
        to_review.condition.as_ref().map(|c| c.source.as_str()),
        Some("needs_review")
    );
    assert!(process
        .flows
        .iter()
        .filter(|f| f.id != "to_review")
        .all(|f| f.condition.is_none()));
    assert_eq!(
        node(&process, "amount_check").default_flow.as_deref(),
        Some("to_merge")
    );
    assert!(process
        .nodes
        .iter()
        .filter(|n| n.id != "amount_check")
        .all(|n| n.default_flow.is_none()));
}

/// The 1-based line and column where `needle` first occurs at or after line `from`.
fn find(text: &str, needle: &str, from: u32) -> Span {
    for (index, line) in text.lines().enumerate().skip(from as usize - 1) {
        if let Some(byte) = line.find(needle) {
            return Span::new(index as u32 + 1, line[..byte].chars().count() as u32 + 1);
        }
    }
    panic!("`{needle}` not found after line {from}");
}

#[test]
fn nodes_flows_and_expressions_carry_their_source_positions() {
    let (text, process) = load();
    assert_eq!(process.span, find(&text, "process: order_processing", 1));
    for n in &process.nodes {
        assert_eq!(
            n.span,
            find(&text, &format!("  {}:", n.id), 1).with_col_offset(2),
            "node {}",
            n.id
        );
    }
    // A flow written as `next: target` points at the target; a branch points at its `-`.
    for f in &process.flows {
        let source_line = node(&process, &f.source).span.line;
        let expected = match f.id.as_str() {
            "to_review" => find(&text, "- id: to_review", source_line),
            "to_merge" => find(&text, "- id: to_merge", source_line),
            _ => find(&text, &f.target, source_line + 1),
        };
        assert_eq!(f.span, expected, "flow {}", f.id);
    }
    let condition = process
        .flows
        .iter()
        .find_map(|f| f.condition.as_ref())
        .expect("a condition");
    assert_eq!(
        condition.span,
        find(&text, "when: needs_review", 1).with_col_offset(6)
    );
    match &node(&process, "confirm_order").kind {
        NodeKind::Task(Activity {
            body: TaskKind::Script { script: Some(s) },
            ..
        }) => {
            assert_eq!(s.span, find(&text, "let status = \"confirmed\"", 1));
        }
        other => panic!("not a script: {other:?}"),
    }
}

trait ColOffset {
    fn with_col_offset(self, offset: u32) -> Self;
}

impl ColOffset for Span {
    fn with_col_offset(self, offset: u32) -> Self {
        Span::new(self.line, self.col + offset)
    }
}

/// The decisions shipped beside the order process.
fn order_decisions() -> flowbot_engine::dmn::Decisions {
    use flowbot_engine::dmn::{parse_dmn_file, Decisions};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/order_review.dmn");
    let (file, problems) = parse_dmn_file(&path);
    assert!(problems.is_empty(), "{problems:?}");
    let (decisions, problems) = Decisions::build(&[file.expect("decisions")]);
    assert!(problems.is_empty(), "{problems:?}");
    decisions
}

/// Walks the process as tokens would (first-in first-out): exclusive gateways take the first flow
/// whose condition holds (a flow without one always holds), else the default; parallel gateways join when every incoming token has
/// arrived; scripts update the variables (with the rules' standard library, as the engine runs
/// them). Returns the node ids in the order they run.
fn walk(process: &Process, variables: serde_json::Value) -> Vec<String> {
    use flowbot_engine::rules::{rules_runtime, RulesConfig};
    use std::collections::{HashMap, VecDeque};
    let runtime = rules_runtime(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules"),
        &RulesConfig::default(),
    );
    let mut variables = variables.as_object().expect("object").clone();
    let start = process
        .nodes
        .iter()
        .find(|n| matches!(n.kind, NodeKind::StartEvent { .. }))
        .expect("a start");
    let mut queue = VecDeque::from([start.id.clone()]);
    let mut arrivals: HashMap<String, usize> = HashMap::new();
    let mut path = Vec::new();
    while let Some(id) = queue.pop_front() {
        assert!(path.len() < 100, "the walk does not end: {path:?}");
        let n = node(process, &id);
        let incoming = process.flows.iter().filter(|f| f.target == id).count();
        if n.kind == NodeKind::Gateway(GatewayKind::Parallel) && incoming > 1 {
            let arrived = arrivals.entry(id.clone()).or_default();
            *arrived += 1;
            if *arrived < incoming {
                continue;
            }
        }
        path.push(id.clone());
        if let NodeKind::Task(Activity {
            body: TaskKind::Script { script: Some(s) },
            ..
        }) = &n.kind
        {
            let ast = runtime.compile(&s.source).expect("script compiles");
            variables.extend(runtime.run_script(&ast, &variables).expect("script runs"));
        }
        if let NodeKind::Task(Activity {
            body:
                TaskKind::BusinessRule {
                    decision: Some(call),
                    ..
                },
            ..
        }) = &n.kind
        {
            let value = order_decisions()
                .evaluate(&call.decision, &variables)
                .expect("the decision evaluates")
                .value
                .to_json();
            let name = call
                .result_variable
                .clone()
                .unwrap_or(call.decision.clone());
            variables.insert(name, value);
        }
        let outgoing: Vec<&SequenceFlow> =
            process.flows.iter().filter(|f| f.source == id).collect();
        if n.kind == NodeKind::Gateway(GatewayKind::Exclusive) {
            let chosen = outgoing
                .iter()
                .filter(|f| Some(&f.id) != n.default_flow.as_ref())
                .find(|f| match &f.condition {
                    None => true,
                    Some(c) => {
                        let ast = runtime.compile(&c.source).expect("condition compiles");
                        runtime
                            .eval_condition(&ast, &variables)
                            .expect("condition evaluates")
                    }
                })
                .or_else(|| {
                    outgoing
                        .iter()
                        .find(|f| Some(&f.id) == n.default_flow.as_ref())
                })
                .expect("a flow to take");
            queue.push_back(chosen.target.clone());
        } else {
            queue.extend(outgoing.iter().map(|f| f.target.clone()));
        }
    }
    assert_eq!(variables["status"], "shipped");
    path
}

#[test]
fn order_process_runs_the_specified_paths() {
    let (_, process) = load();
    let small = "order_received import_order confirm_order review_policy amount_check review_merge invoice_and_notify send_invoice \
                 notify_customer invoice_and_notify_done warehouse_inbound mark_awaiting_shipment ship_order mark_shipped \
                 accounting_period freight_settlement order_done";
    let order = |amount: u32| serde_json::json!({ "order_id": "SO-1", "customer": "ACME", "amount": amount, "currency": "EUR", "paid": false });
    assert_eq!(walk(&process, order(500)).join(" "), small);
    let large = small.replace("amount_check", "amount_check review_order");
    assert_eq!(walk(&process, order(20_000)).join(" "), large);
    let mut gold = order(20_000);
    gold["customer_tier"] = "gold".into();
    assert_eq!(walk(&process, gold).join(" "), small);
}
