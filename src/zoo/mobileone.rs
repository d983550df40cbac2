//! Apple's MobileOne block under the original code's names (`ml-mobileone`'s `MobileOneBlock`).
//!
//! `num_conv_branches` over-parameterized k×k conv + BN branches (`rbr_conv.i.conv/bn`), a 1×1
//! conv + BN (`rbr_scale`, when k > 1) and a BN skip (`rbr_skip`, when the shape allows),
//! summed, then squeeze-and-excitation (`se.reduce`, `se.expand`, `C/16` hidden, when `use_se`)
//! and ReLU. The deploy form is one conv, `reparam_conv`, followed by the SE. Up to four
//! branches (MobileOne-S0 uses four, S1–S4 one).
//!
//! ```no_run
//! # fn main() -> rep::Result<()> {
//! let state = rep::StateDict::load("mobileone_block.safetensors")?; // an original checkpoint
//! let block = rep::zoo::mobileone::MobileOneBlock::from_state_dict(&state, 1, 12)?; // stride 1, 12 groups
//! let deployed = rep::Reparameterize::fuse(&block)?;                // `reparam_conv` (+ `se`)
//! # Ok(()) }
//! ```

use crate::io::StateDict;
use crate::{Error, Result};

/// MobileOne's block: `B` k×k branches (1 ≤ B ≤ 4), the 1×1 scale branch, the skip BN, then SE
/// (when `Se` is 1) and ReLU.
#[crate::block(post(se(hidden = Cout / 16, when = Se == 1, names("reduce", "expand")), relu), fused = "reparam_conv")]
pub struct MobileOneBlock<Cin, Cout, K, S, G, B, Se> {
    #[rep(rename = "rbr_conv.0")]
    conv0: ConvBn<Cin, Cout, K, S, Groups<G>>,
    #[rep(rename = "rbr_conv.1", when = B > 1)]
    conv1: Option<ConvBn<Cin, Cout, K, S, Groups<G>>>,
    #[rep(rename = "rbr_conv.2", when = B > 2)]
    conv2: Option<ConvBn<Cin, Cout, K, S, Groups<G>>>,
    #[rep(rename = "rbr_conv.3", when = B > 3)]
    conv3: Option<ConvBn<Cin, Cout, K, S, Groups<G>>>,
    #[rep(rename = "rbr_scale", when = K > 1)]
    scale: Option<ConvBn<Cin, Cout, 1, S, Groups<G>>>,
    #[rep(rename = "rbr_skip", when = Cin == Cout && S == 1)]
    skip: Option<Bn<Cout>>,
}

impl MobileOneBlock<usize, usize, usize, usize, usize, usize, usize> {
    /// Reads channels, kernel, branch count and SE from an original train-time checkpoint's
    /// shapes (stride and groups are not in the weights, so they are given), builds the block
    /// and loads the checkpoint.
    pub fn from_state_dict(state: &StateDict, stride: usize, groups: usize) -> Result<Self> {
        let Some(first) = state.tensors.get("rbr_conv.0.conv.weight").map(|t| t.shape().to_vec()) else {
            return Err(Error::Checkpoint(
                "not a MobileOne train-time checkpoint in the original naming: no `rbr_conv.0.conv.weight`".into(),
            ));
        };
        let [cout, in_per_group, k, _] = first[..] else {
            return Err(Error::Checkpoint(format!("rbr_conv.0.conv.weight has shape {first:?}; expected 4-D")));
        };
        let branches = (0..).take_while(|i| state.tensors.contains_key(&format!("rbr_conv.{i}.conv.weight"))).count();
        if branches > 4 {
            return Err(Error::Checkpoint(format!("{branches} conv branches; this block takes at most 4")));
        }
        let se = usize::from(state.tensors.contains_key("se.reduce.weight"));
        let mut rng = <crate::rand::rngs::StdRng as crate::rand::SeedableRng>::seed_from_u64(0);
        let mut block = MobileOneBlock::new(in_per_group * groups, cout, k, stride, groups, branches, se, &mut rng)?;
        state.load_into(&mut block)?;
        Ok(block)
    }
}
