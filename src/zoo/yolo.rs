//! YOLOv7 and Scaled-YOLOv4 parts: RepConv / RepConvN, YOLO's Conv-BN-SiLU, YOLOR's implicit
//! knowledge head, EMA weights (re-exported from the runtime) and compound scaling.
//!
//! BatchNorms default to YOLOv7's ε = 1e-3, momentum 0.03 (what its `initialize_weights` sets);
//! [`set_batch_norms`] changes them model-wide. Weight names are YOLOv7's:
//! `rbr_dense.0.weight`, `rbr_dense.1.running_mean`, `rbr_1x1.0.weight`, `rbr_identity.*`,
//! deploy `rbr_reparam.*`; `conv.weight`, `bn.*` for `Conv`; `ia.implicit`, `m.weight`,
//! `im.implicit` for an implicit head level ([`idetect_key_map`] maps IDetect's
//! `ia.{i}.implicit`, `m.{i}.weight`, `im.{i}.implicit` to levels and back).

use crate::layers::Parameters;

pub use crate::ema::{Ema, ema_decay};

/// YOLOv7's RepConv: 3×3+BN, 1×1+BN, and an identity BN when `C_in == C_out` and stride 1,
/// summed, then SiLU; `G` groups (YOLOv7's `g`).
///
/// Its BNs take ε = 1e-3 and momentum 0.03, the values YOLOv7's `initialize_weights` sets on
/// every BN of a model — not PyTorch's 1e-5 / 0.1, which a bare `RepConv` module built outside a
/// YOLOv7 model keeps. For such a checkpoint, call
/// `set_batch_norms(&mut block, 1e-5, 0.1)` after building.
#[crate::block(post(silu), fused = "rbr_reparam")]
pub struct RepConv<Cin, Cout, S, G> {
    rbr_dense: (Conv<Cin, Cout, 3, S, Groups<G>>, Bn<Cout, Eps<1e-3>, Momentum<0.03>>),
    rbr_1x1: (Conv<Cin, Cout, 1, S, Groups<G>>, Bn<Cout, Eps<1e-3>, Momentum<0.03>>),
    #[rep(when = Cin == Cout && S == 1)]
    rbr_identity: Option<Bn<Cout, Eps<1e-3>, Momentum<0.03>>>,
}

/// YOLOv7's RepConvN ("planned" re-parameterization): RepConv without the identity branch, for
/// blocks whose output feeds a residual or concatenation path, where an identity would break
/// the re-parameterized model's accuracy.
/// BNs as [`RepConv`]'s (ε 1e-3, momentum 0.03); `G` groups.
#[crate::block(post(silu), fused = "rbr_reparam")]
pub struct RepConvN<Cin, Cout, S, G> {
    rbr_dense: (Conv<Cin, Cout, 3, S, Groups<G>>, Bn<Cout, Eps<1e-3>, Momentum<0.03>>),
    rbr_1x1: (Conv<Cin, Cout, 1, S, Groups<G>>, Bn<Cout, Eps<1e-3>, Momentum<0.03>>),
}

/// YOLO's `Conv`: a bias-free k×k conv, BN and SiLU; fuses to one conv with bias, then SiLU
/// (`conv.weight`, `conv.bias`, as YOLOv7's `fuse()` leaves it).
#[crate::block(post(silu), fused = "conv")]
pub struct ConvBnSilu<Cin, Cout, K, S> {
    #[rep(rename = "")]
    conv: ConvBn<Cin, Cout, K, S, Eps<1e-3>, Momentum<0.03>>,
}

/// One level of YOLOR's implicit detection head (IDetect): ImplicitA, a 1×1 conv with bias,
/// ImplicitM. `fuse` removes both implicit vectors: `W' = m·W`, `b' = m·(b + W·a)`.
#[crate::block(fused = "m")]
pub struct ImplicitHead<Cin, Cout> {
    #[rep(rename = "", names("ia", "m", "im"))]
    head: (ImplicitA<Cin>, Conv<Cin, Cout, 1, 1, Bias<true>>, ImplicitM<Cout>),
}

/// The key map between IDetect's names, which put the level index in the middle
/// (`ia.{i}.implicit`, `m.{i}.weight`, `m.{i}.bias`, `im.{i}.implicit`, under `prefix`, e.g.
/// `model.105`), and [`ImplicitHead`] blocks stored under `level(i)` (`ia.implicit`,
/// `m.weight`, `im.implicit` each): `import` an IDetect checkpoint, `export` back.
///
/// ```
/// let map = rep::zoo::yolo::idetect_key_map("model.105", 3, |i| format!("heads.{i}"));
/// assert_eq!(map.to_ours("model.105.ia.2.implicit"), "heads.2.ia.implicit");
/// assert_eq!(map.to_theirs("heads.0.m.bias"), "model.105.m.0.bias");
/// ```
pub fn idetect_key_map(prefix: &str, levels: usize, level: impl Fn(usize) -> String) -> crate::io::KeyMap {
    let join = |a: &str, b: &str| crate::layers::join(a, b);
    (0..levels).fold(crate::io::KeyMap::new(), |map, i| {
        ["ia", "m", "im"]
            .into_iter()
            .fold(map, |map, part| map.rule(&join(prefix, &format!("{part}.{i}")), &join(&level(i), part)))
    })
}

/// Sets ε and momentum of every BatchNorm of a model (YOLOv7: 1e-3 and 0.03).
pub fn set_batch_norms(model: &mut dyn Parameters, eps: f64, momentum: f64) {
    model.visit_batch_norms(&mut |bn| {
        bn.eps = eps;
        bn.momentum = Some(momentum);
    });
}

/// Scaled-YOLOv4 / YOLOv7 compound scaling: one definition, a width and a depth multiplier.
///
/// Channels scale as `⌈c·width / 8⌉·8` (YOLO's `make_divisible`), blocks per stage as
/// `max(round(n·depth), 1)` for `n > 1` (YOLO's `parse_model`). A conv costs
/// `C_in/g · K² · H_out · W_out · C_out` multiply-adds, so cost grows with width², depth and
/// resolution².
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaling {
    /// Width multiplier (`width_multiple`).
    pub width: f64,
    /// Depth multiplier (`depth_multiple`).
    pub depth: f64,
}

impl Scaling {
    /// Scaled output channels, rounded up to a multiple of 8.
    pub fn channels(&self, base: usize) -> usize {
        ((base as f64 * self.width / 8.0).ceil() as usize * 8).max(8)
    }

    /// Scaled block count: `max(round(n·depth), 1)`, and `n` itself when `n ≤ 1`.
    pub fn blocks(&self, base: usize) -> usize {
        if base > 1 { ((base as f64 * self.depth).round() as usize).max(1) } else { base }
    }
}
