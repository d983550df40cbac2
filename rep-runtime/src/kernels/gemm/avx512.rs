//! The AVX-512 micro-kernel: a 12 × 32 block of `C` in 24 registers (12 × 16 for a narrow panel;
//! 4 or 8 rows for a short last panel).
use super::{BlockOutput, MR, RowsOfB};
use crate::kernels::{activation, lane_mask};
use std::arch::x86_64::*;

/// The AVX-512 micro-kernel: the first `ROWS` (≤ [`MR`]) rows of a panel × `R` registers of 16
/// columns (`R` = 2 for full panels, 1 for narrow ones), finished in registers (bias,
/// activation) before its one store.
///
/// # Safety
/// The CPU supports AVX-512F; sizes as for [`super::portable_kernel`] with `W = 16·R`, and the
/// output's `rows ≤ ROWS`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn kernel<const R: usize, const ROWS: usize, B: RowsOfB>(
    k: usize,
    a: *const f32,
    prefetch: *const f32,
    b: B,
    out: &BlockOutput,
) {
    let masks: [__mmask16; R] = std::array::from_fn(|r| lane_mask(out.cols.saturating_sub(16 * r)));
    debug_assert!(out.rows <= ROWS && ROWS <= MR);
    let mut acc = [[_mm512_setzero_ps(); R]; ROWS];
    for p in 0..k {
        // SAFETY: `p < k`, so both panels hold these values; the masks keep to `cols`.
        unsafe {
            let b_row = b.row(p);
            let b_p: [__m512; R] = std::array::from_fn(|r| _mm512_maskz_loadu_ps(masks[r], b_row.add(16 * r)));
            let a_p = a.add(p * MR);
            // A hint only: prefetching an address outside any allocation does not fault.
            _mm_prefetch::<_MM_HINT_T0>(prefetch.wrapping_add(p * MR) as *const i8);
            for (i, acc_i) in acc.iter_mut().enumerate() {
                let a_i = _mm512_set1_ps(*a_p.add(i));
                for r in 0..R {
                    acc_i[r] = _mm512_fmadd_ps(a_i, b_p[r], acc_i[r]);
                }
            }
        }
    }
    // The finishing loop below indexes the rows at run time, so they go through memory; moved
    // to an array that was never initialized, they are just stored (left in `acc`, its zero
    // initializer was a 1.5 KiB `memset` on every call).
    let mut finished = std::mem::MaybeUninit::<[[__m512; R]; ROWS]>::uninit();
    finished.write(acc);
    // SAFETY: written on the line above.
    let acc = unsafe { finished.assume_init_ref() };
    for (i, acc_i) in acc.iter().enumerate().take(out.rows) {
        // SAFETY: row `i < rows` of the block and its bias (when not null).
        let bias = (!out.bias.is_null()).then(|| _mm512_set1_ps(unsafe { *out.bias.add(i) }));
        for (r, &value) in acc_i.iter().enumerate() {
            let m = masks[r];
            // SAFETY: row `i < rows` of the block; the mask keeps to its `cols` columns.
            unsafe {
                let slot = out.c.add(i * out.ldc + 16 * r);
                let value = if out.accumulate { _mm512_add_ps(_mm512_maskz_loadu_ps(m, slot), value) } else { value };
                let value = bias.map_or(value, |bias| _mm512_add_ps(value, bias));
                _mm512_mask_storeu_ps(slot, m, activation::avx512_lanes(out.activation, value));
            }
        }
    }
}
