//! The traits generated code implements: re-parameterization and cost accounting.

use crate::error::Result;
use crate::geometry::Hw;
use crate::layers::{
    AvgPool2d, BatchNorm2d, Conv2d, ConvBn, ImplicitA, ImplicitM, Layer, Linear, Parameters, Scale, SqueezeExcite,
};

/// A train-time structure with an equivalent inference structure.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be re-parameterized",
    label = "declare it with `#[rep::block]` or `#[rep::model]`, or implement `Reparameterize` by hand"
)]
pub trait Reparameterize {
    /// The fused inference form.
    type Fused;

    /// Builds the fused form, which computes the same function as `self` in eval mode.
    /// Fails only on unusable numbers (e.g. a negative BN variance), naming them.
    fn fuse(&self) -> Result<Self::Fused>;
}

/// A re-parameterizable block as `#[rep::block]` generates it: what `#[rep::model]` needs to
/// build stages of it and to check that consecutive blocks chain.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a rep block",
    label = "declare it with `#[rep::block]` (a model field is a block, a `Vec` of blocks, `GlobalAvgPool` or `Linear<IN, OUT>`)"
)]
pub trait Block: Sized + Layer + Parameters + Reparameterize + Costs {
    /// Input channels, when the type fixes them.
    const IN: Option<usize>;
    /// Output channels, when the type fixes them.
    const OUT: Option<usize>;

    /// Builds the block from its `Dim` sizes, in declaration order.
    fn from_sizes<R: rand::Rng>(sizes: &[usize], rng: &mut R) -> Result<Self>;

    /// Builds the fused block of those sizes with zero weights (`…Fused::new`): the skeleton a
    /// deploy checkpoint loads into.
    fn fused_from_sizes(sizes: &[usize]) -> Result<Self::Fused>;

    /// Which sizes a stage rewires from one block to the next.
    const STAGE: StageRoles;

    /// The stride, when the type fixes it (a literal in the block, or a `Const` size).
    const STRIDE: Option<usize>;

    /// Input channels.
    fn in_channels(&self) -> usize;

    /// Output channels.
    fn out_channels(&self) -> usize;
}

/// The positions, among a block's `Dim` sizes, of its input channels, output channels and
/// stride (those the main branch names with a single parameter).
///
/// In a stage of repeated blocks, every block after the first takes the previous block's
/// output channels as its input channels, and stride 1. A block whose stride is a literal
/// other than 1 has no stride to rewire, so `#[rep::model]` refuses it as a stage at compile
/// time (make the stride a parameter of the block).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageRoles {
    /// Position of the input channel count.
    pub input: Option<usize>,
    /// Position of the output channel count.
    pub output: Option<usize>,
    /// Position of the stride.
    pub stride: Option<usize>,
}

impl StageRoles {
    /// The sizes of a block that follows one built with `previous`: `sizes` as given, with the
    /// input channels set to `previous`'s output channels and the stride set to 1.
    pub fn follow(&self, previous: &[usize], mut sizes: Vec<usize>) -> Vec<usize> {
        if let (Some(i), Some(o)) = (self.input, self.output)
            && i < sizes.len()
            && o < previous.len()
        {
            sizes[i] = previous[o];
        }
        if let Some(s) = self.stride.filter(|&s| s < sizes.len()) {
            sizes[s] = 1;
        }
        sizes
    }
}

/// `total + more`, or an error when the sum of multiply-adds overflows a `u64` (what generated
/// [`Costs::macs`] implementations add with, so that a huge resolution never wraps).
pub fn add_macs(total: u64, more: u64) -> Result<u64> {
    total.checked_add(more).ok_or_else(|| {
        crate::Error::geometry(format!("multiply-adds overflow u64 ({total} + {more}); the input is too large"))
    })
}

/// Parameter and multiply-add counts.
///
/// Multiply-adds count convolutions (`C_in/g · k_h · k_w · H_out · W_out · C_out`) and linear
/// layers; element-wise and per-channel operations are not counted. Parameters are learnable
/// numbers; buffers such as BN running statistics are not.
pub trait Costs {
    /// Learnable parameters.
    fn parameter_count(&self) -> usize;

    /// Multiply-adds for one image whose spatial size is `input`, and the output's spatial size.
    fn macs(&self, input: Hw) -> Result<(u64, Hw)>;
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

impl Costs for BatchNorm2d {
    fn parameter_count(&self) -> usize {
        self.weight.len() + self.bias.len()
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        Ok((0, input))
    }
}

impl Costs for ConvBn {
    fn parameter_count(&self) -> usize {
        self.conv.parameter_count() + self.bn.parameter_count()
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        self.conv.macs(input)
    }
}

impl Costs for AvgPool2d {
    fn parameter_count(&self) -> usize {
        0
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        Ok((0, self.geometry(1).output_size(input.h, input.w)?))
    }
}

impl Costs for crate::layers::FilterBank {
    fn parameter_count(&self) -> usize {
        0
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        self.conv.macs(input)
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

impl Costs for Linear {
    fn parameter_count(&self) -> usize {
        self.weight.len() + self.bias.as_ref().map_or(0, |b| b.len())
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        Ok((self.weight.len() as u64, input))
    }
}

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

impl Costs for crate::layers::GlobalAvgPool {
    fn parameter_count(&self) -> usize {
        0
    }

    fn macs(&self, _: Hw) -> Result<(u64, Hw)> {
        Ok((0, Hw::square(1)))
    }
}

impl<T: Costs> Costs for Option<T> {
    fn parameter_count(&self) -> usize {
        self.as_ref().map_or(0, T::parameter_count)
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        self.as_ref().map_or(Ok((0, input)), |t| t.macs(input))
    }
}
