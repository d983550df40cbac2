//! The fusion algebra: every linear train-time construct becomes one [`AffineConv`] —
//! a kernel, a bias and a geometry, in f64 — and branches of a block then add.
//!
//! | construct | function |
//! | --- | --- |
//! | conv (with or without bias) | [`AffineConv::from_conv`] |
//! | … → BN | [`AffineConv::then_bn`] |
//! | … → scaling layer (OREPA) | [`AffineConv::then_scale`] |
//! | … → ImplicitM | [`AffineConv::then_implicit_m`] |
//! | ImplicitA → conv | [`AffineConv::after_implicit_a`] |
//! | identity (→ BN) | [`identity`], [`bn_identity`] |
//! | avg-pool | [`avg_pool_kernel`] |
//! | zero-pad a kernel around its centre | [`AffineConv::pad_to`] |
//! | 1×1 → k×k, k×k → 1×1 (incl. depthwise → pointwise) | [`AffineConv::then`] |
//! | sum of branches | [`sum_branches`] |
//!
//! Everything is computed in f64; [`AffineConv::to_conv2d`] rounds to f32 once.

mod adjoint;
mod branches;
mod sequential;

pub use branches::{avg_pool_kernel, bn_identity, identity, sum_branches};

use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use crate::layers::{BatchNorm2d, Conv2d, ConvBn, ImplicitA, ImplicitM, Scale};
use ndarray::{Array1, Array4, Axis};

/// A convolution with bias in f64: `y = x ⋆ W + b`, the value every fold produces.
#[derive(Clone, Debug, PartialEq)]
pub struct AffineConv {
    /// Kernel `[C_out, C_in/g, k_h, k_w]`.
    pub weight: Array4<f64>,
    /// Bias `[C_out]`.
    pub bias: Array1<f64>,
    /// Shape of the convolution.
    pub geometry: ConvGeometry,
}

impl ConvBn {
    /// The equivalent single convolution (BN folded in), in f64 (the fusion algebra's view of
    /// a layer; it lives here so that the layers do not depend on the algebra).
    pub fn fuse(&self) -> Result<AffineConv> {
        AffineConv::from_conv(&self.conv)?.then_bn(&self.bn)
    }
}

impl AffineConv {
    /// An affine convolution from its parts; shapes are checked against the geometry.
    pub fn new(geometry: ConvGeometry, weight: Array4<f64>, bias: Array1<f64>) -> Result<Self> {
        geometry.validate()?;
        if weight.shape() != geometry.weight_shape() {
            return Err(Error::shape("kernel", &geometry.weight_shape(), weight.shape()));
        }
        if bias.len() != geometry.out_channels {
            return Err(Error::shape("bias", &[geometry.out_channels], bias.shape()));
        }
        Ok(AffineConv { weight, bias, geometry })
    }

    /// The all-zero convolution of a geometry.
    pub fn zeros(geometry: ConvGeometry) -> Result<Self> {
        AffineConv::new(geometry, Array4::zeros(geometry.weight_shape()), Array1::zeros(geometry.out_channels))
    }

    /// A conv layer as an affine convolution (a missing bias is zero). A conv that pads with
    /// non-zero values is not a plain convolution and is refused; merge it with
    /// [`AffineConv::then`], which accounts for that padding.
    pub fn from_conv(conv: &Conv2d) -> Result<Self> {
        if let Some(fill) = &conv.pad_fill
            && conv.geometry.padding.to_array() != [0, 0]
            && fill.iter().any(|&v| v != 0.0)
        {
            return Err(Error::fusion(
                "conv",
                "it pads with non-zero values, so it is not a plain convolution on its own; \
                 merge it with the 1x1 stage before it (AffineConv::then)",
            ));
        }
        AffineConv::from_conv_ignoring_fill(conv)
    }

    /// The conv's numbers as if it padded with zeros.
    fn from_conv_ignoring_fill(conv: &Conv2d) -> Result<Self> {
        Error::check_finite("conv weight", conv.weight.iter())?;
        if let Some(bias) = &conv.bias {
            Error::check_finite("conv bias", bias.iter())?;
        }
        let bias = match &conv.bias {
            Some(b) => b.mapv(f64::from),
            None => Array1::zeros(conv.geometry.out_channels),
        };
        AffineConv::new(conv.geometry, conv.weight.mapv(f64::from), bias)
    }

