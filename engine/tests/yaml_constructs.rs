//! Each DSL construct produces the process model it stands for.

use flowbot_engine::model::*;
use flowbot_engine::yaml::parse_yaml;
use serde_json::json;
use std::path::Path;

fn parse(text: &str) -> Process {
    let (definitions, diagnostics) = parse_yaml(Path::new("c.yaml"), text);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    definitions.expect("definitions").processes.remove(0)
}

fn kind<'a>(nodes: &'a [Node], id: &str) -> &'a NodeKind {
    &nodes
        .iter()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("no node {id}"))
        .kind
}

fn expr(source: &str, line: u32, col: u32) -> Expr {
    Expr {
        language: None,
        source: source.to_string(),
        span: Span::new(line, col),
    }
}

#[test]
fn events_and_their_triggers() {
    let p = parse(
        "process: p
nodes:
  s1: { start: { message: { name: order, correlation_key: order_id } }, next: s2 }
  s2: { start: { timer: { cycle: R2/PT1M } }, next: c1 }
  c1: { catch: { signal: go, condition: x > 1 }, next: t1 }
  t1: { throw: { escalation: LATE }, next: e1 }
  e1: { end: { terminate: true } }
  e2: { end: { error: ~ } }
  e3: { end: { error: 500, compensation: ~ } }
  b1: { boundary: { attached_to: w, timer: { date: 2026-12-01T08:00:00Z }, interrupting: false }, next: e2 }
  w: { task: ~, next: e3 }
  l1: { catch: { link: page2 }, next: w }
  s3: { start: { timer: { duration: PT10M } }, next: w }
",
    );
    let n = &p.nodes;
    assert_eq!(
        kind(n, "s1"),
        &NodeKind::StartEvent {
            trigger: Some(EventTrigger::Message(MessageRef {
                name: Some("order".into()),
                correlation_key: Some(expr("order_id", 3, 59)),
            })),
            interrupting: true,
        }
    );
    assert_eq!(
        kind(n, "s2"),
        &NodeKind::StartEvent {
            trigger: Some(EventTrigger::Timer(Timer {
                kind: TimerKind::Cycle,
                expression: expr("R2/PT1M", 4, 34),
                time_zone: None
            })),
            interrupting: true,
        }
    );
    assert_eq!(
        kind(n, "c1"),
        &NodeKind::IntermediateCatchEvent {
            trigger: EventTrigger::Multiple(vec![
                EventTrigger::Signal {
                    name: Some("go".into())
                },
                EventTrigger::Conditional {
                    condition: Some(expr("x > 1", 5, 41))
                },
            ])
        }
    );
    assert_eq!(
        kind(n, "t1"),
        &NodeKind::IntermediateThrowEvent {
            result: Some(EventTrigger::Escalation {
                code: Some("LATE".into())
            })
        }
    );
    assert_eq!(
        kind(n, "e1"),
        &NodeKind::EndEvent {
            result: Some(EventTrigger::Terminate)
        }
    );
    assert_eq!(
        kind(n, "e2"),
        &NodeKind::EndEvent {
            result: Some(EventTrigger::Error { code: None })
        }
    );
    assert_eq!(
        kind(n, "e3"),
        &NodeKind::EndEvent {
            result: Some(EventTrigger::Multiple(vec![
                EventTrigger::Error {
                    code: Some("500".into())
                },
                EventTrigger::Compensation
            ]))
        }
    );
    match kind(n, "b1") {
        NodeKind::BoundaryEvent {
            attached_to,
            trigger: EventTrigger::Timer(t),
            interrupting,
        } => {
            assert_eq!(attached_to, "w");
            assert_eq!(t.kind, TimerKind::Date);
            assert_eq!(t.expression.source, "2026-12-01T08:00:00Z");
            assert!(!interrupting);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        kind(n, "l1"),
        &NodeKind::IntermediateCatchEvent {
            trigger: EventTrigger::Link {
                name: Some("page2".into())
            }
        }
    );
    match kind(n, "s3") {
        NodeKind::StartEvent {
            trigger: Some(EventTrigger::Timer(t)),
            ..
        } => assert_eq!(t.kind, TimerKind::Duration),
        other => panic!("{other:?}"),
    }
}

fn task<'a>(nodes: &'a [Node], id: &str) -> &'a Activity<TaskKind> {
    match kind(nodes, id) {
        NodeKind::Task(a) => a,
        other => panic!("{id} is not a task: {other:?}"),
    }
}

