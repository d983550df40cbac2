//! Max pooling on row-major planes, separably: a window's maximum is the maximum over its rows
//! of each row's maximum over its columns, so a `k × k` window costs `2k` comparisons instead of
//! `k²`. NaN wins every comparison (PyTorch's semantics); padding never wins.

use super::scratch::{self, Buffer};
use crate::geometry::Hw;
use rayon::prelude::*;

/// The window geometry of a max pool.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolWindow {
    pub kernel: Hw,
    pub stride: Hw,
    pub padding: Hw,
}

/// `max(a, b)` where NaN wins: PyTorch's max pooling comparison.
#[inline]
fn nan_max(a: f32, b: f32) -> f32 {
    if b.is_nan() || b > a { b } else { a }
}

/// Pools `planes` planes of `input` (`h × w` each) into `y` (`out.h × out.w` each).
pub(crate) fn max_pool_into(x: &[f32], input: Hw, out: Hw, window: PoolWindow, y: &mut [f32]) {
    let (plane, pooled) = ((input.h * input.w).max(1), (out.h * out.w).max(1));
    x.par_chunks(plane).zip(y.par_chunks_mut(pooled)).for_each(|(x, y)| {
        scratch::with(Buffer::PoolRows, |rows| {
            rows.clear();
            rows.resize(input.h * out.w, f32::NEG_INFINITY);
            pool_rows(x, input, out.w, window, rows);
            pool_columns(rows, input.h, out, window, y);
        })
    });
}

/// `rows[r][j]` = the maximum of input row `r` over output column `j`'s window.
fn pool_rows(x: &[f32], input: Hw, out_w: usize, window: PoolWindow, rows: &mut [f32]) {
    let (stride, pad) = (window.stride.w, window.padding.w);
    for (src, dst) in x.chunks(input.w).zip(rows.chunks_mut(out_w)) {
        for d in 0..window.kernel.w {
            // Output columns j whose tap d reads an input column j·s + d − p inside the row.
            let first = pad.saturating_sub(d).div_ceil(stride);
            let last = (input.w + pad).checked_sub(d + 1).map_or(0, |c| (c / stride + 1).min(out_w));
            for j in first..last {
                dst[j] = nan_max(dst[j], src[j * stride + d - pad]);
            }
        }
    }
}

/// `y[i][j]` = the maximum of `rows[r][j]` over output row `i`'s window of rows.
fn pool_columns(rows: &[f32], input_h: usize, out: Hw, window: PoolWindow, y: &mut [f32]) {
    let (stride, pad) = (window.stride.h, window.padding.h);
    for (i, dst) in y.chunks_mut(out.w).enumerate() {
        dst.fill(f32::NEG_INFINITY);
        let start = (i * stride).saturating_sub(pad);
        let end = (i * stride + window.kernel.h).saturating_sub(pad).min(input_h);
        for r in start..end {
            dst.iter_mut().zip(&rows[r * out.w..(r + 1) * out.w]).for_each(|(d, &v)| *d = nan_max(*d, v));
        }
    }
}
