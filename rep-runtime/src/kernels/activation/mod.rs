//! Element-wise non-linearities, applied by the kernels inside their epilogues (and as layers
//! by [`crate::layers`]); never folded: they stay in the fused struct.

use ndarray::Array4;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::lanes as avx512_lanes;

/// An element-wise activation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    /// `y = x`.
    #[default]
    Identity,
    /// `y = max(x, 0)`, with NaN staying NaN as in PyTorch (`f32::max(NaN, 0)` would be 0).
    Relu,
    /// `y = x · σ(x)` (a.k.a. swish).
    Silu,
    /// `y = x` if `x ≥ 0`, else `slope · x` (PyTorch's default slope is 0.01).
    LeakyRelu(f32),
    /// `y = σ(x) = 1 / (1 + e^(−x))`.
    Sigmoid,
}

impl Activation {
    /// The activation of one value.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => relu(x),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::LeakyRelu(slope) => {
                if x >= 0.0 {
                    x
                } else {
                    slope * x
                }
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        }
    }

    /// Applies the activation in place.
    pub fn apply_inplace(self, x: &mut Array4<f32>) {
        match x.as_slice_mut() {
            Some(values) if values.len() >= super::PARALLEL_ELEMENTS => {
                values.par_chunks_mut(super::PARALLEL_ELEMENTS / 2).for_each(|chunk| self.apply_slice(chunk));
            }
            Some(values) => self.apply_slice(values),
            None => x.mapv_inplace(|v| self.apply(v)),
        }
    }

    /// Applies the activation to every value of a slice, one tight (vectorizable) loop per kind;
    /// SiLU and the sigmoid through a sixteen-lane `eˣ` on AVX-512 (within about an ulp of the
    /// scalar one).
    pub fn apply_slice(self, values: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => values.iter_mut().for_each(|v| *v = relu(*v)),
            #[cfg(target_arch = "x86_64")]
            Activation::Silu | Activation::Sigmoid if super::isa::avx512() => {
                // SAFETY: the CPU has AVX-512F (checked just above).
                unsafe { avx512::map_with_exp_neg(values, self == Activation::Silu) }
            }
            other => values.iter_mut().for_each(|v| *v = other.apply(*v)),
        }
    }
}

/// PyTorch's ReLU: negative values become 0, everything else (NaN included) passes through.
/// A comparison and a select, so it vectorizes like `max`.
#[inline]
fn relu(x: f32) -> f32 {
    if x < 0.0 { 0.0 } else { x }
}
