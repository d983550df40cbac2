//! Convolution kernels on NCHW `f32` tensors.
//!
//! One entry point, [`conv2d`], validates its operands and picks a path per call:
//!
//! * **depthwise** (`C_in / groups == 1`): a direct loop over kernel taps;
//! * **pointwise** (1×1, stride 1, no padding): the input *is* the GEMM operand, no copy;
//! * **general**: im2col into a scratch matrix, then one SGEMM per group (the `gemm` crate's
//!   AVX-512 kernels; with weights pre-packed in [`ConvOperands::packed`], as inference plans
//!   give them, our allocation-free `gemm_packed`).
//!
//! Fully connected layers (`Linear`, a plan's classifier, squeeze-excite) run one
//! matrix–vector kernel.
//!
//! [`WinogradConv`] computes stride-1 3×3 layers with F(2×2, 3×3) or F(4×4, 3×3) on kernels
//! transformed once; [`crate::plan`] chooses between the two paths per layer.
//!
//! Work runs on rayon's pool: images of a batch in parallel, and within an image, bands of
//! output rows (each unfolding its own columns) and, when there are fewer bands than threads,
//! blocks of output channels — so batch 1 uses every core. Padding is zero by default; a
//! per-input-channel fill value may be given instead (DBB's BN-and-pad layer needs it).

mod activation;
mod conv_backward;
mod dense;
mod depthwise;
mod im2col;
mod isa;
mod plane;
mod scratch;

pub(crate) use dense::dense_into;
use plane::Plane;
mod gemm;
mod winograd;

pub use activation::Activation;
pub use conv_backward::{ConvGradients, conv2d_backward};
pub use gemm::PackedMatrix;
pub(crate) use gemm::{MR, gemm_packed};
pub use winograd::{F4_TOLERANCE, Tile, WinogradConv};

use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use ndarray::{Array2, Array4, ArrayView1, ArrayView2, ArrayView4, ArrayViewMut2};
use rayon::prelude::*;

/// Whether every value is finite (no NaN, no ±∞): one pass, sixteen lanes at a time
/// (`v − v` is 0 for a finite `v` and NaN otherwise, so the lane sums stay 0 exactly when all are).
pub fn all_finite(values: &[f32]) -> bool {
    const LANES: usize = 16;
    let mut sums = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    #[allow(clippy::eq_op)] // `v − v` is the point: NaN exactly when `v` is not finite
    for chunk in chunks {
        for (s, v) in sums.iter_mut().zip(chunk) {
            *s += v - v;
        }
    }
    sums.iter().all(|s| *s == 0.0) && rest.iter().all(|v| v.is_finite())
}

/// How many planes of `len` values one parallel task takes: enough for about 32 K values, so
/// that small maps (late layers, small images) do not pay a task per plane.
pub(crate) fn planes_per_task(len: usize) -> usize {
    (32 * 1024 / len.max(1)).max(1)
}

/// Element-wise work on at least this many values runs on rayon's threads; below it a task
/// costs more than it saves.
pub const PARALLEL_ELEMENTS: usize = 1 << 15;

/// A zero-filled buffer of `len` floats, or an error naming `what` when the memory cannot be
/// had (instead of aborting the process, as `vec!` would).
pub fn zeroed(len: usize, what: &str) -> Result<Vec<f32>> {
    let mut buffer = Vec::new();
    buffer.try_reserve_exact(len).map_err(|_| {
        Error::Geometry(format!("{what}: cannot allocate {len} floats ({} bytes)", len.saturating_mul(4)))
    })?;
    buffer.resize(len, 0.0);
    Ok(buffer)
}

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
        && plane.out_h * plane.out_w <= plane::BATCHED_PLANE
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

/// `c += a · b` with the `gemm` crate's AVX-512 (x86-v4) kernels, single-threaded (the
/// callers parallelize): the unplanned convolutions, whose weights are not packed ahead (the
/// crate packs them block by block in cache, which costs far less per call than packing them
/// whole for `gemm_packed`).
fn sgemm(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, c: &mut ArrayViewMut2<'_, f32>) {
    gemm_accumulate(a, b, c, 1.0, ::gemm::Parallelism::None);
}

/// `a · b` in f64 (the fusion algebra's kernel products), on all of rayon's threads.
pub(crate) fn matmul_f64(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> Array2<f64> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    gemm_accumulate(a, b, &mut c.view_mut(), 1.0, ::gemm::Parallelism::Rayon(rayon::current_num_threads()));
    c
}

/// `c += a · b` with the `gemm` crate's kernels (`one` is the element type's 1).
fn gemm_accumulate<T: Copy + 'static>(
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    c: &mut ArrayViewMut2<'_, T>,
    one: T,
    parallelism: ::gemm::Parallelism,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert!(b.nrows() == k && c.dim() == (m, n), "operand shapes checked by the callers");
    if m == 0 || n == 0 {
        return;
    }
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the pointers and strides come from live ndarray views whose shapes were checked
    // above; `c` is borrowed mutably and does not alias `a` or `b`.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            true,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            one,
            one,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The AVX-512 mask of the first `n` of 16 lanes (all of them from 16 on).
#[cfg(target_arch = "x86_64")]
pub(crate) fn lane_mask(n: usize) -> std::arch::x86_64::__mmask16 {
    if n >= 16 { 0xffff } else { ((1u32 << n) - 1) as u16 }
}

/// A raw pointer handed to parallel jobs, which write disjoint parts of the buffer behind it.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);

// SAFETY: only used by jobs that write disjoint elements (each use site says which).
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
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

/// `x · Wᵀ + b` for `x: [N, in]`, `weight: [out, in]`, `bias: [out]` — the core of
/// [`crate::layers::Linear`], run by the runtime's one matrix–vector kernel (as in a plan).
pub fn linear(
    x: ArrayView2<'_, f32>,
    weight: ArrayView2<'_, f32>,
    bias: Option<ArrayView1<'_, f32>>,
) -> Result<Array2<f32>> {
    if x.ncols() != weight.ncols() {
        return Err(Error::shape("linear input", &[x.nrows(), weight.ncols()], x.shape()));
    }
    let bias = match bias {
        Some(b) if b.len() == weight.nrows() => b.to_vec(),
        Some(b) => return Err(Error::shape("linear bias", &[weight.nrows()], b.shape())),
        None => vec![0.0; weight.nrows()],
    };
    let (weight, x) = (weight.as_standard_layout(), x.as_standard_layout());
    let mut y = Array2::zeros((x.nrows(), weight.nrows()));
    let (w, x_s) = (weight.as_slice().expect("standard layout"), x.as_slice().expect("standard layout"));
    dense::dense_into(w, &bias, x.ncols(), x_s, y.as_slice_mut().expect("fresh array"), Activation::Identity);
    Ok(y)
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
