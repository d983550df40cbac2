//! Convolution followed by BatchNorm: the branch every re-parameterizable block is made of.

use super::Costs;
use super::{BatchNorm2d, Conv2d, Layer, child_parameters};
use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::geometry::Hw;
use ndarray::Array4;
use rand::Rng;

/// `BN(conv(x))`, with the names PyTorch's RepVGG code uses: `conv.weight`, `bn.running_mean`, ….
#[derive(Clone, Debug, PartialEq)]
pub struct ConvBn {
    /// The bias-free convolution.
    pub conv: Conv2d,
    /// The BatchNorm after it.
    pub bn: BatchNorm2d,
}

impl ConvBn {
    /// A freshly initialized conv (PyTorch defaults, no bias) and a BN in its initial state.
    pub fn new(geometry: ConvGeometry, rng: &mut impl Rng) -> Result<Self> {
        Ok(ConvBn { conv: Conv2d::new(geometry, rng)?, bn: BatchNorm2d::new(geometry.out_channels) })
    }

    /// The geometry of the convolution.
    pub fn geometry(&self) -> &ConvGeometry {
        &self.conv.geometry
    }
}

impl Layer for ConvBn {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        self.bn.forward(&self.conv.forward(x)?)
    }

    fn forward_train(&mut self, x: &Array4<f32>) -> Result<Array4<f32>> {
        let y = self.conv.forward_train(x)?;
        self.bn.forward_train(&y)
    }
}

child_parameters!(ConvBn { conv, bn });

impl Costs for ConvBn {
    fn parameter_count(&self) -> usize {
        self.conv.parameter_count() + self.bn.parameter_count()
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        self.conv.macs(input)
    }
}
