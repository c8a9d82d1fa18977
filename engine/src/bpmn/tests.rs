//! Tests of the model the BPMN front end builds, and of its robustness against hostile input.

use super::*;
use crate::diagnostics::has_errors;
use crate::model::*;

fn parse_ok(text: &[u8]) -> Definitions {
    let (definitions, diagnostics) = parse_bpmn(Path::new("t.bpmn"), text);
    assert!(!has_errors(&diagnostics), "{diagnostics:#?}");
    definitions.expect("definitions")
}

fn errors_of(text: &[u8]) -> Vec<String> {
    let (_, diagnostics) = parse_bpmn(Path::new("t.bpmn"), text);
    diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect()
}

fn node<'a>(process: &'a Process, id: &str) -> &'a Node {
    process
        .nodes
        .iter()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("no node {id}"))
}

fn task_body<'a>(process: &'a Process, id: &str) -> &'a TaskKind {
    match &node(process, id).kind {
        NodeKind::Task(activity) => &activity.body,
        other => panic!("{id} is {other:?}"),
    }
}

fn activity<'a>(process: &'a Process, id: &str) -> &'a Activity<TaskKind> {
    match &node(process, id).kind {
        NodeKind::Task(activity) => activity,
        other => panic!("{id} is {other:?}"),
    }
}

const ALL_ELEMENTS: &[u8] = include_bytes!("../../tests/data/bpmn/valid/all_elements.bpmn");
const VENDORS: &[u8] = include_bytes!("../../tests/data/bpmn/valid/vendor_extensions.bpmn");
const FLOWBOT: &[u8] = include_bytes!("../../tests/data/bpmn/valid/flowbot_extensions.bpmn");

#[test]
fn reads_processes_definitions_and_lanes() {
    let definitions = parse_ok(ALL_ELEMENTS);
    let ids: Vec<&str> = definitions
        .processes
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(ids, ["main", "second"]);
    let main = &definitions.processes[0];
    assert!(main.executable);
    assert!(!definitions.processes[1].executable);
    assert_eq!(
        main.name.as_deref(),
        Some("Shop"),
        "name taken from the participant"
    );
    assert_eq!(main.lanes.len(), 1);
    assert_eq!(main.lanes[0].nodes, ["start", "plain"]);
    assert_eq!(definitions.errors[0].name.as_deref(), Some("OUT_OF_STOCK"));
    assert_eq!(main.span, Span::new(15, 3));
    assert_eq!(node(main, "start").span, Span::new(22, 5));
    assert!(main.nodes.iter().all(|n| n.id != "note"));
}

