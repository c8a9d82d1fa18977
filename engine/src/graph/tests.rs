use super::*;
use crate::model::{NodeKind, SequenceFlow};
use crate::testkit::*;

fn check(defs: &Definitions) -> (Option<CompiledProcess>, Vec<String>) {
    let (process, diagnostics) = compile(defs, None, &Arc::new(ScriptRuntime::default()));
    (
        process,
        diagnostics.iter().map(ToString::to_string).collect(),
    )
}

fn simple() -> Scope {
    Scope::default()
        .node("s", start())
        .node("t", task())
        .node("e", end())
        .chain(&["s", "t", "e"])
}

#[test]
fn compiles_a_valid_process_without_diagnostics() {
    let (process, diagnostics) = check(&simple().definitions());
    assert_eq!(diagnostics, Vec::<String>::new());
    let process = process.unwrap();
    assert_eq!(process.graph.node_count(), 3);
    assert_eq!(process.graph.edge_count(), 2);
    assert_eq!(
        process.scopes[0].starts,
        vec![process.node_index("s").unwrap()]
    );
}

#[test]
fn reports_every_structural_problem_in_one_pass() {
    let mut defs = Scope::default()
        .node("s", start())
        .node("t", task())
        .node("t", task())
        .node("lonely", task())
        .node("e", end())
        .chain(&["s", "t", "e"])
        .flow("t", "nowhere")
        .definitions();
    defs.processes[0].nodes[0].default_flow = Some("missing_flow".into());
    let (process, diagnostics) = check(&defs);
    assert!(process.is_none());
    let expected = [
        "test.bpmn:1:3: error: default flow `missing_flow` of `s` is not one of its outgoing flows [s]",
        "test.bpmn:3:3: error: duplicate id `t` (first defined at 2:3) [t]",
        "test.bpmn:4:3: error: task `lonely` cannot be reached from any start event [lonely]",
        "test.bpmn:4:3: warning: task `lonely` has no outgoing flow: its tokens end there [lonely]",
        "test.bpmn:8:3: error: sequence flow `t_nowhere` has unknown target `nowhere` [t_nowhere]",
    ];
    assert_eq!(diagnostics, expected);
}

#[test]
fn missing_start_event_is_an_error() {
    let defs = Scope::default()
        .node("t", task())
        .node("e", end())
        .chain(&["t", "e"])
        .definitions();
    let (process, diagnostics) = check(&defs);
    assert!(process.is_none());
    assert!(
        diagnostics
            .iter()
            .any(|d| d.contains("error: process `p` has no start event")),
        "{diagnostics:?}"
    );
}

#[test]
fn script_and_condition_errors_point_inside_the_file() {
    let defs = Scope::default()
        .node("s", start())
        .node("sc", script("let a = 1;\nlet b = ;"))
        .node("g", xor())
        .node("e", end())
        .chain(&["s", "sc", "g"])
        .cond("g", "e", "amount >")
        .definitions();
    let (process, diagnostics) = check(&defs);
    assert!(process.is_none());
    // The script starts at 50:5; its error is on its second line, column 9.
    assert!(
        diagnostics
            .iter()
            .any(|d| d.starts_with("test.bpmn:51:9: error: script sc is not valid Rhai")),
        "{diagnostics:?}"
    );
    // The condition starts at 7:13 (flow line 7, col 3 + 10); the error is at its end.
    assert!(
        diagnostics.iter().any(|d| d.starts_with("test.bpmn:7:")
            && d.contains("condition of flow g_e is not valid Rhai")),
        "{diagnostics:?}"
    );
}

#[test]
fn foreign_script_languages_are_rejected_by_name() {
    let defs = Scope::default()
        .node("s", start())
        .node("py", script_in(Some("python"), "x = 1"))
        .node("rh", script_in(Some("rhai"), "let x = 1;"))
        .node("e", end())
        .chain(&["s", "py", "rh", "e"])
        .definitions();
    let (_, diagnostics) = check(&defs);
    assert_eq!(
        diagnostics,
        ["test.bpmn:50:5: error: not Rhai: python script in py [py]"]
    );
}

#[test]
fn python_written_as_rhai_is_refused_where_it_is() {
    let defs = Scope::default()
        .node("s", start())
        .node("py", script("done = 1;\nflag = True"))
        .node("e", end())
        .chain(&["s", "py", "e"])
        .definitions();
    let (process, diagnostics) = check(&defs);
    assert!(process.is_none());
    assert_eq!(
        diagnostics,
        ["test.bpmn:51:8: error: script py is not Rhai: `True` is Python; Rhai writes `true` [py]"]
    );
}

