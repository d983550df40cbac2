//! The packed GEMM on a `B` whose rows are listed, not strided: a direct convolution's taps,
//! read where they lie in its prepared input.

use super::{ColumnPanels, Epilogue, MR, PackedMatrix, RowsOfB, Target, depth_block, micro_kernels};
use std::ops::Range;

/// The `B` of [`gemm_listed`]: a direct convolution's band of output rows, each tap read where
/// it lies in the (prepared) input `values`. For output row `i` (of `rows`), row `k` of `B` is
/// the `columns` contiguous floats at `values[i·row_step + offsets[k]..]`; its products go to
/// columns `i·columns ..` of `C`.
#[derive(Clone, Copy)]
pub(crate) struct ListedRows<'a> {
    pub(crate) values: &'a [f32],
    pub(crate) offsets: &'a [u32],
    pub(crate) row_step: usize,
    pub(crate) rows: usize,
    pub(crate) columns: usize,
}

/// `C = epilogue(A · B)` for the rows of `a` in `panels` (`C`'s first row is row
/// `panels.start · MR` of `A`, its rows `ldc` apart), `B` as [`ListedRows`] says: a GEMM whose
/// right operand is never copied.
///
/// # Safety
/// `c` must address `(rows of the panels) × (b.rows · b.columns)` floats, rows `ldc` apart, that
/// nothing else reads or writes during the call; the epilogue's bias, if any, one value per row
/// of `a`. (That `b.offsets` holds `a.depth()` offsets and every row of `B` lies inside
/// `b.values` is checked.)
pub(crate) unsafe fn gemm_listed(
    a: &PackedMatrix,
    panels: Range<usize>,
    b: ListedRows<'_>,
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue<'_>,
) {
    let first_row = panels.start * MR;
    let rows = a.rows.min(panels.end * MR).saturating_sub(first_row);
    assert!(b.offsets.len() >= a.depth && a.depth > 0, "gemm_listed: {} offsets, depth {}", b.offsets.len(), a.depth);
    if rows == 0 || b.columns == 0 || b.rows == 0 {
        return;
    }
    let furthest = b.offsets[..a.depth].iter().max().map_or(0, |&o| o as usize) + (b.rows - 1) * b.row_step;
    assert!(furthest + b.columns <= b.values.len(), "gemm_listed: a row of B ends past its values");
    let kernels = micro_kernels::<Listed>();
    let layout = ColumnPanels::new(b.columns);
    let a_panels = panels.start..panels.start + rows.div_ceil(MR);
    let step = depth_block(a.depth);
    for k0 in (0..a.depth).step_by(step) {
        let depths = k0..a.depth.min(k0 + step);
        let block = |p: usize, i: usize, q: usize| {
            // SAFETY (of the offset): output row `i`'s columns of `C`, as the caller guaranteed.
            let c_i = unsafe { c.add(i * b.columns) };
            let target = Target { a, first_row, rows, layout: &layout, c: c_i, ldc, accumulate: false, epilogue };
            let start = b.values.as_ptr().wrapping_add(i * b.row_step + layout.panel(q).0);
            let rows_b = Listed { base: start, offsets: b.offsets[k0..].as_ptr() };
            // SAFETY: the caller's guarantees.
            unsafe { target.block(&kernels, p, q, depths.clone(), rows_b) };
        };
        // Each panel of `A` stays in L1 while `B`'s blocks stream past it from L2 (measured on
        // stride-2 layers: as fast or faster than keeping `B`'s block instead, 0.87× the time
        // for YOLOv7's 32→64 at 640²).
        for p in a_panels.clone() {
            (0..b.rows).for_each(|i| (0..layout.count).for_each(|q| block(p, i, q)));
        }
    }
}

/// Rows at listed offsets from a base: row `k` starts at `base + offsets[k]` (a direct
/// convolution's taps, read where they lie in its input).
#[derive(Clone, Copy)]
pub(crate) struct Listed {
    pub(crate) base: *const f32,
    pub(crate) offsets: *const u32,
}

impl RowsOfB for Listed {
    #[inline(always)]
    unsafe fn row(self, k: usize) -> *const f32 {
        // SAFETY: the caller's `k` is inside the list, whose offsets stay inside the input.
        unsafe { self.base.add(*self.offsets.add(k) as usize) }
    }
}
