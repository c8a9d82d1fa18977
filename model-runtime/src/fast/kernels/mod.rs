//! Quantized dot-product kernels for the fast CPU backend.
//!
//! Weights stay quantized in a layout of our own ([`QMatrix`]); activations are quantized once
//! per row to 8-bit blocks with a per-block scale and sum ([`QActs`], the Q8_1 idea of ggml).
//! Every dot product is computed by one of several instruction-set implementations chosen at run
//! time ([`Isa`]); the scalar one is the reference the others are tested against.
//!
//! ## Layout
//! Rows are cut into blocks of [`BLOCK`] (32) values; blocks are taken four at a time as a
//! *group* of 128 values. Inside a group, the first 64 activation bytes hold the first halves
//! (values 0..16) of the four blocks, the next 64 bytes their second halves (values 16..32).
//! This is exactly how a Q4_1 block stores its nibbles (low nibble = value j, high nibble =
//! value j + 16), so the 64 nibble bytes of four consecutive Q4_1 blocks line up with the
//! activation group after one mask and one shift, with no shuffles.
//!
//! - Q4_1 row: `qs` (16 bytes per block, the file's bytes), then the block scales `d` (f16),
//!   then the block minimums `m` (f16). Value = `d * q + m`, `q` in 0..16.
//! - Q8_0 row: the 32 values per block stored as `q + 128` (unsigned) in group order (a full
//!   group: 64 first-half bytes then 64 second-half bytes; a short final group of `r` blocks:
//!   `16 r` first-half bytes then `16 r` second-half bytes), then the scales `d` (f16).
//!   Value = `d * q`, `q` in -128..128.
//! - Q4_0 row: `qs` as Q4_1, then the scales `d` (f16). Value = `d * (q - 8)`.
//! - Q5_0 row: `qs` as Q4_1 (the low four bits), then per block the fifth bits of values 0..16
//!   (a u16, bit `j` for value `j`), then those of values 16..32 (a u16), then the scales `d`.
//!   Value = `d * (q - 16)`, `q` in 0..32. Four consecutive u16 of either kind are the 64-bit
//!   byte mask of one half of an activation group.
//!
//! K-quant rows (Q4_K, Q5_K, Q6_K: super-blocks of [`SUPER_BLOCK`] values with 6- or 8-bit
//! sub-block scales) keep the file's block bytes unchanged. They are multiplied with a second
//! form of the activations, Q8_K (ggml's): per super-block an f32 scale, 256 signed bytes in
//! natural order and the sums of every 16 of them.
//!
//! The integer part of every block product is exact in every implementation; only the order in
//! which the scaled block results are summed in f32 differs between instruction sets.

mod avx2;
mod avx2_kquant;
mod avx512;
mod avx512_kquant;
mod scalar;

use half::f16;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Values per quantization block.
pub const BLOCK: usize = 32;
/// Blocks per group (the unit of the activation layout).
pub const GROUP_BLOCKS: usize = 4;
/// Values per group.
pub const GROUP: usize = BLOCK * GROUP_BLOCKS;
/// Values per K-quant super-block (and per Q8_K activation block).
pub const SUPER_BLOCK: usize = 256;
/// How many rows ahead the decode kernels prefetch weights.
const PREFETCH_ROWS: usize = 8;

/// Errors raised while building quantized matrices.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The row length is not a whole number of blocks.
    #[error("{format:?}: row length {cols} is not a multiple of the block size {block}")]
    RowLength {
        /// Block format.
        format: QFormat,
        /// The offending row length.
        cols: usize,
        /// Values per block of the format.
        block: usize,
    },
    /// The raw bytes do not have the size the shape and format imply.
    #[error("{format:?} matrix of {rows}x{cols} needs {expected} bytes, got {actual}")]
    Size {
        /// Block format.
        format: QFormat,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Bytes the shape implies.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
}

/// Block formats the kernels understand (the GGML names, kept as written there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum QFormat {
    /// 4-bit values with an f16 scale per block of 32 (offset 8).
    Q4_0,
    /// 4-bit values with an f16 scale and an f16 minimum per block of 32.
    Q4_1,
    /// 5-bit values with an f16 scale per block of 32 (offset 16).
    Q5_0,
    /// 8-bit signed values with an f16 scale per block of 32.
    Q8_0,
    /// 4-bit values in super-blocks of 256: eight sub-blocks of 32 with 6-bit scales and
    /// minimums, f16 super-block scale and minimum scale.
    Q4_K,
    /// As Q4_K with a fifth bit per value.
    Q5_K,
    /// 6-bit values in super-blocks of 256: sixteen sub-blocks of 16 with 8-bit signed scales,
    /// an f16 super-block scale (offset 32).
    Q6_K,
}

impl QFormat {
    /// Every format, 32-value ones first.
    pub const ALL: [QFormat; 7] = [
        QFormat::Q4_0,
        QFormat::Q4_1,
        QFormat::Q5_0,
        QFormat::Q8_0,
        QFormat::Q4_K,
        QFormat::Q5_K,
        QFormat::Q6_K,
    ];

