//! The compute kernels on NCHW `f32` tensors, below the layers: nothing here knows a layer.
//!
//! * `conv`: convolution forward ([`conv2d`]: depthwise loop, pointwise or im2col + SGEMM)
//!   and backward ([`conv2d_backward`]);
//! * [`WinogradConv`]: stride-1 3×3 layers with F(2×2, 3×3) or F(4×4, 3×3) on kernels
//!   transformed once; [`crate::plan`] chooses between it and [`conv2d`] per layer;
//! * `gemm`: the packed SGEMM (weights packed once, allocation-free: plans, Winograd) with its
//!   micro-kernels, and the `gemm` crate's kernels for operands not packed ahead (unplanned
//!   convolutions, the backward products, the fusion algebra's f64 products);
//! * `dense`: the one matrix–vector kernel of fully connected layers ([`linear`]);
//! * `pool`: max pooling, separably (rows, then columns);
//! * [`Activation`]s, applied in place; `isa` (the one CPU feature check) and `scratch` (the
//!   per-thread buffers).
//!
//! Work runs on rayon's pool: images of a batch in parallel, and within an image, bands of
//! output rows and, when there are fewer bands than threads, blocks of output channels — so
//! batch 1 uses every core.

mod activation;
mod conv;
mod dense;
mod gemm;
mod isa;
mod pool;
mod scratch;
mod winograd;

pub use activation::Activation;
pub use conv::{
    ConvGradients, ConvOperands, PackedConv, check_operands, conv2d, conv2d_backward, conv2d_into, conv2d_then,
};
pub(crate) use dense::dense_into;
pub use gemm::PackedMatrix;
pub(crate) use gemm::matmul_f64;
pub(crate) use pool::{PoolWindow, max_pool_into};
pub use winograd::{Tile, WinogradConv};

use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView1, ArrayView2};

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

/// `len` deterministic values in [−1, 1] (a hash of the index and `seed`), for the kernels' tests.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u32) -> Vec<f32> {
    (0..len).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0).collect()
}

/// Asserts that `got` matches `expected` within 1e-5 relative, NaN for NaN, and that some NaN
/// reached `expected` (the kernels' tests put one in their input).
#[cfg(test)]
pub(crate) fn assert_matches_with_nan<'a>(case: &str, got: &[f32], expected: impl IntoIterator<Item = &'a f32>) {
    let mut nan = false;
    for (at, (got, want)) in got.iter().zip(expected).enumerate() {
        let same = (got.is_nan() && want.is_nan()) || (got - want).abs() <= 1e-5 * (1.0 + want.abs());
        assert!(same, "{case} at {at}: {got} vs {want}");
        nan |= want.is_nan();
    }
    assert!(nan, "{case}: the NaN input reaches the output");
}

/// How many planes of `len` values one parallel task takes: enough for about 32 K values, so
/// that small maps (late layers, small images) do not pay a task per plane.
pub(crate) fn planes_per_task(len: usize) -> usize {
    (32 * 1024 / len.max(1)).max(1)
}

/// Part `i` of `0..count` cut into `parts` consecutive ranges of ⌊count/parts⌋ or
/// ⌈count/parts⌉ values: `i·count/parts .. (i+1)·count/parts`. Taken `k` at a time (with `parts`
/// a multiple of `k`), the parts are themselves an even cut into `parts / k`: bands that are a
/// multiple of the threads share the rows evenly among them.
pub(crate) fn even_part(count: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    i * count / parts..(i + 1) * count / parts
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

/// Floats in a 64-byte cache line.
pub(crate) const LINE_FLOATS: usize = 16;

/// How many floats from `values`' start the first one on a cache line (64-byte boundary) is:
/// a buffer used from there, with rows a multiple of 16 floats apart, has no 16-float vector
/// that straddles two lines (such a vector costs two loads, or two stores).
pub(crate) fn to_cache_line(values: &[f32]) -> usize {
    (values.as_ptr() as usize).wrapping_neg() % 64 / size_of::<f32>()
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
