//! DBB's identity-based 1×1 convolution: a kernel stored as its difference from the identity.

use super::{Conv2d, Costs, Layer, Parameters, join};
use crate::error::{Error, Result};
use crate::geometry::{ConvGeometry, Hw};
use ndarray::{Array1, Array4, ArrayViewD, ArrayViewMutD};

/// A bias-free 1×1 convolution from `C` to `C` channels whose kernel is `W = I + Δ`, with `I` the
/// (grouped) identity kernel and `Δ` the parameter (`weight`): DBB's `IdentityBasedConv1x1`,
/// whose checkpoints store Δ. It starts at Δ = 0, the identity. `I` is a constant, so the
/// gradient of Δ is the gradient of `W`; `W` is formed in f32, as the original adds the two.
#[derive(Clone, Debug, PartialEq)]
pub struct IdentityBasedConv {
    /// Δ, as a convolution of the layer's geometry: its `weight` is the stored parameter.
    pub delta: Conv2d,
}

impl IdentityBasedConv {
    /// The layer of `geometry` (1×1, as many outputs as inputs, no padding, stride 1) with Δ = 0.
    pub fn new(geometry: ConvGeometry) -> Result<Self> {
        geometry.validate()?;
        let g = geometry;
        if g.kernel != Hw::square(1)
            || g.in_channels != g.out_channels
            || g.stride != Hw::square(1)
            || g.padding != Hw::square(0)
        {
            return Err(Error::geometry(format!(
                "an identity-based conv is a 1x1, stride 1, unpadded conv from C to C channels; found {g}"
            )));
        }
        let delta = Conv2d::from_weights(g, Array4::zeros(g.weight_shape()), None)?;
        Ok(IdentityBasedConv { delta })
    }

    /// The convolution with the whole kernel `W = I + Δ`: `W[o, o mod (C/g)] = 1 + Δ[o, o mod (C/g)]`.
    pub fn kernel(&self) -> Conv2d {
        let mut conv = self.delta.clone();
        let cin_g = conv.geometry.in_per_group();
        for (o, mut row) in conv.weight.outer_iter_mut().enumerate() {
            row[[o % cin_g, 0, 0]] += 1.0;
        }
        conv
    }

    /// Forward padding with `fill` (as [`Conv2d::forward_with_fill`]; a 1×1 without padding
    /// reads no padding, so this is the plain forward).
    pub fn forward_with_fill(&self, x: &Array4<f32>, fill: &Array1<f32>) -> Result<Array4<f32>> {
        self.kernel().forward_with_fill(x, fill)
    }
}

impl Layer for IdentityBasedConv {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        self.kernel().forward(x)
    }
}

/// Visits Δ as `weight`, the name the original stores it under.
impl Parameters for IdentityBasedConv {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
        f(&join(prefix, "weight"), self.delta.weight.view().into_dyn());
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
        f(&join(prefix, "weight"), self.delta.weight.view_mut().into_dyn());
    }
}

impl Costs for IdentityBasedConv {
    fn parameter_count(&self) -> usize {
        self.delta.parameter_count()
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        self.delta.macs(input)
    }
}
