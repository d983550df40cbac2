//! im2col: unfold the receptive fields of one group into a `[C·k_h·k_w, H_out·W_out]` matrix.

use super::driver::Plane;
use super::valid_range;
use crate::kernels::scratch;

/// Fills `cols` (row `(c·k_h + u)·k_w + v`, `row_stride` floats apart, column
/// `(i − rows.start)·W_out + j`, for output rows `i` in `rows`) with
/// `x_pad[c, i·s_h + u·d_h − p_h, j·s_w + v·d_w − p_w]`, padded positions taking `fill[c]`
/// (or 0). Floats between one row's last column and the next row are left alone.
pub(super) fn unfold(
    plane: &Plane<'_>,
    x: &[f32],
    channels: usize,
    fill: Option<&[f32]>,
    rows: std::ops::Range<usize>,
    cols: &mut [f32],
    row_stride: usize,
) {
    let g = plane.geometry;
    let (h, w, out_h, out_w) = (plane.height, plane.width, plane.out_h, plane.out_w);
    let out_plane = rows.len() * out_w;
    let mut col_rows = cols.chunks_mut(row_stride).map(|row| &mut row[..out_plane]);
    if out_w < GATHER_WIDTH && channels >= GATHER_CHANNELS && out_plane > 0 && h * w < PADDED as usize {
        return gather(plane, x, channels, fill, rows, col_rows);
    }
    for c in 0..channels {
        let pad = fill.map_or(0.0, |f| f[c]);
        let x_c = &x[c * h * w..(c + 1) * h * w];
        for u in 0..g.kernel.h {
            let off_h = (u * g.dilation.h) as isize - g.padding.h as isize;
            let (i_lo, i_hi) = valid_range(out_h, h, g.stride.h, off_h);
            for v in 0..g.kernel.w {
                let row = col_rows.next().expect("cols sized by caller");
                let off_w = (v * g.dilation.w) as isize - g.padding.w as isize;
                let (j_lo, j_hi) = valid_range(out_w, w, g.stride.w, off_w);
                for (i, out_row) in rows.clone().zip(row.chunks_mut(out_w)) {
                    if i < i_lo || i >= i_hi {
                        out_row.fill(pad);
                        continue;
                    }
                    let ih = (i * g.stride.h) as isize + off_h;
                    let x_row = &x_c[ih as usize * w..(ih as usize + 1) * w];
                    out_row[..j_lo].fill(pad);
                    out_row[j_hi..].fill(pad);
                    let start = ((j_lo * g.stride.w) as isize + off_w) as usize;
                    copy_strided(&mut out_row[j_lo..j_hi], &x_row[start..], g.stride.w);
                }
            }
        }
    }
}

/// `dst[j] = src[stride·j]` for every `j < dst.len()` (`src` holds at least
/// `stride·(dst.len() − 1) + 1` values).
pub(super) fn copy_strided(dst: &mut [f32], src: &[f32], stride: usize) {
    match stride {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => every_other(dst, src),
        _ => dst.iter_mut().zip(src.iter().step_by(stride)).for_each(|(d, &s)| *d = s),
    }
}

/// `dst[j] = src[2·j]` for every `j < dst.len()` (`src` holds at least `2·dst.len() − 1`
/// values): the unfolded row of a stride-2 tap.
fn every_other(dst: &mut [f32], src: &[f32]) {
    assert!(src.len() + 1 >= 2 * dst.len(), "every_other: {} values for {} outputs", src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::isa::avx512() {
        // SAFETY: the CPU has AVX-512F; the lengths are checked above.
        return unsafe { every_other_avx512(dst, src) };
    }
    dst.iter_mut().zip(src.iter().step_by(2)).for_each(|(d, &s)| *d = s);
}

/// [`every_other`] 16 values at a time: two loads of 16 and one two-source permutation (the
/// compiler's code for the plain loop took a third of a stride-2 layer's time).
///
/// # Safety
/// The CPU supports AVX-512F; `src.len() + 1 ≥ 2·dst.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn every_other_avx512(dst: &mut [f32], src: &[f32]) {
    use crate::kernels::lane_mask;
    use std::arch::x86_64::*;
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let (n, s) = (dst.len(), src.as_ptr());
    let mut j = 0;
    // SAFETY (all loads and stores): full steps read src[2j .. 2j + 32) and write dst[j .. j + 16),
    // both inside; the last step's masks keep to `src.len()` and `n`.
    while j + 16 <= n && 2 * j + 32 <= src.len() {
        unsafe {
            let (lo, hi) = (_mm512_loadu_ps(s.add(2 * j)), _mm512_loadu_ps(s.add(2 * j + 16)));
            _mm512_storeu_ps(dst.as_mut_ptr().add(j), _mm512_permutex2var_ps(lo, evens, hi));
        }
        j += 16;
    }
    if j < n {
        // At most 16 outputs remain (a full step stops short only at `src`'s last value).
        let available = (src.len() - 2 * j).min(32);
        unsafe {
            let lo = _mm512_maskz_loadu_ps(lane_mask(available), s.add(2 * j));
            let hi = _mm512_maskz_loadu_ps(lane_mask(available.saturating_sub(16)), s.add(2 * j + 16));
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(j), lane_mask(n - j), _mm512_permutex2var_ps(lo, evens, hi));
        }
    }
}

