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

/// A MobileOne network's layout, as Apple's `MobileOne` builds it from
/// `num_blocks_per_stage`, `width_multipliers`, `use_se` and `num_conv_branches`.
#[derive(Clone, Debug, PartialEq)]
pub struct MobileOneArch {
    /// `"S0"` … `"S4"`, or `"custom"`.
    pub name: String,
    /// Depthwise + pointwise pairs in stages 1–4 (Apple: 2, 8, 10, 1).
    pub depths: [usize; 4],
    /// Output channels of stages 0–4: `min(64, 64·w₀)`, `64·w₀`, `128·w₁`, `256·w₂`, `512·w₃`.
    pub widths: [usize; 5],
    /// Over-parameterized k×k branches per block (S0: 4, S1–S4: 1); stage 0 has one.
    pub branches: usize,
    /// SE on the last half of stage 3's pairs and on all of stage 4's (S4).
    pub se: bool,
    /// Classifier outputs.
    pub classes: usize,
}

impl MobileOneArch {
    /// MobileOne-S0 … S4 (Apple's width multipliers, branch counts and SE).
    pub fn named(name: &str, classes: usize) -> Result<MobileOneArch> {
        let (multipliers, branches, se) = match name.to_ascii_uppercase().as_str() {
            "S0" => ([0.75, 1.0, 1.0, 2.0], 4, false),
            "S1" => ([1.5, 1.5, 2.0, 2.5], 1, false),
            "S2" => ([1.5, 2.0, 2.5, 4.0], 1, false),
            "S3" => ([2.0, 2.5, 3.0, 4.0], 1, false),
            "S4" => ([3.0, 3.5, 3.5, 4.0], 1, true),
            other => {
                return Err(Error::Architecture(format!("unknown MobileOne `{other}`; expected S0, S1, S2, S3 or S4")));
            }
        };
        let mut arch = MobileOneArch::custom([2, 8, 10, 1], multipliers, branches, se, classes)?;
        arch.name = name.to_ascii_uppercase();
        Ok(arch)
    }

    /// A layout from Apple's constructor arguments.
    pub fn custom(depths: [usize; 4], w: [f64; 4], branches: usize, se: bool, classes: usize) -> Result<MobileOneArch> {
        let width = |base: f64, m: f64| (base * m) as usize;
        let widths =
            [64.min(width(64.0, w[0])), width(64.0, w[0]), width(128.0, w[1]), width(256.0, w[2]), width(512.0, w[3])];
        if widths.contains(&0) || depths.contains(&0) || !(1..=4).contains(&branches) || classes == 0 {
            return Err(Error::Architecture(format!(
                "MobileOne: widths {widths:?}, depths {depths:?}, {branches} branches, {classes} classes; \
                 every size must be positive and branches 1 to 4"
            )));
        }
        Ok(MobileOneArch { name: "custom".into(), depths, widths, branches, se, classes })
    }

    /// Channels into pair `i / 2` of stage `s` (1–4): the previous stage's width for the first pair.
    fn planes_in(&self, s: usize, i: usize) -> usize {
        if i / 2 == 0 { self.widths[s - 1] } else { self.widths[s] }
    }

    /// Input channels of block `i` of stage `s` (even `i`: depthwise, odd: pointwise).
    pub fn cin(&self, s: usize, i: usize) -> usize {
        self.planes_in(s, i)
    }

    /// Output channels of block `i` of stage `s`.
    pub fn cout(&self, s: usize, i: usize) -> usize {
        if i.is_multiple_of(2) { self.planes_in(s, i) } else { self.widths[s] }
    }

    /// Kernel of block `i`: 3 for the depthwise half, 1 for the pointwise.
    pub fn kernel(&self, i: usize) -> usize {
        if i.is_multiple_of(2) { 3 } else { 1 }
    }

    /// Stride of block `i`: 2 for a stage's first block.
    pub fn stride(&self, i: usize) -> usize {
        if i == 0 { 2 } else { 1 }
    }

    /// Groups of block `i` of stage `s`: depthwise, then dense.
    pub fn groups(&self, s: usize, i: usize) -> usize {
        if i.is_multiple_of(2) { self.planes_in(s, i) } else { 1 }
    }

    /// 1 when block `i` of stage `s` has SE: the last `depth / 2` pairs of stage 3 and every
    /// pair of stage 4, when the layout uses SE.
    pub fn se_at(&self, s: usize, i: usize) -> usize {
        let depth = self.depths[s - 1];
        let with_se = match s {
            3 if self.se => depth / 2,
            4 if self.se => depth,
            _ => 0,
        };
        usize::from(i / 2 >= depth - with_se)
    }
}

/// A MobileOne network of any [`MobileOneArch`], under Apple's names (`stage0`, `stage1.{i}` with
/// the depthwise block at even `i` and the pointwise one at odd `i`, `linear`).
#[crate::model(new(arch: &MobileOneArch))]
pub struct MobileOne {
    stage0: MobileOneBlock<3, { arch.widths[0] }, 3, 2, 1, 1, 0>,
    #[rep(repeat = 2 * arch.depths[0], index = i)]
    stage1: Vec<
        MobileOneBlock<
            { arch.cin(1, i) },
            { arch.cout(1, i) },
            { arch.kernel(i) },
            { arch.stride(i) },
            { arch.groups(1, i) },
            { arch.branches },
            { arch.se_at(1, i) },
        >,
    >,
    #[rep(repeat = 2 * arch.depths[1], index = i)]
    stage2: Vec<
        MobileOneBlock<
            { arch.cin(2, i) },
            { arch.cout(2, i) },
            { arch.kernel(i) },
            { arch.stride(i) },
            { arch.groups(2, i) },
            { arch.branches },
            { arch.se_at(2, i) },
        >,
    >,
    #[rep(repeat = 2 * arch.depths[2], index = i)]
    stage3: Vec<
        MobileOneBlock<
            { arch.cin(3, i) },
            { arch.cout(3, i) },
            { arch.kernel(i) },
            { arch.stride(i) },
            { arch.groups(3, i) },
            { arch.branches },
            { arch.se_at(3, i) },
        >,
    >,
    #[rep(repeat = 2 * arch.depths[3], index = i)]
    stage4: Vec<
        MobileOneBlock<
            { arch.cin(4, i) },
            { arch.cout(4, i) },
            { arch.kernel(i) },
            { arch.stride(i) },
            { arch.groups(4, i) },
            { arch.branches },
            { arch.se_at(4, i) },
        >,
    >,
    gap: GlobalAvgPool,
    linear: Linear<{ arch.widths[4] }, { arch.classes }>,
}
