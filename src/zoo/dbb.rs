//! The Diverse Branch Block (DBB) under the original code's names, in every variant it builds,
//! loading its checkpoints as they are.
//!
//! The original (`DiverseBranchBlock`) sums, then applies its `nonlinear` (none by default):
//! `dbb_origin` (k×k conv + BN), `dbb_1x1` (1×1 conv + BN, absent when depthwise), `dbb_avg`
//! (1×1 conv → BN-and-pad → k×k average → BN, or only the average and its BN when depthwise)
//! and `dbb_1x1_kxk` (1×1 → BN-and-pad → k×k → BN, whose 1×1 is `idconv1`, stored as its
//! difference from the identity, when its width equals the input's, and a plain `conv1`
//! otherwise). BN-and-pad pads with the BN's value for a zero input; the DSL does the same.
//! The deploy form is one conv named `dbb_reparam`.
//!
//! ```no_run
//! # fn main() -> rep::Result<()> {
//! let state = rep::StateDict::load("dbb.safetensors")?;      // an original checkpoint
//! let block = rep::zoo::dbb::Dbb::from_state_dict(&state, 2)?; // stride 2 (not in the weights)
//! let deployed = rep::Reparameterize::fuse(&block)?;          // one k×k conv, `dbb_reparam`
//! # Ok(()) }
//! ```

use crate::io::StateDict;
use crate::layers::{Layer, Parameters};
use crate::ndarray::{Array4, ArrayViewD, ArrayViewMutD};
use crate::{Error, Reparameterize, Result};

/// DBB with `groups < out_channels` and a 1×1 → k×k branch as wide as the input (the
/// original's default there): its first 1×1 is identity-based (`idconv1`).
#[crate::block(fused = "dbb_reparam")]
pub struct DbbIdentity<Cin, Cout, K, S, G> {
    dbb_origin: ConvBn<Cin, Cout, K, S, Groups<G>>,
    dbb_1x1: ConvBn<Cin, Cout, 1, S, Groups<G>>,
    #[rep(names("conv", "bn.bn", "avg", "avgbn"))]
    dbb_avg: (Conv<Cin, Cout, 1, Groups<G>>, Bn<Cout>, AvgPool<Cout, K, S>, Bn<Cout>),
    #[rep(names("idconv1", "bn1.bn", "conv2", "bn2"))]
    dbb_1x1_kxk:
        (Conv<Cin, Cin, 1, Groups<G>, IdentityBased<true>>, Bn<Cin>, Conv<Cin, Cout, K, S, Groups<G>>, Bn<Cout>),
}

/// DBB with `groups < out_channels` and a 1×1 → k×k branch of another width `T`
/// (`internal_channels_1x1_3x3`): its first 1×1 is a plain `conv1`.
#[crate::block(fused = "dbb_reparam")]
pub struct DbbWide<Cin, Cout, K, S, G, T> {
    dbb_origin: ConvBn<Cin, Cout, K, S, Groups<G>>,
    dbb_1x1: ConvBn<Cin, Cout, 1, S, Groups<G>>,
    #[rep(names("conv", "bn.bn", "avg", "avgbn"))]
    dbb_avg: (Conv<Cin, Cout, 1, Groups<G>>, Bn<Cout>, AvgPool<Cout, K, S>, Bn<Cout>),
    #[rep(names("conv1", "bn1.bn", "conv2", "bn2"))]
    dbb_1x1_kxk: (Conv<Cin, T, 1, Groups<G>>, Bn<T>, Conv<T, Cout, K, S, Groups<G>>, Bn<Cout>),
}

/// Depthwise DBB (`groups == out_channels == in_channels`): no 1×1 branch, the average pools the
/// (zero-padded) input directly, and the 1×1 → k×k branch is `T` wide (the original: `2·C`).
#[crate::block(fused = "dbb_reparam")]
pub struct DbbDepthwise<C, K, S, T> {
    dbb_origin: ConvBn<C, C, K, S, Groups<C>>,
    #[rep(names("avg", "avgbn"))]
    dbb_avg: (AvgPool<C, K, S>, Bn<C>),
    #[rep(names("conv1", "bn1.bn", "conv2", "bn2"))]
    dbb_1x1_kxk: (Conv<C, T, 1, Groups<C>>, Bn<T>, Conv<T, C, K, S, Groups<C>>, Bn<C>),
}

/// A DBB of any variant, as the original builds it from its constructor arguments.
#[derive(Clone, Debug)]
pub enum Dbb {
    /// `groups < out_channels`, 1×1 → k×k branch as wide as the input (`idconv1`).
    Identity(DbbIdentity<usize, usize, usize, usize, usize>),
    /// `groups < out_channels`, 1×1 → k×k branch of another width (`conv1`).
    Wide(DbbWide<usize, usize, usize, usize, usize, usize>),
    /// `groups == out_channels`.
    Depthwise(DbbDepthwise<usize, usize, usize, usize>),
}