/// Output rows of at most 8 columns unfold through an index table (below), not row by row
/// (measured: the digits network trains ~25 % faster; rows of 14 columns gain nothing).
const GATHER_WIDTH: usize = 9;
/// Fewest channels over which building the index table pays.
const GATHER_CHANNELS: usize = 4;

/// A padded position in the index table (never a valid index: only smaller planes gather).
const PADDED: u32 = u32::MAX;

/// [`unfold`] for narrow maps (late layers, small images), where copying rows of a few values
/// costs more in bookkeeping than in copying: each column's input position per tap comes from a
/// table built once per shape (and kept for the next call of the same shape), then every channel
/// gathers through it.
fn gather<'a>(
    plane: &Plane<'_>,
    x: &[f32],
    channels: usize,
    fill: Option<&[f32]>,
    rows: std::ops::Range<usize>,
    mut col_rows: impl Iterator<Item = &'a mut [f32]>,
) {
    let (h, w) = (plane.height, plane.width);
    let taps = plane.geometry.kernel.h * plane.geometry.kernel.w;
    let out_plane = rows.len() * plane.out_w;
    scratch::with_index_table(|table| {
        let key = (*plane.geometry, [h, w, plane.out_w], rows.clone());
        if table.key.as_ref() != Some(&key) {
            // Refilled in place: once grown, switching shapes allocates nothing (plans stay
            // allocation-free).
            fill_positions(plane, rows, &mut table.positions);
            table.key = Some(key);
        }
        for c in 0..channels {
            let pad = fill.map_or(0.0, |f| f[c]);
            let x_c = &x[c * h * w..(c + 1) * h * w];
            for tap in table.positions.chunks_exact(out_plane).take(taps) {
                let row = col_rows.next().expect("cols sized by caller");
                for (dst, &p) in row.iter_mut().zip(tap) {
                    *dst = x_c.get(p as usize).copied().unwrap_or(pad);
                }
            }
        }
    });
}

/// Writes into `table` the input position (within one channel) each tap of each output column
/// reads, tap by tap.
fn fill_positions(plane: &Plane<'_>, rows: std::ops::Range<usize>, table: &mut Vec<u32>) {
    let g = plane.geometry;
    table.clear();
    for u in 0..g.kernel.h {
        for v in 0..g.kernel.w {
            for i in rows.clone() {
                for j in 0..plane.out_w {
                    let ih = (i * g.stride.h + u * g.dilation.h) as isize - g.padding.h as isize;
                    let iw = (j * g.stride.w + v * g.dilation.w) as isize - g.padding.w as isize;
                    let inside = (0..plane.height as isize).contains(&ih) && (0..plane.width as isize).contains(&iw);
                    table.push(if inside { (ih as usize * plane.width + iw as usize) as u32 } else { PADDED });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_other_takes_the_even_values_at_every_length() {
        for n in 0..80usize {
            for extra in [0, 1, 2, 40] {
                let src: Vec<f32> = (0..(2 * n).saturating_sub(1) + extra).map(|v| v as f32).collect();
                let mut dst = vec![f32::NAN; n + 3];
                every_other(&mut dst[..n], &src);
                assert!(dst[..n].iter().enumerate().all(|(j, &v)| v == (2 * j) as f32), "n {n}, extra {extra}");
                assert!(dst[n..].iter().all(|v| v.is_nan()), "wrote past the end: n {n}");
            }
        }
    }
}
