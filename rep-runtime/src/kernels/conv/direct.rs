//! Direct convolution for planned (packed) layers: each output row is one GEMM whose `B` rows,
//! one per tap `(c, u, v)`, are read where they lie in a prepared copy of the band's input,
//! instead of in an im2col matrix that holds every input value `k_h·k_w / (s_h·s_w)` times.
//!
//! The copy is the band's input rows, padded, with each row split into its `s_w` column phases
//! (`phase φ` holds columns `φ, φ + s_w, φ + 2·s_w, …`). A tap then reads, for consecutive output
//! columns, consecutive values of one phase: for stride 2 the micro-kernel loads contiguous
//! vectors where im2col would have gathered every other value. The copy writes each input value
//! once per band (im2col: 2.25 times for a stride-2 3×3 layer, 9 times at stride 1).

use super::driver::{Group, Plane, in_panel_splits};
use super::im2col::copy_strided;
use super::valid_range;
use crate::kernels::gemm::{Epilogue, ListedRows, NR, PackedMatrix, gemm_listed};
use crate::kernels::scratch::{self, Buffer};
use ndarray::ArrayViewMut2;
use std::ops::Range;

/// The prepared input of a band: for input channel `c`, band row `r` and phase `φ`, `width`
/// values at `((c·rows + r)·phases + φ)·width`, value `j` being
/// `x_pad[c, first_row + r, j·phases + φ]` (padded positions take the channel's fill).
#[derive(Clone, Copy, Debug)]
struct Prepared {
    /// Input rows of the band (padded coordinates): every row its output rows' taps read.
    rows: usize,
    /// Column phases: the layer's column stride.
    phases: usize,
    /// Values per phase row: an output row's width plus the widest tap's shift.
    width: usize,
}

impl Prepared {
    fn new(plane: &Plane<'_>, output_rows: usize) -> Self {
        let g = plane.geometry;
        let rows = (output_rows.max(1) - 1) * g.stride.h + (g.kernel.h - 1) * g.dilation.h + 1;
        let width = plane.out_w + (g.kernel.w - 1) * g.dilation.w / g.stride.w;
        Prepared { rows, phases: g.stride.w, width }
    }

    /// Floats of one input channel.
    fn channel(&self) -> usize {
        self.rows * self.phases * self.width
    }
}

/// Whether [`band`] runs `plane` (with `channels` input channels per group, in bands of up to
/// `output_rows` rows) rather than im2col: a layer with a spatial kernel (pointwise layers read
/// their input in place already), whose prepared band is addressable by 32-bit offsets, and
/// whose output rows fill at least [`MIN_LANE_USE`] of the micro-kernel's [`NR`]-column blocks.
pub(super) fn suits(plane: &Plane<'_>, channels: usize, output_rows: usize) -> bool {
    let g = plane.geometry;
    let slots = plane.out_w.div_ceil(NR) * NR;
    !g.is_pointwise()
        && plane.out_w as f64 >= MIN_LANE_USE * slots as f64
        && channels * Prepared::new(plane, output_rows).channel() < u32::MAX as usize
}

/// Least fraction of the micro-kernel's columns that an output row must fill for the direct
/// path: its blocks never span two output rows, where im2col's fill every column but the last.
/// Measured against im2col on one Zen 5 core (`conv_layers`), the direct path took 0.83–0.92 of
/// the time on rows of 28, 56, 80, 160 and 320 columns (a fill of 0.83–1), and 1.04–2.2 times
/// on rows of 7, 14, 20 and 40 (0.22–0.63).
pub(super) const MIN_LANE_USE: f64 = 0.75;

/// Output rows `rows` of one group: `c` (`[C_out/g, rows.len()·W_out]`) receives
/// `activation(packed · taps + bias)`, its output channels cut into `splits` parallel blocks.
pub(super) fn band(
    plane: &Plane<'_>,
    group: &Group<'_>,
    packed: &PackedMatrix,
    rows: Range<usize>,
    c: &mut ArrayViewMut2<'_, f32>,
    splits: usize,
) {
    let g = plane.geometry;
    let channels = g.in_per_group();
    let layout = Prepared::new(plane, rows.len());
    let mut prepared = scratch::take(Buffer::Im2col);
    let prepared_band = scratch::lines(&mut prepared, channels * layout.channel());
    let first_row = (rows.start * g.stride.h) as isize - g.padding.h as isize;
    prepare(plane, group.x, group.fill, first_row, layout, prepared_band);
    let mut offsets = scratch::take_offsets();
    tap_offsets(plane, channels, layout, &mut offsets);
    let epilogue = Epilogue { bias: group.bias, activation: plane.activation };
    let b = ListedRows {
        values: prepared_band,
        offsets: &offsets,
        row_step: g.stride.h * layout.phases * layout.width,
        rows: rows.len(),
        columns: plane.out_w,
    };
    in_panel_splits(packed, splits, c, |panels, first, ldc| {
        // SAFETY: `first` addresses this split's rows of `c`, `ldc` apart, which no other split
        // touches; every offset plus `out_w` stays inside the prepared band (`tap_offsets`), whose
        // output rows `b` steps through.
        unsafe { gemm_listed(packed, panels, b, first, ldc, epilogue) }
    });
    scratch::put_back_offsets(offsets);
    scratch::put_back(Buffer::Im2col, prepared);
}

