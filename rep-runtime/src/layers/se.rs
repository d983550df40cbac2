//! Squeeze-and-excitation attention (RepVGG-D2se, timm's `attn`). Not foldable: it stays in
//! the fused struct after the sum.

use super::{Activation, Conv2d, Layer, check_channels, child_parameters, global_avg_pool};
use super::{Costs, add_macs};
use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::geometry::Hw;
use ndarray::{Array4, Axis};
use rand::Rng;

/// `y = x · σ(up(ReLU(down(mean_hw(x)))))`, with 1×1 convolutions with bias.
#[derive(Clone, Debug, PartialEq)]
pub struct SqueezeExcite {
    /// `C → C/r` 1×1 convolution.
    pub down: Conv2d,
    /// `C/r → C` 1×1 convolution.
    pub up: Conv2d,
}

impl SqueezeExcite {
    /// An SE block on `channels` channels with `hidden` internal channels, PyTorch-initialized.
    pub fn new(channels: usize, hidden: usize, rng: &mut impl Rng) -> Result<Self> {
        Ok(SqueezeExcite {
            down: Conv2d::new_with_bias(ConvGeometry::new(channels, hidden, 1), rng)?,
            up: Conv2d::new_with_bias(ConvGeometry::new(hidden, channels, 1), rng)?,
        })
    }
}

impl Layer for SqueezeExcite {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        check_channels("squeeze_excite", x, self.down.geometry.in_channels)?;
        let pooled = global_avg_pool(x).insert_axis(Axis(2)).insert_axis(Axis(3));
        let hidden = Activation::Relu.forward(&self.down.forward(&pooled)?)?;
        let gate = Activation::Sigmoid.forward(&self.up.forward(&hidden)?)?;
        Ok(x * &gate)
    }
}

child_parameters!(SqueezeExcite { down, up });

impl Costs for SqueezeExcite {
    fn parameter_count(&self) -> usize {
        self.down.parameter_count() + self.up.parameter_count()
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        let one = Hw::square(1);
        Ok((add_macs(self.down.macs(one)?.0, self.up.macs(one)?.0)?, input))
    }
}