#[test]
fn reads_event_definitions_with_resolved_references() {
    let main = &parse_ok(ALL_ELEMENTS).processes[0];
    let start_trigger = |id| match &node(main, id).kind {
        NodeKind::StartEvent { trigger, .. } => trigger.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(start_trigger("start"), None);
    assert_eq!(
        start_trigger("start_msg"),
        Some(EventTrigger::Message(MessageRef {
            name: Some("payment_received".into()),
            correlation_key: None
        }))
    );
    match start_trigger("start_timer") {
        Some(EventTrigger::Timer(timer)) => {
            assert_eq!(timer.kind, TimerKind::Cycle);
            assert_eq!(timer.expression.source, "R3/PT10M");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        start_trigger("start_signal"),
        Some(EventTrigger::Signal {
            name: Some("stop_all".into())
        })
    );
    match start_trigger("start_cond") {
        Some(EventTrigger::Conditional {
            condition: Some(condition),
        }) => {
            assert_eq!(condition.source, "amount > 5");
            // Past the `${` wrapper.
            assert_eq!(condition.span, Span::new(29, 60));
        }
        other => panic!("{other:?}"),
    }
    match &node(main, "on_error").kind {
        NodeKind::BoundaryEvent {
            attached_to,
            trigger,
            interrupting,
        } => {
            assert_eq!(attached_to, "service");
            assert_eq!(
                trigger,
                &EventTrigger::Error {
                    code: Some("OUT_OF_STOCK".into())
                }
            );
            assert!(interrupting);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        node(main, "reminder").kind,
        NodeKind::BoundaryEvent {
            interrupting: false,
            ..
        }
    ));
    assert!(matches!(
        &node(main, "escalate").kind,
        NodeKind::IntermediateThrowEvent { result: Some(EventTrigger::Escalation { code: Some(code) }) } if code == "LATE"
    ));
    assert!(matches!(
        node(main, "pass").kind,
        NodeKind::IntermediateThrowEvent { result: None }
    ));
    assert!(matches!(
        &node(main, "link_in").kind,
        NodeKind::IntermediateCatchEvent { trigger: EventTrigger::Link { name: Some(name) } } if name == "jump"
    ));
    assert!(matches!(
        node(main, "end_terminate").kind,
        NodeKind::EndEvent {
            result: Some(EventTrigger::Terminate)
        }
    ));
    assert!(matches!(
        node(main, "end_compensate").kind,
        NodeKind::EndEvent {
            result: Some(EventTrigger::Compensation { activity: None })
        }
    ));
}

#[test]
fn reads_tasks_gateways_subprocesses_and_flows() {
    let main = &parse_ok(ALL_ELEMENTS).processes[0];
    assert_eq!(task_body(main, "plain"), &TaskKind::Plain);
    assert_eq!(node(main, "plain").default_flow.as_deref(), Some("f2"));
    assert_eq!(
        task_body(main, "service"),
        &TaskKind::Service { handler: None }
    );
    match task_body(main, "script") {
        TaskKind::Script {
            script: Some(script),
        } => {
            assert_eq!(script.source, "let x = 1 < 2;");
            assert_eq!(script.language.as_deref(), Some("rhai"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(task_body(main, "user"), &TaskKind::User);
    assert_eq!(task_body(main, "manual"), &TaskKind::Manual);
    assert!(
        matches!(task_body(main, "receive"), TaskKind::Receive { message: Some(m) } if m.name.as_deref() == Some("payment_received"))
    );
    assert!(
        matches!(task_body(main, "send"), TaskKind::Send { message: Some(m), handler: None } if m == "payment_received")
    );
    let gateways: Vec<GatewayKind> = ["xor", "and", "or", "event_gw", "complex"]
        .iter()
        .map(|id| match node(main, id).kind {
            NodeKind::Gateway(kind) => kind,
            ref other => panic!("{other:?}"),
        })
        .collect();
    use GatewayKind::*;
    assert_eq!(
        gateways,
        [Exclusive, Parallel, Inclusive, EventBased, Complex]
    );
    assert_eq!(node(main, "xor").default_flow.as_deref(), Some("f3"));
    match &node(main, "sub").kind {
        NodeKind::SubProcess(sub) => {
            assert_eq!(sub.body.nodes.len(), 2);
            assert_eq!(sub.body.flows[0].id, "sub_f1");
            let mi = sub.multi_instance.as_ref().expect("multi-instance");
            assert!(mi.sequential);
            assert_eq!(
                mi.cardinality.as_ref().map(|e| e.source.as_str()),
                Some("3")
            );
            assert_eq!(
                mi.completion_condition.as_ref().map(|e| e.source.as_str()),
                Some("done")
            );
        }
        other => panic!("{other:?}"),
    }
    match &node(main, "event_sub").kind {
        NodeKind::SubProcess(sub) => {
            assert!(sub.body.event_subprocess);
            assert!(matches!(
                sub.body.nodes[0].kind,
                NodeKind::StartEvent {
                    interrupting: false,
                    ..
                }
            ));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&node(main, "tx").kind, NodeKind::SubProcess(tx) if tx.body.transaction && tx.standard_loop.is_some())
    );
    assert!(
        matches!(&node(main, "call").kind, NodeKind::CallActivity(c) if c.body.called_element.as_deref() == Some("other_process"))
    );
    let f4 = main.flows.iter().find(|f| f.id == "f4").expect("f4");
    let condition = f4.condition.as_ref().expect("condition");
    assert_eq!(condition.source, "amount < 10");
    assert_eq!(condition.language.as_deref(), Some("rhai"));
}

#[test]
fn reads_vendor_handlers_and_loops() {
    let definitions = parse_ok(VENDORS);
    let p = &definitions.processes[0];
    let handler = |id| match task_body(p, id) {
        TaskKind::Service { handler } => handler.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(handler("camunda_external").as_deref(), Some("charge_card"));
    assert_eq!(
        handler("camunda_class").as_deref(),
        Some("com.example.Charge")
    );
    assert_eq!(
        handler("camunda_delegate").as_deref(),
        Some("chargeDelegate")
    );
    assert_eq!(
        handler("camunda_expression").as_deref(),
        Some("charger.charge(execution)")
    );
    assert_eq!(handler("zeebe_task").as_deref(), Some("ship_parcel"));
    assert_eq!(handler("spiff_task").as_deref(), Some("http/GetRequest"));
    assert!(
        p.nodes.iter().all(|n| n.id != "hidden"),
        "unknown extensions are skipped with their content"
    );

    let camunda = activity(p, "camunda_mi")
        .multi_instance
        .as_ref()
        .expect("camunda multi-instance");
    assert_eq!(
        camunda.collection.as_ref().map(|e| e.source.as_str()),
        Some("orders")
    );
    assert_eq!(camunda.element_variable.as_deref(), Some("order"));
    let zeebe = activity(p, "zeebe_mi")
        .multi_instance
        .as_ref()
        .expect("zeebe multi-instance");
    assert_eq!(
        zeebe.collection.as_ref().map(|e| e.source.as_str()),
        Some("items")
    );
    assert_eq!(zeebe.element_variable.as_deref(), Some("item"));
    assert_eq!(zeebe.output_collection.as_deref(), Some("results"));
    assert_eq!(zeebe.output_element.as_deref(), Some("result"));
    let spiff = activity(p, "spiff_mi")
        .multi_instance
        .as_ref()
        .expect("spiff multi-instance");
    assert_eq!(
        spiff.collection.as_ref().map(|e| e.source.as_str()),
        Some("input_list")
    );
    assert_eq!(spiff.element_variable.as_deref(), Some("input_item"));
    assert_eq!(spiff.output_collection.as_deref(), Some("output_list"));
    assert_eq!(spiff.output_element.as_deref(), Some("output_item"));

    assert!(
        matches!(task_body(p, "decide"), TaskKind::BusinessRule { decision: Some(d), script: None } if d.decision == "discounts")
    );
    assert!(
        matches!(&node(p, "zeebe_call").kind, NodeKind::CallActivity(c) if c.body.called_element.as_deref() == Some("child_process"))
    );
    match &node(p, "wait_update").kind {
        NodeKind::IntermediateCatchEvent {
            trigger: EventTrigger::Message(message),
        } => {
            assert_eq!(message.name.as_deref(), Some("order_update"));
            assert_eq!(
                message.correlation_key.as_ref().map(|e| e.source.as_str()),
                Some("order_id")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reads_flowbot_rules_retries_and_llm_steps() {
    let definitions = parse_ok(FLOWBOT);
    let p = &definitions.processes[0];
    let start_rules = &node(p, "start").rules;
    assert_eq!(start_rules[0].point, AttachPoint::OnStart);
    assert_eq!(
        start_rules[0].rule,
        RuleSource::File("orders/defaults.rhai".into())
    );
    assert_eq!(
        start_rules[1].point,
        AttachPoint::OnVariableChange("amount".into())
    );
    assert_eq!(
        start_rules[1].rule,
        RuleSource::Inline("if amount < 0 { throw \"negative\"; }".into())
    );

    let charge = node(p, "charge");
    let points: Vec<&AttachPoint> = charge.rules.iter().map(|r| &r.point).collect();
    assert_eq!(
        points,
        [
            &AttachPoint::GuardComplete,
            &AttachPoint::GuardVariable("paid".into()),
            &AttachPoint::OnEnter,
            &AttachPoint::OnLeave
        ]
    );
    let charge = activity(p, "charge");
    assert_eq!(
        charge.body,
        TaskKind::Service {
            handler: Some("charge_card".into())
        }
    );
    assert_eq!(
        charge.retry,
        Some(RetryPolicy {
            retries: 3,
            initial_delay_ms: 2_000,
            max_delay_ms: 60_000
        })
    );
    assert_eq!(
        activity(p, "sign").retry,
        Some(RetryPolicy {
            retries: 1,
            initial_delay_ms: 1_000,
            max_delay_ms: 60_000
        })
    );

    match task_body(p, "write_note") {
        TaskKind::Llm(llm) => {
            assert_eq!(llm.mode, LlmMode::Generate);
            assert_eq!(llm.prompt, "Thank {customer} for order {order_id}.");
            assert_eq!(llm.system.as_deref(), Some("You write short notes."));
            assert_eq!(llm.output.as_deref(), Some("note"));
            assert_eq!(llm.options.get("max_tokens"), Some(&serde_json::json!(64)));
            assert_eq!(
                llm.options.get("temperature"),
                Some(&serde_json::json!(0.2))
            );
            assert_eq!(llm.options.get("style"), Some(&serde_json::json!("brief")));
            assert!(!llm.options.contains_key("mode"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(task_body(p, "triage"), TaskKind::Llm(llm) if llm.mode == LlmMode::Classify && llm.labels == ["complaint", "question"])
    );
    match task_body(p, "read_address") {
        TaskKind::Llm(llm) => {
            assert_eq!(llm.mode, LlmMode::Extract);
            assert_eq!(
                llm.schema
                    .as_ref()
                    .and_then(|s| s.pointer("/properties/city/type")),
                Some(&serde_json::json!("string"))
            );
        }
        other => panic!("{other:?}"),
    }
    match &node(p, "wait_payment").kind {
        NodeKind::IntermediateCatchEvent {
            trigger: EventTrigger::Message(message),
        } => {
            assert_eq!(
                message.name.as_deref(),
                Some("payment_received"),
                "message defined after its use"
            );
            assert_eq!(
                message.correlation_key.as_ref().map(|e| e.source.as_str()),
                Some("order_id")
            );
        }
        other => panic!("{other:?}"),
    }
    match task_body(p, "await_confirmation") {
        TaskKind::Receive {
            message: Some(message),
        } => {
            assert_eq!(message.name.as_deref(), Some("payment_received"));
            assert_eq!(
                message.correlation_key.as_ref().map(|e| e.source.as_str()),
                Some("customer")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(task_body(p, "discount"), TaskKind::BusinessRule { script: Some(s), .. } if s.source == "let discount = amount / 10;")
    );
}

const HEAD: &str = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d"><bpmn:process id="p">"#;
const TAIL: &str = "</bpmn:process></bpmn:definitions>";

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    for depth in [MAX_DEPTH + 1, 100_000] {
        let mut text = String::from(HEAD);
        for _ in 0..depth {
            text.push_str("<bpmn:subProcess>");
        }
        let errors = errors_of(text.as_bytes());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("elements are nested more than 256 levels"),
            "{errors:?}"
        );
    }
}

fn nested_subprocesses(levels: usize) -> String {
    let mut text = String::from(HEAD);
    for level in 0..levels {
        text.push_str(&format!("<bpmn:subProcess id=\"s{level}\">"));
    }
    text.push_str(&"</bpmn:subProcess>".repeat(levels));
    text.push_str(TAIL);
    text
}

#[test]
fn subprocess_nesting_beyond_the_limit_is_refused() {
    let text = nested_subprocesses(MAX_SUBPROCESS_DEPTH + 1);
    let column = text
        .find("<bpmn:subProcess id=\"s32\"")
        .expect("innermost subprocess")
        + 1;
    let errors = errors_of(text.as_bytes());
    assert_eq!(
        errors,
        [format!(
            "t.bpmn:1:{column}: error: subprocesses are nested more than 32 levels deep [s32]"
        )]
    );
    // Deeper XML nesting of other elements stays within the XML limit.
    let errors = errors_of(nested_subprocesses(MAX_DEPTH - 3).as_bytes());
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn nesting_within_the_limit_builds_nested_subprocesses() {
    let levels = MAX_SUBPROCESS_DEPTH;
    let definitions = parse_ok(nested_subprocesses(levels).as_bytes());
    let mut depth = 0;
    let mut nodes = &definitions.processes[0].nodes;
    while let Some(Node {
        kind: NodeKind::SubProcess(sub),
        ..
    }) = nodes.first()
    {
        depth += 1;
        nodes = &sub.body.nodes;
    }
    assert_eq!(depth, levels);
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let text = vec![b' '; MAX_FILE_BYTES + 1];
    let errors = errors_of(&text);
    assert_eq!(
        errors,
        ["t.bpmn:1:1: error: file is larger than the 16 MiB limit for BPMN files"]
    );
}

#[test]
fn large_files_within_the_limit_parse() {
    let mut text = String::from(HEAD);
    let count = 20_000;
    for i in 0..count {
        text.push_str(&format!("<bpmn:task id=\"t{i}\" name=\"Task {i}\" />\n"));
    }
    text.push_str(TAIL);
    let definitions = parse_ok(text.as_bytes());
    let nodes = &definitions.processes[0].nodes;
    assert_eq!(nodes.len(), count);
    assert_eq!(nodes[count - 1].span, Span::new(count as u32, 1));
}

#[test]
fn long_single_line_files_get_columns() {
    let mut text = String::from(HEAD);
    for i in 0..5_000 {
        text.push_str(&format!("<bpmn:task id=\"t{i}\"/>"));
    }
    text.push_str(TAIL);
    let definitions = parse_ok(text.as_bytes());
    let last = definitions.processes[0].nodes.last().expect("nodes");
    assert_eq!(last.span.line, 1);
    let offset = text.find("<bpmn:task id=\"t4999\"").expect("last task");
    assert_eq!(last.span.col as usize, offset + 1);
}

#[test]
fn every_prefix_of_a_valid_file_is_handled() {
    // Truncation anywhere (inside a tag, a comment, a multi-byte character) gives errors, never a panic.
    for end in 0..ALL_ELEMENTS.trim_ascii_end().len() {
        let (definitions, diagnostics) = parse_bpmn(Path::new("t.bpmn"), &ALL_ELEMENTS[..end]);
        assert!(
            has_errors(&diagnostics),
            "prefix of {end} bytes accepted: {definitions:?}"
        );
    }
}

#[test]
fn byte_order_mark_is_skipped() {
    let mut text = b"\xEF\xBB\xBF".to_vec();
    text.extend_from_slice(format!("{HEAD}<bpmn:task id=\"t\"/>{TAIL}").as_bytes());
    let definitions = parse_ok(&text);
    assert_eq!(definitions.processes[0].nodes[0].id, "t");
}

#[test]
fn character_references_and_predefined_entities_are_resolved() {
    let text = format!("{HEAD}<bpmn:task id=\"t\" name=\"a &amp; b &#233;&#x41;\"/>{TAIL}");
    let definitions = parse_ok(text.as_bytes());
    assert_eq!(
        definitions.processes[0].nodes[0].name.as_deref(),
        Some("a & b éA")
    );
}

#[test]
fn unreadable_file_is_a_diagnostic() {
    let (definitions, diagnostics) = parse_bpmn_file(Path::new("/nonexistent/flowbot/x.bpmn"));
    assert!(definitions.is_none());
    assert_eq!(diagnostics.len(), 1);
    assert!(
        diagnostics[0].message.starts_with("cannot read the file"),
        "{diagnostics:?}"
    );
}

#[test]
fn undeclared_prefix_reads_as_bpmn_and_joins_text_pieces() {
    let text = include_bytes!("../../tests/data/bpmn/valid/undeclared_prefix.bpmn");
    let definitions = parse_ok(text);
    match task_body(&definitions.processes[0], "s") {
        TaskKind::Script {
            script: Some(script),
        } => {
            assert_eq!(script.source, "let a = 1 < 2; let b = a && true;");
            assert_eq!(script.span, Span::new(7, 20));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn oversized_file_is_refused_without_reading_it_whole() {
    let file = tempfile::NamedTempFile::new().expect("temporary file");
    file.as_file()
        .set_len(MAX_FILE_BYTES as u64 * 4)
        .expect("sparse file");
    let (definitions, diagnostics) = parse_bpmn_file(file.path());
    assert!(definitions.is_none());
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(
        diagnostics[0].message,
        "file is larger than the 16 MiB limit for BPMN files"
    );
}

#[test]
fn a_timer_names_its_business_time_zone_with_flowbot_time_zone() {
    let text = r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:flowbot="https://flowbot.dev/schema/1.0" id="d"><bpmn:process id="p">
<bpmn:startEvent id="daily"><bpmn:timerEventDefinition><bpmn:timeCycle flowbot:timeZone="Asia/Shanghai">0 18 * * *</bpmn:timeCycle></bpmn:timerEventDefinition></bpmn:startEvent>
<bpmn:startEvent id="utc"><bpmn:timerEventDefinition><bpmn:timeCycle>0 18 * * *</bpmn:timeCycle></bpmn:timerEventDefinition></bpmn:startEvent>
</bpmn:process></bpmn:definitions>"#;
    let p = &parse_ok(text.as_bytes()).processes[0];
    let zone = |id| match &node(p, id).kind {
        NodeKind::StartEvent {
            trigger: Some(EventTrigger::Timer(timer)),
            ..
        } => timer.time_zone.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(zone("daily").as_deref(), Some("Asia/Shanghai"));
    assert_eq!(zone("utc"), None);
    let bad = text.replace("Asia/Shanghai", "Asia/Atlantis");
    let errors = errors_of(bad.as_bytes());
    assert!(
        errors.len() == 1 && errors[0].contains("t.bpmn:2:") && errors[0].contains("Asia/Atlantis"),
        "{errors:?}"
    );
}

#[test]
fn attributes_beyond_the_limit_are_refused_on_their_element() {
    let attributes: String = (0..=MAX_ATTRIBUTES)
        .map(|i| format!(" a{i}=\"x\""))
        .collect();
    let text = format!("{HEAD}<bpmn:startEvent id=\"s\"{attributes}/>{TAIL}");
    let errors = errors_of(text.as_bytes());
    assert!(
        errors.iter().any(|e| e.starts_with("t.bpmn:1:")
            && e.contains(&format!("more than {MAX_ATTRIBUTES} attributes"))),
        "{errors:?}"
    );
}

#[test]
fn elements_beyond_the_limit_are_refused() {
    let text = format!("{HEAD}{}{TAIL}", "<bpmn:task/>".repeat(MAX_ELEMENTS));
    let errors = errors_of(text.as_bytes());
    assert_eq!(errors.len(), 1, "{:?}", &errors[..errors.len().min(3)]);
    assert!(
        errors[0].contains(&format!("more than {MAX_ELEMENTS} elements")),
        "{errors:?}"
    );
}

#[test]
fn many_processes_and_participants_are_matched_by_id() {
    // Matched through a map: this took minutes when each process searched the participants.
    let count = 20_000;
    let processes: String = (0..count)
        .map(|i| format!("<bpmn:process id=\"p{i}\"/>"))
        .collect();
    let participants: String = (0..count)
        .map(|i| format!("<bpmn:participant id=\"q{i}\" processRef=\"p{i}\" name=\"Pool {i}\"/>"))
        .collect();
    let text = format!(
        r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">{processes}<bpmn:collaboration id="c">{participants}</bpmn:collaboration></bpmn:definitions>"#
    );
    let (definitions, _) = parse_bpmn(Path::new("t.bpmn"), text.as_bytes());
    let definitions = definitions.expect("definitions");
    assert_eq!(definitions.processes.len(), count);
    assert_eq!(
        definitions.processes[count - 1].name.as_deref(),
        Some("Pool 19999")
    );
}