    /// Bytes per block in a GGUF file (and in our layout).
    pub fn block_bytes(self) -> usize {
        match self {
            QFormat::Q4_0 => 18,
            QFormat::Q4_1 => 20,
            QFormat::Q5_0 => 22,
            QFormat::Q8_0 => 34,
            QFormat::Q4_K => 144,
            QFormat::Q5_K => 176,
            QFormat::Q6_K => 210,
        }
    }

    /// Values per block.
    pub fn block_values(self) -> usize {
        if self.is_k_quant() {
            SUPER_BLOCK
        } else {
            BLOCK
        }
    }

    /// Whether the format is multiplied with the Q8_K form of the activations.
    pub fn is_k_quant(self) -> bool {
        matches!(self, QFormat::Q4_K | QFormat::Q5_K | QFormat::Q6_K)
    }
}

/// An instruction-set implementation of the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust; the reference.
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 (F, BW, VL) with VNNI.
    Avx512Vnni,
}

impl Isa {
    /// Whether this CPU can run the implementation.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                Isa::Avx2.is_supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every implementation this CPU can run, reference first.
    pub fn available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni]
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// The fastest implementation this CPU can run.
    pub fn best() -> Isa {
        *Isa::available().last().unwrap_or(&Isa::Scalar)
    }
}

/// How a product with fewer than four activation rows (a decode step) walks the weight rows.
/// Both walks give the same results bit for bit; which is faster depends on the CPU's memory
/// system (four interleaved rows win on some, one stream on others), so a model measures them
/// when it loads ([`Kernels::calibrated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowWalk {
    /// Four rows at once, the rows a few ahead prefetched.
    Four,
    /// One row after another: a single forward stream through memory.
    Single,
}

/// A kernel set checked against the running CPU: holding one proves its instructions exist.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    isa: Isa,
    walk: RowWalk,
}

impl Kernels {
    /// The kernels for `isa`, or `None` when this CPU lacks its instructions; rows are walked
    /// four at a time until [`Kernels::with_walk`] or [`Kernels::calibrated`] says otherwise.
    pub fn new(isa: Isa) -> Option<Kernels> {
        isa.is_supported().then_some(Kernels {
            isa,
            walk: RowWalk::Four,
        })
    }

    /// The fastest kernels for this CPU (rows walked four at a time).
    pub fn best() -> Kernels {
        Kernels {
            isa: Isa::best(),
            walk: RowWalk::Four,
        }
    }

    /// The same kernels walking rows as `walk` says.
    pub fn with_walk(self, walk: RowWalk) -> Kernels {
        Kernels { walk, ..self }
    }

    /// The implementation in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// How decode steps walk the weight rows.
    pub fn walk(&self) -> RowWalk {
        self.walk
    }

    /// These kernels with the row walk that sweeps `matrices` (one activation row each, on the
    /// current rayon pool) faster, as a decode step reads every weight of a model once. The
    /// sweeps alternate between the walks, `rounds` each, and the best time of each walk counts;
    /// a model's weights exceed the caches, so the sweeps read memory as decoding does.
    pub fn calibrated(self, matrices: &[&QMatrix], rounds: usize) -> (Kernels, [Duration; 2]) {
        // One zero activation row per width.
        let mut acts: BTreeMap<usize, QActs> = BTreeMap::new();
        for matrix in matrices {
            acts.entry(matrix.cols).or_insert_with(|| {
                let mut row = QActs::new();
                row.quantize(&vec![0.0; matrix.cols], 1, matrix.cols);
                row
            });
        }
        let rows = matrices.iter().map(|m| m.rows).max().unwrap_or(0);
        let mut out = vec![0f32; rows];
        let walks = [RowWalk::Four, RowWalk::Single];
        let mut best = [Duration::MAX; 2];
        for _ in 0..rounds.max(1) {
            for (i, walk) in walks.into_iter().enumerate() {
                let kernels = self.with_walk(walk);
                let start = Instant::now();
                for matrix in matrices {
                    kernels.matmul(matrix, &acts[&matrix.cols], &mut out, matrix.rows);
                }
                best[i] = best[i].min(start.elapsed());
            }
        }
        let walk = if best[1] < best[0] {
            RowWalk::Single
        } else {
            RowWalk::Four
        };
        (self.with_walk(walk), best)
    }

