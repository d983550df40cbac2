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
    let two_by_two = Hw { h: 2, w: 2 };
    if (window.kernel, window.stride, window.padding) == (two_by_two, two_by_two, Hw { h: 0, w: 0 }) {
        return x.par_chunks(plane).zip(y.par_chunks_mut(pooled)).for_each(|(x, y)| pool_2x2(x, input.w, out, y));
    }
    x.par_chunks(plane).zip(y.par_chunks_mut(pooled)).for_each(|(x, y)| {
        scratch::with(Buffer::PoolRows, |rows| {
            rows.clear();
            rows.resize(input.h * out.w, f32::NEG_INFINITY);
            pool_rows(x, input, out.w, window, rows);
            pool_columns(rows, input.h, out, window, y);
        })
    });
}

/// The 2 × 2, stride-2 window with no padding (YOLO's downsampling), in one pass: each output
/// row from its two input rows, pairs of values in a fixed pattern the compiler vectorizes.
fn pool_2x2(x: &[f32], width: usize, out: Hw, y: &mut [f32]) {
    for (i, dst) in y.chunks_exact_mut(out.w).enumerate() {
        let (top, bottom) = (&x[2 * i * width..][..2 * out.w], &x[(2 * i + 1) * width..][..2 * out.w]);
        for ((d, t), b) in dst.iter_mut().zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2)) {
            *d = nan_max(nan_max(t[0], t[1]), nan_max(b[0], b[1]));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2 × 2 fast path gives the separable path's values, NaN included, on odd sizes.
    #[test]
    fn two_by_two_matches_the_general_window() {
        let (input, out) = (Hw { h: 7, w: 9 }, Hw { h: 3, w: 4 });
        let mut x: Vec<f32> = (0..2 * 63).map(|i| ((i * 37) % 23) as f32 - 11.0).collect();
        x[20] = f32::NAN;
        x[63 + 40] = f32::NAN;
        let mut fast = vec![0.0; 2 * 12];
        let two = Hw { h: 2, w: 2 };
        let window = PoolWindow { kernel: two, stride: two, padding: Hw { h: 0, w: 0 } };
        max_pool_into(&x, input, out, window, &mut fast);
        for (plane, y) in x.chunks(63).zip(fast.chunks(12)) {
            let mut rows = vec![f32::NEG_INFINITY; input.h * out.w];
            let mut general = vec![0.0; 12];
            pool_rows(plane, input, out.w, window, &mut rows);
            pool_columns(&rows, input.h, out, window, &mut general);
            assert_eq!(format!("{y:?}"), format!("{general:?}"));
        }
        assert_eq!(fast.iter().filter(|v| v.is_nan()).count(), 2);
    }
}
