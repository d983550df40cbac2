//! The micro-kernel in plain Rust.

use super::{BlockOutput, MR, RowsOfB};

/// [`portable_kernel`] compiled for AVX2 and FMA (one instruction per `mul_add`, loops over
/// eight lanes), for CPUs that have them but not AVX-512.
///
/// # Safety
/// The CPU supports AVX2 and FMA; as for [`portable_kernel`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn avx2_kernel<const W: usize, B: RowsOfB>(
    k: usize,
    a: *const f32,
    prefetch: *const f32,
    b: B,
    out: &BlockOutput,
) {
    // SAFETY: as the caller guarantees.
    unsafe { portable_kernel::<W, B>(k, a, prefetch, b, out) }
}

/// The micro-kernel in plain Rust for panels `W` wide, for CPUs without AVX-512 (and as the
/// tests' reference).
///
/// # Safety
/// `a` holds `k·MR` floats, each of `b`'s rows `0..k` at least `cols ≤ W` floats; the output's
/// `c` addresses `rows × cols` floats, rows `ldc` apart, and its bias (if not null) `rows` floats.
#[inline(always)]
pub(crate) unsafe fn portable_kernel<const W: usize, B: RowsOfB>(
    k: usize,
    a: *const f32,
    _prefetch: *const f32,
    b: B,
    out: &BlockOutput,
) {
    let cols = out.cols.min(W);
    // SAFETY: sizes as documented.
    let a = unsafe { std::slice::from_raw_parts(a, k * MR) };
    let mut acc = [[0.0f32; W]; MR];
    for (p, a_k) in a.chunks_exact(MR).enumerate() {
        // SAFETY: row `p < k` of the `B` panel, `cols ≤ W` values.
        let b_k = unsafe { std::slice::from_raw_parts(b.row(p), cols) };
        for (acc_i, &a_ik) in acc.iter_mut().zip(a_k) {
            for (acc_ij, &b_kj) in acc_i.iter_mut().zip(b_k) {
                *acc_ij = a_ik.mul_add(b_kj, *acc_ij);
            }
        }
    }
    for (i, acc_i) in acc.iter().enumerate().take(out.rows) {
        // SAFETY: row `i < rows` of the block, and its bias.
        let (row, bias) = unsafe {
            let bias = if out.bias.is_null() { 0.0 } else { *out.bias.add(i) };
            (std::slice::from_raw_parts_mut(out.c.add(i * out.ldc), cols), bias)
        };
        for (slot, &value) in row.iter_mut().zip(acc_i) {
            let value = if out.accumulate { *slot + value } else { value };
            *slot = out.activation.apply(value + bias);
        }
    }
}
