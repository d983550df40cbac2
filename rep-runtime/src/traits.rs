//! The traits generated code implements: re-parameterization and blocks of a model (cost
//! accounting, `Costs`, lives with the layers, each layer's impl in its own file).

use crate::error::Result;
use crate::layers::{Costs, Layer, Parameters};

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

    /// Whether the block has an identity branch (a branch that is the input itself, or a BN of
    /// it: RepVGG's and RepConv's `rbr_identity`) when its type decides it — `Some(true)`,
    /// `Some(false)` — or `None` when run-time sizes decide (see [`Block::has_identity_branch`]).
    /// Graphs refuse such a block on a shortcut path at compile time ([`crate::graph`]).
    const IDENTITY_BRANCH: Option<bool> = None;

    /// Whether this block has an identity branch.
    fn has_identity_branch(&self) -> bool {
        false
    }
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
