//! Training speed: one SGD step of RepVGG (train-mode forward, cross-entropy, backward, SGD with
//! momentum and weight decay) on random images, median over steps, and the heap allocations of
//! each step after warm-up (which must not grow from step to step).
//!
//! ```text
//! cargo run --release --example train_step                     # A0, 224×224, batch 8
//! cargo run --release --example train_step -- --arch B0 --batch 4 --threads 1 --steps 5
//! ```

#[path = "support/counting.rs"]
mod counting;

use clap::Parser;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rep::layers::randomize_vectors;
use rep::ndarray::Array4;
use rep::train::{Gradients, Network, Optimizer, Sgd, cross_entropy};
use rep::zoo::repvgg::{Arch, RepVgg};
use std::time::Instant;

#[macro_use]
#[path = "support/say.rs"]
mod say;

#[derive(Parser)]
#[command(about = "Time RepVGG training steps")]
struct Args {
    /// Architecture (A0 … B3g4).
    #[arg(long, default_value = "A0")]
    arch: String,
    /// Images per step.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    batch: u32,
    /// Image side.
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u32).range(32..=1024))]
    res: u32,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: Option<u32>,
    /// Timed steps (after two warm-up steps).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    steps: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let threads = args.threads.map_or(0, |t| t as usize); // 0: rayon's default, every core
    // Run inside the pool, so that the kernels' parallel loops start on a worker thread
    // instead of handing each one over from the main thread.
    rayon::ThreadPoolBuilder::new().num_threads(threads).build()?.install(|| run(args))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut rng = StdRng::seed_from_u64(0);
    let arch = Arch::named(&args.arch, 1000)?;
    let mut model = RepVgg::new(&arch, &mut rng)?;
    randomize_vectors(&mut model, &mut rng);
    let (batch, res) = (args.batch as usize, args.res as usize);
    let x = Array4::from_shape_simple_fn((batch, 3, res, res), || rng.random_range(-1.0f32..1.0));
    let labels: Vec<usize> = (0..batch).map(|_| rng.random_range(0..1000)).collect();
    let mut sgd = Sgd::new(0.01, 0.9, 1e-4);
    let mut grads = Gradients::new();
    let mut step = |model: &mut RepVgg| -> rep::Result<f64> {
        grads.zero();
        let (logits, cache) = model.forward_cached(&x)?;
        let (loss, dlogits) = cross_entropy(&logits, &labels, 0.0)?;
        model.backward(cache, &dlogits, &mut grads)?;
        sgd.step(model, &grads)?;
        Ok(loss)
    };
    let mut allocations = Vec::new();
    for _ in 0..2 {
        let (loss, heap) = counting::during(|| step(&mut model));
        loss?;
        allocations.push(heap.allocations);
    }
    let mut times = Vec::new();
    for _ in 0..args.steps {
        let start = Instant::now();
        let (loss, heap) = counting::during(|| step(&mut model));
        times.push(start.elapsed().as_secs_f64() * 1e3);
        loss?;
        allocations.push(heap.allocations);
    }
    times.sort_by(f64::total_cmp);
    let threads = rayon::current_num_threads();
    say!(
        "{} at {res}x{res}, batch {batch}, {threads} thread(s): median step {:.1} ms (min {:.1}, max {:.1}) over {} steps",
        arch.name(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
    let steady = &allocations[2..];
    say!(
        "heap allocations per step: warm-up {:?}, then {}..={}",
        &allocations[..2],
        steady.iter().min().unwrap_or(&0),
        steady.iter().max().unwrap_or(&0)
    );
    Ok(())
}
