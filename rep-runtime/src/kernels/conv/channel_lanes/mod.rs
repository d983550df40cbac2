//! Direct convolution with the output channels along the vector lanes: each micro-kernel call
//! holds `P` output positions × `16·V` output channels in registers and, for every tap
//! `(c, u, v)`, multiplies one vector of weights (`16·V` channels of that tap) by each position's
//! input value, broadcast from where it lies in the NCHW input
//! (`y[o, p] += W[o, k] · x[k, p]`, `o` along the lanes).
//!
//! Nothing is copied (im2col copies each input value once per tap that reads it) and no lane is
//! idle on a narrow output row (as when the lanes hold output columns): a stride only changes
//! which input values are broadcast, and the positions of one call may span output rows. The
//! products come out position by position, so they are transposed into the output planes as
//! they are stored.

#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

use super::driver::{Plane, in_parts};
use super::valid_range;
use crate::geometry::ConvGeometry;
use crate::kernels::scratch;
use crate::kernels::{Activation, SendPtr};
use portable::portable_kernel;
use std::ops::Range;

/// Lanes of one vector of output channels.
const LANES: usize = 16;
/// Most vectors of output channels per block (`P·V` accumulators must fit the 32 registers).
const MAX_VECTORS: usize = 4;

/// Whether a planned layer of geometry `g` (padded with zeros unless `pad_fill`) runs the
/// channel-lanes kernel: a strided layer with a spatial kernel, zero padding and a depth
/// (`C_in/g·k_h·k_w`) of at least [`MIN_DEPTH`].
///
/// Measured on one Zen 5 core against the GEMM paths (time ratio; `conv_layers`, and `repvgg
/// bench --layers` for the network): 0.62–0.83 on RepVGG-A0's stride-2 layers from 48 channels
/// on, 0.79 on its 192→1280 at 14² in the network (whose weights come from memory); 0.83–0.97 on
/// YOLOv7's, from 32→64 at 640² to 512→512 at 40². A depth of 27 (3→48) took 1.2–1.4 times as
/// long: with few taps, storing each position's channels into their planes costs more than
/// the products.
pub(crate) fn suits(g: &ConvGeometry, pad_fill: bool) -> bool {
    let depth = g.in_per_group() * g.kernel.h * g.kernel.w;
    !pad_fill
        && !g.is_pointwise()
        && (g.stride.h > 1 || g.stride.w > 1)
        && depth >= MIN_DEPTH
        && depth * LANES * MAX_VECTORS <= u32::MAX as usize
}

/// Fewest taps per output value for [`suits`].
const MIN_DEPTH: usize = 64;

/// Whether an input of `[C_in, H, W]` planes is addressable by the kernel's 32-bit tap offsets.
pub(crate) fn addressable(g: &ConvGeometry, height: usize, width: usize) -> bool {
    g.in_per_group().saturating_mul(height).saturating_mul(width) <= u32::MAX as usize
}

/// One group's weights `[C_out/g, depth]` laid out for [`band`]: cut into blocks of `16·V`
/// output channels (`V` ≤ [`MAX_VECTORS`], the same for every block), each holding, tap by tap,
/// the tap's weight for each of its channels (zeros past the last channel).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ChannelBlocks {
    data: Vec<f32>,
    channels: usize,
    depth: usize,
    vectors: usize,
}

impl ChannelBlocks {
    /// Lays out the row-major `[channels, depth]` weights `w`.
    pub(crate) fn new(w: &[f32], channels: usize, depth: usize) -> Self {
        let needed = channels.div_ceil(LANES).max(1);
        let vectors = needed.div_ceil(needed.div_ceil(MAX_VECTORS));
        let width = LANES * vectors;
        let blocks = channels.div_ceil(width);
        let mut data = vec![0.0; blocks * depth * width];
        for (b, block) in data.chunks_exact_mut(depth * width).enumerate() {
            for (k, tap) in block.chunks_exact_mut(width).enumerate() {
                for (lane, slot) in tap.iter_mut().enumerate().take(channels.saturating_sub(b * width)) {
                    *slot = w[(b * width + lane) * depth + k];
                }
            }
        }
        ChannelBlocks { data, channels, depth, vectors }
    }