    /// Dot product of row `row` of `matrix` with one quantized activation row.
    #[inline]
    pub fn dot(&self, matrix: &QMatrix, row: usize, act: ActRow<'_>) -> f32 {
        debug_assert!(row < matrix.rows && act.cols == matrix.cols);
        let w = matrix.row_bytes(row);
        let nb = matrix.cols / matrix.format.block_values();
        debug_assert!(!matrix.format.is_k_quant() || act.kd.len() == nb);
        match (self.isa, matrix.format) {
            (Isa::Scalar, QFormat::Q4_0) => scalar::dot_q4_0(w, nb, act),
            (Isa::Scalar, QFormat::Q4_1) => scalar::dot_q4_1(w, nb, act),
            (Isa::Scalar, QFormat::Q5_0) => scalar::dot_q5_0(w, nb, act),
            (Isa::Scalar, QFormat::Q8_0) => scalar::dot_q8_0(w, nb, act),
            (Isa::Scalar, QFormat::Q4_K) => scalar::dot_q4_k(w, nb, act),
            (Isa::Scalar, QFormat::Q5_K) => scalar::dot_q5_k(w, nb, act),
            (Isa::Scalar, QFormat::Q6_K) => scalar::dot_q6_k(w, nb, act),
            // SAFETY: a `Kernels` with these ISAs is only built after checking the CPU supports
            // them; row and activation sizes match the layout (checked when they were built).
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, QFormat::Q4_0) => unsafe { avx2::dot_q45_0::<false>(w, nb, act) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, QFormat::Q4_1) => unsafe { avx2::dot_q4_1(w, nb, act) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, QFormat::Q5_0) => unsafe { avx2::dot_q45_0::<true>(w, nb, act) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, QFormat::Q8_0) => unsafe { avx2::dot_q8_0(w, nb, act) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, QFormat::Q4_K) => unsafe { avx2_kquant::dot_q4_k::<false>(w, nb, act) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, QFormat::Q5_K) => unsafe { avx2_kquant::dot_q4_k::<true>(w, nb, act) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, QFormat::Q6_K) => unsafe { avx2_kquant::dot_q6_k(w, nb, act) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q4_0) => unsafe { avx512::dot_q45_0::<false>(w, nb, act) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q4_1) => unsafe { avx512::dot_q4_1(w, nb, act) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q5_0) => unsafe { avx512::dot_q45_0::<true>(w, nb, act) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q8_0) => unsafe { avx512::dot_q8_0(w, nb, act) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q4_K) => unsafe {
                avx512_kquant::dot_q4_k::<false>(w, nb, act)
            },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q5_K) => unsafe {
                avx512_kquant::dot_q4_k::<true>(w, nb, act)
            },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q6_K) => unsafe { avx512_kquant::dot_q6_k(w, nb, act) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("only the scalar kernels exist off x86-64"),
        }
    }

    /// Dot products of row `row` with four activation rows at once (the weight row is unpacked
    /// once and reused; used for prompt batches).
    #[inline]
    pub fn dot4(&self, matrix: &QMatrix, row: usize, acts: [ActRow<'_>; 4]) -> [f32; 4] {
        let w = matrix.row_bytes(row);
        let nb = matrix.cols / matrix.format.block_values();
        match (self.isa, matrix.format) {
            // SAFETY: as in `dot`.
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q4_1) => unsafe { avx512::dot4_q4_1(w, nb, acts) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q8_0) => unsafe { avx512::dot4_q8_0(w, nb, acts) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, QFormat::Q4_1) if nb.is_multiple_of(2) => unsafe {
                avx2::dot4_q4_1(w, nb, acts)
            },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, QFormat::Q8_0) if nb.is_multiple_of(2) => unsafe {
                avx2::dot4_q8_0(w, nb, acts)
            },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q4_0) => unsafe { avx512::dot4_q45_0::<false>(w, nb, acts) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q5_0) => unsafe { avx512::dot4_q45_0::<true>(w, nb, acts) },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q4_K) => unsafe {
                avx512_kquant::dotn_q4_k::<false, 4>(w, nb, acts)
            },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q5_K) => unsafe {
                avx512_kquant::dotn_q4_k::<true, 4>(w, nb, acts)
            },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q6_K) => unsafe {
                avx512_kquant::dotn_q6_k::<4>(w, nb, acts)
            },
            _ => acts.map(|act| self.dot(matrix, row, act)),
        }
    }

    /// Dot products of row `row` with eight activation rows at once, or `None` where these
    /// kernels have no eight-row form for the matrix's format (the K-quants on AVX-512 have:
    /// their blocks cost most to unpack).
    #[inline]
    pub fn dot8(&self, matrix: &QMatrix, row: usize, acts: [ActRow<'_>; 8]) -> Option<[f32; 8]> {
        let w = matrix.row_bytes(row);
        let nb = matrix.cols / matrix.format.block_values();
        match (self.isa, matrix.format) {
            // SAFETY: as in `dot`.
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q4_K) => {
                Some(unsafe { avx512_kquant::dotn_q4_k::<false, 8>(w, nb, acts) })
            }
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q5_K) => {
                Some(unsafe { avx512_kquant::dotn_q4_k::<true, 8>(w, nb, acts) })
            }
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q6_K) => {
                Some(unsafe { avx512_kquant::dotn_q6_k::<8>(w, nb, acts) })
            }
            _ => None,
        }
    }

    /// Dot products of rows `row` and `row + 1` with four activation rows at once (a 2 x 4
    /// tile), or `None` where these kernels have no such tile for the matrix's format.
    #[inline]
    pub fn dot4_rows2(
        &self,
        matrix: &QMatrix,
        row: usize,
        acts: [ActRow<'_>; 4],
    ) -> Option<[[f32; 4]; 2]> {
        assert!(row + 2 <= matrix.rows);
        let nb = matrix.cols / matrix.format.block_values();
        let w = matrix.data[row * matrix.row_stride..].as_ptr();
        match (self.isa, matrix.format) {
            // SAFETY: the ISA was checked when `self` was built; both rows lie in `data`.
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q4_0) => {
                Some(unsafe { avx512::dot4_rows2_q45_0::<false>(w, matrix.row_stride, nb, acts) })
            }
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q5_0) => {
                Some(unsafe { avx512::dot4_rows2_q45_0::<true>(w, matrix.row_stride, nb, acts) })
            }
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q4_1) => {
                Some(unsafe { avx512::dot4_rows2_q4_1(w, matrix.row_stride, nb, acts) })
            }
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q8_0) => {
                Some(unsafe { avx512::dot4_rows2_q8_0(w, matrix.row_stride, nb, acts) })
            }
            _ => None,
        }
    }

    /// Dot products of rows `row..row + 4` with one activation row (the decode case: four
    /// independent rows in flight at once).
    #[inline]
    pub fn dot_rows4(&self, matrix: &QMatrix, row: usize, act: ActRow<'_>) -> [f32; 4] {
        assert!(row + 4 <= matrix.rows && act.cols == matrix.cols);
        let nb = matrix.cols / matrix.format.block_values();
        // Prefetch four rows, PREFETCH_ROWS ahead, while they exist.
        let ahead = if row + PREFETCH_ROWS + 4 <= matrix.rows {
            4 * matrix.row_stride
        } else {
            0
        };
        let w = matrix.data[row * matrix.row_stride..].as_ptr();
        match (self.isa, matrix.format) {
            // SAFETY: the ISA was checked when `self` was built; the four rows lie in `data`
            // (asserted) and the prefetched bytes too (`ahead` is zero past the last four rows).
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q4_1) => unsafe {
                avx512::dot_rows4_q4_1(w, matrix.row_stride, nb, act, PREFETCH_ROWS, ahead)
            },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q8_0) => unsafe {
                avx512::dot_rows4_q8_0(w, matrix.row_stride, nb, act, PREFETCH_ROWS, ahead)
            },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, QFormat::Q4_1) if nb.is_multiple_of(2) => unsafe {
                avx2::dot_rows4_q4_1(w, matrix.row_stride, nb, act, PREFETCH_ROWS, ahead)
            },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, QFormat::Q8_0) if nb.is_multiple_of(2) => unsafe {
                avx2::dot_rows4_q8_0(w, matrix.row_stride, nb, act, PREFETCH_ROWS, ahead)
            },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q4_0) => unsafe {
                avx512::dot_rows4_q45_0::<false>(
                    w,
                    matrix.row_stride,
                    nb,
                    act,
                    PREFETCH_ROWS,
                    ahead,
                )
            },
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512Vnni, QFormat::Q5_0) => unsafe {
                avx512::dot_rows4_q45_0::<true>(w, matrix.row_stride, nb, act, PREFETCH_ROWS, ahead)
            },
            _ => [0, 1, 2, 3].map(|i| self.dot(matrix, row + i, act)),
        }
    }

    /// `out[t * out_stride + r] = dot(matrix row r, acts row t)` for every row `r` and every
    /// activation row `t`, spread over the current rayon pool in chunks of rows.
    pub fn matmul(&self, matrix: &QMatrix, acts: &QActs, out: &mut [f32], out_stride: usize) {
        let tokens = acts.rows();
        assert_eq!(
            acts.cols(),
            matrix.cols,
            "activation width differs from the matrix"
        );
        assert!(
            out_stride >= matrix.rows
                && out.len() >= (tokens.max(1) - 1) * out_stride + matrix.rows
        );
        let out_ptr = SharedOut(out.as_mut_ptr());
        let chunk = rows_per_task(matrix.rows, tokens);
        let tasks = matrix.rows.div_ceil(chunk);
        (0..tasks).into_par_iter().for_each(|task| {
            let out_ptr = &out_ptr;
            let put = |t: usize, r: usize, v: f32| {
                // SAFETY: each (t, r) cell is written by exactly one task (tasks own disjoint
                // row ranges) and lies inside `out` (asserted above).
                unsafe { *out_ptr.0.add(t * out_stride + r) = v };
            };
            let rows = task * chunk..((task + 1) * chunk).min(matrix.rows);
            // The activation rows, sliced once per task rather than once per weight row.
            let act: Vec<ActRow<'_>> = (0..tokens).map(|t| acts.row(t)).collect();
            if tokens < 4 {
                let mut r = rows.start;
                while self.walk == RowWalk::Four && r + 4 <= rows.end {
                    for (t, &act) in act.iter().enumerate() {
                        let res = self.dot_rows4(matrix, r, act);
                        for (i, v) in res.into_iter().enumerate() {
                            put(t, r + i, v);
                        }
                    }
                    r += 4;
                }
                for r in r..rows.end {
                    for (t, &act) in act.iter().enumerate() {
                        put(t, r, self.dot(matrix, r, act));
                    }
                }
                return;
            }
            // Row `r` against the activation rows from `t` on: eight, then four, then one at a
            // time, as the format's kernels allow.
            let finish_row = |r: usize, mut t: usize| {
                while t + 8 <= tokens {
                    let Some(res) = self.dot8(matrix, r, std::array::from_fn(|i| act[t + i]))
                    else {
                        break;
                    };
                    for (i, v) in res.into_iter().enumerate() {
                        put(t + i, r, v);
                    }
                    t += 8;
                }
                while t + 4 <= tokens {
                    let res = self.dot4(matrix, r, [act[t], act[t + 1], act[t + 2], act[t + 3]]);
                    for (i, v) in res.into_iter().enumerate() {
                        put(t + i, r, v);
                    }
                    t += 4;
                }
                for (t, &a) in act.iter().enumerate().skip(t) {
                    put(t, r, self.dot(matrix, r, a));
                }
            };
            // Pairs of rows in 2 x 4 tiles where the format has them.
            let mut rows = rows;
            while rows.len() >= 2 {
                let r = rows.start;
                let mut t = 0;
                while t + 4 <= tokens {
                    let tile = [act[t], act[t + 1], act[t + 2], act[t + 3]];
                    let Some(res) = self.dot4_rows2(matrix, r, tile) else {
                        break;
                    };
                    for (k, four) in res.into_iter().enumerate() {
                        for (i, v) in four.into_iter().enumerate() {
                            put(t + i, r + k, v);
                        }
                    }
                    t += 4;
                }
                if t == 0 {
                    break;
                }
                finish_row(r, t);
                finish_row(r + 1, t);
                rows.start += 2;
            }
            for r in rows {
                finish_row(r, 0);
            }
        });
    }
}

