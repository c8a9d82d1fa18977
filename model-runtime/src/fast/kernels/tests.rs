//! Property tests: every instruction set against the scalar reference, and the reference against
//! ground truth computed from candle's own dequantization of the GGUF block bytes, over random
//! blocks of every format.

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
use candle_core::Device;
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn ggml_dtype(format: QFormat) -> GgmlDType {
    match format {
        QFormat::Q4_0 => GgmlDType::Q4_0,
        QFormat::Q4_1 => GgmlDType::Q4_1,
        QFormat::Q5_0 => GgmlDType::Q5_0,
        QFormat::Q8_0 => GgmlDType::Q8_0,
        QFormat::Q4_K => GgmlDType::Q4K,
        QFormat::Q5_K => GgmlDType::Q5K,
        QFormat::Q6_K => GgmlDType::Q6K,
    }
}

fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

/// A random GGUF tensor (`rows` x `cols`) in `format`. With `integer_scales`, every scale and
/// minimum is a small integer, so that every value and every product is an exact integer in f32.
fn random_gguf(
    rng: &mut StdRng,
    format: QFormat,
    rows: usize,
    cols: usize,
    integer_scales: bool,
) -> Vec<u8> {
    let scale = |rng: &mut StdRng, max_int: i32, range: f32| {
        if integer_scales {
            f16_bytes(rng.gen_range(1..=max_int) as f32)
        } else {
            f16_bytes(rng.gen_range(range / 50.0..range))
        }
    };
    let mut raw = Vec::new();
    for _ in 0..rows * cols / format.block_values() {
        let bytes =
            |rng: &mut StdRng, n: usize| (0..n).map(|_| rng.gen::<u8>()).collect::<Vec<_>>();
        match format {
            QFormat::Q4_0 | QFormat::Q5_0 | QFormat::Q8_0 => {
                raw.extend(scale(rng, 4, 0.05));
                let rest = format.block_bytes() - 2;
                raw.extend(bytes(rng, rest));
            }
            QFormat::Q4_1 => {
                raw.extend(scale(rng, 4, 0.05));
                let m = if integer_scales {
                    rng.gen_range(-8..=8) as f32
                } else {
                    rng.gen_range(-0.5f32..0.5)
                };
                raw.extend(f16_bytes(m));
                raw.extend(bytes(rng, 16));
            }
            QFormat::Q4_K | QFormat::Q5_K => {
                raw.extend(scale(rng, 1, 0.005));
                raw.extend(scale(rng, 1, 0.005));
                // Small sub-block scales and minimums keep integer sums exact in f32.
                let packed = bytes(rng, 12);
                raw.extend(
                    packed
                        .iter()
                        .map(|b| if integer_scales { b & 0x43 } else { *b }),
                );
                raw.extend(bytes(rng, format.block_bytes() - 16));
            }
            QFormat::Q6_K => {
                raw.extend(bytes(rng, 192));
                let limit = if integer_scales { 4 } else { 127 };
                raw.extend((0..16).map(|_| rng.gen_range(-limit..=limit) as i8 as u8));
                raw.extend(scale(rng, 1, 0.005));
            }
        }
    }
    raw
}

/// The tensor's values as candle decodes them (an implementation independent of ours).
fn candle_values(format: QFormat, raw: &[u8], rows: usize, cols: usize) -> Vec<f32> {
    qtensor_from_ggml(ggml_dtype(format), raw, vec![rows, cols], &Device::Cpu)
        .and_then(|t| t.dequantize(&Device::Cpu))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .unwrap()
}

/// The values an activation row stands for in the form `format` uses.
fn activation_values(format: QFormat, acts: &QActs, t: usize) -> Vec<f64> {
    let row = acts.row(t);
    (0..acts.cols())
        .map(|i| {
            if format.is_k_quant() {
                let b = i / SUPER_BLOCK;
                row.kd[b] as f64 * row.kqs[i] as f64
            } else {
                let b = i / BLOCK;
                row.d[b] as f64 * row.qs[act_offset(b, i % BLOCK)] as f64
            }
        })
        .collect()
}

