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

    /// The sizes of the next block of a stage: input channels become the output channels and
    /// the stride becomes 1 (the parameters named by the main branch's `C_in` and stride).
    fn next_in_stage(sizes: &[usize]) -> Vec<usize>;

    /// Input channels.
    fn in_channels(&self) -> usize;

    /// Output channels.
    fn out_channels(&self) -> usize;
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
        Ok((self.geometry.macs(out), out))
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

impl Costs for SqueezeExcite {
    fn parameter_count(&self) -> usize {
        self.reduce.parameter_count() + self.expand.parameter_count()
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        let one = Hw::square(1);
        Ok((self.reduce.macs(one)?.0 + self.expand.macs(one)?.0, input))
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
