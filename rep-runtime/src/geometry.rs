//! Convolution geometry: channels, kernel, stride, padding, dilation, groups.

use crate::error::{Error, Result};
use std::fmt;

/// A (height, width) pair: kernel size, stride, padding or dilation.
///
/// Built from one number (square) or a pair: `Hw::from(3)`, `Hw::from((1, 3))`, `Hw::from([3, 1])`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hw {
    /// Size along the height axis.
    pub h: usize,
    /// Size along the width axis.
    pub w: usize,
}

impl Hw {
    /// A pair with both axes given.
    pub const fn new(h: usize, w: usize) -> Self {
        Hw { h, w }
    }

    /// The same value on both axes.
    pub const fn square(v: usize) -> Self {
        Hw { h: v, w: v }
    }

    /// Both components as an array `[h, w]`.
    pub const fn to_array(self) -> [usize; 2] {
        [self.h, self.w]
    }
}

impl From<usize> for Hw {
    fn from(v: usize) -> Self {
        Hw::square(v)
    }
}

impl From<(usize, usize)> for Hw {
    fn from((h, w): (usize, usize)) -> Self {
        Hw { h, w }
    }
}

impl From<[usize; 2]> for Hw {
    fn from([h, w]: [usize; 2]) -> Self {
        Hw { h, w }
    }
}

impl fmt::Display for Hw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.h, self.w)
    }
}

/// Everything about a 2-D convolution except its numbers.
///
/// Weight shape is `[out_channels, in_channels / groups, kernel.h, kernel.w]`; the output size
/// along an axis is `⌊(in + 2·p − d·(k − 1) − 1) / s⌋ + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    /// Input channels `C_in`.
    pub in_channels: usize,
    /// Output channels `C_out`.
    pub out_channels: usize,
    /// Kernel size.
    pub kernel: Hw,
    /// Stride.
    pub stride: Hw,
    /// Zero padding on each side.
    pub padding: Hw,
    /// Dilation (spacing between kernel taps).
    pub dilation: Hw,
    /// Groups: input and output channels are split into this many independent convolutions.
    pub groups: usize,
}

impl ConvGeometry {
    /// A stride-1, unpadded, undilated, ungrouped convolution.
    pub fn new(in_channels: usize, out_channels: usize, kernel: impl Into<Hw>) -> Self {
        ConvGeometry {
            in_channels,
            out_channels,
            kernel: kernel.into(),
            stride: Hw::square(1),
            padding: Hw::square(0),
            dilation: Hw::square(1),
            groups: 1,
        }
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: impl Into<Hw>) -> Self {
        self.stride = stride.into();
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: impl Into<Hw>) -> Self {
        self.padding = padding.into();
        self
    }

    /// Sets the padding to `d·(k − 1)/2` per axis, which keeps the window centred on the
    /// input pixel ("same" padding at stride 1) for odd kernels.
    pub fn same_padding(mut self) -> Self {
        let (d, k) = (self.dilation, self.kernel);
        self.padding = Hw::new(rep_rules::reach(d.h, k.h) / 2, rep_rules::reach(d.w, k.w) / 2);
        self
    }

    /// Sets the dilation.
    pub fn dilation(mut self, dilation: impl Into<Hw>) -> Self {
        self.dilation = dilation.into();
        self
    }

    /// Sets the number of groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Input channels seen by one output channel: `C_in / groups`.
    pub fn in_per_group(&self) -> usize {
        self.in_channels / self.groups
    }

    /// Output channels produced by one group: `C_out / groups`.
    pub fn out_per_group(&self) -> usize {
        self.out_channels / self.groups
    }

    /// A 1×1 kernel with stride 1 and no padding: output position `p` reads input position `p`
    /// only, so the input itself is the GEMM operand (and a sequential merge may use it).
    pub fn is_pointwise(&self) -> bool {
        self.kernel.to_array() == [1, 1] && self.stride.to_array() == [1, 1] && self.padding.to_array() == [0, 0]
    }

