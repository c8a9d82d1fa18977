//! The fast backend on the real default model against the llama.cpp reference output.

mod support;

use flowbot_model_runtime::fast::{FastLlama, FastOptions};
use flowbot_model_runtime::lm::CausalLm;

#[test]
fn print_ids() {
    let path = support::default_model();
    let tok = support::gguf_tokenizer(&path);
    let enc = tok.encode(support::reference_prompt(), false).unwrap();
    println!("{:?} {}", enc.get_ids(), enc.get_ids().len());
    let mut lm = FastLlama::load(&path, &FastOptions::default()).unwrap();
    let mut logits = lm.forward(enc.get_ids(), 0).unwrap();
    let mut out = vec![];
    for _ in 0..20 {
        let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        out.push(next);
        logits = lm.forward(&[next], lm.cached_len()).unwrap();
    }
    println!("{out:?}");
}

#[test]
fn compare_candle() {
    use candle_core::{Device, Tensor};
    use candle_transformers::models::quantized_llama::ModelWeights;
    let path = support::default_model();
    let tok = support::gguf_tokenizer(&path);
    let ids = tok.encode(support::reference_prompt(), false).unwrap().get_ids().to_vec();
    let mut f = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let mut cm = ModelWeights::from_gguf(content, &mut f, &Device::Cpu).unwrap();
    let mut lm = FastLlama::load(&path, &FastOptions::default()).unwrap();
    let gen = [504u32, 7742, 553, 8885, 260, 216, 33, 34];
    let mut seq = ids.clone();
    for step in 0..6 {
        let (toks, start) = if step == 0 { (seq.clone(), 0) } else { (vec![*seq.last().unwrap()], seq.len() - 1) };
        let input = Tensor::new(toks.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let cl: Vec<f32> = cm.forward(&input, start).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        let fl = lm.forward(&toks, start).unwrap();
        let maxdiff = cl.iter().zip(&fl).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let top = |l: &[f32]| { let mut v: Vec<(usize, f32)> = l.iter().copied().enumerate().collect(); v.sort_by(|a, b| b.1.total_cmp(&a.1)); v[..3].to_vec() };
        println!("step {step}: maxdiff {maxdiff} candle {:?} fast {:?}", top(&cl), top(&fl));
        seq.push(gen[step]);
    }
}

#[test]
fn compare_isas() {
    use flowbot_model_runtime::fast::Isa;
    let path = support::default_model();
    let tok = support::gguf_tokenizer(&path);
    let ids = tok.encode(support::reference_prompt(), false).unwrap().get_ids().to_vec();
    let mut outs = vec![];
    for isa in Isa::available() {
        let mut lm = FastLlama::load(&path, &FastOptions { threads: None, isa: Some(isa) }).unwrap();
        let first = lm.forward(&ids, 0).unwrap();
        let mut logits = first.clone();
        let mut out = vec![];
        for _ in 0..20 {
            let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
            out.push(next);
            logits = lm.forward(&[next], lm.cached_len()).unwrap();
        }
        println!("{isa:?} {out:?}");
        outs.push((isa, first));
    }
    for (isa, l) in &outs {
        let maxdiff = l.iter().zip(&outs[0].1).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("{isa:?} maxdiff vs scalar {maxdiff}");
    }
}
