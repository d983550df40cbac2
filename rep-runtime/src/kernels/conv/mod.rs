//! Convolution, forward and backward. One entry point, [`conv2d`], validates its operands and
//! picks a path per call:
//!
//! * **depthwise** (`C_in / groups == 1`): a direct loop over kernel taps (`depthwise`);
//! * **pointwise** (1×1, stride 1, no padding): the input *is* the GEMM operand, no copy;
//! * **general**: im2col (`im2col`) into a scratch matrix, then one SGEMM per group: the
//!   `gemm` crate's kernels, or, with weights pre-packed in [`ConvOperands::packed`] (as
//!   inference plans give them), the allocation-free packed SGEMM.
//!
//! `driver` cuts one image's work into bands of output rows (each unfolding its own columns)
//! and blocks of output channels; [`conv2d_backward`] (`backward`) runs im2col, two products
//! and col2im per image. Padding is zero by default; a per-input-channel fill value may be
//! given instead (DBB's BN-and-pad layer needs it).

mod backward;
mod depthwise;
mod driver;
mod im2col;

pub use backward::{ConvGradients, conv2d_backward};

use super::Activation;
use super::gemm::PackedMatrix;
use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use driver::Plane;
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
    /// The same weights packed for `gemm_packed`, one matrix per group
    /// (`[C_out/g, C_in/g·k_h·k_w]`, see [`pack_weights`]); the im2col and pointwise paths
    /// then run the allocation-free packed GEMM instead of packing on every call.
    pub packed: Option<&'a [PackedMatrix]>,
}

/// The weights of a convolution packed per group for `gemm_packed` (what
/// [`ConvOperands::packed`] takes); empty for depthwise convolutions, which use no GEMM.
pub fn pack_weights(geometry: &ConvGeometry, weight: ArrayView4<'_, f32>) -> Vec<PackedMatrix> {
    if geometry.in_per_group() == 1 {
        return Vec::new();
    }
    let weight = weight.as_standard_layout();
    let weight = weight.as_slice().expect("standard layout");
    let (rows, depth) = (geometry.out_per_group(), geometry.in_per_group() * geometry.kernel.h * geometry.kernel.w);
    weight.chunks_exact(rows * depth).map(|w_g| PackedMatrix::pack(w_g, rows, depth, depth)).collect()
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
    if let Some(packed) = operands.packed {
        let depth = geometry.in_per_group() * geometry.kernel.h * geometry.kernel.w;
        let expected = [geometry.groups, geometry.out_per_group(), depth];
        let found = [packed.len(), packed.first().map_or(0, |p| p.rows()), packed.first().map_or(0, |p| p.depth())];
        if geometry.in_per_group() > 1
            && (found != expected || packed.iter().any(|p| [p.rows(), p.depth()] != expected[1..]))
        {
            return Err(Error::shape("packed conv weights [groups, rows, depth]", &expected, &found));
        }
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
    if in_len == 0 || out_len == 0 {
        return Ok(());
    }
    let weight = operands.weight.as_standard_layout();
    let weight = weight.as_slice().expect("standard layout");
    let bias = operands.bias.map(contiguous);
    let fill = operands.pad_fill.map(contiguous);
    let plane = Plane { geometry, height: h, width: w, out_h: out_hw.h, out_w: out_hw.w, activation };
    let packed = operands.packed.filter(|p| !p.is_empty());
    // Small maps of a wide layer: the weights outweigh the batch's unfolded columns, so one
    // GEMM over the whole batch streams them once instead of once per image.
    if let Some(packed) = packed
        && n > 1
        && plane.out_h * plane.out_w <= driver::BATCHED_PLANE
        && geometry.out_per_group() >= n * plane.out_h * plane.out_w
        && !geometry.is_pointwise()
    {
        plane.run_batched(input, n, packed, bias.as_deref(), fill.as_deref(), output);
        return Ok(());
    }
    output.par_chunks_mut(out_len).zip(input.par_chunks(in_len)).for_each(|(out, x)| {
        plane.run(x, weight, packed, bias.as_deref(), fill.as_deref(), out);
    });
    Ok(())
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
    use super::valid_range;

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
