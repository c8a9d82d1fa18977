use std::time::Instant;
fn main() {
    let files: Vec<(std::path::PathBuf, Vec<u8>)> = std::env::args().skip(1).map(|p| (p.clone().into(), std::fs::read(&p).unwrap())).collect();
    let bytes: usize = files.iter().map(|f| f.1.len()).sum();
    let t = Instant::now();
    let rounds = 20;
    for _ in 0..rounds { for (p, b) in &files { let _ = flowbot_engine::bpmn::parse_bpmn(p, b); } }
    let e = t.elapsed();
    println!("{} files, {} bytes, {:?}/round, {:.1} MB/s", files.len(), bytes, e / rounds, (bytes * rounds as usize) as f64 / e.as_secs_f64() / 1e6);
    let mut big = String::from(r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d"><bpmn:process id="p">"#);
    let mut i = 0; while big.len() < 15_000_000 { big.push_str(&format!("<bpmn:task id=\"t{i}\" name=\"Task {i}\" />\n<bpmn:sequenceFlow id=\"f{i}\" sourceRef=\"t{i}\" targetRef=\"t{}\" />\n", i+1)); i += 1; }
    big.push_str("</bpmn:process></bpmn:definitions>");
    let t = Instant::now(); let (d, diags) = flowbot_engine::bpmn::parse_bpmn(std::path::Path::new("big"), big.as_bytes());
    println!("big: {} bytes, {} nodes, {} diags, {:?}", big.len(), d.unwrap().processes[0].nodes.len(), diags.len(), t.elapsed());
    let order = std::fs::read("workflows/order_processing.bpmn").unwrap();
    let t = Instant::now(); for _ in 0..1000 { let _ = flowbot_engine::bpmn::parse_bpmn(std::path::Path::new("o"), &order); }
    println!("order_processing.bpmn: {:?} per parse", t.elapsed() / 1000);
}