#[test]
fn tasks_of_every_kind() {
    let p = parse(
        "process: p
nodes:
  a: { task: {}, next: b }
  b: { service: { handler: h }, next: c }
  c: { service: ~, next: d }
  d:
    script: |
      let x = 1;
      let y = x + 1;
    next: e
  e: { script: { source: \"let z = 3;\", language: rhai }, next: f }
  f: { user: ~, next: g }
  g: { manual: ~, next: h }
  h: { receive: paid, next: i }
  i: { receive: { name: paid, correlation_key: order_id }, next: j }
  j: { send: { message: m, handler: mailer }, next: k }
  k: { send: m2, next: l }
  l: { business_rule: \"let ok = true;\", next: m }
  m: { business_rule: { decision: credit_dmn }, next: n }
  n: { end: ~ }
",
    );
    let n = &p.nodes;
    assert_eq!(task(n, "a").body, TaskKind::Plain);
    assert_eq!(
        task(n, "b").body,
        TaskKind::Service {
            handler: Some("h".into())
        }
    );
    assert_eq!(task(n, "c").body, TaskKind::Service { handler: None });
    assert_eq!(
        task(n, "d").body,
        TaskKind::Script {
            script: Some(Script {
                language: None,
                source: "let x = 1;\nlet y = x + 1;\n".into(),
                span: Span::new(8, 7)
            })
        }
    );
    match &task(n, "e").body {
        TaskKind::Script { script: Some(s) } => {
            assert_eq!(s.language.as_deref(), Some("rhai"));
            assert_eq!(s.source, "let z = 3;");
            assert_eq!(s.span, Span::new(11, 27));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(task(n, "f").body, TaskKind::User);
    assert_eq!(task(n, "g").body, TaskKind::Manual);
    assert_eq!(
        task(n, "h").body,
        TaskKind::Receive {
            message: Some(MessageRef {
                name: Some("paid".into()),
                correlation_key: None
            })
        }
    );
    match &task(n, "i").body {
        TaskKind::Receive { message: Some(m) } => {
            assert_eq!(
                m.correlation_key.as_ref().map(|e| e.source.as_str()),
                Some("order_id")
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        task(n, "j").body,
        TaskKind::Send {
            message: Some("m".into()),
            handler: Some("mailer".into())
        }
    );
    assert_eq!(
        task(n, "k").body,
        TaskKind::Send {
            message: Some("m2".into()),
            handler: None
        }
    );
    match &task(n, "l").body {
        TaskKind::BusinessRule {
            script: Some(s),
            decision_ref: None,
        } => assert_eq!(s.source, "let ok = true;"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        task(n, "m").body,
        TaskKind::BusinessRule {
            script: None,
            decision_ref: Some("credit_dmn".into())
        }
    );
}

#[test]
fn llm_steps_keep_every_setting() {
    let p = parse(
        "process: p
nodes:
  a:
    llm:
      mode: classify
      system: Be brief.
      prompt: \"Classify {text}\"
      labels: [complaint, question]
      output: category
      options: { max_tokens: 8, temperature: 0.0, seed: 7 }
    next: b
  b:
    llm: { mode: extract, prompt: x, schema: { type: object, properties: { city: { type: string } } } }
    next: c
  c: { end: ~ }
",
    );
    match &task(&p.nodes, "a").body {
        TaskKind::Llm(llm) => {
            assert_eq!(llm.mode, LlmMode::Classify);
            assert_eq!(llm.system.as_deref(), Some("Be brief."));
            assert_eq!(llm.prompt, "Classify {text}");
            assert_eq!(llm.labels, ["complaint", "question"]);
            assert_eq!(llm.output.as_deref(), Some("category"));
            assert_eq!(
                serde_json::Value::Object(llm.options.clone()),
                json!({ "max_tokens": 8, "temperature": 0.0, "seed": 7 })
            );
        }
        other => panic!("{other:?}"),
    }
    match &task(&p.nodes, "b").body {
        TaskKind::Llm(llm) => {
            assert_eq!(llm.mode, LlmMode::Extract);
            assert_eq!(
                llm.schema,
                Some(json!({ "type": "object", "properties": { "city": { "type": "string" } } }))
            );
            assert!(llm.output.is_none());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn gateways_branches_and_default_flows() {
    let p = parse(
        "process: p
nodes:
  g1:
    inclusive:
      - { when: a, to: x, name: A }
      - { when: b, to: y }
      - { otherwise: z, id: g1_default }
  g2: { event_based: [x, { to: y, id: g2_y }] }
  g3: { complex: merge, next: z }
  x: { catch: { message: mx }, next: z }
  y: { catch: { signal: sy }, next: [z, { to: g3 }] }
  z: { end: ~ }
  t: { task: ~, next: [{ to: x, when: c > 1 }, { otherwise: y }] }
",
    );
    assert_eq!(
        kind(&p.nodes, "g1"),
        &NodeKind::Gateway(GatewayKind::Inclusive)
    );
    assert_eq!(
        kind(&p.nodes, "g2"),
        &NodeKind::Gateway(GatewayKind::EventBased)
    );
    assert_eq!(
        kind(&p.nodes, "g3"),
        &NodeKind::Gateway(GatewayKind::Complex)
    );
    let g1 = p.nodes.iter().find(|n| n.id == "g1").expect("g1");
    assert_eq!(g1.default_flow.as_deref(), Some("g1_default"));
    let flow = |id: &str| {
        p.flows
            .iter()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("no flow {id}"))
    };
    assert_eq!(flow("g1_to_x").name.as_deref(), Some("A"));
    assert_eq!(
        flow("g1_to_x")
            .condition
            .as_ref()
            .map(|c| c.source.as_str()),
        Some("a")
    );
    assert_eq!(flow("g1_default").target, "z");
    assert!(flow("g1_default").condition.is_none());
    assert_eq!(flow("g2_y").source, "g2");
    assert_eq!(flow("g2_to_x").target, "x");
    assert_eq!(flow("y_to_g3").target, "g3");
    assert_eq!(
        flow("t_to_x").condition.as_ref().map(|c| c.span),
        Some(Span::new(13, 39))
    );
    let t = p.nodes.iter().find(|n| n.id == "t").expect("t");
    assert_eq!(t.default_flow.as_deref(), Some("t_to_y"));
}

#[test]
fn generated_flow_ids_stay_unique() {
    let p = parse(
        "process: p
nodes:
  a: { task: ~, next: [{ to: b, when: x }, b, { otherwise: b }] }
  b: { end: ~ }
",
    );
    let ids: Vec<&str> = p.flows.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["a_to_b", "a_to_b_2", "a_to_b_3"]);
    assert_eq!(p.nodes[0].default_flow.as_deref(), Some("a_to_b_3"));
    // A node may be called like a generated flow id: the flow gets another id.
    let p = parse(
        "process: p
nodes:
  a: { task: ~, next: b }
  b: { task: ~, next: a_to_b }
  a_to_b: { end: ~ }
",
    );
    let ids: Vec<&str> = p.flows.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["a_to_b_2", "b_to_a_to_b"]);
}

#[test]
fn subprocesses_call_activities_and_activity_settings() {
    let p = parse(
        "process: p
nodes:
  sub:
    subprocess:
      transaction: true
      nodes:
        inner_start: { start: ~, next: inner }
        inner:
          subprocess:
            nodes:
              deepest: { end: ~ }
        handler:
          subprocess:
            event: true
            nodes:
              esp_start: { start: { error: E1, interrupting: false }, next: esp_end }
              esp_end: { end: ~ }
    for_each: { over: order_lines, as: line, sequential: true, until: done, collect: r, into: results }
    loop: true
    next: call
  call:
    call: { process: billing }
    retry: { retries: 4, delay: 2s, max_delay: 1m }
    for_each: { count: 3 }
    next: svc
  svc: { service: h, retry: 2, next: fin }
  fin: { end: ~ }
",
    );
    match kind(&p.nodes, "sub") {
        NodeKind::SubProcess(a) => {
            assert!(a.body.transaction && !a.body.event_subprocess);
            assert!(a.standard_loop);
            let mi = a.multi_instance.as_ref().expect("multi-instance");
            assert!(mi.sequential);
            assert_eq!(
                mi.collection.as_ref().map(|e| e.source.as_str()),
                Some("order_lines")
            );
            assert_eq!(mi.element_variable.as_deref(), Some("line"));
            assert_eq!(
                mi.completion_condition.as_ref().map(|e| e.source.as_str()),
                Some("done")
            );
            assert_eq!(mi.output_element.as_deref(), Some("r"));
            assert_eq!(mi.output_collection.as_deref(), Some("results"));
            assert!(mi.cardinality.is_none());
            let ids: Vec<&str> = a.body.nodes.iter().map(|n| n.id.as_str()).collect();
            assert_eq!(ids, ["inner_start", "inner", "handler"]);
            assert_eq!(a.body.flows.len(), 1);
            match kind(&a.body.nodes, "handler") {
                NodeKind::SubProcess(h) => {
                    assert!(h.body.event_subprocess);
                    assert_eq!(
                        kind(&h.body.nodes, "esp_start"),
                        &NodeKind::StartEvent {
                            trigger: Some(EventTrigger::Error {
                                code: Some("E1".into())
                            }),
                            interrupting: false
                        }
                    );
                    assert_eq!(h.body.nodes[0].span, Span::new(16, 15));
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    match kind(&p.nodes, "call") {
        NodeKind::CallActivity(a) => {
            assert_eq!(a.body.called_element.as_deref(), Some("billing"));
            assert_eq!(
                a.retry,
                Some(RetryPolicy {
                    retries: 4,
                    initial_delay_ms: 2_000,
                    max_delay_ms: 60_000
                })
            );
            let mi = a.multi_instance.as_ref().expect("multi-instance");
            assert!(!mi.sequential);
            assert_eq!(
                mi.cardinality.as_ref().map(|e| e.source.as_str()),
                Some("3")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        task(&p.nodes, "svc").retry,
        Some(RetryPolicy {
            retries: 2,
            initial_delay_ms: 1_000,
            max_delay_ms: 60_000
        })
    );
}

#[test]
fn rules_and_lanes() {
    let p = parse(
        "process: p
lanes:
  sales: { name: Sales, nodes: [s, w] }
  back_office: [e]
nodes:
  s:
    start: ~
    rules: [{ on: start, file: defaults.rhai }]
    next: w
  w:
    user: ~
    rules:
      - { on: guard_complete, file: checks/credit.rhai }
      - { on: guard_message, script: \"true\" }
      - { on: guard_variable, variable: amount, script: amount >= 0 }
      - { on: enter, script: \"let a = 1;\" }
      - { on: leave, script: \"let b = 1;\" }
      - { on: variable_change, variable: status, file: status.rhai }
    next: e
  e: { end: ~ }
",
    );
    let s = &p.nodes[0];
    assert_eq!(
        s.rules,
        vec![RuleAttachment {
            point: AttachPoint::OnStart,
            rule: RuleSource::File("defaults.rhai".into()),
            span: Span::new(8, 13)
        }]
    );
    let w = &p.nodes[1];
    let points: Vec<&AttachPoint> = w.rules.iter().map(|r| &r.point).collect();
    assert_eq!(
        points,
        [
            &AttachPoint::GuardComplete,
            &AttachPoint::GuardMessage,
            &AttachPoint::GuardVariable("amount".into()),
            &AttachPoint::OnEnter,
            &AttachPoint::OnLeave,
            &AttachPoint::OnVariableChange("status".into()),
        ]
    );
    assert_eq!(
        w.rules[0].rule,
        RuleSource::File("checks/credit.rhai".into())
    );
    assert_eq!(w.rules[2].rule, RuleSource::Inline("amount >= 0".into()));
    assert_eq!(w.rules[0].span, Span::new(13, 7));
    assert_eq!(
        p.lanes,
        vec![
            Lane {
                id: "sales".into(),
                name: Some("Sales".into()),
                nodes: vec!["s".into(), "w".into()]
            },
            Lane {
                id: "back_office".into(),
                name: None,
                nodes: vec!["e".into()]
            },
        ]
    );
}

#[test]
fn a_timer_names_its_business_time_zone() {
    let p = parse(
        "process: p
nodes:
  s: { start: { timer: { cycle: 0 18 * * *, time_zone: Asia/Shanghai } }, next: e }
  e: { end: ~ }
",
    );
    match kind(&p.nodes, "s") {
        NodeKind::StartEvent {
            trigger: Some(EventTrigger::Timer(timer)),
            ..
        } => {
            assert_eq!(timer.time_zone.as_deref(), Some("Asia/Shanghai"))
        }
        other => panic!("{other:?}"),
    }
    let (_, diagnostics) = parse_yaml(
        Path::new("c.yaml"),
        "process: p\nnodes:\n  s: { start: { timer: { cycle: 0 18 * * *, time_zone: Mars/Base } }, next: e }\n  e: { end: ~ }\n",
    );
    let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        text.len() == 1 && text[0].starts_with("c.yaml:3:") && text[0].contains("Mars/Base"),
        "{text:?}"
    );
}
