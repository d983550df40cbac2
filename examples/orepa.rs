//! OREPA: a small network of OREPA blocks, trained one step online (one squeezed conv per
//! block) and structurally (every branch), fused, and compared; `-- bench` times a training
//! step (forward + backward) of one block, online vs structural, and measures its peak heap use.
//!
//! ```text
//! cargo run --release --example orepa
//! cargo run --release --example orepa -- bench
//! ```

#[path = "support/timing.rs"]
mod timing;
use rep::layers::randomize_vectors;
use rep::ndarray::Array4;
use rep::rand::{Rng, SeedableRng, rngs::StdRng};
use rep::train::{Gradients, Train};
use rep::zoo::orepa::OrepaRelu;
use rep::{Costs, Hw, Reparameterize};
use timing::median_ms;

/// Counts live heap bytes and their peak, to measure activation memory.
#[path = "support/counting.rs"]
mod counting;

/// A small network: an OREPA stem and two stages, global pool and classifier.
#[rep::model(new(width: usize))]
pub struct SmallOrepa {
    stem: OrepaRelu<3, { width }, 3, 2, 1, 3>,
    #[rep(repeat = 2, index = i)]
    stage1: Vec<OrepaRelu<{ width }, { width * 2 }, 3, 2, 1, { if i == 0 { width } else { width * 2 } }>>,
    #[rep(repeat = 2, index = i)]
    stage2: Vec<OrepaRelu<{ width * 2 }, { width * 4 }, 3, 2, 2, { if i == 0 { width * 2 } else { width * 4 } }>>,
    pool: GlobalAvgPool,
    head: Linear<{ width * 4 }, 10>,
}

fn max_relative<D: rep::ndarray::Dimension>(a: &rep::ndarray::Array<f32, D>, b: &rep::ndarray::Array<f32, D>) -> f32 {
    rep::compare::difference(a, b).map_or(f32::INFINITY, |d| d.relative())
}

/// What the demo measures (relative errors) and the costs of both forms.
pub struct Demo {
    /// Online vs structural training-step output.
    pub train_error: f32,
    /// Online vs structural running statistics after that step.
    pub stats_error: f32,
    /// Fused vs train-time eval output.
    pub fused_error: f32,
    /// Parameters, train-time and fused.
    pub params: (usize, usize),
    /// Multiply-adds, train-time and fused.
    pub macs: (u64, u64),
}

/// One training step online and structurally, then fusion; see [`Demo`].
pub fn demo(seed: u64) -> rep::Result<Demo> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut online = SmallOrepa::new(16, &mut rng)?;
    randomize_vectors(&mut online, &mut rng);
    let mut structural = online.clone();
    let x = Array4::from_shape_simple_fn((4, 3, 33, 29), || rng.random_range(-1.0f32..1.0));

    let a = online.forward_train(&x)?;
    // The same step, every branch evaluated: blocks one by one, structurally.
    let mut h = x.clone();
    h = structural.stem.forward_train_structural(&h)?;
    for block in structural.stage1.iter_mut().chain(structural.stage2.iter_mut()) {
        h = block.forward_train_structural(&h)?;
    }
    let b = structural.head.forward(&structural.pool.forward(&h)?)?;
    let stats = |m: &SmallOrepa| rep::StateDict::from_parameters(m);
    let (sa, sb) = (stats(&online), stats(&structural));
    let stat_err = sa.tensors.iter().map(|(k, t)| max_relative(t, &sb.tensors[k])).fold(0.0f32, f32::max);

    let fused = online.fuse()?;
    let fuse_err = max_relative(&fused.forward(&x)?, &online.forward(&x)?);
    let input = Hw::new(33, 29);
    Ok(Demo {
        train_error: max_relative(&a, &b),
        stats_error: stat_err,
        fused_error: fuse_err,
        params: (online.parameter_count(), fused.parameter_count()),
        macs: (online.macs(input)?.0, fused.macs(input)?.0),
    })
}

/// One training step of the block without the optimizer: the training forward (online or
/// structural), then the backward of `dy`.
fn step(block: &mut Block, x: &Array4<f32>, dy: &Array4<f32>, online: bool) -> rep::Result<()> {
    let (_, cache) = if online { block.forward_cached(x)? } else { block.forward_cached_structural(x)? };
    block.backward(cache, dy, "", &mut Gradients::new()).map(drop)
}

type Block = OrepaRelu<usize, usize, usize, usize, usize, usize>;

fn bench() -> rep::Result<()> {
    println!(
        "OREPA block, one training step (forward + backward), batch 8, stride 1: online (one conv on the squeezed \
         kernel, its gradient sent through the transposed squeeze) vs structural (six branches)"
    );
    println!(
        "{:>9} {:>7} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7}",
        "channels", "size", "online ms", "struct ms", "ratio", "online MB", "struct MB", "ratio"
    );
    let mut rng = StdRng::seed_from_u64(0);
    for (c, size) in [(64usize, 56usize), (64, 14), (256, 14)] {
        let mut block = OrepaRelu::new(c, c, 3usize, 1usize, 1usize, c, &mut rng)?;
        randomize_vectors(&mut block, &mut rng);
        let x = Array4::from_shape_simple_fn((8, c, size, size), || rng.random_range(-1.0f32..1.0));
        let dy = Array4::from_shape_simple_fn((8, c, size, size), || rng.random_range(-1.0f32..1.0));
        let runs = 5;
        let (online, online_heap) = counting::during(|| step(&mut block, &x, &dy, true));
        let (structural, structural_heap) = counting::during(|| step(&mut block, &x, &dy, false));
        online?;
        structural?;
        let online_ms = median_ms(runs, || step(&mut block, &x, &dy, true))?;
        let structural_ms = median_ms(runs, || step(&mut block, &x, &dy, false))?;
        let mb = |b: usize| b as f64 / 1e6;
        println!(
            "{:>9} {:>7} {:>12.1} {:>12.1} {:>7.2} {:>12.1} {:>12.1} {:>7.2}",
            format!("{c}->{c}"),
            format!("{size}x{size}"),
            online_ms,
            structural_ms,
            structural_ms / online_ms,
            mb(online_heap.peak_bytes),
            mb(structural_heap.peak_bytes),
            structural_heap.peak_bytes as f64 / online_heap.peak_bytes as f64
        );
    }
    println!("(ratio = structural / online; MB = peak heap growth during one step: caches, gradients, temporaries)");
    Ok(())
}

fn main() -> rep::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("bench") {
        return bench();
    }
    let Demo { train_error, stats_error, fused_error, params: (params, fused_params), macs: (macs, fused_macs) } =
        demo(0)?;
    println!("SmallOrepa (width 16), batch 4 x 3 x 33 x 29, random weights, scales and BN statistics");
    println!(
        "  training step, online vs structural: output {train_error:.2e}, running statistics {stats_error:.2e} (relative)"
    );
    println!("  fused vs train-time (eval): {fused_error:.2e} (relative)");
    println!(
        "  parameters {params} -> {fused_params} ({:.1}x), multiply-adds {macs} -> {fused_macs} ({:.1}x)",
        params as f64 / fused_params as f64,
        macs as f64 / fused_macs as f64
    );
    Ok(())
}
