//! The 2-D convolution layer.

use super::Costs;
use super::{Layer, tensor_parameters};
use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::geometry::Hw;
use crate::kernels::{self, ConvOperands, Tile, WinogradConv};
use ndarray::{Array1, Array4, ArrayViewMut4};
use rand::Rng;

/// A 2-D convolution (cross-correlation) with optional bias, as PyTorch's `nn.Conv2d`.
///
/// Padded positions are zero unless [`Conv2d::pad_fill`] gives a value per input channel —
/// the padding DBB uses after a BN, so that a 1×1 → BN → k×k branch merges exactly on the
/// border too (see [`crate::fusion::AffineConv::then`]).
///
/// The fields are private so that the numbers always fit the geometry: build with
/// [`Conv2d::new`] / [`Conv2d::from_weights`], change values through [`Conv2d::weight_mut`]
/// or [`crate::layers::Parameters::visit_mut`] (views of fixed shape).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    /// Kernel `[C_out, C_in/g, k_h, k_w]`.
    pub(crate) weight: Array4<f32>,
    /// Optional bias `[C_out]`.
    pub(crate) bias: Option<Array1<f32>>,
    /// Shape of the convolution.
    pub(crate) geometry: ConvGeometry,
    /// Per-input-channel padding value `[C_in]`; `None` pads with zeros.
    pub(crate) pad_fill: Option<Array1<f32>>,
}

impl Conv2d {
    /// A bias-free convolution with PyTorch's default initialization
    /// (Kaiming-uniform, `a = √5`: weights uniform in `±1/√fan_in`, `fan_in = C_in/g·k_h·k_w`).
    pub fn new(geometry: ConvGeometry, rng: &mut impl Rng) -> Result<Self> {
        geometry.validate()?;
        let bound = 1.0 / (geometry.in_per_group() * geometry.kernel.h * geometry.kernel.w) as f32;
        let bound = bound.sqrt();
        let weight = Array4::from_shape_simple_fn(geometry.weight_shape(), || rng.random_range(-bound..bound));
        Ok(Conv2d { weight, bias: None, geometry, pad_fill: None })
    }

    /// As [`Conv2d::new`], plus a bias drawn uniformly from `±1/√fan_in` (PyTorch's default).
    pub fn new_with_bias(geometry: ConvGeometry, rng: &mut impl Rng) -> Result<Self> {
        let mut conv = Conv2d::new(geometry, rng)?;
        let bound = (1.0 / (geometry.in_per_group() * geometry.kernel.h * geometry.kernel.w) as f32).sqrt();
        conv.bias = Some(Array1::from_shape_simple_fn(geometry.out_channels, || rng.random_range(-bound..bound)));
        Ok(conv)
    }

    /// A convolution from given numbers; shapes are checked against the geometry.
    pub fn from_weights(geometry: ConvGeometry, weight: Array4<f32>, bias: Option<Array1<f32>>) -> Result<Self> {
        Conv2d { weight, bias, geometry, pad_fill: None }.checked()
    }

    /// Sets a 1×1 kernel to the (grouped) identity pattern, `W[o, o mod (C_in/g)] = 1`, as
    /// DBB's and OREPA's identity-initialized 1×1 convs start.
    pub fn init_identity(&mut self) {
        let cin_g = self.geometry.in_per_group();
        self.weight = Array4::from_shape_fn(self.weight.dim(), |(o, c, _, _)| if c == o % cin_g { 1.0 } else { 0.0 });
    }

    /// Sets the bias `[C_out]`.
    pub fn with_bias(mut self, bias: Array1<f32>) -> Result<Self> {
        self.bias = Some(bias);
        self.checked()
    }

    /// Pads with `fill[c]` on input channel `c` instead of zero.
    pub fn with_pad_fill(mut self, fill: Array1<f32>) -> Result<Self> {
        self.pad_fill = Some(fill);
        self.checked()
    }

    /// The layer, once its numbers are checked against its geometry by the kernels' one rule
    /// ([`kernels::check_operands`]).
    fn checked(self) -> Result<Self> {
        kernels::check_operands(&self.geometry, &self.operands())?;
        Ok(self)
    }

    /// The shape of the convolution.
    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// The kernel `[C_out, C_in/g, k_h, k_w]`.
    pub fn weight(&self) -> &Array4<f32> {
        &self.weight
    }

    /// The kernel's values, writable in place (the shape cannot change).
    pub fn weight_mut(&mut self) -> ArrayViewMut4<'_, f32> {
        self.weight.view_mut()
    }

    /// The bias `[C_out]`, if any.
    pub fn bias(&self) -> Option<&Array1<f32>> {
        self.bias.as_ref()
    }

    /// The per-input-channel padding value `[C_in]`, if not zero.
    pub fn pad_fill(&self) -> Option<&Array1<f32>> {
        self.pad_fill.as_ref()
    }

    /// The numbers as kernel operands.
    pub fn operands(&self) -> ConvOperands<'_> {
        ConvOperands {
            weight: self.weight.view(),
            bias: self.bias.as_ref().map(|b| b.view()),
            pad_fill: self.pad_fill.as_ref().map(|f| f.view()),
        }
    }

    /// Forward followed by `activation`, applied while each output band is in cache.
    pub fn forward_then(&self, x: &Array4<f32>, activation: super::Activation) -> Result<Array4<f32>> {
        kernels::conv2d_then(x.view(), &self.geometry, self.operands(), activation)
    }

    /// Eval forward padding with `fill[c]` on input channel `c` (overriding
    /// [`Conv2d::pad_fill`]); generated branch code uses it after a stage with a bias.
    pub fn forward_with_fill(&self, x: &Array4<f32>, fill: &Array1<f32>) -> Result<Array4<f32>> {
        kernels::conv2d(x.view(), &self.geometry, ConvOperands { pad_fill: Some(fill.view()), ..self.operands() })
    }
}

impl Layer for Conv2d {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        kernels::conv2d(x.view(), &self.geometry, self.operands())
    }
}

tensor_parameters!(Conv2d { weight; optional bias });

impl WinogradConv {
    /// Transforms `conv`'s kernel for the default tile, F(4×4, 3×3). Refuses geometries
    /// [`WinogradConv::supports`] does not, and a conv that pads with anything but zeros.
    pub fn new(conv: &Conv2d) -> Result<Self> {
        WinogradConv::with_tile(conv, Tile::default())
    }

    /// As [`WinogradConv::new`], for the given output tile.
    pub fn with_tile(conv: &Conv2d, tile: Tile) -> Result<Self> {
        WinogradConv::from_operands(&conv.geometry, conv.operands(), tile)
    }

    /// The convolution this one computes, its kernel recovered from the transformed one
    /// ([`WinogradConv::recovered_weight`]); allocates.
    pub fn to_conv2d(&self) -> Conv2d {
        let bias = Array1::from(self.bias().to_vec());
        Conv2d { weight: self.recovered_weight(), bias: Some(bias), geometry: *self.geometry(), pad_fill: None }
    }
}

impl Costs for Conv2d {
    fn parameter_count(&self) -> usize {
        self.weight.len() + self.bias.as_ref().map_or(0, |b| b.len())
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        let out = self.geometry.output_size(input.h, input.w)?;
        Ok((self.geometry.macs(out)?, out))
    }
}
