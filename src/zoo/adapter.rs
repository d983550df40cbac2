//! One adapter shape for the block families: build from an original train-time checkpoint,
//! then convert it to the original's deploy form with an equivalence check.

use super::acnet::AcBlock;
use super::dbb::Dbb;
use super::mobileone::MobileOneBlock;
use super::orepa::Orepa;
use crate::compare::{Difference, difference};
use crate::io::StateDict;
use crate::layers::{Layer, Parameters};
use crate::ndarray::Array4;
use crate::rand::{Rng, SeedableRng, rngs::StdRng};
use crate::{Costs, Error, Reparameterize, Result};
use std::path::Path;

/// Constructor arguments of a block that its weights do not record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockOptions {
    /// The stride.
    pub stride: usize,
    /// The groups (ignored by families whose weights show them: DBB, OREPA).
    pub groups: usize,
}

/// A block family whose authors' train-time checkpoints load by their own names.
pub trait FromCheckpoint:
    Sized + Layer + Parameters + Costs + Reparameterize<Fused: Layer + Parameters + Costs>
{
    /// The family's name, for messages.
    const FAMILY: &'static str;

    /// Reads the configuration from the checkpoint's shapes, builds the block and loads it.
    fn from_checkpoint(state: &StateDict, options: BlockOptions) -> Result<Self>;

    /// Input channels (to draw a test input).
    fn input_channels(&self) -> usize;
}

impl FromCheckpoint for Dbb {
    const FAMILY: &'static str = "DBB";

    fn from_checkpoint(state: &StateDict, options: BlockOptions) -> Result<Self> {
        Dbb::from_state_dict(state, options.stride)
    }

    fn input_channels(&self) -> usize {
        super::dbb::on_variant!(self, b => crate::Block::in_channels(b))
    }
}

impl FromCheckpoint for AcBlock<usize, usize, usize, usize> {
    const FAMILY: &'static str = "ACNet";

    fn from_checkpoint(state: &StateDict, options: BlockOptions) -> Result<Self> {
        AcBlock::from_state_dict(state, options.stride, options.groups)
    }

    fn input_channels(&self) -> usize {
        crate::Block::in_channels(self)
    }
}

impl FromCheckpoint for Orepa<usize, usize, usize, usize, usize, usize> {
    const FAMILY: &'static str = "OREPA";

    fn from_checkpoint(state: &StateDict, options: BlockOptions) -> Result<Self> {
        Orepa::from_state_dict(state, options.stride)
    }

    fn input_channels(&self) -> usize {
        crate::Block::in_channels(self)
    }
}

impl FromCheckpoint for MobileOneBlock<usize, usize, usize, usize, usize, usize, usize> {
    const FAMILY: &'static str = "MobileOne";

    fn from_checkpoint(state: &StateDict, options: BlockOptions) -> Result<Self> {
        MobileOneBlock::from_state_dict(state, options.stride, options.groups)
    }

    fn input_channels(&self) -> usize {
        crate::Block::in_channels(self)
    }
}

/// What [`convert_block`] did.
#[derive(Clone, Debug)]
pub struct BlockConversion {
    /// Fused against train-time output on a random 2×C×17×13 input.
    pub check: Difference,
    /// The keys written (the original's deploy names).
    pub keys: Vec<String>,
}

/// Loads the original train-time checkpoint `input` of family `B`, fuses it and writes the
/// deploy form under the original's names to `output`, after checking the fused block against
/// the train-time one on a random input (within [`super::repvgg::CONVERT_TOLERANCE`], NaN
/// failing). Nothing is written when anything fails; an output that is the input is refused.
pub fn convert_block<B: FromCheckpoint>(input: &Path, output: &Path, options: BlockOptions) -> Result<BlockConversion> {
    crate::io::ensure_distinct(output, &[input])?;
    let block = B::from_checkpoint(&StateDict::load(input)?, options)?;
    let fused = block.fuse()?;
    let mut rng = StdRng::seed_from_u64(0);
    let x = Array4::from_shape_simple_fn((2, block.input_channels(), 17, 13), || rng.random_range(-1.0f32..1.0));
    let check = difference(&fused.forward(&x)?, &block.forward(&x)?)?;
    if !check.within(super::repvgg::CONVERT_TOLERANCE) {
        return Err(Error::Checkpoint(format!(
            "the fused {} block differs from the train-time block by {:e} (relative); nothing written",
            B::FAMILY,
            check.relative()
        )));
    }
    let state = StateDict::from_parameters(&fused);
    let keys = state.tensors.keys().cloned().collect();
    state.save(output)?;
    Ok(BlockConversion { check, keys })
}
