//! A fixed bank of k×k filters, one per channel: OREPA's frequency prior.

use super::Costs;
use super::{Conv2d, Layer, Parameters};
use crate::error::Result;
use crate::geometry::{ConvGeometry, Hw};
use ndarray::{Array1, Array4, ArrayViewD, ArrayViewMutD};
use std::f64::consts::PI;

/// A depthwise convolution with constant filters (no parameters): channel `c` is filtered by
/// `filters[c]`. Folds like any convolution.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterBank {
    /// The depthwise convolution holding the constant filters.
    pub conv: Conv2d,
}

impl FilterBank {
    /// OREPA's frequency prior: 2-D DCT basis filters. For the first half of the channels
    /// `f_c[h, w] = cos(π (h + ½)(c + 1) / k)`, for the second half
    /// `f_c[h, w] = cos(π (w + ½)(c + 1 − C/2) / k)` (OREPA's `fre_init`, which writes k = 3).
    pub fn dct(channels: usize, kernel: usize, stride: impl Into<Hw>, padding: impl Into<Hw>) -> Result<Self> {
        let geometry = ConvGeometry::new(channels, channels, kernel).stride(stride).padding(padding).groups(channels);
        let half = channels as f64 / 2.0;
        let k = kernel as f64;
        let weight = Array4::from_shape_fn(geometry.weight_shape(), |(c, _, h, w)| {
            let c = c as f64;
            let value = if c < half {
                (PI * (h as f64 + 0.5) * (c + 1.0) / k).cos()
            } else {
                (PI * (w as f64 + 0.5) * (c + 1.0 - half) / k).cos()
            };
            value as f32
        });
        Ok(FilterBank { conv: Conv2d::from_weights(geometry, weight, None)? })
    }

    /// Forward padding channel `c` with `fill[c]` instead of zero.
    pub fn forward_with_fill(&self, x: &Array4<f32>, fill: &Array1<f32>) -> Result<Array4<f32>> {
        self.conv.forward_with_fill(x, fill)
    }
}

impl Layer for FilterBank {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        self.conv.forward(x)
    }
}

/// The filters are constants, not parameters: nothing to visit.
impl Parameters for FilterBank {
    fn visit(&self, _: &str, _: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {}

    fn visit_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {}
}

impl Costs for FilterBank {
    fn parameter_count(&self) -> usize {
        0
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        self.conv.macs(input)
    }
}
