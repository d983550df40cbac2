//! OREPA's online training: a block whose branches are linear while training (no BN inside
//! them) runs one convolution on the squeezed kernel `W = S(θ)`, keeping only its input and
//! that convolution; the backward computes `dL/dW` once and sends it to every branch parameter
//! through the transpose of `S` ([`crate::fusion::AffineConv`]'s adjoints), which the
//! generated code applies branch by branch.

use super::Gradients;
use crate::error::{Error, Result};
use crate::fusion::AffineConv;
use crate::kernels;
use crate::layers::{Conv2d, Layer, join};
use ndarray::Array4;

/// What an online training forward keeps: the block's input and the squeezed convolution.
#[derive(Clone, Debug)]
pub struct OnlineCache {
    input: Array4<f32>,
    conv: Conv2d,
}

impl OnlineCache {
    /// Runs the squeezed convolution on `x`, keeping both for the backward.
    pub fn forward(squeezed: &AffineConv, x: &Array4<f32>) -> Result<(Array4<f32>, OnlineCache)> {
        let conv = squeezed.to_conv2d();
        Ok((conv.forward(x)?, OnlineCache { input: x.clone(), conv }))
    }

    /// Given `dy` for the squeezed convolution's output: `dL/dx` and `dL/d(W, b)` of the squeezed
    /// kernel (in f64, as an `AffineConv` of its geometry).
    pub fn backward(self, dy: &Array4<f32>) -> Result<(Array4<f32>, AffineConv)> {
        let g = kernels::conv2d_backward(self.input.view(), &self.conv.geometry, self.conv.operands(), dy.view())?;
        let fused = AffineConv::new(self.conv.geometry, g.weight.mapv(f64::from), g.bias.mapv(f64::from))?;
        Ok((g.input, fused))
    }
}

/// The transpose of [`AffineConv::from_conv`]: adds `gradient`'s kernel (and bias, when the
/// layer has one) to `grads` under `prefix` as the layer's `weight` (and `bias`).
pub fn accumulate_conv_gradient(
    conv: &Conv2d,
    gradient: &AffineConv,
    prefix: &str,
    grads: &mut Gradients,
) -> Result<()> {
    if gradient.weight.shape() != conv.weight.shape() {
        return Err(Error::shape(format!("gradient of `{prefix}`"), conv.weight.shape(), gradient.weight.shape()));
    }
    grads.accumulate(&join(prefix, "weight"), gradient.weight.mapv(|v| v as f32).into_dyn())?;
    if conv.bias.is_some() {
        grads.accumulate(&join(prefix, "bias"), gradient.bias.mapv(|v| v as f32).into_dyn())?;
    }
    Ok(())
}

/// Adds the gradient of per-channel factors (a scaling layer's `weight`, an ImplicitM's
/// `implicit`, whose shape `shape` gives) to `grads` under `name`.
pub fn accumulate_factors(da: &[f64], shape: &[usize], name: &str, grads: &mut Gradients) -> Result<()> {
    let values = ndarray::ArrayD::from_shape_vec(shape, da.iter().map(|&v| v as f32).collect())
        .map_err(|_| Error::shape(format!("gradient of `{name}`"), shape, &[da.len()]))?;
    grads.accumulate(name, values)
}
