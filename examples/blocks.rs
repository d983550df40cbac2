//! The re-parameterizable blocks of the literature, each declared with `#[rep::block]` in a few
//! lines, then checked: random weights, non-trivial BN statistics, stride 1 and 2, groups, an
//! odd non-square input; fused output against the train-time (eval) output.
//!
//! ```text
//! cargo run --release --example blocks
//! ```

use rep::layers::{Layer, Parameters, randomize_vectors};
use rep::ndarray::Array4;
use rep::rand::{Rng, SeedableRng, rngs::StdRng};
use rep::{Const, Costs, Hw, Reparameterize};

/// RepVGG: 3×3+BN, 1×1+BN and — when shapes allow — an identity BN, summed, then ReLU. The
/// library's declaration ([`rep::zoo::repvgg::RepVggBlock`], seven lines), without SE.
pub type RepVgg<Cin, Cout, S, G> = rep::zoo::repvgg::RepVggBlock<Cin, Cout, S, G, Const<0>>;

/// YOLOv7's RepConvN: RepConv without the identity branch (for blocks feeding a residual or
/// concatenation), `nn.Sequential(conv, bn)` naming, BN eps 1e-3 / momentum 0.03, SiLU.
#[rep::block(post(silu), fused = "rbr_reparam")]
pub struct RepConvN<Cin, Cout, S> {
    rbr_dense: (Conv<Cin, Cout, 3, S>, Bn<Cout, Eps<1e-3>, Momentum<0.03>>),
    rbr_1x1: (Conv<Cin, Cout, 1, S>, Bn<Cout, Eps<1e-3>, Momentum<0.03>>),
}

/// ACNet: a 3×3 square kernel strengthened by 1×3 and 3×1 kernels, each with BN.
#[rep::block(post(relu))]
pub struct AcBlock<Cin, Cout, S> {
    square: ConvBn<Cin, Cout, 3, S>,
    hor: ConvBn<Cin, Cout, 1x3, S>,
    ver: ConvBn<Cin, Cout, 3x1, S>,
}

/// DBB (Diverse Branch Block): k×k, 1×1, 1×1 → avg-pool and 1×1 → k×k, each ending in BN.
/// The k×k and the pool after a 1×1+BN pad with that BN's bias, so the merge is exact.
#[rep::block(post(relu), fused = "dbb_reparam")]
pub struct Dbb<Cin, Cout, S, G> {
    dbb_origin: ConvBn<Cin, Cout, 3, S, Groups<G>>,
    dbb_1x1: ConvBn<Cin, Cout, 1, S, Groups<G>>,
    #[rep(names("conv", "bn", "avg", "avgbn"))]
    dbb_avg: (Conv<Cin, Cout, 1, Groups<G>>, Bn<Cout>, AvgPool<Cout, 3, S>, Bn<Cout>),
    #[rep(names("idconv1", "bn1", "conv2", "bn2"))]
    dbb_1x1_kxk: (Conv<Cin, Cin, 1, Groups<G>>, Bn<Cin>, Conv<Cin, Cout, 3, S, Groups<G>>, Bn<Cout>),
}

/// MobileOne, depthwise half: k = 3 over-parameterized 3×3 branches, a 1×1 "scale" branch
/// and a skip BN, all depthwise.
#[rep::block(post(relu))]
pub struct MobileOneDepthwise<C, S> {
    #[rep(rename = "rbr_conv.0")]
    conv0: ConvBn<C, C, 3, S, Groups<C>>,
    #[rep(rename = "rbr_conv.1")]
    conv1: ConvBn<C, C, 3, S, Groups<C>>,
    #[rep(rename = "rbr_conv.2")]
    conv2: ConvBn<C, C, 3, S, Groups<C>>,
    rbr_scale: ConvBn<C, C, 1, S, Groups<C>>,
    #[rep(when = S == 1)]
    rbr_skip: Option<Bn<C>>,
}

/// MobileOne, pointwise half: k = 3 over-parameterized 1×1 branches and a skip BN.
#[rep::block(post(relu))]
pub struct MobileOnePointwise<Cin, Cout> {
    #[rep(rename = "rbr_conv.0")]
    conv0: ConvBn<Cin, Cout, 1>,
    #[rep(rename = "rbr_conv.1")]
    conv1: ConvBn<Cin, Cout, 1>,
    #[rep(rename = "rbr_conv.2")]
    conv2: ConvBn<Cin, Cout, 1>,
    #[rep(when = Cin == Cout)]
    rbr_skip: Option<Bn<Cout>>,
}