    /// The weight tensor's shape `[C_out, C_in/g, k_h, k_w]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.out_channels, self.in_per_group(), self.kernel.h, self.kernel.w]
    }

    /// The dilated kernel extent `d·(k − 1) + 1` per axis.
    pub fn effective_kernel(&self) -> Hw {
        Hw::new(
            rep_rules::reach(self.dilation.h, self.kernel.h) + 1,
            rep_rules::reach(self.dilation.w, self.kernel.w) + 1,
        )
    }

    /// Twice the offset between the window centre and the output position, per axis:
    /// `2p − d·(k − 1)` ([`rep_rules::centre_offset2`], the centre law). Two convolutions read
    /// the same input window centres exactly when these agree (and their strides do).
    pub fn centre_offset2(&self) -> [isize; 2] {
        let (p, d, k) = (self.padding, self.dilation, self.kernel);
        [rep_rules::centre_offset2(p.h, d.h, k.h), rep_rules::centre_offset2(p.w, d.w, k.w)]
    }

    /// Checks that the geometry makes sense on its own: non-zero sizes, channels divisible by
    /// the groups.
    pub fn validate(&self) -> Result<()> {
        let zero = [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("kernel height", self.kernel.h),
            ("kernel width", self.kernel.w),
            ("stride height", self.stride.h),
            ("stride width", self.stride.w),
            ("dilation height", self.dilation.h),
            ("dilation width", self.dilation.w),
            ("groups", self.groups),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, v)| *v == 0) {
            return Err(Error::geometry(format!("{name} must be at least 1, found 0")));
        }
        for (name, channels) in [("in_channels", self.in_channels), ("out_channels", self.out_channels)] {
            if channels % self.groups != 0 {
                return Err(Error::geometry(format!(
                    "{name} = {channels} is not divisible by groups = {}",
                    self.groups
                )));
            }
        }
        Ok(())
    }

    /// The output spatial size for an input of `height × width`, or an error if the padded
    /// input is smaller than the dilated kernel.
    pub fn output_size(&self, height: usize, width: usize) -> Result<Hw> {
        if self.stride.h == 0 || self.stride.w == 0 {
            return Err(Error::geometry(format!("stride must be at least 1, found {}", self.stride)));
        }
        let k = self.effective_kernel();
        let padded = |size: usize, pad: usize| size.saturating_add(pad.saturating_mul(2));
        let (ph, pw) = (padded(height, self.padding.h), padded(width, self.padding.w));
        if ph < k.h || pw < k.w {
            return Err(Error::InputTooSmall {
                layer: "conv2d",
                height,
                width,
                pad_h: self.padding.h,
                pad_w: self.padding.w,
                kernel_h: k.h,
                kernel_w: k.w,
            });
        }
        Ok(Hw::new((ph - k.h) / self.stride.h + 1, (pw - k.w) / self.stride.w + 1))
    }

    /// Multiply-adds for one image whose output is `out`:
    /// `C_in/g · k_h · k_w · H_out · W_out · C_out`.
    ///
    /// An error when the count does not fit in a `u64` (absurd resolutions), never a wrapped value.
    pub fn macs(&self, out: Hw) -> Result<u64> {
        [self.in_per_group(), self.kernel.h, self.kernel.w, out.h, out.w, self.out_channels]
            .iter()
            .try_fold(1u64, |acc, &n| acc.checked_mul(n as u64))
            .ok_or_else(|| Error::geometry(format!("multiply-adds of {self} on a {out} output overflow u64")))
    }

    /// Number of weights `C_out · C_in/g · k_h · k_w` (bias not included).
    pub fn weight_count(&self) -> usize {
        self.weight_shape().iter().product()
    }
}

impl fmt::Display for ConvGeometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}->{} k{} s{} p{} d{} g{}",
            self.in_channels, self.out_channels, self.kernel, self.stride, self.padding, self.dilation, self.groups
        )
    }
}