/// Writes `x`'s rows `first_row ..` (row indices of the unpadded input; rows outside it are
/// padding) into `dst`, laid out as `layout` says.
fn prepare(plane: &Plane<'_>, x: &[f32], fill: Option<&[f32]>, first_row: isize, layout: Prepared, dst: &mut [f32]) {
    let g = plane.geometry;
    let (h, w) = (plane.height, plane.width);
    for (c, dst_c) in dst.chunks_exact_mut(layout.channel()).enumerate() {
        let pad = fill.map_or(0.0, |f| f[c]);
        let x_c = &x[c * h * w..(c + 1) * h * w];
        for (r, dst_r) in dst_c.chunks_exact_mut(layout.phases * layout.width).enumerate() {
            let ih = first_row + r as isize;
            if !(0..h as isize).contains(&ih) {
                dst_r.fill(pad);
                continue;
            }
            let x_row = &x_c[ih as usize * w..(ih as usize + 1) * w];
            for (phase, dst_p) in dst_r.chunks_exact_mut(layout.width).enumerate() {
                // Value `j` of the phase is input column `j·s_w + phase − p_w`.
                let offset = phase as isize - g.padding.w as isize;
                let (lo, hi) = valid_range(layout.width, w, g.stride.w, offset);
                dst_p[..lo].fill(pad);
                dst_p[hi..].fill(pad);
                let start = ((lo * g.stride.w) as isize + offset) as usize;
                copy_strided(&mut dst_p[lo..hi], &x_row[start..], g.stride.w);
            }
        }
    }
}

/// `offsets[(c·k_h + u)·k_w + v]` (the GEMM's depth order, as the packed weights have it): where
/// tap `(c, u, v)` of output row 0, column 0 lies in the prepared band. Output row `i` reads
/// the same taps `i·s_h` prepared rows further, and column `j` `j` values further.
fn tap_offsets(plane: &Plane<'_>, channels: usize, layout: Prepared, offsets: &mut Vec<u32>) {
    let g = plane.geometry;
    offsets.clear();
    for c in 0..channels {
        for u in 0..g.kernel.h {
            for v in 0..g.kernel.w {
                let (phase, shift) = (v * g.dilation.w % g.stride.w, v * g.dilation.w / g.stride.w);
                let row = (c * layout.rows + u * g.dilation.h) * layout.phases + phase;
                offsets.push((row * layout.width + shift) as u32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::ConvGeometry;
    use crate::kernels::Activation;
    use crate::kernels::conv::{ConvOperands, PackedConv, conv2d_then};
    use crate::kernels::test_values as values;
    use ndarray::{Array1, Array4, ArrayView4};

    #[test]
    fn direct_bands_match_the_unpacked_convolution() {
        // (geometry, input height, width): strides 1–3, dilation, non-square kernels, groups,
        // rows of one or several column blocks (with a narrow last one), maps cut into bands.
        let cases = [
            (ConvGeometry::new(5, 13, 3).stride(2).padding(1), 9, 60),
            (ConvGeometry::new(3, 8, 3).padding(1), 7, 30),
            (ConvGeometry::new(6, 27, 3).stride(2).padding(1).groups(3), 6, 112),
            (ConvGeometry::new(4, 6, (3, 5)).stride((1, 2)).padding((1, 2)).dilation((2, 1)), 8, 57),
            (ConvGeometry::new(2, 3, 5).stride(3).padding(2), 20, 90),
            (ConvGeometry::new(16, 30, 3).stride(2).padding(1), 70, 56),
            (ConvGeometry::new(3, 4, 2).stride(2), 5, 49),
        ];
        for (i, (g, h, w)) in cases.into_iter().enumerate() {
            let shape = [2, g.in_channels, h, w];
            let out = g.output_size(h, w).unwrap();
            let plane =
                Plane { geometry: &g, height: h, width: w, out_h: out.h, out_w: out.w, activation: Activation::Relu };
            assert!(suits(&plane, g.in_per_group(), out.h), "case {i} should take the direct path");
            let weight = Array4::from_shape_vec(g.weight_shape(), values(g.weight_count(), 7)).unwrap();
            let (bias, fill) = (Array1::from(values(g.out_channels, 8)), Array1::from(values(g.in_channels, 9)));
            let operands = ConvOperands { weight: weight.view(), bias: Some(bias.view()), pad_fill: Some(fill.view()) };
            let mut x = values(shape.iter().product(), 10);
            x[3] = f32::NAN;
            let expected =
                conv2d_then(ArrayView4::from_shape(shape, &x).unwrap(), &g, operands, Activation::Relu).unwrap();
            let mut y = vec![0.0; expected.len()];
            PackedConv::new(&g, operands).unwrap().run_into(&x, shape, Activation::Relu, &mut y).unwrap();
            crate::kernels::assert_matches_with_nan(&format!("case {i}"), &y, &expected);
        }
    }

    #[test]
    fn narrow_rows_stay_with_im2col() {
        for (w, direct) in [(7, false), (14, false), (20, false), (40, false), (24, true), (28, true), (56, true)] {
            let g = ConvGeometry::new(8, 8, 3).padding(1);
            let plane =
                Plane { geometry: &g, height: 4, width: w, out_h: 4, out_w: w, activation: Activation::Identity };
            assert_eq!(suits(&plane, 8, 4), direct, "width {w}");
        }
    }
}
