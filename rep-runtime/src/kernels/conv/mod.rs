//! Convolution, forward and backward. One entry point, [`conv2d`], validates its operands and
//! picks a path per call:
//!
//! * **depthwise** (`C_in / groups == 1`): a direct loop over kernel taps (`depthwise`);
//! * **pointwise** (1×1, stride 1, no padding): the input *is* the GEMM operand, no copy;
//! * **general**: im2col (`im2col`) into a scratch matrix, then one SGEMM per group: the
//!   `gemm` crate's kernels, or, for a [`PackedConv`] (whose weights inference plans pack
//!   once), the allocation-free packed SGEMM;
//! * a [`PackedConv`]'s strided layers with enough taps (`channel_lanes`): output channels
//!   along the vector lanes, the input read where it lies; its other spatial layers with wide
//!   output rows (`direct`): the packed SGEMM on taps read in place from a padded copy.
//!
//! `driver` cuts one image's work into bands of output rows (each unfolding its own columns)
//! and blocks of output channels; [`conv2d_backward`] (`backward`) runs im2col, two products
//! and col2im per image. Padding is zero by default; a per-input-channel fill value may be
//! given instead (DBB's BN-and-pad layer needs it).

mod backward;
mod channel_lanes;
mod depthwise;
mod direct;
mod driver;
mod im2col;

pub use backward::{ConvGradients, conv2d_backward};

use super::Activation;
use super::gemm::PackedMatrix;
use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use driver::{Packed, Plane, Weights};
use ndarray::{Array4, ArrayView1, ArrayView4};
use rayon::prelude::*;

/// The numbers of one convolution: weight `[C_out, C_in/g, k_h, k_w]`, optional bias `[C_out]`,
/// and optional per-input-channel padding values `[C_in]` (zero padding when `None`).
#[derive(Clone, Copy, Debug)]
pub struct ConvOperands<'a> {
    /// Kernel weights.
    pub weight: ArrayView4<'a, f32>,
    /// Bias added to every output position of a channel.
    pub bias: Option<ArrayView1<'a, f32>>,
    /// Value that padded positions of each input channel take.
    pub pad_fill: Option<ArrayView1<'a, f32>>,
}

/// How a [`PackedConv`] holds its weights, per group.
#[derive(Clone, Debug)]
enum Packing {
    /// Packed for the GEMM (`gemm_packed`, `gemm_listed`): im2col, pointwise and the direct
    /// path.
    Rows(Vec<PackedMatrix>),
    /// Laid out for the channel-lanes kernel (strided layers, see [`channel_lanes::suits`]).
    Lanes(Vec<channel_lanes::ChannelBlocks>),
}

/// `lay_out(w_g, C_out/g, C_in/g·k_h·k_w)` for each group's row-major weights `w_g`.
fn per_group<T>(
    geometry: &ConvGeometry,
    weight: ArrayView4<'_, f32>,
    lay_out: impl Fn(&[f32], usize, usize) -> T,
) -> Vec<T> {
    let weight = weight.as_standard_layout();
    let weight = weight.as_slice().expect("standard layout");
    let (rows, depth) = (geometry.out_per_group(), geometry.in_per_group() * geometry.kernel.h * geometry.kernel.w);
    weight.chunks_exact(rows * depth).map(|w_g| lay_out(w_g, rows, depth)).collect()
}

/// Checks `operands` against `geometry`, as every layer built on [`conv2d`] needs.
pub fn check_operands(geometry: &ConvGeometry, operands: &ConvOperands<'_>) -> Result<()> {
    geometry.validate()?;
    let expected = geometry.weight_shape();
    if operands.weight.shape() != expected {
        return Err(Error::shape("conv weight", &expected, operands.weight.shape()));
    }
    if let Some(bias) = operands.bias
        && bias.len() != geometry.out_channels
    {
        return Err(Error::shape("conv bias", &[geometry.out_channels], bias.shape()));
    }
    if let Some(fill) = operands.pad_fill
        && fill.len() != geometry.in_channels
    {
        return Err(Error::shape("conv pad fill", &[geometry.in_channels], fill.shape()));
    }
    Ok(())
}

