//! Times one quantized matrix product on the fast backend's kernels: random weights of a format,
//! `tokens` activation rows, on a pool of `threads`, both row walks for fewer than four tokens.
//!
//! Usage: `cargo run --release -p flowbot-model-runtime --example kernel_bench -- FORMAT ROWS COLS
//! TOKENS [THREADS]` with FORMAT one of q4_0 q4_1 q5_0 q8_0 q4_k q5_k q6_k. A matrix larger than
//! the caches (e.g. `q8_0 262144 640 1`, Gemma 3's output projection) shows the memory side.
use std::process::exit;
use std::time::Instant;

use flowbot_model_runtime::fast::kernels::{Kernels, QActs, QFormat, QMatrix, RowWalk};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let format = args.first().and_then(|name| {
        QFormat::ALL
            .into_iter()
            .find(|f| format!("{f:?}").eq_ignore_ascii_case(name))
    });
    let numbers: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (Some(format), [rows, cols, tokens, rest @ ..]) = (format, numbers.as_slice()) else {
        eprintln!("usage: kernel_bench FORMAT ROWS COLS TOKENS [THREADS]");
        exit(2);
    };
    let (rows, cols, tokens) = (*rows, *cols, (*tokens).max(1));
    let threads = rest.first().copied().unwrap_or(1);
    if cols % format.block_values() != 0 {
        eprintln!(
            "{format:?} needs a multiple of {} columns",
            format.block_values()
        );
        exit(2);
    }
    let raw = random_blocks(format, rows * cols / format.block_values());
    let matrix = QMatrix::from_gguf(format, rows, cols, &raw).expect("valid sizes");
    let x: Vec<f32> = (0..tokens * cols)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut acts = QActs::new();
    acts.quantize(&x, tokens, cols);
    let mut out = vec![0f32; tokens * rows];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let walks: &[RowWalk] = if tokens < 4 {
        &[RowWalk::Four, RowWalk::Single]
    } else {
        &[RowWalk::Four]
    };
    for &walk in walks {
        let kernels = Kernels::best().with_walk(walk);
        pool.install(|| kernels.matmul(&matrix, &acts, &mut out, rows));
        let reps = 20;
        let started = Instant::now();
        for _ in 0..reps {
            pool.install(|| kernels.matmul(&matrix, &acts, &mut out, rows));
        }
        let seconds = started.elapsed().as_secs_f64() / reps as f64;
        println!(
            "{format:?} {rows}x{cols}, {tokens} tokens, {threads} threads{}: {:.3} ms, {:.1} GB/s of weights, {:.1} GMAC/s",
            if walks.len() > 1 { format!(", {walk:?} walk") } else { String::new() },
            seconds * 1e3,
            matrix.size_bytes() as f64 / seconds / 1e9,
            (rows * cols * tokens) as f64 / seconds / 1e9,
        );
    }
}

/// `blocks` blocks of `format` with random bytes and small finite f16 scales.
fn random_blocks(format: QFormat, blocks: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut raw: Vec<u8> = (0..blocks * format.block_bytes())
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect();
    // Every f16 in a block may be a scale: keep each one's exponent small.
    for pair in raw.chunks_exact_mut(2) {
        pair[1] &= 0x3b;
    }
    raw
}
