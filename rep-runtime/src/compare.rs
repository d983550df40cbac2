//! The equivalence measure every fused-vs-train check uses (ARCHITECTURE.md, Tolerances):
//! `max |ours − reference| ≤ 1e-5 · max(1, max |reference|)`.

use crate::error::{Error, Result};
use ndarray::{ArrayBase, Data, Dimension};

/// How far one tensor is from a reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Difference {
    /// `max |ours − reference|`.
    pub max_abs: f32,
    /// `max(1, max |reference|)`, the scale the difference is measured against.
    pub scale: f32,
}

impl Difference {
    /// `max_abs / scale`.
    pub fn relative(&self) -> f32 {
        self.max_abs / self.scale
    }

    /// Whether the difference is within `tolerance` relative; false when it is NaN (a NaN or
    /// ∞ in either tensor), which `relative() > tolerance` would silently let through.
    pub fn within(&self, tolerance: f32) -> bool {
        self.relative() <= tolerance
    }

    /// The larger of two differences (for outputs made of several tensors).
    pub fn max(self, other: Difference) -> Difference {
        Difference { max_abs: nan_max(self.max_abs, other.max_abs), scale: self.scale.max(other.scale) }
    }
}

/// The difference of `ours` from `reference`; their shapes must agree.
pub fn difference<S, T, D>(ours: &ArrayBase<S, D>, reference: &ArrayBase<T, D>) -> Result<Difference>
where
    S: Data<Elem = f32>,
    T: Data<Elem = f32>,
    D: Dimension,
{
    if ours.shape() != reference.shape() {
        return Err(Error::shape("compared tensor", reference.shape(), ours.shape()));
    }
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    // A NaN anywhere makes the difference NaN (`f32::max` would silently skip it).
    let max_abs = ours.iter().zip(reference).fold(0.0f32, |m, (a, b)| nan_max(m, (a - b).abs()));
    Ok(Difference { max_abs, scale })
}

/// The larger of two differences, NaN if either is (`f32::max` would silently drop a NaN, and
/// a NaN output must never pass as equal).
fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) }
}