/// Integer activations with 127 in every block of 32, so that both quantizations have scale
/// exactly 1 (or -1 for Q8_K) and block sums small enough to be exact at f16 precision.
fn unit_scale_activations(rng: &mut StdRng, rows: usize, cols: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..rows * cols)
        .map(|_| rng.gen_range(-60..=60) as f32)
        .collect();
    for block in x.chunks_mut(BLOCK) {
        let at = rng.gen_range(0..BLOCK);
        block[at] = if rng.gen() { 127.0 } else { -127.0 };
    }
    x
}

/// Row lengths that exercise every short final group and several whole ones.
fn lengths(format: QFormat) -> Vec<usize> {
    if format.is_k_quant() {
        vec![256, 512, 768, 1536, 2560]
    } else {
        (1..=12)
            .map(|nb| nb * BLOCK)
            .chain([576, 1536, 608])
            .collect()
    }
}

#[test]
fn every_isa_is_exact_on_integer_data() {
    let mut rng = StdRng::seed_from_u64(7);
    for format in QFormat::ALL {
        for cols in lengths(format).into_iter().filter(|&c| c <= 512) {
            let rows = 5;
            let raw = random_gguf(&mut rng, format, rows, cols, true);
            let matrix = QMatrix::from_gguf(format, rows, cols, &raw).unwrap();
            let values = candle_values(format, &raw, rows, cols);
            let x = unit_scale_activations(&mut rng, 3, cols);
            let mut acts = QActs::new();
            acts.quantize(&x, 3, cols);
            for r in 0..rows {
                for t in 0..3 {
                    let exact: i64 = values[r * cols..(r + 1) * cols]
                        .iter()
                        .zip(&x[t * cols..(t + 1) * cols])
                        .map(|(&w, &a)| w as i64 * a as i64)
                        .sum();
                    for isa in Isa::available() {
                        let got = Kernels::new(isa).unwrap().dot(&matrix, r, acts.row(t));
                        assert_eq!(
                            got, exact as f32,
                            "{format:?} {isa:?} cols={cols} row={r} token={t}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_reference_equals_the_dot_of_the_decoded_values() {
    let mut rng = StdRng::seed_from_u64(17);
    let reference = Kernels::new(Isa::Scalar).unwrap();
    // Q4_1's minimum term multiplies the block sum rounded to f16 (ggml's Q8_1 design), so its
    // result is not the plain dot of the decoded values; the integer test covers it exactly.
    for format in QFormat::ALL.into_iter().filter(|&f| f != QFormat::Q4_1) {
        for cols in lengths(format) {
            let rows = 3;
            let raw = random_gguf(&mut rng, format, rows, cols, false);
            let matrix = QMatrix::from_gguf(format, rows, cols, &raw).unwrap();
            let values = candle_values(format, &raw, rows, cols);
            let x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
            let mut acts = QActs::new();
            acts.quantize(&x, 1, cols);
            let a = activation_values(format, &acts, 0);
            for r in 0..rows {
                let w = &values[r * cols..(r + 1) * cols];
                let want: f64 = w.iter().zip(&a).map(|(&w, &a)| w as f64 * a).sum();
                let magnitude: f64 = w.iter().zip(&a).map(|(&w, &a)| (w as f64 * a).abs()).sum();
                let got = reference.dot(&matrix, r, acts.row(0)) as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * magnitude.max(1e-3),
                    "{format:?} cols={cols}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn every_isa_matches_the_reference_on_random_data() {
    let mut rng = StdRng::seed_from_u64(11);
    let reference = Kernels::new(Isa::Scalar).unwrap();
    for format in QFormat::ALL {
        for cols in lengths(format) {
            let rows = 9;
            let raw = random_gguf(&mut rng, format, rows, cols, false);
            let matrix = QMatrix::from_gguf(format, rows, cols, &raw).unwrap();
            let values = candle_values(format, &raw, rows, cols);
            let x: Vec<f32> = (0..2 * cols).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
            let mut acts = QActs::new();
            acts.quantize(&x, 2, cols);
            for r in 0..rows {
                for t in 0..2 {
                    // Bound on the magnitude of the summed terms, for a relative tolerance.
                    let magnitude: f32 = values[r * cols..(r + 1) * cols]
                        .iter()
                        .zip(&x[t * cols..(t + 1) * cols])
                        .map(|(&w, &a)| w.abs() * a.abs())
                        .sum();
                    let want = reference.dot(&matrix, r, acts.row(t));
                    for isa in Isa::available() {
                        let got = Kernels::new(isa).unwrap().dot(&matrix, r, acts.row(t));
                        assert!(
                            (got - want).abs() <= 1e-5 * magnitude.max(1.0),
                            "{format:?} {isa:?} cols={cols}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn quantized_dot_approximates_the_float_dot() {
    let mut rng = StdRng::seed_from_u64(3);
    for format in QFormat::ALL {
        let (rows, cols) = (4, 1536);
        let raw = random_gguf(&mut rng, format, rows, cols, false);
        let matrix = QMatrix::from_gguf(format, rows, cols, &raw).unwrap();
        let values = candle_values(format, &raw, rows, cols);
        let x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut acts = QActs::new();
        acts.quantize(&x, 1, cols);
        for r in 0..rows {
            let w = &values[r * cols..(r + 1) * cols];
            let float: f32 = w.iter().zip(&x).map(|(&w, &a)| w * a).sum();
            let scale: f32 = w.iter().zip(&x).map(|(&w, &a)| (w * a).abs()).sum();
            let got = Kernels::best().dot(&matrix, r, acts.row(0));
            assert!(
                (got - float).abs() < 0.02 * scale,
                "{format:?}: {got} vs {float}"
            );
        }
    }
}

#[test]
fn dot4_and_dot_rows4_equal_single_dots() {
    let mut rng = StdRng::seed_from_u64(5);
    for format in QFormat::ALL {
        for cols in [256, 576, 1536] {
            if cols % format.block_values() != 0 {
                continue;
            }
            let raw = random_gguf(&mut rng, format, 4, cols, false);
            let matrix = QMatrix::from_gguf(format, 4, cols, &raw).unwrap();
            let x: Vec<f32> = (0..4 * cols).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
            let mut acts = QActs::new();
            acts.quantize(&x, 4, cols);
            for isa in Isa::available() {
                let k = Kernels::new(isa).unwrap();
                let rows = k.dot_rows4(&matrix, 0, acts.row(1));
                for (i, v) in rows.into_iter().enumerate() {
                    assert_eq!(
                        v,
                        k.dot(&matrix, i, acts.row(1)),
                        "{format:?} {isa:?} cols={cols} rows4"
                    );
                }
                for r in 0..3 {
                    let four = k.dot4(
                        &matrix,
                        r,
                        [acts.row(0), acts.row(1), acts.row(2), acts.row(3)],
                    );
                    for (t, v) in four.into_iter().enumerate() {
                        assert_eq!(
                            v,
                            k.dot(&matrix, r, acts.row(t)),
                            "{format:?} {isa:?} cols={cols}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_fills_every_cell() {
    let mut rng = StdRng::seed_from_u64(9);
    for format in QFormat::ALL {
        // Prompt shapes (2 x 4 tiles, eight-token K-quant rows, the leftover rows and tokens;
        // a short last group at 576 columns) and decode shapes.
        let shapes = [
            (301, 256, 7),
            (37, 576, 9),
            (19, 512, 11),
            (301, 512, 1),
            (64, 1536, 2),
        ];
        for (rows, cols, tokens) in shapes {
            if cols % format.block_values() != 0 {
                continue;
            }
            let raw = random_gguf(&mut rng, format, rows, cols, false);
            let matrix = QMatrix::from_gguf(format, rows, cols, &raw).unwrap();
            let x: Vec<f32> = (0..tokens * cols)
                .map(|_| rng.gen_range(-2.0f32..2.0))
                .collect();
            let mut acts = QActs::new();
            acts.quantize(&x, tokens, cols);
            let k = Kernels::best();
            let stride = rows + 3;
            let mut out = vec![f32::NAN; tokens * stride];
            k.matmul(&matrix, &acts, &mut out, stride);
            for t in 0..tokens {
                for r in 0..rows {
                    assert_eq!(out[t * stride + r], k.dot(&matrix, r, acts.row(t)));
                }
            }
        }
    }
}

#[test]
fn both_row_walks_give_the_same_products() {
    let mut rng = StdRng::seed_from_u64(11);
    for format in QFormat::ALL {
        for (rows, cols, tokens) in [(301, 256, 1), (64, 1536, 2), (13, 512, 3)] {
            let raw = random_gguf(&mut rng, format, rows, cols, false);
            let matrix = QMatrix::from_gguf(format, rows, cols, &raw).unwrap();
            let x: Vec<f32> = (0..tokens * cols)
                .map(|_| rng.gen_range(-2.0f32..2.0))
                .collect();
            let mut acts = QActs::new();
            acts.quantize(&x, tokens, cols);
            for isa in Isa::available() {
                let products = [RowWalk::Four, RowWalk::Single].map(|walk| {
                    let mut out = vec![f32::NAN; tokens * rows];
                    Kernels::new(isa)
                        .unwrap()
                        .with_walk(walk)
                        .matmul(&matrix, &acts, &mut out, rows);
                    out
                });
                assert!(products[0].iter().all(|v| v.is_finite()));
                assert_eq!(products[0], products[1], "{format:?} {isa:?} {rows}x{cols}");
            }
        }
    }
}

#[test]
fn calibration_picks_one_of_the_walks_and_times_both() {
    let mut rng = StdRng::seed_from_u64(17);
    let raw = random_gguf(&mut rng, QFormat::Q8_0, 256, 512, false);
    let matrix = QMatrix::from_gguf(QFormat::Q8_0, 256, 512, &raw).unwrap();
    let raw = random_gguf(&mut rng, QFormat::Q4_K, 64, 256, false);
    let small = QMatrix::from_gguf(QFormat::Q4_K, 64, 256, &raw).unwrap();
    let (kernels, times) = Kernels::best().calibrated(&[&matrix, &small], 2);
    assert!(times
        .iter()
        .all(|t| *t > Duration::ZERO && *t < Duration::MAX));
    let expected = if times[1] < times[0] {
        RowWalk::Single
    } else {
        RowWalk::Four
    };
    assert_eq!(kernels.walk(), expected);
    assert_eq!(kernels.isa(), Isa::best());
}

#[test]
fn dequantized_rows_equal_candles_values() {
    let mut rng = StdRng::seed_from_u64(13);
    for format in QFormat::ALL {
        let (rows, cols) = (3, 512);
        let raw = random_gguf(&mut rng, format, rows, cols, false);
        let matrix = QMatrix::from_gguf(format, rows, cols, &raw).unwrap();
        let values = candle_values(format, &raw, rows, cols);
        let mut out = vec![0f32; cols];
        for r in 0..rows {
            matrix.dequantize_row(r, &mut out);
            assert_eq!(out, values[r * cols..(r + 1) * cols], "{format:?}");
        }
    }
}

#[test]
fn q8_k_activations_follow_ggml() {
    let mut rng = StdRng::seed_from_u64(19);
    let x: Vec<f32> = (0..512).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
    let mut acts = QActs::new();
    acts.quantize(&x, 1, 512);
    let row = acts.row(0);
    for b in 0..2 {
        let block = &x[b * 256..(b + 1) * 256];
        let (at, max) = block
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        // The value of largest magnitude maps to -127; every value within half a step.
        assert_eq!(row.kqs[b * 256 + at], -127);
        assert_eq!(row.kd[b], 1.0 / (-127.0 / max));
        for (i, &v) in block.iter().enumerate() {
            let q = row.kqs[b * 256 + i] as f32;
            assert!((q * row.kd[b] - v).abs() <= row.kd[b].abs() * 0.5001);
        }
        for s in 0..16 {
            let sum: i16 = row.kqs[b * 256 + 16 * s..b * 256 + 16 * s + 16]
                .iter()
                .map(|&q| q as i16)
                .sum();
            assert_eq!(row.kbsums[b * 16 + s], sum);
        }
    }
    // A row length that is not a whole number of super-blocks has no Q8_K form.
    acts.quantize(&x[..96], 1, 96);
    assert!(acts.row(0).kqs.is_empty());
}

#[test]
fn bad_shapes_are_errors() {
    assert!(matches!(
        QMatrix::from_gguf(QFormat::Q4_1, 2, 48, &[0; 60]),
        Err(KernelError::RowLength { cols: 48, .. })
    ));
    assert!(matches!(
        QMatrix::from_gguf(QFormat::Q4_K, 2, 576, &[0; 576]),
        Err(KernelError::RowLength {
            cols: 576,
            block: 256,
            ..
        })
    ));
    assert!(matches!(
        QMatrix::from_gguf(QFormat::Q8_0, 2, 32, &[0; 67]),
        Err(KernelError::Size { expected: 68, .. })
    ));
}
