use std::time::Instant;
fn main() {
    let p = std::env::args().nth(1).unwrap();
    let text = std::fs::read(&p).unwrap();
    let n = 5000;
    let t = Instant::now();
    for _ in 0..n { let (d, _) = flowbot_engine::bpmn::parse_bpmn(std::path::Path::new(&p), &text); std::hint::black_box(d); }
    println!("{p}: {} bytes, {:?} per parse", text.len(), t.elapsed() / n);
}