#[test]
fn bpmn_engine_javascript_context_is_refused_where_it_is() {
    let defs = Scope::default()
        .node("s", start())
        .node("js", script("total = 1;\nlimit = variables.limit"))
        .node("e", end())
        .chain(&["s", "js", "e"])
        .definitions();
    let (process, diagnostics) = check(&defs);
    assert!(process.is_none());
    assert_eq!(
        diagnostics,
        ["test.bpmn:51:18: error: script js is not Rhai: `variables.limit` reads bpmn-engine's JavaScript context; write `limit` [js]"]
    );
}

#[test]
fn gateway_problems_are_reported() {
    let defs = Scope::default()
        .node("s", start())
        .node("g", xor())
        .node("a", task())
        .node("b", task())
        .node("p", and())
        .node("dead", xor())
        .node("e", end())
        .flow("s", "g")
        .cond("g", "a", "x > 1")
        .cond("g", "b", "x < 0")
        .chain(&["a", "p", "e"])
        .cond("b", "dead", "true")
        .definitions();
    let (process, diagnostics) = check(&defs);
    assert!(process.is_none(), "{diagnostics:?}");
    assert!(
        diagnostics
            .iter()
            .any(|d| d.contains("warning: exclusiveGateway `g` has no default flow")),
        "{diagnostics:?}"
    );
    assert!(
        diagnostics
            .iter()
            .any(|d| d.contains("parallelGateway `p` neither splits nor joins")),
        "{diagnostics:?}"
    );
    assert!(
        diagnostics
            .iter()
            .any(|d| d.contains("error: exclusiveGateway `dead` has no outgoing flow")),
        "{diagnostics:?}"
    );
}

#[test]
fn complementary_conditions_count_as_complete() {
    let defs = Scope::default()
        .node("s", start())
        .node("g", xor())
        .node("e1", end())
        .node("e2", end())
        .flow("s", "g")
        .cond("g", "e1", "amount > 100")
        .cond("g", "e2", "amount <= 100")
        .definitions();
    let (process, diagnostics) = check(&defs);
    assert!(process.is_some());
    assert_eq!(diagnostics, Vec::<String>::new());
}

#[test]
fn endless_loops_are_warnings() {
    let defs = Scope::default()
        .node("s", start())
        .node("a", task())
        .node("b", task())
        .chain(&["s", "a", "b", "a"])
        .definitions();
    let (process, diagnostics) = check(&defs);
    assert!(process.is_some());
    assert!(
        diagnostics
            .iter()
            .any(|d| d.contains("warning: no end event can be reached from `a`")),
        "{diagnostics:?}"
    );
}

#[test]
fn unsupported_elements_are_warnings_listed_for_the_executor() {
    let defs = Scope::default()
        .node("s", start())
        .node("g", {
            let mut sub = Scope::at_line(20)
                .node("is", start())
                .node("ie", end())
                .chain(&["is", "ie"])
                .subprocess();
            if let crate::model::NodeKind::SubProcess(activity) = &mut sub {
                activity.multi_instance = Some(crate::model::MultiInstance {
                    sequential: false,
                    collection: None,
                    element_variable: None,
                    cardinality: Some(crate::model::Expr {
                        language: None,
                        source: "2".into(),
                        span: crate::model::Span::new(2, 9),
                    }),
                    completion_condition: None,
                    output_collection: None,
                    output_element: None,
                });
            }
            sub
        })
        .node("e", end())
        .chain(&["s", "g", "e"])
        .definitions();
    let (process, diagnostics) = check(&defs);
    assert_eq!(
        diagnostics,
        ["test.bpmn:2:3: warning: not supported yet: multi-instance subProcess g [g]"]
    );
    assert_eq!(process.unwrap().unsupported.len(), 1);
}

#[test]
fn subprocesses_are_flattened_with_scopes() {
    let inner = Scope::at_line(20)
        .node("is", start())
        .node("ie", end())
        .chain(&["is", "ie"]);
    let mut defs = Scope::default()
        .node("s", start())
        .node("sub", inner.subprocess())
        .node("e", end())
        .chain(&["s", "sub", "e"])
        .definitions();
    let (process, diagnostics) = check(&defs);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let process = process.unwrap();
    assert_eq!(process.scopes.len(), 2);
    assert_eq!(process.node(process.node_index("ie").unwrap()).scope, 1);
    assert!(to_dot(&process).contains("subgraph \"cluster_sub\""));
    assert!(to_mermaid(&process).contains("subgraph sub"));

    // A flow from the outer scope into the subprocess is refused.
    defs.processes[0].flows.push(SequenceFlow {
        id: "cross".into(),
        name: None,
        source: "s".into(),
        target: "ie".into(),
        condition: None,
        span: Span::new(30, 1),
    });
    let (_, diagnostics) = check(&defs);
    assert!(
        diagnostics
            .iter()
            .any(|d| d.contains("cannot cross a subprocess boundary")),
        "{diagnostics:?}"
    );
}