/// The constructor arguments of the original `DiverseBranchBlock` (padding is `kernel / 2`,
/// as the original requires).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbbConfig {
    /// `in_channels`.
    pub in_channels: usize,
    /// `out_channels`.
    pub out_channels: usize,
    /// `kernel_size` (odd).
    pub kernel: usize,
    /// `stride`.
    pub stride: usize,
    /// `groups`.
    pub groups: usize,
    /// `internal_channels_1x1_3x3`; `None` gives the original's default: `in_channels` when
    /// `groups < out_channels`, else `2·in_channels`.
    pub internal: Option<usize>,
}

impl Dbb {
    /// The block the original builds from `config`, freshly initialized (the identity-based
    /// 1×1 at the identity).
    pub fn new(config: DbbConfig, rng: &mut impl crate::rand::Rng) -> Result<Dbb> {
        let DbbConfig { in_channels: cin, out_channels: cout, kernel: k, stride: s, groups: g, internal } = config;
        if g >= cout {
            if g != cout || cin != cout {
                return Err(Error::Architecture(format!(
                    "a DBB with groups ≥ out_channels must be depthwise (groups = in = out); found {cin} -> {cout}, {g} groups"
                )));
            }
            return Ok(Dbb::Depthwise(DbbDepthwise::new(cin, k, s, internal.unwrap_or(2 * cin), rng)?));
        }
        match internal.unwrap_or(cin) {
            t if t == cin => Ok(Dbb::Identity(DbbIdentity::new(cin, cout, k, s, g, rng)?)),
            t => Ok(Dbb::Wide(DbbWide::new(cin, cout, k, s, g, t, rng)?)),
        }
    }

    /// Reads the configuration from an original train-time checkpoint's shapes (the stride is
    /// not in the weights, so it is given), builds the block and loads the checkpoint into it.
    pub fn from_state_dict(state: &StateDict, stride: usize) -> Result<Dbb> {
        let mut rng = <crate::rand::rngs::StdRng as crate::rand::SeedableRng>::seed_from_u64(0);
        let mut block = Dbb::new(Dbb::config_of(state, stride)?, &mut rng)?;
        state.load_into(&mut block)?;
        Ok(block)
    }

    /// The constructor arguments an original train-time checkpoint was made with.
    pub fn config_of(state: &StateDict, stride: usize) -> Result<DbbConfig> {
        let shape = |name: &str| -> Result<Vec<usize>> {
            state.tensors.get(name).map(|t| t.shape().to_vec()).ok_or_else(|| {
                Error::Checkpoint(format!("not a DBB train-time checkpoint in the original naming: no `{name}`"))
            })
        };
        let origin = shape("dbb_origin.conv.weight")?;
        let conv2 = shape("dbb_1x1_kxk.conv2.weight")?;
        let first = shape("dbb_1x1_kxk.idconv1.weight").or_else(|_| shape("dbb_1x1_kxk.conv1.weight"))?;
        let [cout, _, k, _] = origin[..] else {
            return Err(Error::Checkpoint("dbb_origin.conv.weight is not 4-D".into()));
        };
        let (internal, in_per_group) = (first[0], first[1]);
        let groups = internal / conv2[1].max(1);
        let depthwise = !state.tensors.contains_key("dbb_1x1.conv.weight");
        let in_channels = in_per_group * groups;
        Ok(DbbConfig {
            in_channels,
            out_channels: cout,
            kernel: k,
            stride,
            groups: if depthwise { cout } else { groups },
            internal: Some(internal),
        })
    }
}

/// `expr` on the block inside whichever variant `self` is (`b` names it).
macro_rules! on_variant {
    ($self:expr, $b:ident => $expr:expr) => {
        match $self {
            Dbb::Identity($b) => $expr,
            Dbb::Wide($b) => $expr,
            Dbb::Depthwise($b) => $expr,
        }
    };
}
pub(crate) use on_variant;

impl Layer for Dbb {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        on_variant!(self, b => b.forward(x))
    }

    fn forward_train(&mut self, x: &Array4<f32>) -> Result<Array4<f32>> {
        on_variant!(self, b => b.forward_train(x))
    }
}

impl Parameters for Dbb {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
        on_variant!(self, b => b.visit(prefix, f))
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
        on_variant!(self, b => b.visit_mut(prefix, f))
    }

    fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, u64)) {
        on_variant!(self, b => b.visit_counters(prefix, f))
    }

    fn visit_counters_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut u64)) {
        on_variant!(self, b => b.visit_counters_mut(prefix, f))
    }
}

impl crate::Costs for Dbb {
    fn parameter_count(&self) -> usize {
        on_variant!(self, b => b.parameter_count())
    }

    fn macs(&self, input: crate::Hw) -> Result<(u64, crate::Hw)> {
        on_variant!(self, b => b.macs(input))
    }
}

/// The deploy form of every variant: one conv, `dbb_reparam`.
pub type DbbFused = DbbIdentityFused;

/// Every variant fuses to the same deploy form, one conv under `dbb_reparam`.
impl Reparameterize for Dbb {
    type Fused = DbbFused;

    fn fuse(&self) -> Result<DbbFused> {
        let conv = on_variant!(self, b => b.fuse()?.conv);
        Ok(DbbFused { conv })
    }
}
