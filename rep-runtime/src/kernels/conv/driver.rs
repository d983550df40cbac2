//! One convolution on one image (or, for small maps, a whole batch): in bands of output rows,
//! split across rayon's threads, each band runs im2col + GEMM, the direct GEMM or the
//! channel-lanes kernel; depthwise layers take their direct loop.

use super::channel_lanes::{self, ChannelBlocks};
use super::{depthwise, direct, im2col};
use crate::geometry::ConvGeometry;
use crate::kernels::gemm::{Epilogue, MR, PackedMatrix, RightOperand, gemm_packed, resident_stride, sgemm};
use crate::kernels::scratch::{self, Buffer};
use crate::kernels::{Activation, SendPtr, even_part};
use ndarray::{ArrayView2, ArrayViewMut2, Axis, ShapeBuilder};
use rayon::prelude::*;
use std::ops::Range;

/// The shapes of one image's convolution, and what follows it.
pub(super) struct Plane<'g> {
    pub(super) geometry: &'g ConvGeometry,
    pub(super) height: usize,
    pub(super) width: usize,
    pub(super) out_h: usize,
    pub(super) out_w: usize,
    pub(super) activation: Activation,
}

/// What a convolution computes with besides its input.
#[derive(Clone, Copy)]
pub(super) struct Weights<'a> {
    /// Row-major `[C_out, C_in/g, k_h, k_w]`: read only by depthwise layers and when `packed`
    /// is `None`.
    pub(super) raw: &'a [f32],
    /// The same weights laid out per group ahead of time (planned layers).
    pub(super) packed: Option<Packed<'a>>,
    /// One value per output channel.
    pub(super) bias: Option<&'a [f32]>,
    /// The value of each input channel's padded positions (0 when `None`).
    pub(super) fill: Option<&'a [f32]>,
}

