//! Squeeze-and-excitation attention (RepVGG-D2se, timm's `attn`). Not foldable: it stays in
//! the fused struct after the sum.

use super::{Activation, Conv2d, Layer, Parameters, check_channels, global_avg_pool, join};
use super::{Costs, add_macs};
use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::geometry::Hw;
use ndarray::{Array4, ArrayViewD, ArrayViewMutD, Axis};
use rand::Rng;

/// `y = x · σ(up(ReLU(down(mean_hw(x)))))`, with 1×1 convolutions with bias.
///
/// The two convolutions' weights are named `down` and `up` (RepVGG's), or as
/// [`SqueezeExcite::with_names`] sets: `reduce` and `expand` in MobileOne, `fc1` and `fc2` in timm.
#[derive(Clone, Debug, PartialEq)]
pub struct SqueezeExcite {
    /// `C → C/r` 1×1 convolution.
    pub down: Conv2d,
    /// `C/r → C` 1×1 convolution.
    pub up: Conv2d,
    /// The names of `down` and `up` in checkpoints.
    pub names: (&'static str, &'static str),
}

impl SqueezeExcite {
    /// An SE block on `channels` channels with `hidden` internal channels, PyTorch-initialized.
    pub fn new(channels: usize, hidden: usize, rng: &mut impl Rng) -> Result<Self> {
        Ok(SqueezeExcite {
            down: Conv2d::new_with_bias(ConvGeometry::new(channels, hidden, 1), rng)?,
            up: Conv2d::new_with_bias(ConvGeometry::new(hidden, channels, 1), rng)?,
            names: ("down", "up"),
        })
    }

    /// The same layer with its convolutions named `down` and `up` in checkpoints.
    pub fn with_names(mut self, down: &'static str, up: &'static str) -> Self {
        self.names = (down, up);
        self
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

impl Parameters for SqueezeExcite {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
        self.down.visit(&join(prefix, self.names.0), f);
        self.up.visit(&join(prefix, self.names.1), f);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
        self.down.visit_mut(&join(prefix, self.names.0), f);
        self.up.visit_mut(&join(prefix, self.names.1), f);
    }
}

impl Costs for SqueezeExcite {
    fn parameter_count(&self) -> usize {
        self.down.parameter_count() + self.up.parameter_count()
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        let one = Hw::square(1);
        Ok((add_macs(self.down.macs(one)?.0, self.up.macs(one)?.0)?, input))
    }
}