/// Cross-correlation of `input` (`[N, C_in, H, W]`) with the operands, as PyTorch's `conv2d`:
/// `y[n,o,i,j] = b[o] + Σ_{c,u,v} W[o,c,u,v] · x_pad[n, g(o)·C_in/g + c, i·s_h + u·d_h, j·s_w + v·d_w]`.
pub fn conv2d(input: ArrayView4<'_, f32>, geometry: &ConvGeometry, operands: ConvOperands<'_>) -> Result<Array4<f32>> {
    conv2d_then(input, geometry, operands, Activation::Identity)
}

/// [`conv2d`] followed by an element-wise `activation`, applied to each band of the output
/// while it is still in cache (the fused blocks' conv + ReLU / SiLU).
pub fn conv2d_then(
    input: ArrayView4<'_, f32>,
    geometry: &ConvGeometry,
    operands: ConvOperands<'_>,
    activation: Activation,
) -> Result<Array4<f32>> {
    check_operands(geometry, &operands)?;
    let [n, c, h, w] = input.shape().try_into().expect("4-D view");
    let out_hw = geometry.output_size(h, w)?;
    let input = input.as_standard_layout();
    let mut output = Array4::<f32>::zeros((n, geometry.out_channels, out_hw.h, out_hw.w));
    let src = input.as_slice().expect("standard layout");
    let dst = output.as_slice_mut().expect("fresh array");
    conv2d_into(src, [n, c, h, w], geometry, operands, activation, dst)?;
    Ok(output)
}

/// [`conv2d_then`] on raw row-major buffers: `input` is `[N, C_in, H, W]` as `shape` says,
/// `output` receives `[N, C_out, H_out, W_out]`. Allocates nothing when the operands are
/// contiguous (beyond each thread's im2col scratch, grown once).
pub fn conv2d_into(
    input: &[f32],
    shape: [usize; 4],
    geometry: &ConvGeometry,
    operands: ConvOperands<'_>,
    activation: Activation,
    output: &mut [f32],
) -> Result<()> {
    check_operands(geometry, &operands)?;
    let Some((n, out_hw)) = check_buffers(input, shape, geometry, output)? else { return Ok(()) };
    let [_, _, h, w] = shape;
    let weight = operands.weight.as_standard_layout();
    let weight = weight.as_slice().expect("standard layout");
    let bias = operands.bias.map(contiguous);
    let fill = operands.pad_fill.map(contiguous);
    let plane = Plane { geometry, height: h, width: w, out_h: out_hw.h, out_w: out_hw.w, activation };
    let weights = Weights { raw: weight, packed: None, bias: bias.as_deref(), fill: fill.as_deref() };
    run_planes(&plane, input, n, weights, output);
    Ok(())
}

/// A convolution whose weights are held only laid out for its kernel (an inference plan's
/// non-Winograd layers): packed for the GEMM, or in channel blocks for the channel-lanes kernel
/// (strided layers, `channel_lanes::suits`). The raw weights, which [`conv2d_into`] would read
/// only to check their shape, are not kept. Depthwise layers use neither and cannot be packed.
#[derive(Clone, Debug)]
pub struct PackedConv {
    geometry: ConvGeometry,
    packing: Packing,
    bias: Option<Vec<f32>>,
    pad_fill: Option<Vec<f32>>,
}

impl PackedConv {
    /// Packs `operands`' weights after checking them against `geometry`, which must not be
    /// depthwise.
    pub fn new(geometry: &ConvGeometry, operands: ConvOperands<'_>) -> Result<Self> {
        check_operands(geometry, &operands)?;
        if geometry.in_per_group() == 1 {
            return Err(Error::Geometry("a depthwise convolution has no GEMM weights to pack".into()));
        }
        Ok(PackedConv {
            geometry: *geometry,
            packing: if channel_lanes::suits(geometry, operands.pad_fill.is_some()) {
                Packing::Lanes(per_group(geometry, operands.weight, channel_lanes::ChannelBlocks::new))
            } else {
                Packing::Rows(per_group(geometry, operands.weight, |w_g, rows, depth| {
                    PackedMatrix::pack(w_g, rows, depth, depth)
                }))
            },
            bias: operands.bias.map(|b| b.to_vec()),
            pad_fill: operands.pad_fill.map(|f| f.to_vec()),
        })
    }