impl Plane<'_> {
    /// One image: `x` is `[C_in, H, W]`, `out` is `[C_out, H_out, W_out]`.
    ///
    /// The output rows are cut into bands that run in parallel (when rayon has more than one
    /// thread and the plane is large): each band unfolds its own columns (or, on the direct
    /// path, copies its input rows) and runs one GEMM.
    pub(super) fn run(&self, x: &[f32], weights: Weights<'_>, out: &mut [f32]) {
        let Weights { raw: weight, packed, bias, fill } = weights;
        let g = self.geometry;
        if g.in_per_group() == 1 {
            depthwise::conv(self, x, weight, bias, fill, out);
            return self.activation.apply_slice(out);
        }
        let (cin_g, cout_g) = (g.in_per_group(), g.out_per_group());
        let rows = cin_g * g.kernel.h * g.kernel.w;
        let (in_plane, out_plane) = (self.height * self.width, self.out_h * self.out_w);
        let direct = match packed {
            Some(Packed::Lanes(_)) => true,
            Some(Packed::Rows(_)) => direct::suits(self, cin_g, self.out_h),
            None => false,
        };
        // A band's working set per output column: its columns of `B` (unfolded, or packed from
        // the unfolded rows) and of `C`, or, on the direct and channel-lanes paths, the input
        // it reads and `C`.
        let per_column = if direct { cin_g * g.stride.h * g.stride.w + cout_g } else { 2 * rows + cout_g };
        let bands = self.bands(per_column);
        for group in 0..g.groups {
            let operands = Group {
                x: &x[group * cin_g * in_plane..(group + 1) * cin_g * in_plane],
                fill: fill.map(|f| &f[group * cin_g..(group + 1) * cin_g]),
                bias: bias.map(|b| &b[group * cout_g..(group + 1) * cout_g]),
                weight: match packed {
                    Some(Packed::Rows(packed)) => Weight::Packed(&packed[group]),
                    Some(Packed::Lanes(blocks)) => Weight::Lanes(&blocks[group]),
                    None => Weight::Raw(&weight[group * cout_g * rows..(group + 1) * cout_g * rows]),
                },
            };
            let out_g = &mut out[group * cout_g * out_plane..(group + 1) * cout_g * out_plane];
            let out_g = SendPtr(out_g.as_mut_ptr());
            (0..bands).into_par_iter().for_each(|band| {
                // `bands` a multiple of the threads shares the rows evenly among them.
                let rows = even_part(self.out_h, bands, band);
                // SAFETY: this band's columns of the group's output planes (rows `out_plane`
                // apart), which no other band touches, inside `out`.
                let mut c = unsafe {
                    let first = out_g.get().add(rows.start * self.out_w);
                    ArrayViewMut2::from_shape_ptr((cout_g, rows.len() * self.out_w).strides((out_plane, 1)), first)
                };
                // Too few bands to keep every thread busy: split the output channels too.
                let splits = (rayon::current_num_threads() / bands).max(1).min(cout_g / MIN_SPLIT_ROWS).max(1);
                match operands.weight {
                    Weight::Lanes(blocks) => {
                        let images = channel_lanes::Images {
                            x: operands.x,
                            x_step: 0,
                            c: SendPtr(c.as_mut_ptr()),
                            c_step: 0,
                            ldc: out_plane,
                            count: 1,
                        };
                        channel_lanes::band(self, &images, operands.bias, blocks, rows, splits);
                    }
                    Weight::Packed(packed) if direct => {
                        direct::band(self, &operands, packed, rows, &mut c, splits);
                    }
                    _ => self.unfolded_band(&operands, rows, &mut c, splits),
                }
            });
        }
    }

    /// Output rows `rows` of one group into `c` (`[C_out/g, rows.len()·W_out]`): the input
    /// itself (pointwise) or its unfolded columns (im2col) times the weights, packed or raw, in
    /// `splits` parallel blocks of output channels.
    fn unfolded_band(&self, group: &Group<'_>, rows: Range<usize>, c: &mut ArrayViewMut2<'_, f32>, splits: usize) {
        let g = self.geometry;
        let (channels, columns) = (g.in_per_group(), c.ncols());
        let depth = channels * g.kernel.h * g.kernel.w;
        let mut cols = scratch::take(Buffer::Im2col);
        let b = if g.is_pointwise() {
            RightOperand::Rows { values: &group.x[rows.start * self.out_w..], ldb: self.height * self.width }
        } else {
            // The unfolded rows are `ldb` apart: for the packed GEMM, which reads them in place
            // while they are in cache, a stride that spreads them over L1.
            let ldb = if let Weight::Raw(_) = group.weight { columns } else { resident_stride(columns) };
            let len = depth.saturating_sub(1) * ldb + columns;
            // Every slot is written by `unfold`; only growth needs initializing.
            let cols = scratch::lines(&mut cols, len);
            im2col::unfold(self, group.x, channels, group.fill, rows, cols, ldb);
            RightOperand::Resident { values: cols, ldb }
        };
        match group.weight {
            Weight::Packed(packed) => self.packed_gemm(packed, b, c, group.bias, splits),
            Weight::Lanes(_) => unreachable!("weights laid out for the channel-lanes kernel run it"),
            Weight::Raw(weight) => {
                for (o, row) in c.outer_iter_mut().enumerate() {
                    row.into_slice().expect("contiguous row").fill(group.bias.map_or(0.0, |b| b[o]));
                }
                let a = ArrayView2::from_shape((c.nrows(), depth), weight).expect("sizes checked");
                let (RightOperand::Rows { values, ldb } | RightOperand::Resident { values, ldb }) = b;
                let b = ArrayView2::from_shape((depth, columns).strides((ldb, 1)), values).expect("sizes checked");
                let split_rows = c.nrows().div_ceil(splits);
                c.axis_chunks_iter_mut(Axis(0), split_rows)
                    .into_par_iter()
                    .zip(a.axis_chunks_iter(Axis(0), split_rows))
                    .for_each(|(mut c, a)| {
                        sgemm(a, b, &mut c);
                        if self.activation != Activation::Identity {
                            c.mapv_inplace(|v| self.activation.apply(v));
                        }
                    });
            }
        }
        scratch::put_back(Buffer::Im2col, cols);
    }

    /// How many bands of output rows: enough that a band's working set (`per_column` floats
    /// per output column) stays within [`BAND_BYTES`], and, when the plane is large enough to
    /// share, at least two per thread and a multiple of the threads (bands differ by at most
    /// one row, so every thread gets the same number of rows give or take one).
    fn bands(&self, per_column: usize) -> usize {
        let out_plane = self.out_h * self.out_w;
        let threads = rayon::current_num_threads();
        let columns = (BAND_BYTES / (4 * per_column)).max(MIN_BAND_COLUMNS);
        let by_cache = self.out_h.div_ceil((columns / self.out_w).clamp(1, self.out_h));
        let parallel = (2 * threads).min(out_plane / MIN_BAND_COLUMNS).max(1);
        let bands = by_cache.max(parallel).min(self.out_h);
        if parallel < threads || self.out_h < threads {
            return bands;
        }
        match bands.next_multiple_of(threads) {
            up if up <= self.out_h => up,
            _ => self.out_h - self.out_h % threads,
        }
    }

    /// All `n` images of a batch at once, for small output planes: their unfolded columns
    /// side by side in one matrix, so that the GEMM streams each packed weight panel once for
    /// the whole batch (not once per image) and fills its 32-column panels; the products are
    /// then copied into each image's planes. `packed` is non-empty (so the layer is not
    /// depthwise).
    pub(super) fn run_batched(
        &self,
        x: &[f32],
        n: usize,
        packed: &[PackedMatrix],
        bias: Option<&[f32]>,
        fill: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let g = self.geometry;
        let (cin_g, cout_g, taps) = (g.in_per_group(), g.out_per_group(), g.kernel.h * g.kernel.w);
        let (in_plane, out_plane) = (self.height * self.width, self.out_h * self.out_w);
        let (rows, columns) = (cin_g * taps, n * out_plane);
        let ldb = resident_stride(columns);
        let (mut cols_buffer, mut products_buffer) =
            (scratch::take(Buffer::Im2col), scratch::take(Buffer::BatchedProducts));
        let cols = scratch::lines(&mut cols_buffer, rows * ldb);
        let products = scratch::lines(&mut products_buffer, cout_g * columns);
        let splits = rayon::current_num_threads().min(cout_g / MIN_SPLIT_ROWS).max(1);
        for group in 0..g.groups {
            // Channel by channel in parallel: its k_h·k_w rows of every image's columns.
            cols.par_chunks_mut(taps * ldb).enumerate().for_each(|(c, rows_c)| {
                let channel = group * cin_g + c;
                for image in 0..n {
                    let x_c = &x[(image * g.in_channels + channel) * in_plane..][..in_plane];
                    let fill_c = fill.map(|f| &f[channel..channel + 1]);
                    let dst = &mut rows_c[image * out_plane..];
                    im2col::unfold(self, x_c, 1, fill_c, 0..self.out_h, dst, ldb);
                }
            });
            let mut c = ArrayViewMut2::from_shape((cout_g, columns), &mut *products).expect("sized above");
            let b = RightOperand::Resident { values: cols, ldb };
            let bias_g = bias.map(|b| &b[group * cout_g..(group + 1) * cout_g]);
            self.packed_gemm(&packed[group], b, &mut c, bias_g, splits);
            let products = &*products;
            out.par_chunks_mut(out_plane).enumerate().for_each(|(plane, y)| {
                let (image, o) = (plane / g.out_channels, plane % g.out_channels);
                if o / cout_g == group {
                    let o = o % cout_g;
                    y.copy_from_slice(&products[o * columns + image * out_plane..][..out_plane]);
                }
            });
        }
        scratch::put_back(Buffer::Im2col, cols_buffer);
        scratch::put_back(Buffer::BatchedProducts, products_buffer);
    }

    /// `c = a · b + bias` then the activation, with `a` pre-packed, in `splits` parallel blocks
    /// of whole [`MR`]-row panels; `bias` (one value per row of `c`) and the activation are
    /// applied by the GEMM's micro-kernel before it stores each block.
    pub(super) fn packed_gemm(
        &self,
        a: &PackedMatrix,
        b: RightOperand<'_>,
        c: &mut ArrayViewMut2<'_, f32>,
        bias: Option<&[f32]>,
        splits: usize,
    ) {
        let columns = c.ncols();
        if columns == 0 {
            return;
        }
        let epilogue = Epilogue { bias, activation: self.activation };
        in_panel_splits(a, splits, c, |panels, first, ldc| {
            // SAFETY: `first` addresses this split's rows of `c`, `ldc` apart, which no other split
            // touches.
            unsafe { gemm_packed(a, panels, b, columns, first, ldc, false, epilogue) }
        });
    }
}

