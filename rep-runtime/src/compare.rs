//! The equivalence measure every fused-vs-train check uses (DESIGN §4):
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

    /// The larger of two differences (for outputs made of several tensors).
    pub fn max(self, other: Difference) -> Difference {
        Difference { max_abs: self.max_abs.max(other.max_abs), scale: self.scale.max(other.scale) }
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
    let max_abs = ours.iter().zip(reference).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    Ok(Difference { max_abs, scale })
}