    /// Floats held, padding included.
    pub(crate) fn floats(&self) -> usize {
        self.data.len()
    }

    fn width(&self) -> usize {
        LANES * self.vectors
    }

    fn blocks(&self) -> usize {
        self.channels.div_ceil(self.width())
    }

    fn block(&self, b: usize) -> &[f32] {
        let len = self.depth * self.width();
        &self.data[b * len..(b + 1) * len]
    }
}

/// Where a micro-kernel call reads its positions and stores its products.
#[derive(Clone, Copy)]
struct Tile<const P: usize> {
    /// Each position's origin in the group's input: where its tap at input offset 0 would be
    /// (possibly outside the input, for a position in the padding's reach; only its valid
    /// taps are read).
    origins: [*const f32; P],
    /// The origin of the next call's first position, whose taps this call prefetches (a hint:
    /// never read).
    next: *const f32,
    /// Weights the next part of the taps will read, prefetched a line per tap (a hint).
    upcoming: *const f32,
    /// Each position's column of `C`.
    columns: [usize; P],
    out: BlockOutput,
    pass: Pass,
}

/// One valid tap of a class of positions: where its weights lie in a block (`k·16·V` floats
/// for tap `k` of the GEMM's depth order `(c, u, v)`) and where its input value lies from a
/// position's origin (`c·H·W + u·d_h·W + v·d_w`).
type Tap = [u32; 2];

/// Output rows `rows` of one group of each of `images`: its `C` (`[C_out/g, rows.len()·W_out]`)
/// receives `activation(W · x + bias)`, the blocks of output channels run in `splits` parallel
/// parts.
///
/// The input is read where it lies: positions are grouped into rectangles ([`Class`]es) whose
/// taps fall in the padding alike (the interior; each border row and column), and each sums
/// only its valid taps, which is exact for zero padding. The taps run in parts whose weights
/// stay in L2 while every position of every image runs; each part prefetches the next one's
/// weights, a line per tap, so that the weights stream from memory at the pace of the products.
pub(super) fn band(
    plane: &Plane<'_>,
    images: &Images<'_>,
    bias: Option<&[f32]>,
    weights: &ChannelBlocks,
    rows: Range<usize>,
    splits: usize,
) {
    let blocks = weights.blocks();
    let width = weights.width();
    let ldc = images.ldc;
    let per_part = (PART_BYTES / (4 * width)).max(1);
    let parts = weights.depth.div_ceil(per_part).max(1);
    let per_part = weights.depth.div_ceil(parts).max(1);
    let run = |blocks: Range<usize>| {
        let mut taps = scratch::take_offsets();
        taps.clear();
        for class in classes(plane, rows.clone()) {
            class_taps(plane, width, &class, &mut taps);
        }
        let all = taps.as_chunks::<2>().0;
        for b in blocks.clone() {
            let first = b * width;
            for part in 0..parts {
                let depths = part * per_part..((part + 1) * per_part).min(weights.depth);
                // The weights the next part will read (of this block, or of the next one).
                let upcoming = match (part + 1 < parts, b + 1 < blocks.end) {
                    (true, _) => &weights.block(b)[depths.end * width..],
                    (false, true) => weights.block(b + 1),
                    (false, false) => &[],
                };
                let mut prefetch = upcoming.as_ptr_range();
                let block_pass = |image: usize| BlockPass {
                    plane,
                    x: images.x(image),
                    first_row: rows.start,
                    w: weights.block(b),
                    vectors: weights.vectors,
                    out: BlockOutput {
                        // SAFETY (of the offset): row `first` of the image's `C`.
                        c: unsafe { images.c.get().add(image * images.c_step + first * ldc) },
                        ldc,
                        channels: width.min(weights.channels - first),
                        bias: bias.map_or(std::ptr::null(), |bias| bias[first..].as_ptr()),
                        activation: plane.activation,
                    },
                    pass: Pass { accumulate: part > 0, finish: part + 1 == parts },
                };
                // Each class's taps, then its taps in this part (which serve every image).
                let mut remaining = all;
                for class in classes(plane, rows.clone()) {
                    let taps_of_class;
                    (taps_of_class, remaining) = remaining.split_at(class.tap_count(plane));
                    let in_part = |k: usize| taps_of_class.partition_point(|t| (t[0] as usize) < k * width);
                    let part_taps = &taps_of_class[in_part(depths.start)..in_part(depths.end)];
                    for image in 0..images.count {
                        // SAFETY: the block's rows of the image's `C` belong to this part of the
                        // band; the taps were checked by `class_taps`.
                        unsafe { block_pass(image).run(&class, part_taps, &mut prefetch) };
                    }
                }
            }
        }
        scratch::put_back_offsets(taps);
    };
    in_parts(blocks, splits, run);
}