/// Rows handled by one parallel task: enough work per task to amortize scheduling, enough
/// tasks to balance two or more threads.
fn rows_per_task(rows: usize, tokens: usize) -> usize {
    let target_tasks = 32;
    let by_balance = rows.div_ceil(target_tasks);
    let min_rows = (64 / tokens.max(1)).max(4);
    by_balance
        .max(min_rows)
        .next_multiple_of(4)
        .min(rows.max(1))
}

/// Output pointer shared by the tasks of one matmul, each writing its own cells.
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint cells (see `Kernels::matmul`).
unsafe impl Sync for SharedOut {}

/// A weight matrix kept quantized in the kernel layout (see the module docs).
#[derive(Debug, Clone)]
pub struct QMatrix {
    format: QFormat,
    rows: usize,
    cols: usize,
    row_stride: usize,
    data: Vec<u8>,
}

impl QMatrix {
    /// Repacks a row-major GGUF tensor (`rows` x `cols`, blocks along the rows) into the kernel
    /// layout.
    pub fn from_gguf(
        format: QFormat,
        rows: usize,
        cols: usize,
        raw: &[u8],
    ) -> Result<QMatrix, KernelError> {
        QMatrix::from_gguf_vec(format, rows, cols, raw.to_vec())
    }

    /// As [`QMatrix::from_gguf`], repacking the bytes in place (no second copy of the matrix).
    pub fn from_gguf_vec(
        format: QFormat,
        rows: usize,
        cols: usize,
        mut data: Vec<u8>,
    ) -> Result<QMatrix, KernelError> {
        let block = format.block_values();
        if !cols.is_multiple_of(block) || cols == 0 {
            return Err(KernelError::RowLength {
                format,
                cols,
                block,
            });
        }
        let nb = cols / block;
        let row_stride = nb * format.block_bytes();
        let expected = rows * row_stride;
        if data.len() != expected {
            return Err(KernelError::Size {
                format,
                rows,
                cols,
                expected,
                actual: data.len(),
            });
        }
        let repack: Option<RowRepack> = match format {
            QFormat::Q4_0 => Some(repack_q4_0_row),
            QFormat::Q4_1 => Some(repack_q4_1_row),
            QFormat::Q5_0 => Some(repack_q5_0_row),
            QFormat::Q8_0 => Some(repack_q8_0_row),
            // K-quant blocks are used as the file stores them.
            QFormat::Q4_K | QFormat::Q5_K | QFormat::Q6_K => None,
        };
        if let Some(repack) = repack {
            let mut src = vec![0u8; row_stride];
            for row in data.chunks_exact_mut(row_stride) {
                src.copy_from_slice(row);
                repack(&src, row, nb);
            }
        }
        Ok(QMatrix {
            format,
            rows,
            cols,
            row_stride,
            data,
        })
    }

