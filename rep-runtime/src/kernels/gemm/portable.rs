//! The micro-kernel in plain Rust.

use super::MR;

/// The micro-kernel in plain Rust for panels `W` wide, for CPUs without AVX-512 (and as the
/// tests' reference).
///
/// # Safety
/// `a` holds `k·MR` floats, `b` `k` rows of `cols ≤ W` floats `b_stride` apart; `c` addresses
/// `rows × cols` floats, rows `ldc` apart.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn portable_kernel<const W: usize>(
    k: usize,
    a: *const f32,
    _prefetch: *const f32,
    b: *const f32,
    b_stride: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    // SAFETY: sizes as documented.
    let a = unsafe { std::slice::from_raw_parts(a, k * MR) };
    let mut acc = [[0.0f32; W]; MR];
    for (p, a_k) in a.chunks_exact(MR).enumerate() {
        // SAFETY: row `p < k` of the `B` panel, `cols ≤ W` values.
        let b_k = unsafe { std::slice::from_raw_parts(b.add(p * b_stride), cols.min(W)) };
        for (acc_i, &a_ik) in acc.iter_mut().zip(a_k) {
            for (acc_ij, &b_kj) in acc_i.iter_mut().zip(b_k) {
                *acc_ij = a_ik.mul_add(b_kj, *acc_ij);
            }
        }
    }
    for (i, acc_i) in acc.iter().enumerate().take(rows) {
        // SAFETY: row `i < rows` of the block.
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols) };
        for (out, &value) in row.iter_mut().zip(acc_i) {
            *out = if accumulate { *out + value } else { value };
        }
    }
}
