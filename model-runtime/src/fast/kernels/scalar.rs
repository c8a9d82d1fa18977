//! Portable reference kernels: one block at a time, integer block products, f32 accumulation
//! in block order.

use super::{
    act_offset, f16_at, k4_scales, k4_values, q5_0_value, q6_k_values, q8_0_weight_offset, ActRow,
    BLOCK, SUPER_BLOCK,
};

/// Q4_0 row (`nb` blocks) · activation row.
pub(super) fn dot_q4_0(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let mut acc = 0f32;
    for b in 0..nb {
        let qs = &w[b * 16..b * 16 + 16];
        let mut isum = 0i32;
        for (j, &byte) in qs.iter().enumerate() {
            isum += (byte & 0x0F) as i32 * act.qs[act_offset(b, j)] as i32;
            isum += (byte >> 4) as i32 * act.qs[act_offset(b, j + 16)] as i32;
        }
        isum -= 8 * act.sum[b];
        acc += f16_at(w, nb * 16 + 2 * b) * act.d[b] * isum as f32;
    }
    acc
}

/// Q4_1 row (`nb` blocks) · activation row.
pub(super) fn dot_q4_1(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let mut acc = 0f32;
    for b in 0..nb {
        let qs = &w[b * 16..b * 16 + 16];
        let mut isum = 0i32;
        for (j, &byte) in qs.iter().enumerate() {
            isum += (byte & 0x0F) as i32 * act.qs[act_offset(b, j)] as i32;
            isum += (byte >> 4) as i32 * act.qs[act_offset(b, j + 16)] as i32;
        }
        let d = f16_at(w, nb * 16 + 2 * b);
        let m = f16_at(w, nb * 18 + 2 * b);
        acc += d * act.d[b] * isum as f32 + m * act.s[b];
    }
    acc
}

/// Q5_0 row (`nb` blocks) · activation row.
pub(super) fn dot_q5_0(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let mut acc = 0f32;
    for b in 0..nb {
        let mut isum = 0i32;
        for j in 0..BLOCK {
            isum += q5_0_value(w, nb, b, j) as i32 * act.qs[act_offset(b, j)] as i32;
        }
        isum -= 16 * act.sum[b];
        acc += f16_at(w, nb * 20 + 2 * b) * act.d[b] * isum as f32;
    }
    acc
}

/// Q8_0 row (`nb` blocks) · activation row.
pub(super) fn dot_q8_0(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let mut acc = 0f32;
    for b in 0..nb {
        let mut isum = 0i32;
        for j in 0..BLOCK {
            let q = w[q8_0_weight_offset(nb, b, j)] as i32 - 128;
            isum += q * act.qs[act_offset(b, j)] as i32;
        }
        let d = f16_at(w, nb * 32 + 2 * b);
        acc += d * act.d[b] * isum as f32;
    }
    acc
}

/// Q4_K row (`nb` super-blocks) · Q8_K activation row.
pub(super) fn dot_q4_k(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    dot_k4(w, nb, act, false)
}

/// Q5_K row (`nb` super-blocks) · Q8_K activation row.
pub(super) fn dot_q5_k(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    dot_k4(w, nb, act, true)
}

fn dot_k4(w: &[u8], nb: usize, act: ActRow<'_>, five_bit: bool) -> f32 {
    let bytes = if five_bit { 176 } else { 144 };
    let mut acc = 0f32;
    for b in 0..nb {
        let block = &w[b * bytes..(b + 1) * bytes];
        let (scales, mins) = k4_scales(&block[4..16]);
        let values = k4_values(block, five_bit);
        let a = &act.kqs[b * SUPER_BLOCK..(b + 1) * SUPER_BLOCK];
        let bsums = &act.kbsums[b * 16..(b + 1) * 16];
        let mut isum = 0i32;
        let mut msum = 0i32;
        for s in 0..8 {
            let sub: i32 = (32 * s..32 * s + 32)
                .map(|i| values[i] as i32 * a[i] as i32)
                .sum();
            isum += scales[s] as i32 * sub;
            msum += mins[s] as i32 * (bsums[2 * s] as i32 + bsums[2 * s + 1] as i32);
        }
        let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
        acc += act.kd[b] * (d * isum as f32 - dmin * msum as f32);
    }
    acc
}

/// Q6_K row (`nb` super-blocks) · Q8_K activation row.
pub(super) fn dot_q6_k(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let mut acc = 0f32;
    for b in 0..nb {
        let block = &w[b * 210..(b + 1) * 210];
        let values = q6_k_values(block);
        let a = &act.kqs[b * SUPER_BLOCK..(b + 1) * SUPER_BLOCK];
        let mut isum = 0i32;
        for s in 0..16 {
            let sub: i32 = (16 * s..16 * s + 16)
                .map(|i| (values[i] as i32 - 32) * a[i] as i32)
                .sum();
            isum += block[192 + s] as i8 as i32 * sub;
        }
        acc += act.kd[b] * f16_at(block, 208) * isum as f32;
    }
    acc
}
