//! Property tests: every instruction set against the scalar reference and against integer
//! ground truth computed straight from the GGUF block bytes, over random blocks.

use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// A random GGUF tensor (`rows` x `cols`) in `format`. With `integer_scales`, scales are small
/// integers and Q4_1 minimums small integers, so that every product is exact in f32.
fn random_gguf(
    rng: &mut StdRng,
    format: QFormat,
    rows: usize,
    cols: usize,
    integer_scales: bool,
) -> Vec<u8> {
    let mut raw = Vec::new();
    for _ in 0..rows * cols / BLOCK {
        let d = if integer_scales {
            rng.gen_range(1..=4) as f32
        } else {
            rng.gen_range(1e-4f32..0.05)
        };
        raw.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        match format {
            QFormat::Q4_1 => {
                let m = if integer_scales {
                    rng.gen_range(-8..=8) as f32
                } else {
                    rng.gen_range(-0.5f32..0.5)
                };
                raw.extend_from_slice(&f16::from_f32(m).to_le_bytes());
                raw.extend((0..16).map(|_| rng.gen::<u8>()));
            }
            QFormat::Q8_0 => raw.extend((0..32).map(|_| rng.gen::<u8>())),
        }
    }
    raw
}

/// Value `(scale, min, q)` triples of one GGUF row, decoded the obvious way.
fn gguf_row_values(format: QFormat, raw: &[u8], row: usize, cols: usize) -> Vec<(f32, f32, i64)> {
    let bb = format.block_bytes();
    let nb = cols / BLOCK;
    let mut out = Vec::with_capacity(cols);
    for b in 0..nb {
        let block = &raw[(row * nb + b) * bb..(row * nb + b + 1) * bb];
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        match format {
            QFormat::Q4_1 => {
                let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
                for j in 0..BLOCK {
                    let byte = block[4 + j % 16];
                    let q = if j < 16 { byte & 0x0F } else { byte >> 4 };
                    out.push((d, m, q as i64));
                }
            }
            QFormat::Q8_0 => {
                for j in 0..BLOCK {
                    out.push((d, 0.0, block[2 + j] as i8 as i64));
                }
            }
        }
    }
    out
}

/// Integer activations with 127 in every block, so that their quantization scale is exactly 1
/// (and block sums small enough to be exact at f16 precision).
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

const FORMATS: [QFormat; 2] = [QFormat::Q4_1, QFormat::Q8_0];

#[test]
fn every_isa_is_exact_on_integer_data() {
    let mut rng = StdRng::seed_from_u64(7);
    for format in FORMATS {
        // Every short final group (1..=4 blocks) and several whole groups.
        for nb in 1..=12 {
            let (rows, cols) = (5, nb * BLOCK);
            let raw = random_gguf(&mut rng, format, rows, cols, true);
            let matrix = QMatrix::from_gguf(format, rows, cols, &raw).unwrap();
            let x = unit_scale_activations(&mut rng, 3, cols);
            let mut acts = QActs::new();
            acts.quantize(&x, 3, cols);
            for r in 0..rows {
                let values = gguf_row_values(format, &raw, r, cols);
                for t in 0..3 {
                    let exact: i64 = values
                        .iter()
                        .zip(&x[t * cols..(t + 1) * cols])
                        .map(|(&(d, m, q), &a)| d as i64 * q * a as i64 + m as i64 * a as i64)
                        .sum();
                    for isa in Isa::available() {
                        let got = Kernels::new(isa).unwrap().dot(&matrix, r, acts.row(t));
                        assert_eq!(
                            got, exact as f32,
                            "{format:?} {isa:?} nb={nb} row={r} token={t}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn every_isa_matches_the_reference_on_random_data() {
    let mut rng = StdRng::seed_from_u64(11);
    let reference = Kernels::new(Isa::Scalar).unwrap();
    for format in FORMATS {
        for cols in [32, 96, 160, 576, 1536, 608] {
            let rows = 9;
            let raw = random_gguf(&mut rng, format, rows, cols, false);
            let matrix = QMatrix::from_gguf(format, rows, cols, &raw).unwrap();
            let x: Vec<f32> = (0..2 * cols).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
            let mut acts = QActs::new();
            acts.quantize(&x, 2, cols);
            for r in 0..rows {
                // Bound on the magnitude of the summed terms, for a relative tolerance.
                let values = gguf_row_values(format, &raw, r, cols);
                for t in 0..2 {
                    let magnitude: f32 = values
                        .iter()
                        .zip(&x[t * cols..(t + 1) * cols])
                        .map(|(&(d, m, q), &a)| {
                            (d * q as f32 + m).abs() * a.abs() + m.abs() * a.abs()
                        })
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
    for format in FORMATS {
        let (rows, cols) = (4, 576);
        let raw = random_gguf(&mut rng, format, rows, cols, false);
        let matrix = QMatrix::from_gguf(format, rows, cols, &raw).unwrap();
        let x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut acts = QActs::new();
        acts.quantize(&x, 1, cols);
        for r in 0..rows {
            let values = gguf_row_values(format, &raw, r, cols);
            let float: f32 = values
                .iter()
                .zip(&x)
                .map(|(&(d, m, q), &a)| (d * q as f32 + m) * a)
                .sum();
            let scale: f32 = values
                .iter()
                .zip(&x)
                .map(|(&(d, m, q), &a)| ((d * q as f32 + m) * a).abs())
                .sum();
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
    for format in FORMATS {
        for cols in [64, 576, 1536] {
            let raw = random_gguf(&mut rng, format, 4, cols, false);
            let matrix = QMatrix::from_gguf(format, 4, cols, &raw).unwrap();
            let x: Vec<f32> = (0..4 * cols).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
            let mut acts = QActs::new();
            acts.quantize(&x, 4, cols);
            for isa in Isa::available() {
                let k = Kernels::new(isa).unwrap();
                for r in 0..3 {
                    if r == 0 {
                        let rows = k.dot_rows4(&matrix, 0, acts.row(1));
                        for (i, v) in rows.into_iter().enumerate() {
                            assert_eq!(
                                v,
                                k.dot(&matrix, i, acts.row(1)),
                                "{format:?} {isa:?} cols={cols} rows4"
                            );
                        }
                    }
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
    for format in FORMATS {
        for (rows, cols, tokens) in [(301, 64, 7), (301, 96, 1), (64, 576, 2)] {
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
fn dequantized_rows_equal_the_file_values() {
    let mut rng = StdRng::seed_from_u64(13);
    for format in FORMATS {
        let (rows, cols) = (3, 160);
        let raw = random_gguf(&mut rng, format, rows, cols, false);
        let matrix = QMatrix::from_gguf(format, rows, cols, &raw).unwrap();
        let mut out = vec![0f32; cols];
        for r in 0..rows {
            matrix.dequantize_row(r, &mut out);
            let want: Vec<f32> = gguf_row_values(format, &raw, r, cols)
                .iter()
                .map(|&(d, m, q)| d * q as f32 + m)
                .collect();
            assert_eq!(out, want, "{format:?}");
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    assert!(matches!(
        QMatrix::from_gguf(QFormat::Q4_1, 2, 48, &[0; 60]),
        Err(KernelError::RowLength { cols: 48 })
    ));
    assert!(matches!(
        QMatrix::from_gguf(QFormat::Q8_0, 2, 32, &[0; 67]),
        Err(KernelError::Size { expected: 68, .. })
    ));
}