/// The images a [`band`] runs on, for one group: image `i`'s input planes (`[C_in/g, H, W]`)
/// start at `x[i·x_step]`, its output rows (`C`: one row per output channel of the group,
/// `ldc` apart) at `c + i·c_step`. Nothing else writes those rows during the band.
pub(super) struct Images<'a> {
    pub(super) x: &'a [f32],
    pub(super) x_step: usize,
    pub(super) c: SendPtr,
    pub(super) c_step: usize,
    pub(super) ldc: usize,
    pub(super) count: usize,
}

impl Images<'_> {
    /// Image `i`'s input planes of the group.
    fn x(&self, i: usize) -> &[f32] {
        &self.x[i * self.x_step..]
    }
}

/// All `n` images of a batch (`x`: `[N, C_in, H, W]`, `out`: `[N, C_out, H_out, W_out]`) at once,
/// for small output planes of a wide layer: each part of the weights serves every image while
/// it is in L2, instead of being read from memory once per image.
pub(super) fn batch(
    plane: &Plane<'_>,
    x: &[f32],
    n: usize,
    weights: &[ChannelBlocks],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let g = plane.geometry;
    let (cin_g, cout_g) = (g.in_per_group(), g.out_per_group());
    let (in_plane, out_plane) = (plane.height * plane.width, plane.out_h * plane.out_w);
    for (group, weights) in weights.iter().enumerate() {
        let images = Images {
            x: &x[group * cin_g * in_plane..],
            x_step: g.in_channels * in_plane,
            // SAFETY (of the offset): the group's first output plane of image 0, inside `out`.
            c: SendPtr(unsafe { out.as_mut_ptr().add(group * cout_g * out_plane) }),
            c_step: g.out_channels * out_plane,
            ldc: out_plane,
            count: n,
        };
        let bias = bias.map(|b| &b[group * cout_g..(group + 1) * cout_g]);
        band(plane, &images, bias, weights, 0..plane.out_h, rayon::current_num_threads());
    }
}

/// Most bytes of weights per part of the taps ([`band`]): a quarter of a 1 MiB L2.
const PART_BYTES: usize = 256 << 10;

/// Which pass over the taps a kernel call makes.
#[derive(Clone, Copy)]
struct Pass {
    /// Adds to the partial sums `C` holds (every part but the first).
    accumulate: bool,
    /// Adds the bias and applies the activation (the last part).
    finish: bool,
}

/// A rectangle of output positions whose valid taps are alike: kernel rows `u` in `taps.0`,
/// columns `v` in `taps.1`.
struct Class {
    rows: Range<usize>,
    columns: Range<usize>,
    taps: ((usize, usize), (usize, usize)),
}