    /// Rounds to f32 once and builds the conv layer (always with a bias).
    pub fn to_conv2d(&self) -> Conv2d {
        Conv2d {
            weight: self.weight.mapv(|v| v as f32),
            bias: Some(self.bias.mapv(|v| v as f32)),
            geometry: self.geometry,
            pad_fill: None,
        }
    }

    /// Follows the conv by the per-channel map `y[o] = a[o]·x[o] + c[o]`:
    /// `W'[o] = a[o]·W[o]`, `bias'[o] = a[o]·bias[o] + c[o]`. `what` names the map in errors.
    pub fn then_channel_affine(mut self, what: &str, a: &[f64], c: &[f64]) -> Result<Self> {
        let out = self.geometry.out_channels;
        if a.len() != out || c.len() != out {
            return Err(Error::fusion(
                what,
                format!("it has {} channels but the convolution before it has {out} outputs", a.len()),
            ));
        }
        for (o, mut kernel) in self.weight.axis_iter_mut(Axis(0)).enumerate() {
            kernel.mapv_inplace(|w| w * a[o]);
            self.bias[o] = a[o] * self.bias[o] + c[o];
        }
        Ok(self)
    }

    /// Folds a BatchNorm (eval mode) that follows the conv:
    /// `W' = W·γ/std`, `b' = (b − μ)·γ/std + β`, `std = √(σ² + ε)`.
    pub fn then_bn(self, bn: &BatchNorm2d) -> Result<Self> {
        let (a, b) = bn.affine()?;
        self.then_channel_affine("batch norm", &a, &b)
    }

    /// Folds an OREPA scaling layer that follows the conv: `W' = s·W`, `b' = s·b`.
    pub fn then_scale(self, scale: &Scale) -> Result<Self> {
        Error::check_finite("scale weight", scale.weight.iter())?;
        let a: Vec<f64> = scale.weight.iter().map(|&v| v as f64).collect();
        self.then_channel_affine("scale", &a, &vec![0.0; a.len()])
    }

    /// Folds an ImplicitM that follows the conv: `W' = m·W`, `b' = m·b`.
    pub fn then_implicit_m(self, m: &ImplicitM) -> Result<Self> {
        Error::check_finite("implicit_m", m.implicit.iter())?;
        let a = m.values();
        self.then_channel_affine("implicit_m", &a, &vec![0.0; a.len()])
    }

    /// Folds an ImplicitA that precedes the conv: `b'[o] = b[o] + Σ_{c,u,v} W[o,c,u,v]·a[c]`.
    ///
    /// Exact only without padding: padded positions are zero, not `a`, so on the border the
    /// two forms would differ; such a conv is refused.
    pub fn after_implicit_a(mut self, implicit: &ImplicitA) -> Result<Self> {
        let g = self.geometry;
        if implicit.implicit.len() != g.in_channels {
            return Err(Error::fusion(
                "implicit_a",
                format!(
                    "it has {} channels but the conv after it has {} inputs",
                    implicit.implicit.len(),
                    g.in_channels
                ),
            ));
        }
        if g.padding.to_array() != [0, 0] {
            return Err(Error::fusion(
                "implicit_a",
                format!("the conv after it pads by {}; the fold is exact only without padding", g.padding),
            ));
        }
        Error::check_finite("implicit_a", implicit.implicit.iter())?;
        let (cin_g, cout_g) = (g.in_per_group(), g.out_per_group());
        let offsets = implicit.values();
        for (o, kernel) in self.weight.axis_iter(Axis(0)).enumerate() {
            let first = (o / cout_g) * cin_g;
            let shift: f64 = kernel.outer_iter().enumerate().map(|(c, taps)| taps.sum() * offsets[first + c]).sum();
            self.bias[o] += shift;
        }
        Ok(self)
    }

    /// The kernel with groups spelled out: `[C_out, C_in, k_h, k_w]`, zero off the group blocks.
    pub fn dense_weight(&self) -> Array4<f64> {
        let g = self.geometry;
        let (cin_g, cout_g) = (g.in_per_group(), g.out_per_group());
        let mut dense = Array4::zeros((g.out_channels, g.in_channels, g.kernel.h, g.kernel.w));
        for o in 0..g.out_channels {
            let first = (o / cout_g) * cin_g;
            for c in 0..cin_g {
                dense.slice_mut(ndarray::s![o, first + c, .., ..]).assign(&self.weight.slice(ndarray::s![
                    o,
                    c,
                    ..,
                    ..
                ]));
            }
        }
        dense
    }
}
