//! Fully connected layer (the classifier head).

use super::Costs;
use super::tensor_parameters;
use crate::error::{Error, Result};
use crate::geometry::Hw;
use crate::kernels;
use ndarray::{Array1, Array2};
use rand::Rng;

/// `y = x·Wᵀ + b` on `[N, in]` inputs, as PyTorch's `nn.Linear`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Weights `[out, in]`.
    pub weight: Array2<f32>,
    /// Bias `[out]`.
    pub bias: Option<Array1<f32>>,
}

impl Linear {
    /// PyTorch's default initialization: weights and bias uniform in `±1/√in`.
    pub fn new(in_features: usize, out_features: usize, rng: &mut impl Rng) -> Self {
        let bound = (1.0 / in_features.max(1) as f32).sqrt();
        let mut draw = || rng.random_range(-bound..=bound);
        let weight = Array2::from_shape_simple_fn((out_features, in_features), &mut draw);
        let bias = Some(Array1::from_shape_simple_fn(out_features, &mut draw));
        Linear { weight, bias }
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.ncols()
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.nrows()
    }

    /// Checks that the bias (when there is one) has one entry per output.
    pub fn validate(&self) -> Result<()> {
        match &self.bias {
            Some(b) if b.len() != self.out_features() => {
                Err(Error::shape("linear bias", &[self.out_features()], b.shape()))
            }
            _ => Ok(()),
        }
    }

    /// Applies the layer to `x: [N, in]`.
    pub fn forward(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        kernels::linear(x.view(), self.weight.view(), self.bias.as_ref().map(|b| b.view()))
    }
}

tensor_parameters!(Linear { weight; optional bias });

impl Costs for Linear {
    fn parameter_count(&self) -> usize {
        self.weight.len() + self.bias.as_ref().map_or(0, |b| b.len())
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        Ok((self.weight.len() as u64, input))
    }
}