impl Class {
    /// Its valid taps, over every input channel of the group.
    fn tap_count(&self, plane: &Plane<'_>) -> usize {
        let ((u0, u1), (v0, v1)) = self.taps;
        plane.geometry.in_per_group() * (u1 - u0) * (v1 - v0)
    }
}

/// The classes of output rows `rows`, in a fixed order: row segments, then column segments.
fn classes<'a>(plane: &'a Plane<'_>, rows: Range<usize>) -> impl Iterator<Item = Class> + 'a {
    segments(rows, move |i| tap_range(plane, Axis::Rows, i)).flat_map(move |(rows, u)| {
        segments(0..plane.out_w, move |j| tap_range(plane, Axis::Columns, j)).map(move |(columns, v)| Class {
            rows: rows.clone(),
            columns,
            taps: (u, v),
        })
    })
}

#[derive(Clone, Copy)]
enum Axis {
    Rows,
    Columns,
}

/// The kernel offsets (`u` for a row, `v` for a column) whose input lies inside the input
/// for output row or column `i`.
fn tap_range(plane: &Plane<'_>, axis: Axis, i: usize) -> (usize, usize) {
    let g = plane.geometry;
    let (kernel, input, stride, padding, dilation) = match axis {
        Axis::Rows => (g.kernel.h, plane.height, g.stride.h, g.padding.h, g.dilation.h),
        Axis::Columns => (g.kernel.w, plane.width, g.stride.w, g.padding.w, g.dilation.w),
    };
    valid_range(kernel, input, dilation, (i * stride) as isize - padding as isize)
}

/// `range` cut into runs of consecutive values with the same `key`.
fn segments<K: PartialEq + Copy>(
    range: Range<usize>,
    key: impl Fn(usize) -> K,
) -> impl Iterator<Item = (Range<usize>, K)> {
    let mut start = range.start;
    std::iter::from_fn(move || {
        if start >= range.end {
            return None;
        }
        let k = key(start);
        let end = (start + 1..range.end).find(|&i| key(i) != k).unwrap_or(range.end);
        let segment = start..end;
        start = end;
        Some((segment, k))
    })
}

/// Appends to `taps` (pairs: [`Tap`]) the class's valid taps `(c, u, v)`, in the GEMM's depth
/// order, after checking that every one of them lies inside the group's input for every
/// position of the class.
fn class_taps(plane: &Plane<'_>, width: usize, class: &Class, taps: &mut Vec<u32>) {
    let g = plane.geometry;
    let plane_len = plane.height * plane.width;
    let ((u0, u1), (v0, v1)) = class.taps;
    if class.tap_count(plane) > 0 {
        // Offsets grow with `(c, u, v)` and origins along the rectangle: its first position's
        // first tap and last position's last tap bound every other.
        let low = origin(plane, class.rows.start, class.columns.start)
            + (u0 * g.dilation.h * plane.width + v0 * g.dilation.w) as isize;
        let high = origin(plane, class.rows.end - 1, class.columns.end - 1)
            + ((g.in_per_group() - 1) * plane_len + (u1 - 1) * g.dilation.h * plane.width + (v1 - 1) * g.dilation.w)
                as isize;
        assert!(low >= 0 && (high as usize) < g.in_per_group() * plane_len, "channel_lanes: a tap outside the input");
    }
    for c in 0..g.in_per_group() {
        for u in u0..u1 {
            for v in v0..v1 {
                let k = (c * g.kernel.h + u) * g.kernel.w + v;
                let input = c * plane_len + u * g.dilation.h * plane.width + v * g.dilation.w;
                taps.extend([(k * width) as u32, input as u32]);
            }
        }
    }
}

/// Where output position `(i, j)`'s tap at input offset 0 would be, from the group's first
/// input value (negative, or past a row's end, for positions the padding reaches).
fn origin(plane: &Plane<'_>, i: usize, j: usize) -> isize {
    let g = plane.geometry;
    ((i * g.stride.h) as isize - g.padding.h as isize) * plane.width as isize + (j * g.stride.w) as isize
        - g.padding.w as isize
}