    /// The convolution's shapes.
    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// The kernel its runs take, for profiles: `"channel-lanes"` for weights laid out along
    /// the vector lanes, `"pointwise"` for a 1×1 stride-1 layer without padding, `"im2col"`
    /// for the others (im2col, or the direct path that reads taps from a padded copy).
    pub fn kernel_name(&self) -> &'static str {
        match self.packing {
            Packing::Lanes(_) => "channel-lanes",
            Packing::Rows(_) if self.geometry.is_pointwise() => "pointwise",
            Packing::Rows(_) => "im2col",
        }
    }

    /// Floats held: packed weights (padding included), bias and padding values.
    pub fn floats(&self) -> usize {
        let weights = match &self.packing {
            Packing::Rows(packed) => packed.iter().map(PackedMatrix::floats).sum::<usize>(),
            Packing::Lanes(blocks) => blocks.iter().map(channel_lanes::ChannelBlocks::floats).sum(),
        };
        weights + self.bias.as_ref().map_or(0, Vec::len) + self.pad_fill.as_ref().map_or(0, Vec::len)
    }

    /// [`conv2d_into`] with these weights: `input` is `[N, C_in, H, W]` as `shape` says,
    /// `output` receives `[N, C_out, H_out, W_out]`, then the activation.
    pub fn run_into(&self, input: &[f32], shape: [usize; 4], activation: Activation, output: &mut [f32]) -> Result<()> {
        let g = &self.geometry;
        let Some((n, out_hw)) = check_buffers(input, shape, g, output)? else { return Ok(()) };
        if let Packing::Lanes(_) = self.packing
            && !channel_lanes::addressable(g, shape[2], shape[3])
        {
            return Err(Error::Geometry(format!(
                "conv2d: input planes of {}×{}×{} exceed the 32-bit offsets of the strided kernel",
                g.in_per_group(),
                shape[2],
                shape[3]
            )));
        }
        let plane =
            Plane { geometry: g, height: shape[2], width: shape[3], out_h: out_hw.h, out_w: out_hw.w, activation };
        let weights = Weights {
            raw: &[],
            packed: Some(match &self.packing {
                Packing::Rows(packed) => Packed::Rows(packed),
                Packing::Lanes(blocks) => Packed::Lanes(blocks),
            }),
            bias: self.bias.as_deref(),
            fill: self.pad_fill.as_deref(),
        };
        run_planes(&plane, input, n, weights, output);
        Ok(())
    }
}

/// Checks a convolution's input and output buffers against `shape` and `geometry`; `None`
/// when there is nothing to compute (an empty input or output), else the batch and output size.
fn check_buffers(
    input: &[f32],
    shape: [usize; 4],
    geometry: &ConvGeometry,
    output: &[f32],
) -> Result<Option<(usize, crate::geometry::Hw)>> {
    let [n, c, h, w] = shape;
    if c != geometry.in_channels {
        return Err(Error::Channels { layer: "conv2d", expected: geometry.in_channels, found: c });
    }
    let out_hw = geometry.output_size(h, w)?;
    let in_len = c * h * w;
    let out_len = geometry.out_channels * out_hw.h * out_hw.w;
    if input.len() != n * in_len {
        return Err(Error::shape("conv input buffer", &[n * in_len], &[input.len()]));
    }
    if output.len() != n * out_len {
        return Err(Error::shape("conv output buffer", &[n * out_len], &[output.len()]));
    }
    Ok((n != 0 && in_len != 0 && out_len != 0).then_some((n, out_hw)))
}

/// The `n` images of `input` through `plane` into `output`: one GEMM over the whole batch for
/// small planes of a wide packed layer, else image by image.
fn run_planes(plane: &Plane<'_>, input: &[f32], n: usize, weights: Weights<'_>, output: &mut [f32]) {
    let geometry = plane.geometry;
    let in_len = input.len() / n;
    let out_len = output.len() / n;
    // Small maps of a wide layer: the weights outweigh the batch's unfolded columns, so one
    // GEMM over the whole batch streams them once instead of once per image.
    if let Some(packed) = weights.packed
        && n > 1
        && plane.out_h * plane.out_w <= driver::BATCHED_PLANE
        && geometry.out_per_group() >= n * plane.out_h * plane.out_w
        && !geometry.is_pointwise()
    {
        match packed {
            Packed::Rows(packed) => plane.run_batched(input, n, packed, weights.bias, weights.fill, output),
            Packed::Lanes(blocks) => channel_lanes::batch(plane, input, n, blocks, weights.bias, output),
        }
        return;
    }
    output.par_chunks_mut(out_len).zip(input.par_chunks(in_len)).for_each(|(out, x)| {
        plane.run(x, weights, out);
    });
}