    /// Block format.
    pub fn format(&self) -> QFormat {
        self.format
    }

    /// Number of rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }

    fn row_bytes(&self, row: usize) -> &[u8] {
        &self.data[row * self.row_stride..(row + 1) * self.row_stride]
    }

    /// Writes row `row` as f32 values into `out` (`cols` values): an embedding lookup.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let w = self.row_bytes(row);
        let out = &mut out[..self.cols];
        if self.format.is_k_quant() {
            let bytes = self.format.block_bytes();
            for (block, values) in w.chunks_exact(bytes).zip(out.chunks_exact_mut(SUPER_BLOCK)) {
                match self.format {
                    QFormat::Q4_K | QFormat::Q5_K => dequantize_q4_k_block(block, values),
                    _ => dequantize_q6_k_block(block, values),
                }
            }
            return;
        }
        let nb = self.cols / BLOCK;
        for b in 0..nb {
            for j in 0..BLOCK {
                let nibble = |byte: u8| if j < 16 { byte & 0x0F } else { byte >> 4 };
                out[b * BLOCK + j] = match self.format {
                    QFormat::Q4_0 => {
                        let q = nibble(w[b * 16 + j % 16]) as i32 - 8;
                        f16_at(w, nb * 16 + 2 * b) * q as f32
                    }
                    QFormat::Q4_1 => {
                        let (d, m) = (f16_at(w, nb * 16 + 2 * b), f16_at(w, nb * 18 + 2 * b));
                        d * nibble(w[b * 16 + j % 16]) as f32 + m
                    }
                    QFormat::Q5_0 => {
                        let q = q5_0_value(w, nb, b, j) as i32 - 16;
                        f16_at(w, nb * 20 + 2 * b) * q as f32
                    }
                    QFormat::Q8_0 => {
                        let d = f16_at(w, nb * 32 + 2 * b);
                        let q = w[q8_0_weight_offset(nb, b, j)] as i32 - 128;
                        d * q as f32
                    }
                    QFormat::Q4_K | QFormat::Q5_K | QFormat::Q6_K => unreachable!(),
                };
            }
        }
    }
}