/// Runs `gemm(panels, first, ldc)` for `splits` parallel blocks of `a`'s panels, `first` being
/// the first of that block's rows of `c` (a live mutable view whose rows are `a`'s).
pub(super) fn in_panel_splits(
    a: &PackedMatrix,
    splits: usize,
    c: &mut ArrayViewMut2<'_, f32>,
    gemm: impl Fn(Range<usize>, *mut f32, usize) + Sync,
) {
    let ldc = c.strides()[0] as usize;
    let c_ptr = SendPtr(c.as_mut_ptr());
    in_parts(a.panels(), splits, |range| {
        // SAFETY (of the offset): row `range.start·MR` of `c`, inside the view.
        let first = unsafe { c_ptr.get().add(range.start * MR * ldc) };
        gemm(range, first, ldc);
    });
}

/// Runs `f` on `0..count` cut into at most `parts` consecutive ranges of equal length (the last
/// may be shorter), in parallel; on the calling thread when there is one range.
pub(super) fn in_parts(count: usize, parts: usize, f: impl Fn(Range<usize>) + Sync) {
    let per_part = count.div_ceil(parts.max(1)).max(1);
    if per_part >= count {
        return f(0..count);
    }
    (0..count.div_ceil(per_part))
        .into_par_iter()
        .for_each(|part| f(part * per_part..((part + 1) * per_part).min(count)));
}

