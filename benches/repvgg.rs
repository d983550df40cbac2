//! RepVGG inference latency: the planned fused form (`rep::plan::Plan`), the fused form layer by
//! layer, and the train-time form; A0 and B0, batch 1 and 8, 1 and 2 threads.
//!
//! ```text
//! cargo bench --bench repvgg
//! ```
//! The peer is ONNX Runtime on the same fused network (`../shared/bench/ort_repvgg.py`);
//! `cargo run --release --example repvgg -- bench --arch A0 --layers` breaks it down per layer.

use criterion::{Criterion, criterion_group, criterion_main};
use rep::Reparameterize;
use rep::layers::randomize_vectors;
use rep::ndarray::Array4;
use rep::plan::Plan;
use rep::rand::{Rng, SeedableRng, rngs::StdRng};
use rep::zoo::repvgg::{Arch, RepVgg};
use std::time::Duration;

fn repvgg(c: &mut Criterion) {
    let mut group = c.benchmark_group("repvgg");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for name in ["A0", "B0"] {
        let mut rng = StdRng::seed_from_u64(0);
        let arch = Arch::named(name, 1000).expect("named architecture");
        let mut model = RepVgg::new(&arch, &mut rng).expect("builds");
        randomize_vectors(&mut model, &mut rng);
        let fused = model.fuse().expect("fuses");
        for batch in [1usize, 8] {
            let x = Array4::from_shape_simple_fn((batch, 3, 224, 224), || rng.random_range(-1.0f32..1.0));
            for threads in [1usize, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
                let plan = pool.install(|| Plan::new(&fused, [batch, 3, 224, 224])).expect("plans");
                let mut state = pool.install(|| plan.state()).expect("allocates");
                group.bench_function(format!("{name}/batch{batch}/threads{threads}/planned"), |b| {
                    b.iter(|| pool.install(|| plan.run(&mut state, x.view()).map(|y| y[[0, 0]]).expect("runs")))
                });
                group.bench_function(format!("{name}/batch{batch}/threads{threads}/fused"), |b| {
                    b.iter(|| pool.install(|| fused.forward(&x).expect("runs")))
                });
                group.bench_function(format!("{name}/batch{batch}/threads{threads}/train"), |b| {
                    b.iter(|| pool.install(|| model.forward(&x).expect("runs")))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, repvgg);
criterion_main!(benches);
