use flowbot_engine::model::*;
use std::collections::BTreeMap;
fn walk(nodes: &[Node], flows: &[SequenceFlow], c: &mut BTreeMap<String, usize>) {
    for f in flows { if f.condition.is_some() { *c.entry("conditionalFlow".into()).or_default() += 1; } }
    for n in nodes {
        if n.default_flow.is_some() { *c.entry("default".into()).or_default() += 1; }
        let k = match &n.kind {
            NodeKind::StartEvent{..} => "startEvent".to_string(),
            NodeKind::EndEvent{..} => "endEvent".into(),
            NodeKind::BoundaryEvent{..} => "boundary".into(),
            NodeKind::IntermediateCatchEvent{..} => "catch".into(),
            NodeKind::IntermediateThrowEvent{..} => "throw".into(),
            NodeKind::Task(a) => { if a.multi_instance.is_some() { *c.entry("mi".into()).or_default() += 1; } if a.standard_loop { *c.entry("loop".into()).or_default() += 1; } format!("{:?}", a.body).split(|ch: char| !ch.is_alphanumeric()).next().unwrap().to_string() }
            NodeKind::Gateway(g) => format!("{g:?}"),
            NodeKind::SubProcess(s) => { if s.multi_instance.is_some() { *c.entry("mi".into()).or_default() += 1; } walk(&s.body.nodes, &s.body.flows, c); if s.body.event_subprocess {"eventSub".into()} else if s.body.transaction {"tx".into()} else {"sub".into()} }
            NodeKind::CallActivity(a) => { if a.multi_instance.is_some() { *c.entry("mi".into()).or_default() += 1; } "call".into() }
        };
        *c.entry(k).or_default() += 1;
    }
}
fn main() {
    let mut c = BTreeMap::new();
    for p in std::env::args().skip(1) {
        let (d, diags) = flowbot_engine::bpmn::parse_bpmn_file(std::path::Path::new(&p));
        for d in diags { if std::env::var_os("DIAG").is_some() { println!("{d}"); } }
        if let Some(d) = d { for pr in &d.processes { *c.entry("lanes".into()).or_default() += pr.lanes.len(); walk(&pr.nodes, &pr.flows, &mut c); } }
    }
    println!("{c:?}");
}
