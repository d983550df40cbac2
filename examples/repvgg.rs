//! RepVGG-A0, declared with the DSL: random weights and non-trivial BN statistics, fused block
//! by block; both forms run on a random 224×224 image.
//!
//! ```text
//! cargo run --release --example repvgg
//! ```

use rep::layers::randomize_vectors;
use rep::ndarray::Array4;
use rep::rand::{Rng, SeedableRng, rngs::StdRng};
use rep::{Costs, Hw, Reparameterize};
use std::time::Instant;

/// RepVGG block: 3×3+BN, 1×1+BN and — when shapes allow — an identity BN, summed, then ReLU.
#[rep::block(post(relu), fused = "rbr_reparam")]
pub struct RepVggBlock<Cin, Cout, S> {
    #[rep(rename = "rbr_dense")]
    dense: ConvBn<Cin, Cout, 3, S>,
    #[rep(rename = "rbr_1x1")]
    pointwise: ConvBn<Cin, Cout, 1, S>,
    #[rep(rename = "rbr_identity", when = Cin == Cout && S == 1)]
    identity: Option<Bn<Cout>>,
}

/// RepVGG with the official code's layout and weight names: five stages, global pool, linear.
#[rep::model(new(widths: [usize; 5], depths: [usize; 4], classes: usize))]
pub struct RepVgg {
    stage0: RepVggBlock<3, { widths[0] }, 2>,
    #[rep(repeat = depths[0])]
    stage1: Vec<RepVggBlock<{ widths[0] }, { widths[1] }, 2>>,
    #[rep(repeat = depths[1])]
    stage2: Vec<RepVggBlock<{ widths[1] }, { widths[2] }, 2>>,
    #[rep(repeat = depths[2])]
    stage3: Vec<RepVggBlock<{ widths[2] }, { widths[3] }, 2>>,
    #[rep(repeat = depths[3])]
    stage4: Vec<RepVggBlock<{ widths[3] }, { widths[4] }, 2>>,
    gap: GlobalAvgPool,
    linear: Linear<{ widths[4] }, { classes }>,
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
    // RepVGG-A0: a = 0.75, b = 2.5 → widths min(64, 64a), 64a, 128a, 256a, 512b; depths 2, 4, 14, 1.
    let mut model = RepVgg::new([48, 48, 96, 192, 1280], [2, 4, 14, 1], 1000, &mut rng)?;
    randomize_vectors(&mut model, &mut rng);
    let fused = model.fuse()?;

    let x = Array4::from_shape_simple_fn((1, 3, 224, 224), || rng.random_range(-1.0f32..1.0));
    let (train, deploy) = (model.forward(&x)?, fused.forward(&x)?);
    let scale = train.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let max_err = train.iter().zip(&deploy).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));

    let input = Hw::square(224);
    let (train_macs, fused_macs) = (model.macs(input)?.0, fused.macs(input)?.0);
    let runs = 5;
    let train_ms = median_ms(runs, || drop(model.forward(&x)));
    let fused_ms = median_ms(runs, || drop(fused.forward(&x)));

    println!("RepVGG-A0, 224x224, batch 1, random weights and BN statistics (seed 0)");
    println!("  fused vs train-time logits: max |diff| = {max_err:.3e} (relative {:.3e})", max_err / scale);
    println!("  {:<12} {:>12} {:>14}", "form", "parameters", "multiply-adds");
    println!("  {:<12} {:>12} {:>14}", "train-time", model.parameter_count(), train_macs);
    println!("  {:<12} {:>12} {:>14}", "fused", fused.parameter_count(), fused_macs);
    println!(
        "  latency (median of {runs}): train-time {train_ms:.1} ms, fused {fused_ms:.1} ms, speedup {:.2}x",
        train_ms / fused_ms
    );
    Ok(())
}