/// One group's operands in [`Plane::run`].
pub(super) struct Group<'a> {
    /// The group's input planes, `[C_in/g, H, W]`.
    pub(super) x: &'a [f32],
    /// Their padding values.
    pub(super) fill: Option<&'a [f32]>,
    /// One value per output channel of the group.
    pub(super) bias: Option<&'a [f32]>,
    pub(super) weight: Weight<'a>,
}

/// A layer's weights laid out ahead of time by a [`super::PackedConv`], one per group.
#[derive(Clone, Copy)]
pub(super) enum Packed<'a> {
    /// For the GEMM.
    Rows(&'a [PackedMatrix]),
    /// For the channel-lanes kernel.
    Lanes(&'a [ChannelBlocks]),
}

/// A group's weights: laid out ahead of time (planned layers), or row-major `[C_out/g, C_in/g·k_h·k_w]`.
#[derive(Clone, Copy)]
pub(super) enum Weight<'a> {
    /// Packed once for the GEMM by a [`super::PackedConv`].
    Packed(&'a PackedMatrix),
    /// Laid out once for the channel-lanes kernel by a [`super::PackedConv`].
    Lanes(&'a ChannelBlocks),
    /// As the caller of [`super::conv2d_into`] gave them.
    Raw(&'a [f32]),
}

/// Largest output plane (positions per image) for which a planned conv runs the whole batch
/// in one GEMM ([`Plane::run_batched`]).
pub(super) const BATCHED_PLANE: usize = 256;

/// Fewest output positions worth a parallel band of their own.
const MIN_BAND_COLUMNS: usize = 96;

/// Most bytes of a band's working set (see [`Plane::bands`]): half of a 1 MiB L2, so that
/// the unfolded or packed columns are still in cache when the GEMM reads them.
const BAND_BYTES: usize = 512 << 10;

/// Fewest output channels worth a parallel GEMM of their own.
const MIN_SPLIT_ROWS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_are_a_multiple_of_the_threads_when_the_plane_is_shared() {
        let threads = rayon::current_num_threads();
        for (cin, cout, size, stride) in
            [(3, 48, 224, 2), (48, 96, 56, 2), (96, 192, 28, 2), (192, 1280, 14, 2), (8, 8, 3, 1)]
        {
            let g = ConvGeometry::new(cin, cout, 3).stride(stride).padding(1);
            let out = g.output_size(size, size).unwrap();
            let plane = Plane {
                geometry: &g,
                height: size,
                width: size,
                out_h: out.h,
                out_w: out.w,
                activation: Activation::Relu,
            };
            let bands = plane.bands(2 * cin * 9 + cout);
            assert!((1..=out.h).contains(&bands), "{cin}->{cout} at {size}: {bands} bands");
            if out.h * out.w >= threads * MIN_BAND_COLUMNS && out.h >= threads {
                assert!(bands.is_multiple_of(threads), "{cin}->{cout} at {size}: {bands} bands, {threads} threads");
            }
        }
    }
}