/// A vector's values as a slice, copied only when the view is not contiguous.
fn contiguous(v: ArrayView1<'_, f32>) -> std::borrow::Cow<'_, [f32]> {
    match v.to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(v.to_vec()),
    }
}

/// The output positions `o` in `0..out_len` whose input coordinate `o·stride + offset` lies in
/// `0..in_len`, as a half-open range (empty when none do).
fn valid_range(out_len: usize, in_len: usize, stride: usize, offset: isize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if offset >= 0 { 0 } else { ((-offset) + s - 1) / s };
    let last = in_len as isize - 1 - offset;
    let hi = if last < 0 { 0 } else { last / s + 1 };
    let lo = (lo as usize).min(out_len);
    (lo, (hi as usize).clamp(lo, out_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;
    use ndarray::{Array1, Array4};

    #[test]
    fn packed_conv_matches_conv2d_without_the_raw_weights() {
        let cases = [
            ConvGeometry::new(6, 10, 3).stride(2).padding(1),
            ConvGeometry::new(8, 12, 3).padding(1).groups(2),
            ConvGeometry::new(5, 7, 1),
            ConvGeometry::new(4, 6, (3, 1)).stride((1, 2)).padding((1, 0)).dilation(2),
        ];
        for (i, g) in cases.into_iter().enumerate() {
            let shape = [2, g.in_channels, 9, 11];
            let weight = Array4::from_shape_vec(g.weight_shape(), values(g.weight_count(), 1)).unwrap();
            let bias = Array1::from(values(g.out_channels, 2));
            let fill = Array1::from(values(g.in_channels, 3));
            let operands = ConvOperands { weight: weight.view(), bias: Some(bias.view()), pad_fill: Some(fill.view()) };
            let x = values(shape.iter().product(), 4);
            let input = ndarray::ArrayView4::from_shape(shape, &x).unwrap();
            let expected = conv2d_then(input, &g, operands, Activation::Silu).unwrap();
            let packed = PackedConv::new(&g, operands).unwrap();
            drop(weight);
            let mut y = vec![f32::NAN; expected.len()];
            packed.run_into(&x, shape, Activation::Silu, &mut y).unwrap();
            for (got, want) in y.iter().zip(&expected) {
                assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "case {i}: {got} vs {want}");
            }
            // A wrong buffer or channel count is an error, never a panic.
            assert!(packed.run_into(&x, [2, g.in_channels + 1, 9, 11], Activation::Silu, &mut y).is_err());
            assert!(packed.run_into(&x[1..], shape, Activation::Silu, &mut y).is_err());
            assert!(packed.run_into(&x, shape, Activation::Silu, &mut y[1..]).is_err());
            packed.run_into(&[], [0, g.in_channels, 9, 11], Activation::Silu, &mut []).unwrap();
        }
        let depthwise = ConvGeometry::new(4, 4, 3).padding(1).groups(4);
        let weight = Array4::zeros(depthwise.weight_shape());
        let operands = ConvOperands { weight: weight.view(), bias: None, pad_fill: None };
        assert!(PackedConv::new(&depthwise, operands).is_err());
    }

    #[test]
    fn valid_range_matches_brute_force() {
        for out_len in 0..6 {
            for in_len in 1..7 {
                for stride in 1..4 {
                    for offset in -4isize..5 {
                        let ok: Vec<usize> = (0..out_len)
                            .filter(|&o| {
                                let i = (o * stride) as isize + offset;
                                i >= 0 && i < in_len as isize
                            })
                            .collect();
                        let (lo, hi) = valid_range(out_len, in_len, stride, offset);
                        assert_eq!((lo..hi).collect::<Vec<_>>(), ok, "{out_len} {in_len} {stride} {offset}");
                    }
                }
            }
        }
    }
}
