//! Serving batch-1 requests from several threads: one shared plan (its weights once, a
//! `PlanState` per thread) against one plan per thread. Prints throughput and memory.
//!
//! ```text
//! cargo run --release --example serve [-- --arch A0 --workers 2 --requests 200]
//! ```

use clap::Parser;
use rep::Reparameterize;
use rep::layers::randomize_vectors;
use rep::ndarray::Array4;
use rep::plan::Plan;
use rep::rand::{Rng, SeedableRng, rngs::StdRng};
use rep::zoo::repvgg::{Arch, RepVgg};
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Throughput and memory of one shared plan against one plan per worker thread")]
struct Options {
    /// Architecture (A0 … B3g4), random weights.
    #[arg(long, default_value = "A0")]
    arch: String,
    /// Worker threads, each serving batch-1 requests on one core (1 to 64).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=64))]
    workers: u8,
    /// Requests per worker (1 to 100000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    requests: u32,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Requests per second when `workers` threads each serve `requests` requests, each thread with
/// its own single-threaded pool and its own state of `plans[worker % plans.len()]`.
fn serve(plans: &[Arc<Plan>], workers: usize, requests: usize, x: &Array4<f32>) -> Result<f64, Failure> {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                let plan = Arc::clone(&plans[worker % plans.len()]);
                scope.spawn(move || -> Result<(), Failure> {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
                    pool.install(|| {
                        let mut state = plan.state()?;
                        for _ in 0..requests {
                            plan.run(&mut state, x.view())?;
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| Failure::from("a worker panicked"))?)
    })?;
    Ok((workers * requests) as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<(), Failure> {
    let options = Options::parse();
    let (workers, requests) = (usize::from(options.workers), options.requests as usize);
    let arch = Arch::named(&options.arch, 1000)?;
    let mut rng = StdRng::seed_from_u64(0);
    let mut model = RepVgg::new(&arch, &mut rng)?;
    randomize_vectors(&mut model, &mut rng);
    let fused = model.fuse()?;
    let x = Array4::from_shape_simple_fn((1, 3, 224, 224), || rng.random_range(-1.0f32..1.0));
    let shared = vec![Arc::new(Plan::new(&fused, [1, 3, 224, 224])?)];
    let separate =
        (0..workers).map(|_| Plan::new(&fused, [1, 3, 224, 224]).map(Arc::new)).collect::<Result<Vec<_>, _>>()?;
    let (weights, state) = (shared[0].weight_bytes() as f64 / 1e6, shared[0].state_bytes() as f64 / 1e6);
    serve(&shared, workers, requests.min(5), &x)?; // warm-up
    let shared_rate = serve(&shared, workers, requests, &x)?;
    let separate_rate = serve(&separate, workers, requests, &x)?;
    println!("RepVGG-{}, batch 1, {workers} workers x {requests} requests, one core each", arch.name());
    println!("  {:<22} {:>10} {:>12}", "", "requests/s", "memory (MB)");
    let shared_mb = weights + workers as f64 * state;
    let separate_mb = workers as f64 * (weights + state);
    println!("  {:<22} {shared_rate:>10.1} {shared_mb:>12.1}", "one shared plan");
    println!("  {:<22} {separate_rate:>10.1} {separate_mb:>12.1}", "one plan per worker");
    println!("  (weights {weights:.1} MB per plan, buffers {state:.1} MB per worker)");
    Ok(())
}