/// The 5-bit value (0..32) of value `j` of block `b` in a repacked Q5_0 row of `nb` blocks.
#[inline]
fn q5_0_value(w: &[u8], nb: usize, b: usize, j: usize) -> u8 {
    let byte = w[b * 16 + j % 16];
    let nibble = if j < 16 { byte & 0x0F } else { byte >> 4 };
    let high_at = if j < 16 { nb * 16 } else { nb * 18 } + 2 * b;
    let high = u16::from_le_bytes([w[high_at], w[high_at + 1]]);
    nibble | ((((high >> (j % 16)) & 1) as u8) << 4)
}

/// The eight 6-bit sub-block scales and minimums of a Q4_K/Q5_K block (ggml's
/// `get_scale_min_k4` over the 12 packed bytes).
#[inline]
pub(super) fn k4_scales(packed: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut scales = [0u8; 8];
    let mut mins = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            scales[j] = packed[j] & 63;
            mins[j] = packed[j + 4] & 63;
        } else {
            scales[j] = (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4);
            mins[j] = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
        }
    }
    (scales, mins)
}

/// The 256 unsigned values of a Q4_K block (0..16) or Q5_K block (0..32), in value order: the
/// low nibbles of each 32-byte chunk are values `64 c..64 c + 32`, the high nibbles the next 32;
/// Q5_K's fifth bits are bit `2 c` and `2 c + 1` of `qh[l]`.
pub(super) fn k4_values(block: &[u8], five_bit: bool) -> [u8; SUPER_BLOCK] {
    let mut values = [0u8; SUPER_BLOCK];
    let (qh, qs) = if five_bit {
        (&block[16..48], &block[48..176])
    } else {
        (&block[0..0], &block[16..144])
    };
    for c in 0..4 {
        for l in 0..32 {
            let byte = qs[32 * c + l];
            let (mut lo, mut hi) = (byte & 0x0F, byte >> 4);
            if five_bit {
                lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            values[64 * c + l] = lo;
            values[64 * c + 32 + l] = hi;
        }
    }
    values
}

/// The 256 unsigned values (0..64) of a Q6_K block, in value order.
pub(super) fn q6_k_values(block: &[u8]) -> [u8; SUPER_BLOCK] {
    let mut values = [0u8; SUPER_BLOCK];
    for half in 0..2 {
        let ql = &block[64 * half..64 * half + 64];
        let qh = &block[128 + 32 * half..128 + 32 * half + 32];
        let out = &mut values[128 * half..128 * half + 128];
        for l in 0..32 {
            out[l] = (ql[l] & 0x0F) | ((qh[l] & 3) << 4);
            out[l + 32] = (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
            out[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            out[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    values
}

fn dequantize_q4_k_block(block: &[u8], out: &mut [f32]) {
    let five_bit = block.len() == QFormat::Q5_K.block_bytes();
    let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
    let (scales, mins) = k4_scales(&block[4..16]);
    for (i, q) in k4_values(block, five_bit).into_iter().enumerate() {
        let s = i / 32;
        out[i] = d * scales[s] as f32 * q as f32 - dmin * mins[s] as f32;
    }
}

fn dequantize_q6_k_block(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 208);
    for (i, q) in q6_k_values(block).into_iter().enumerate() {
        let scale = block[192 + i / 16] as i8;
        out[i] = d * scale as f32 * (q as i32 - 32) as f32;
    }
}

/// Rewrites one row from the file's block layout (`src`) into the kernel layout (`dst`).
type RowRepack = fn(&[u8], &mut [u8], usize);

/// Reads the little-endian f16 at byte `at` as f32.
#[inline]
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Blocks in group `g` of a row of `nb` blocks.
#[inline]
fn group_len(nb: usize, g: usize) -> usize {
    (nb - g * GROUP_BLOCKS).min(GROUP_BLOCKS)
}

/// Byte offset of value `j` of block `b` in a repacked Q8_0 row of `nb` blocks.
#[inline]
fn q8_0_weight_offset(nb: usize, b: usize, j: usize) -> usize {
    let g = b / GROUP_BLOCKS;
    let k = b % GROUP_BLOCKS;
    let r = group_len(nb, g);
    let half = if j < 16 { 0 } else { 16 * r };
    g * GROUP + half + 16 * k + j % 16
}

/// Byte offset of value `j` of block `b` in a quantized activation row.
#[inline]
fn act_offset(b: usize, j: usize) -> usize {
    let g = b / GROUP_BLOCKS;
    let k = b % GROUP_BLOCKS;
    let half = if j < 16 { 0 } else { GROUP / 2 };
    g * GROUP + half + 16 * k + j % 16
}

fn repack_q4_0_row(src: &[u8], dst: &mut [u8], nb: usize) {
    for (b, block) in src.chunks_exact(18).enumerate() {
        dst[nb * 16 + 2 * b..nb * 16 + 2 * b + 2].copy_from_slice(&block[0..2]);
        dst[b * 16..b * 16 + 16].copy_from_slice(&block[2..18]);
    }
}

fn repack_q5_0_row(src: &[u8], dst: &mut [u8], nb: usize) {
    for (b, block) in src.chunks_exact(22).enumerate() {
        dst[nb * 20 + 2 * b..nb * 20 + 2 * b + 2].copy_from_slice(&block[0..2]);
        dst[nb * 16 + 2 * b..nb * 16 + 2 * b + 2].copy_from_slice(&block[2..4]);
        dst[nb * 18 + 2 * b..nb * 18 + 2 * b + 2].copy_from_slice(&block[4..6]);
        dst[b * 16..b * 16 + 16].copy_from_slice(&block[6..22]);
    }
}

fn repack_q4_1_row(src: &[u8], dst: &mut [u8], nb: usize) {
    for (b, block) in src.chunks_exact(20).enumerate() {
        dst[nb * 16 + 2 * b..nb * 16 + 2 * b + 2].copy_from_slice(&block[0..2]);
        dst[nb * 18 + 2 * b..nb * 18 + 2 * b + 2].copy_from_slice(&block[2..4]);
        dst[b * 16..b * 16 + 16].copy_from_slice(&block[4..20]);
    }
}

fn repack_q8_0_row(src: &[u8], dst: &mut [u8], nb: usize) {
    for (b, block) in src.chunks_exact(34).enumerate() {
        dst[nb * 32 + 2 * b..nb * 32 + 2 * b + 2].copy_from_slice(&block[0..2]);
        for j in 0..BLOCK {
            dst[q8_0_weight_offset(nb, b, j)] = block[2 + j] ^ 0x80;
        }
    }
}

/// Activation rows quantized to 8 bits per value with one f32 scale and the sum of the
/// quantized values per block, in the group layout (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct QActs {
    cols: usize,
    rows: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
    sum: Vec<i32>,
    /// Q8_K form (rows whose length is a multiple of [`SUPER_BLOCK`]): values in natural order.
    kqs: Vec<i8>,
    /// Q8_K scales, one per super-block.
    kd: Vec<f32>,
    /// Q8_K sums of every 16 values.
    kbsums: Vec<i16>,
}

/// One quantized activation row.
#[derive(Debug, Clone, Copy)]
pub struct ActRow<'a> {
    cols: usize,
    /// Quantized values, `groups * GROUP` bytes (zero padded).
    qs: &'a [i8],
    /// Block scales, `groups * GROUP_BLOCKS` (zero padded).
    d: &'a [f32],
    /// Block scale times the sum of the block's quantized values.
    s: &'a [f32],
    /// Sum of the block's quantized values.
    sum: &'a [i32],
    /// Q8_K values (`cols`, empty when `cols` is not a multiple of [`SUPER_BLOCK`]).
    kqs: &'a [i8],
    /// Q8_K super-block scales.
    kd: &'a [f32],
    /// Q8_K sums of every 16 values.
    kbsums: &'a [i16],
}

impl QActs {
    /// An empty buffer; [`QActs::quantize`] sizes it.
    pub fn new() -> QActs {
        QActs::default()
    }

    /// Quantizes `rows` rows of `cols` values from `x` (row-major). Reuses the buffers: no
    /// allocation once they have grown to the largest batch.
    pub fn quantize(&mut self, x: &[f32], rows: usize, cols: usize) {
        assert!(cols.is_multiple_of(BLOCK) && x.len() >= rows * cols);
        let groups = cols.div_ceil(GROUP);
        let (qs_len, d_len) = (groups * GROUP, groups * GROUP_BLOCKS);
        self.cols = cols;
        self.rows = rows;
        resize_fill(&mut self.qs, rows * qs_len);
        resize_fill(&mut self.d, rows * d_len);
        resize_fill(&mut self.s, rows * d_len);
        resize_fill(&mut self.sum, rows * d_len);
        let nb = cols / BLOCK;
        let each_row = |((((row, qs), d), s), sums)| quantize_row(row, nb, qs, d, s, sums);
        let x = &x[..rows * cols];
        if rows >= PARALLEL_ROWS {
            x.par_chunks_exact(cols)
                .zip(self.qs.par_chunks_exact_mut(qs_len))
                .zip(self.d.par_chunks_exact_mut(d_len))
                .zip(self.s.par_chunks_exact_mut(d_len))
                .zip(self.sum.par_chunks_exact_mut(d_len))
                .for_each(each_row);
        } else {
            x.chunks_exact(cols)
                .zip(self.qs.chunks_exact_mut(qs_len))
                .zip(self.d.chunks_exact_mut(d_len))
                .zip(self.s.chunks_exact_mut(d_len))
                .zip(self.sum.chunks_exact_mut(d_len))
                .for_each(each_row);
        }
        let kb = if cols.is_multiple_of(SUPER_BLOCK) {
            cols / SUPER_BLOCK
        } else {
            0
        };
        resize_fill(&mut self.kqs, rows * kb * SUPER_BLOCK);
        resize_fill(&mut self.kd, rows * kb);
        resize_fill(&mut self.kbsums, rows * kb * 16);
        let each_block = |(((block, qs), sums), d): (_, &mut f32)| {
            *d = quantize_q8_k_block(block, qs, sums);
        };
        if kb > 0 && rows >= PARALLEL_ROWS {
            x.par_chunks_exact(SUPER_BLOCK)
                .zip(self.kqs.par_chunks_exact_mut(SUPER_BLOCK))
                .zip(self.kbsums.par_chunks_exact_mut(16))
                .zip(self.kd.par_iter_mut())
                .for_each(each_block);
        } else if kb > 0 {
            x.chunks_exact(SUPER_BLOCK)
                .zip(self.kqs.chunks_exact_mut(SUPER_BLOCK))
                .zip(self.kbsums.chunks_exact_mut(16))
                .zip(self.kd.iter_mut())
                .for_each(each_block);
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `t`.
    pub fn row(&self, t: usize) -> ActRow<'_> {
        let groups = self.cols.div_ceil(GROUP);
        let (qs_len, d_len) = (groups * GROUP, groups * GROUP_BLOCKS);
        let kb = self.kd.len() / self.rows.max(1);
        ActRow {
            cols: self.cols,
            qs: &self.qs[t * qs_len..(t + 1) * qs_len],
            d: &self.d[t * d_len..(t + 1) * d_len],
            s: &self.s[t * d_len..(t + 1) * d_len],
            sum: &self.sum[t * d_len..(t + 1) * d_len],
            kqs: &self.kqs[t * kb * SUPER_BLOCK..(t + 1) * kb * SUPER_BLOCK],
            kd: &self.kd[t * kb..(t + 1) * kb],
            kbsums: &self.kbsums[t * kb * 16..(t + 1) * kb * 16],
        }
    }
}

/// Rows from which per-row work (activation quantization, the gate activation) is spread over
/// the current thread pool; below, scheduling costs more than the work.
pub const PARALLEL_ROWS: usize = 4;

/// Quantizes one row of `nb` blocks into its buffers (see [`QActs`]).
fn quantize_row(
    row: &[f32],
    nb: usize,
    qs: &mut [i8],
    d: &mut [f32],
    s: &mut [f32],
    sums: &mut [i32],
) {
    for b in 0..nb {
        let block = &row[b * BLOCK..(b + 1) * BLOCK];
        let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
        // The rounding details follow ggml's x86 `quantize_row_q8_1`: multiplier 127 / amax,
        // round half to even, scales stored at f16 precision.
        let scale = amax / 127.0;
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (j, v) in block.iter().enumerate() {
            let q = round_half_even(v * inv) as i8;
            sum += q as i32;
            qs[act_offset(b, j)] = q;
        }
        d[b] = f16::from_f32(scale).to_f32();
        s[b] = f16::from_f32(scale * sum as f32).to_f32();
        sums[b] = sum;
    }
}

/// ggml's Q8_K quantization of one super-block (`quantize_row_q8_K_ref`): the value of largest
/// magnitude maps to -127, the rest round half to even (clamped at 127); returns the scale.
fn quantize_q8_k_block(x: &[f32], qs: &mut [i8], sums: &mut [i16]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        qs.fill(0);
        sums.fill(0);
        return 0.0;
    }
    let iscale = -127.0 / max;
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (round_half_even(iscale * v) as i32).min(127) as i8;
    }
    for (sum, chunk) in sums.iter_mut().zip(qs.chunks_exact(16)) {
        *sum = chunk.iter().map(|&q| q as i16).sum();
    }
    1.0 / iscale
}

/// Rounds to the nearest integer, ties to even, for |x| < 2^22 (adding and removing 1.5 * 2^23
/// leaves the rounding to the FPU; `f32::round_ties_even` is a library call on baseline x86-64).
#[inline]
fn round_half_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// Resizes `v` to `len` and zeroes it (padding must read as zero).
fn resize_fill<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    v.clear();
    v.resize(len, T::default());
}

#[cfg(test)]
mod tests;
