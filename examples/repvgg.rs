//! RepVGG-A0, assembled by hand from `rep` runtime layers: random weights and non-trivial BN
//! statistics, fused block by block, then both forms run on a random 224×224 image.
//!
//! ```text
//! cargo run --release --example repvgg
//! ```

use ndarray::{Array2, Array4};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rep::layers::{Activation, BatchNorm2d, Conv2d, ConvBn, Layer, Linear, global_avg_pool};
use rep::{ConvGeometry, Costs, Hw, fusion};
use std::time::Instant;

/// One RepVGG block: `ReLU(BN(conv3x3(x)) + BN(conv1x1(x)) [+ BN(x)])`.
struct Block {
    dense: ConvBn,
    pointwise: ConvBn,
    identity: Option<BatchNorm2d>,
}

impl Block {
    fn new(cin: usize, cout: usize, stride: usize, rng: &mut StdRng) -> rep::Result<Self> {
        let mut dense = ConvBn::new(ConvGeometry::new(cin, cout, 3).stride(stride).padding(1), rng)?;
        let mut pointwise = ConvBn::new(ConvGeometry::new(cin, cout, 1).stride(stride), rng)?;
        dense.bn.randomize(rng);
        pointwise.bn.randomize(rng);
        let identity = (cin == cout && stride == 1).then(|| {
            let mut bn = BatchNorm2d::new(cout);
            bn.randomize(rng);
            bn
        });
        Ok(Block { dense, pointwise, identity })
    }

    fn forward(&self, x: &Array4<f32>) -> rep::Result<Array4<f32>> {
        let mut y = &self.dense.forward(x)? + &self.pointwise.forward(x)?;
        if let Some(bn) = &self.identity {
            y = &y + &bn.forward(x)?;
        }
        Activation::Relu.forward(&y)
    }

    fn fuse(&self) -> rep::Result<Conv2d> {
        let mut branches = vec![("rbr_dense", self.dense.fuse()?), ("rbr_1x1", self.pointwise.fuse()?)];
        if let Some(bn) = &self.identity {
            branches.push(("rbr_identity", fusion::bn_identity(bn, 1)?));
        }
        Ok(fusion::sum_branches(&branches)?.to_conv2d())
    }
}

fn classify(features: &Array4<f32>, head: &Linear) -> rep::Result<Array2<f32>> {
    head.forward(&global_avg_pool(features))
}

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn main() -> rep::Result<()> {
    let mut rng = StdRng::seed_from_u64(0);
    // RepVGG-A0: depths 1, 2, 4, 14, 1; widths min(64, 64·0.75), 64·0.75, 128·0.75, 256·0.75, 512·2.5.
    let (depths, widths) = ([1, 2, 4, 14, 1], [48, 48, 96, 192, 1280]);
    let mut blocks = Vec::new();
    let mut cin = 3;
    for (&depth, &cout) in depths.iter().zip(&widths) {
        for index in 0..depth {
            blocks.push(Block::new(cin, cout, if index == 0 { 2 } else { 1 }, &mut rng)?);
            cin = cout;
        }
    }
    let head = Linear::new(cin, 1000, &mut rng);
    let fused: Vec<Conv2d> = blocks.iter().map(Block::fuse).collect::<rep::Result<_>>()?;

    let x = Array4::from_shape_simple_fn((1, 3, 224, 224), || rng.random_range(-1.0f32..1.0));
    let train_forward = || -> rep::Result<Array2<f32>> {
        let features = blocks.iter().try_fold(x.clone(), |x, b| b.forward(&x))?;
        classify(&features, &head)
    };
    let fused_forward = || -> rep::Result<Array2<f32>> {
        let features = fused.iter().try_fold(x.clone(), |x, c| Activation::Relu.forward(&c.forward(&x)?))?;
        classify(&features, &head)
    };
    let (train, deploy) = (train_forward()?, fused_forward()?);
    let scale = train.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let max_err = train.iter().zip(&deploy).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));

    // Parameters and multiply-adds per form (BN running statistics are buffers, not parameters).
    let (mut hw, mut train_params, mut fused_params, mut train_macs, mut fused_macs) = (Hw::square(224), 0, 0, 0, 0);
    for (block, conv) in blocks.iter().zip(&fused) {
        let out = conv.geometry.output_size(hw.h, hw.w)?;
        for branch in [&block.dense, &block.pointwise] {
            train_params += branch.parameter_count();
            train_macs += branch.geometry().macs(out);
        }
        train_params += block.identity.as_ref().map_or(0, |bn| 2 * bn.channels());
        fused_params += conv.parameter_count();
        fused_macs += conv.geometry.macs(out);
        hw = out;
    }
    let head_params = head.weight.len() + head.out_features();
    let head_macs = head.weight.len() as u64;

    let runs = 5;
    let train_ms = median_ms(runs, || drop(train_forward()));
    let fused_ms = median_ms(runs, || drop(fused_forward()));

    println!("RepVGG-A0, 224x224, batch 1, random weights and BN statistics (seed 0)");
    println!("  fused vs train-time logits: max |diff| = {max_err:.3e} (relative {:.3e})", max_err / scale);
    println!("  {:<12} {:>12} {:>14}", "form", "parameters", "multiply-adds");
    println!("  {:<12} {:>12} {:>14}", "train-time", train_params + head_params, train_macs + head_macs);
    println!("  {:<12} {:>12} {:>14}", "fused", fused_params + head_params, fused_macs + head_macs);
    println!(
        "  latency (median of {runs}): train-time {train_ms:.1} ms, fused {fused_ms:.1} ms, speedup {:.2}x",
        train_ms / fused_ms
    );
    Ok(())
}
