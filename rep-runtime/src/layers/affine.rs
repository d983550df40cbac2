//! Per-channel linear layers: OREPA's scaling layer and YOLOR's implicit knowledge.

use super::Costs;
use super::{Layer, check_channels, per_channel_affine, tensor_parameters};
use crate::error::Result;
use crate::geometry::Hw;
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
    /// The per-channel offsets, shaped `[1, C, 1, 1]` as YOLOR stores them.
    pub implicit: Array4<f32>,
}

/// YOLOR's ImplicitM: `y[n,c] = implicit[c] · x[n,c]`, placed after a convolution.
#[derive(Clone, Debug, PartialEq)]
pub struct ImplicitM {
    /// The per-channel factors, shaped `[1, C, 1, 1]` as YOLOR stores them.
    pub implicit: Array4<f32>,
}

/// A `[C]` vector as YOLOR's `[1, C, 1, 1]` parameter.
fn as_parameter(values: Array1<f32>) -> Array4<f32> {
    let c = values.len();
    values.into_shape_with_order((1, c, 1, 1)).expect("a vector has one axis")
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
        ImplicitA { implicit: Array4::zeros((1, channels, 1, 1)) }
    }

    /// Offsets given by hand.
    pub fn with(implicit: Array1<f32>) -> Self {
        ImplicitA { implicit: as_parameter(implicit) }
    }

    /// The offsets in f64.
    pub fn values(&self) -> Vec<f64> {
        as_f64(&self.implicit)
    }
}

impl ImplicitM {
    /// Factors initialized to one.
    pub fn new(channels: usize) -> Self {
        ImplicitM { implicit: Array4::ones((1, channels, 1, 1)) }
    }

    /// Factors given by hand.
    pub fn with(implicit: Array1<f32>) -> Self {
        ImplicitM { implicit: as_parameter(implicit) }
    }

    /// The factors in f64.
    pub fn values(&self) -> Vec<f64> {
        as_f64(&self.implicit)
    }
}

fn as_f64<D: ndarray::Dimension>(v: &ndarray::Array<f32, D>) -> Vec<f64> {
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
        Ok(per_channel_affine(x, &vec![1.0; self.implicit.len()], &self.values()))
    }
}

impl Layer for ImplicitM {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        check_channels("implicit_m", x, self.implicit.len())?;
        Ok(per_channel_affine(x, &self.values(), &vec![0.0; self.implicit.len()]))
    }
}

tensor_parameters!(Scale { weight });
tensor_parameters!(ImplicitA { implicit });
tensor_parameters!(ImplicitM { implicit });

macro_rules! per_channel_costs {
    ($($ty:ty => $field:ident),*) => {$(
        impl Costs for $ty {
            fn parameter_count(&self) -> usize {
                self.$field.len()
            }

            fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
                Ok((0, input))
            }
        }
    )*};
}
per_channel_costs!(Scale => weight, ImplicitA => implicit, ImplicitM => implicit);