/// OREPA-style linear block: no BN inside the branches, a learnable scaling layer on each,
/// one BN after the sum (folded by `fuse`), then ReLU.
#[rep::block(post(bn, relu), fused = "orepa_reparam")]
pub struct OrepaLinear<Cin, Cout, S> {
    origin: (Conv<Cin, Cout, 3, S>, Scale<Cout>),
    pointwise: (Conv<Cin, Cout, 1, S>, Scale<Cout>),
    avg: (Conv<Cin, Cout, 1>, AvgPool<Cout, 3, S>, Scale<Cout>),
    one_kxk: (Conv<Cin, Cin, 1>, Conv<Cin, Cout, 3, S>, Scale<Cout>),
    dw_separable: (Conv<Cin, { Cin * 2 }, 3, S, Groups<Cin>>, Conv<{ Cin * 2 }, Cout, 1>, Scale<Cout>),
}

/// One equivalence check: what was built, and how far the fused output is from the train-time one.
pub struct Outcome {
    pub block: &'static str,
    pub config: String,
    pub relative_error: f32,
    pub params: (usize, usize),
    pub macs: (u64, u64),
}

/// Randomizes every vector (BN statistics included), runs both forms on `x`, compares.
fn compare<B>(
    block: &'static str,
    config: String,
    mut train: B,
    x: &Array4<f32>,
    rng: &mut StdRng,
) -> rep::Result<Outcome>
where
    B: Layer + Parameters + Reparameterize + Costs,
    B::Fused: Layer + Costs,
{
    randomize_vectors(&mut train, rng);
    let fused = train.fuse()?;
    let (y_train, y_fused) = (train.forward(x)?, fused.forward(x)?);
    let input = Hw::new(x.shape()[2], x.shape()[3]);
    Ok(Outcome {
        block,
        config,
        relative_error: rep::compare::difference(&y_fused, &y_train)?.relative(),
        params: (train.parameter_count(), fused.parameter_count()),
        macs: (train.macs(input)?.0, fused.macs(input)?.0),
    })
}

/// Every block at stride 1 and 2, with and without groups, on a 2×C×11×7 input.
pub fn check_all(seed: u64) -> rep::Result<Vec<Outcome>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let input =
        |c: usize, rng: &mut StdRng| Array4::from_shape_simple_fn((2, c, 11, 7), || rng.random_range(-1.0f32..1.0));
    let mut out = Vec::new();
    for stride in [1usize, 2] {
        for (cin, cout, groups) in [(8usize, 8usize, 1usize), (8, 16, 2), (6, 6, 3)] {
            let config = format!("{cin}->{cout} s{stride} g{groups}");
            let x = input(cin, &mut rng);
            let b = RepVgg::new(cin, cout, stride, groups, Const, &mut rng)?;
            out.push(compare("RepVGG", config.clone(), b, &x, &mut rng)?);
            let b = Dbb::new(cin, cout, stride, groups, &mut rng)?;
            out.push(compare("DBB", config, b, &x, &mut rng)?);
        }
        for (cin, cout) in [(8usize, 8usize), (5, 12)] {
            let config = format!("{cin}->{cout} s{stride}");
            let x = input(cin, &mut rng);
            out.push(compare("RepConvN", config.clone(), RepConvN::new(cin, cout, stride, &mut rng)?, &x, &mut rng)?);
            out.push(compare("ACNet", config.clone(), AcBlock::new(cin, cout, stride, &mut rng)?, &x, &mut rng)?);
            out.push(compare(
                "OREPA linear",
                config.clone(),
                OrepaLinear::new(cin, cout, stride, &mut rng)?,
                &x,
                &mut rng,
            )?);
        }
        let x = input(8, &mut rng);
        let dw = MobileOneDepthwise::new(8usize, stride, &mut rng)?;
        out.push(compare("MobileOne dw", format!("8->8 s{stride} g8"), dw, &x, &mut rng)?);
    }
    for (cin, cout) in [(8usize, 8usize), (8, 16)] {
        let x = input(cin, &mut rng);
        let pw = MobileOnePointwise::new(cin, cout, &mut rng)?;
        out.push(compare("MobileOne pw", format!("{cin}->{cout}"), pw, &x, &mut rng)?);
    }
    // The same definition with sizes fixed at compile time.
    let x = input(8, &mut rng);
    let b = RepVgg::new(Const::<8>, Const::<8>, Const::<1>, Const::<2>, Const, &mut rng)?;
    out.push(compare("RepVGG (Const)", "8->8 s1 g2".into(), b, &x, &mut rng)?);
    Ok(out)
}

#[allow(dead_code)]
fn main() -> rep::Result<()> {
    println!(
        "{:<16} {:<14} {:>10} {:>16} {:>22}",
        "block", "config", "rel. error", "params train/fused", "MACs train/fused"
    );
    for o in check_all(0)? {
        println!(
            "{:<16} {:<14} {:>10.2e} {:>16} {:>22}",
            o.block,
            o.config,
            o.relative_error,
            format!("{}/{}", o.params.0, o.params.1),
            format!("{}/{}", o.macs.0, o.macs.1)
        );
    }
    Ok(())
}
