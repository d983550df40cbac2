//! ACNet's asymmetric convolution block under the original code's names.
//!
//! The original `ACBlock` sums a k×k conv + BN (`square_conv`, `square_bn`), a k×1
//! (`ver_conv`, `ver_bn`) and a 1×k (`hor_conv`, `hor_bn`), without a non-linearity; its deploy
//! form is `fused_conv`. Here k = 3 and the padding is `k / 2` (the original's usual setting);
//! the original's smaller paddings, for which it crops the input of the asymmetric branches,
//! are not offered.
//!
//! ```no_run
//! # fn main() -> rep::Result<()> {
//! let state = rep::StateDict::load("acb.safetensors")?;        // an original checkpoint
//! let block = rep::zoo::acnet::AcBlock::from_state_dict(&state, 2, 1)?; // stride 2, 1 group
//! let deployed = rep::Reparameterize::fuse(&block)?;           // `fused_conv`
//! # Ok(()) }
//! ```

use crate::io::StateDict;
use crate::{Error, Result};

/// ACNet's block: 3×3, 3×1 and 1×3 convs with BN each, summed, under the original names.
#[crate::block(fused = "fused_conv")]
pub struct AcBlock<Cin, Cout, S, G> {
    #[rep(rename = "", names("square_conv", "square_bn"))]
    square: (Conv<Cin, Cout, 3, S, Groups<G>>, Bn<Cout>),
    #[rep(rename = "", names("ver_conv", "ver_bn"))]
    ver: (Conv<Cin, Cout, 3x1, S, Groups<G>>, Bn<Cout>),
    #[rep(rename = "", names("hor_conv", "hor_bn"))]
    hor: (Conv<Cin, Cout, 1x3, S, Groups<G>>, Bn<Cout>),
}

impl AcBlock<usize, usize, usize, usize> {
    /// Reads the channels from an original train-time checkpoint's shapes (stride and groups
    /// are not in the weights, so they are given), builds the block and loads the checkpoint.
    pub fn from_state_dict(state: &StateDict, stride: usize, groups: usize) -> Result<Self> {
        let shape = |name: &str| -> Result<Vec<usize>> {
            state.tensors.get(name).map(|t| t.shape().to_vec()).ok_or_else(|| {
                Error::Checkpoint(format!("not an ACNet train-time checkpoint in the original naming: no `{name}`"))
            })
        };
        let (square, ver) = (shape("square_conv.weight")?, shape("ver_conv.weight")?);
        if square.len() != 4 || square[2..] != [3, 3] || ver.len() != 4 || ver[2..] != [3, 1] {
            return Err(Error::Checkpoint(format!(
                "ACNet block: expected 3x3 and 3x1 kernels, found square {square:?} and ver {ver:?}"
            )));
        }
        let mut rng = <crate::rand::rngs::StdRng as crate::rand::SeedableRng>::seed_from_u64(0);
        let mut block = AcBlock::new(square[1] * groups, square[0], stride, groups, &mut rng)?;
        state.load_into(&mut block)?;
        Ok(block)
    }
}
