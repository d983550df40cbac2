//! Average and max pooling.

use super::Costs;
use super::Layer;
use crate::error::{Error, Result};
use crate::geometry::{ConvGeometry, Hw};
use crate::kernels::{self, ConvOperands};
use ndarray::{Array1, Array2, Array4, Axis};

/// Average pooling over `kernel` windows, as PyTorch's `nn.AvgPool2d`.
///
/// With `count_include_pad` (PyTorch's default) every window divides by `k_h·k_w`, padded zeros
/// included — the form that is a convolution and so folds into a kernel
/// ([`crate::fusion::avg_pool_kernel`]). Without it, each window divides by the number of real
/// input positions it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    /// Window size.
    pub kernel: Hw,
    /// Stride.
    pub stride: Hw,
    /// Zero padding on each side.
    pub padding: Hw,
    /// Whether padded positions count in the divisor.
    pub count_include_pad: bool,
}

impl AvgPool2d {
    /// A pool with the given window, stride and padding, counting padded positions.
    pub fn new(kernel: impl Into<Hw>, stride: impl Into<Hw>, padding: impl Into<Hw>) -> Self {
        AvgPool2d { kernel: kernel.into(), stride: stride.into(), padding: padding.into(), count_include_pad: true }
    }

    /// The pool's geometry as a depthwise convolution over `channels` channels.
    pub fn geometry(&self, channels: usize) -> ConvGeometry {
        ConvGeometry::new(channels, channels, self.kernel).stride(self.stride).padding(self.padding).groups(channels)
    }

    /// Eval forward padding input channel `c` with `fill[c]` instead of zero (counted in the
    /// divisor): DBB's BN-and-pad before a pool. Generated branch code uses it after a stage
    /// with a bias, so that the pool merges into that stage exactly.
    pub fn forward_with_fill(&self, x: &Array4<f32>, fill: &Array1<f32>) -> Result<Array4<f32>> {
        let area = (self.kernel.h * self.kernel.w) as f32;
        Ok(self.window_sum(x, Some(fill))?.mapv(|s| s / area))
    }

    /// Window sums: a depthwise convolution with all-ones kernels.
    fn window_sum(&self, x: &Array4<f32>, fill: Option<&Array1<f32>>) -> Result<Array4<f32>> {
        let channels = x.shape()[1];
        let geometry = self.geometry(channels);
        if 2 * self.padding.h > self.kernel.h || 2 * self.padding.w > self.kernel.w {
            return Err(Error::geometry(format!(
                "avg pool padding {} must be at most half the kernel {}",
                self.padding, self.kernel
            )));
        }
        let ones = Array4::ones(geometry.weight_shape());
        let pad_fill = fill.map(|f| f.view());
        kernels::conv2d(x.view(), &geometry, ConvOperands { weight: ones.view(), bias: None, pad_fill })
    }
}

impl Layer for AvgPool2d {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        let sums = self.window_sum(x, None)?;
        if self.count_include_pad {
            let area = (self.kernel.h * self.kernel.w) as f32;
            return Ok(sums.mapv(|s| s / area));
        }
        let (_, _, h, w) = x.dim();
        let counts = self.window_sum(&Array4::ones((1, 1, h, w)), None)?;
        Ok(&sums / &counts)
    }
}

/// Mean over the spatial axes: `[N, C, H, W] → [N, C]`.
pub fn global_avg_pool(x: &Array4<f32>) -> Array2<f32> {
    let (n, c, h, w) = x.dim();
    // A view of the same values when the input is contiguous (no copy), a copy otherwise.
    let flat = x.to_shape((n, c, h * w)).expect("a 4-D array reshapes to 3-D");
    flat.mean_axis(Axis(2)).unwrap_or_else(|| Array2::zeros((n, c)))
}

/// Global average pooling as a layer of a model: `[N, C, H, W] → [N, C]` ([`global_avg_pool`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalAvgPool;

impl GlobalAvgPool {
    /// Mean over the spatial axes.
    pub fn forward(&self, x: &Array4<f32>) -> Result<Array2<f32>> {
        Ok(global_avg_pool(x))
    }
}

impl crate::layers::Parameters for GlobalAvgPool {
    fn visit(&self, _: &str, _: &mut dyn FnMut(&str, ndarray::ArrayViewD<'_, f32>)) {}

    fn visit_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, ndarray::ArrayViewMutD<'_, f32>)) {}
}

impl Costs for AvgPool2d {
    fn parameter_count(&self) -> usize {
        0
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        Ok((0, self.geometry(1).output_size(input.h, input.w)?))
    }
}

impl Costs for GlobalAvgPool {
    fn parameter_count(&self) -> usize {
        0
    }

    fn macs(&self, _: Hw) -> Result<(u64, Hw)> {
        Ok((0, Hw::square(1)))
    }
}

/// Max pooling over `kernel` windows, as PyTorch's `nn.MaxPool2d` (YOLO's `MP` and SPPCSPC's
/// pools): padded positions never win, and a NaN in a window makes that window's output NaN
/// (PyTorch's semantics; `f32::max` would drop it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window size.
    pub kernel: Hw,
    /// Stride.
    pub stride: Hw,
    /// Padding on each side (at most half the kernel, as PyTorch requires).
    pub padding: Hw,
}

impl MaxPool2d {
    /// A pool with the given window, stride and padding.
    pub fn new(kernel: impl Into<Hw>, stride: impl Into<Hw>, padding: impl Into<Hw>) -> Self {
        MaxPool2d { kernel: kernel.into(), stride: stride.into(), padding: padding.into() }
    }

    /// The output's spatial size: `⌊(H + 2p − k) / s⌋ + 1` per axis.
    pub fn output_size(&self, input: Hw) -> Result<Hw> {
        if 2 * self.padding.h > self.kernel.h || 2 * self.padding.w > self.kernel.w {
            return Err(Error::geometry(format!(
                "max pool padding {} must be at most half the kernel {}",
                self.padding, self.kernel
            )));
        }
        ConvGeometry::new(1, 1, self.kernel).stride(self.stride).padding(self.padding).output_size(input.h, input.w)
    }
}

impl MaxPool2d {
    /// Pools the row-major `[N, C, H, W]` values `x` of `shape` into `y` (sized for the output),
    /// plane by plane in parallel.
    pub(crate) fn pool_into(&self, x: &[f32], shape: [usize; 4], y: &mut [f32]) -> Result<()> {
        let [_, _, h, w] = shape;
        if h == 0 || w == 0 {
            return Err(Error::geometry(format!("max pool input {h}x{w} has no values")));
        }
        let out = self.output_size(Hw::new(h, w))?;
        let window = kernels::PoolWindow { kernel: self.kernel, stride: self.stride, padding: self.padding };
        kernels::max_pool_into(x, Hw::new(h, w), out, window, y);
        Ok(())
    }
}

impl Layer for MaxPool2d {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        let (n, c, h, w) = x.dim();
        let out = self.output_size(Hw::new(h, w))?;
        let x = x.as_standard_layout();
        let mut y = Array4::zeros((n, c, out.h, out.w));
        let y_values = y.as_slice_mut().expect("fresh arrays are row-major");
        self.pool_into(x.as_slice().expect("standard layout"), [n, c, h, w], y_values)?;
        Ok(y)
    }
}

impl Costs for MaxPool2d {
    fn parameter_count(&self) -> usize {
        0
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        Ok((0, self.output_size(input)?))
    }
}