#[test]
fn picks_named_or_first_executable_process() {
    let mut defs = simple().definitions();
    let mut second = defs.processes[0].clone();
    second.id = "q".into();
    defs.processes[0].executable = false;
    for node in &mut second.nodes {
        node.id = format!("q_{}", node.id);
    }
    for flow in &mut second.flows {
        flow.id = format!("q_{}", flow.id);
        flow.source = format!("q_{}", flow.source);
        flow.target = format!("q_{}", flow.target);
    }
    defs.processes.push(second);
    let rt = Arc::new(ScriptRuntime::default());
    assert_eq!(compile(&defs, None, &rt).0.unwrap().id, "q");
    assert_eq!(compile(&defs, Some("p"), &rt).0.unwrap().id, "p");
    let (none, diagnostics) = compile(&defs, Some("zzz"), &rt);
    assert!(none.is_none());
    assert!(diagnostics[0].message.contains("no process `zzz`"));
}

#[test]
fn dot_and_mermaid_show_nodes_and_labelled_flows() {
    let defs = Scope::default()
        .node("s", start())
        .node_with_default("g", xor(), "g_b")
        .node("a", task())
        .node("b", task())
        .flow("s", "g")
        .cond("g", "a", "x > 1")
        .flow("g", "b")
        .definitions();
    let process = check(&defs).0.unwrap();
    let dot = to_dot(&process);
    assert!(dot.starts_with("digraph \"p\" {"), "{dot}");
    assert!(dot.contains("\"g\" [shape=diamond, label=\"g\"];"), "{dot}");
    assert!(dot.contains("\"g\" -> \"a\" [label=\"x > 1\"];"), "{dot}");
    let mermaid = to_mermaid(&process);
    assert!(mermaid.contains("  g{\"g\"}"), "{mermaid}");
    assert!(mermaid.contains("g -->|\"x > 1\"| a"), "{mermaid}");
}

#[test]
fn boundary_and_event_gateway_mistakes_are_errors() {
    use crate::model::{EventTrigger, GatewayKind};
    let defs = Scope::default()
        .node("s", start())
        .node("g", NodeKind::Gateway(GatewayKind::EventBased))
        .node("t", task())
        .node("u", user())
        .node(
            "b",
            NodeKind::BoundaryEvent {
                attached_to: "g".into(),
                trigger: EventTrigger::Error { code: None },
                interrupting: true,
            },
        )
        .node(
            "lost",
            NodeKind::BoundaryEvent {
                attached_to: "zz".into(),
                trigger: EventTrigger::Error { code: None },
                interrupting: true,
            },
        )
        .node("e", end())
        .chain(&["s", "g", "t", "e"])
        .chain(&["g", "u", "e"])
        .definitions();
    let (process, diagnostics) = check(&defs);
    assert!(process.is_none());
    let expected_parts = [
        "error: event-based gateway `g` leads to task `t`: only timer, message and signal catch events and receive tasks can follow it",
        "error: event-based gateway `g` leads to userTask `u`",
        "error: boundary event `b` is attached to `g`, which is not an activity [b]",
        "error: boundary event `lost` is attached to unknown activity `zz` [lost]",
    ];
    for part in expected_parts {
        assert!(
            diagnostics.iter().any(|d| d.contains(part)),
            "{part}\n{diagnostics:#?}"
        );
    }
}

#[test]
fn multi_instance_tasks_compile_and_need_items() {
    use crate::model::{Activity, Expr, MultiInstance, TaskKind};
    let mi = |collection: Option<&str>| {
        let mut activity = Activity::new(TaskKind::User);
        activity.multi_instance = Some(MultiInstance {
            sequential: false,
            collection: collection.map(|c| Expr {
                language: None,
                source: c.into(),
                span: Span::new(40, 1),
            }),
            element_variable: None,
            cardinality: None,
            completion_condition: None,
            output_collection: None,
            output_element: None,
        });
        NodeKind::Task(activity)
    };
    let with_items = Scope::default()
        .node("s", start())
        .node("m", mi(Some("lines")))
        .node("e", end())
        .chain(&["s", "m", "e"]);
    let (process, diagnostics) = check(&with_items.definitions());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let process = process.unwrap();
    assert!(process
        .node(process.node_index("m").unwrap())
        .multi
        .is_some());

    let without = Scope::default()
        .node("s", start())
        .node("m", mi(None))
        .node("e", end())
        .chain(&["s", "m", "e"]);
    let (process, diagnostics) = check(&without.definitions());
    assert_eq!(
        diagnostics,
        ["test.bpmn:2:3: warning: not supported yet: multi-instance userTask without a collection or cardinality m [m]"]
    );
    assert_eq!(process.unwrap().unsupported.len(), 1);
}