/// One block of output channels over one part of the taps, class by class.
struct BlockPass<'a> {
    plane: &'a Plane<'a>,
    /// The group's input.
    x: &'a [f32],
    /// The band's first output row (column 0 of `C`).
    first_row: usize,
    /// The block's weights, and how many vectors of channels it has.
    w: &'a [f32],
    vectors: usize,
    out: BlockOutput,
    pass: Pass,
}

impl BlockPass<'_> {
    /// Every position of `class` over `taps` (the class's taps in this part), `P` at a time
    /// (the last call repeats the class's last position to fill its `P`: it stores the same
    /// values again). Each call prefetches a line per tap from the front of `prefetch`, which
    /// it then advances.
    ///
    /// # Safety
    /// `out` addresses the block's rows of `C`, which nothing else touches; every tap lies
    /// inside the input for every position of the class (as `class_taps` checks).
    unsafe fn run(&self, class: &Class, taps: &[Tap], prefetch: &mut Range<*const f32>) {
        // SAFETY: the caller's guarantees.
        unsafe {
            match self.vectors {
                1 => self.run_with::<1, 8>(class, taps, prefetch),
                2 => self.run_with::<2, 10>(class, taps, prefetch),
                3 => self.run_with::<3, 7>(class, taps, prefetch),
                _ => self.run_with::<4, 6>(class, taps, prefetch),
            }
        }
    }

    /// [`Self::run`] with `V` vectors of channels and `P` positions per call.
    ///
    /// # Safety
    /// As for [`Self::run`].
    unsafe fn run_with<const V: usize, const P: usize>(
        &self,
        class: &Class,
        taps: &[Tap],
        prefetch: &mut Range<*const f32>,
    ) {
        let kernel = micro_kernel::<V, P>();
        let (rows, columns) = (&class.rows, &class.columns);
        let count = rows.len() * columns.len();
        let at = |n: usize| {
            let n = n.min(count - 1);
            (rows.start + n / columns.len(), columns.start + n % columns.len())
        };
        let address = |(i, j)| self.x.as_ptr().wrapping_offset(origin(self.plane, i, j));
        for start in (0..count).step_by(P) {
            let tile = Tile {
                origins: std::array::from_fn(|j| address(at(start + j))),
                next: address(at(start + P)),
                upcoming: prefetch.start,
                columns: std::array::from_fn(|j| {
                    let (i, jj) = at(start + j);
                    (i - self.first_row) * self.plane.out_w + jj
                }),
                out: self.out,
                pass: self.pass,
            };
            prefetch.start = prefetch.start.wrapping_add(taps.len() * LANES).min(prefetch.end);
            // SAFETY: the caller's guarantees.
            unsafe { kernel(taps, self.w.as_ptr(), &tile) };
        }
    }
}

/// A block of output channels in `C`.
#[derive(Clone, Copy)]
struct BlockOutput {
    /// The block's first output channel (row `o` is `o·ldc` further).
    c: *mut f32,
    ldc: usize,
    /// Output channels of the block that exist (≤ `16·V`).
    channels: usize,
    /// The block's bias (null for none).
    bias: *const f32,
    activation: Activation,
}

/// A micro-kernel: `P` positions × `16·V` channels over the taps, weights at `w`.
type MicroKernel<const P: usize> = unsafe fn(&[Tap], *const f32, &Tile<P>);

fn micro_kernel<const V: usize, const P: usize>() -> MicroKernel<P> {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::isa::avx512() {
        return avx512::kernel::<V, P>;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::isa::avx2_fma() {
        return portable::avx2_kernel::<V, P>;
    }
    portable_kernel::<V, P>
}

#[cfg(test)]
mod tests;
