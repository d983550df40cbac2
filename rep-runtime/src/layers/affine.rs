//! Per-channel linear layers: OREPA's scaling layer and YOLOR's implicit knowledge.

use super::{Layer, check_channels, per_channel_affine, tensor_parameters};
use crate::error::Result;
use ndarray::{Array1, Array4};

/// OREPA's scaling layer: `y[n,c] = weight[c] · x[n,c]`. Folds into the conv before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    /// The per-channel factors.
    pub weight: Array1<f32>,
}

/// YOLOR's ImplicitA: `y[n,c] = x[n,c] + implicit[c]`, placed before a convolution.
#[derive(Clone, Debug, PartialEq)]
pub struct ImplicitA {
    /// The per-channel offsets.
    pub implicit: Array1<f32>,
}

/// YOLOR's ImplicitM: `y[n,c] = implicit[c] · x[n,c]`, placed after a convolution.
#[derive(Clone, Debug, PartialEq)]
pub struct ImplicitM {
    /// The per-channel factors.
    pub implicit: Array1<f32>,
}

impl Scale {
    /// A scaling layer initialized to `value` on every channel (OREPA uses 1, or 0 for some branches).
    pub fn new(channels: usize, value: f32) -> Self {
        Scale { weight: Array1::from_elem(channels, value) }
    }
}

impl ImplicitA {
    /// Offsets initialized to zero (YOLOR draws them from N(0, 0.02²); use [`ImplicitA::with`] for that).
    pub fn new(channels: usize) -> Self {
        ImplicitA { implicit: Array1::zeros(channels) }
    }

    /// Offsets given by hand.
    pub fn with(implicit: Array1<f32>) -> Self {
        ImplicitA { implicit }
    }
}

impl ImplicitM {
    /// Factors initialized to one.
    pub fn new(channels: usize) -> Self {
        ImplicitM { implicit: Array1::ones(channels) }
    }

    /// Factors given by hand.
    pub fn with(implicit: Array1<f32>) -> Self {
        ImplicitM { implicit }
    }
}

fn as_f64(v: &Array1<f32>) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

impl Layer for Scale {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        check_channels("scale", x, self.weight.len())?;
        Ok(per_channel_affine(x, &as_f64(&self.weight), &vec![0.0; self.weight.len()]))
    }
}

impl Layer for ImplicitA {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        check_channels("implicit_a", x, self.implicit.len())?;
        Ok(per_channel_affine(x, &vec![1.0; self.implicit.len()], &as_f64(&self.implicit)))
    }
}

impl Layer for ImplicitM {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        check_channels("implicit_m", x, self.implicit.len())?;
        Ok(per_channel_affine(x, &as_f64(&self.implicit), &vec![0.0; self.implicit.len()]))
    }
}

tensor_parameters!(Scale { weight });
tensor_parameters!(ImplicitA { implicit });
tensor_parameters!(ImplicitM { implicit });
