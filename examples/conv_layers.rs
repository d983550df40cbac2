//! Times one planned convolution per RepVGG-A0 layer shape (im2col vs Winograd), and the
//! classifier (batch 1), for kernel work.
//!
//! ```text
//! cargo run --release --example conv_layers                          # every A0 layer shape
//! cargo run --release --example conv_layers -- 32 64 640 2 [RUNS [K]]   # one shape: C_in C_out size stride
//!                                                                        # (kernel K×K, default 3)
//! ```

use rep::ConvGeometry;
use rep::kernels::{Tile, WinogradConv};
use rep::layers::{Activation, Conv2d};
use rep::ndarray::Array4;
use rep::plan::{KernelChoice, Plan};
use rep::rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::Instant;

/// Mean milliseconds of `runs` calls, after one warm-up call.
fn mean_ms(runs: usize, mut f: impl FnMut() -> rep::Result<()>) -> rep::Result<f64> {
    f()?;
    let start = Instant::now();
    for _ in 0..runs {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / runs as f64)
}

/// RepVGG-A0's 3×3 layer shapes: `(C_in, C_out, input size, stride)`.
const A0_LAYERS: [(usize, usize, usize, usize); 10] = [
    (3, 48, 224, 2),
    (48, 48, 112, 2),
    (16, 16, 56, 1),
    (32, 32, 56, 1),
    (48, 48, 56, 1),
    (48, 96, 56, 2),
    (96, 96, 28, 1),
    (96, 192, 28, 2),
    (192, 192, 14, 1),
    (192, 1280, 14, 2),
];

fn main() -> rep::Result<()> {
    let mut rng = StdRng::seed_from_u64(0);
    println!("Planned single conv + ReLU, batch 1, {} thread(s)", rayon::current_num_threads());
    println!(
        "{:>14} {:>8} {:>10} {:>9} {:>12} {:>11} {:>12} {:>11}",
        "layer", "input", "im2col ms", "GFLOPS", "F(2x2) ms", "eff.GFLOPS", "F(4x4) ms", "eff.GFLOPS"
    );
    // One shape from the command line (timed `runs` times: long enough to profile), or A0's.
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("sizes are numbers")).collect();
    let (shapes, runs, kernel) = match args[..] {
        [cin, cout, size, stride, ref rest @ ..] if rest.len() <= 2 => {
            (vec![(cin, cout, size, stride)], rest.first().copied().unwrap_or(50), rest.get(1).copied().unwrap_or(3))
        }
        [] => (A0_LAYERS.to_vec(), 50, 3),
        _ => panic!("usage: conv_layers [C_IN C_OUT SIZE STRIDE [RUNS [KERNEL]]]"),
    };
    for (cin, cout, size, stride) in shapes {
        let g = ConvGeometry::new(cin, cout, kernel).stride(stride).padding(kernel / 2);
        let layer = (Conv2d::new_with_bias(g, &mut rng)?, Activation::Relu);
        let x = Array4::from_shape_simple_fn((1, cin, size, size), || rng.random_range(-1.0f32..1.0));
        let flops = 2.0 * g.macs(g.output_size(size, size)?)? as f64;
        let time = |choice| -> rep::Result<f64> {
            let plan = Plan::with_kernels(&layer, [1, cin, size, size], choice)?;
            let mut state = plan.state()?;
            mean_ms(runs, || plan.run(&mut state, x.view()).map(drop))
        };
        let direct = time(KernelChoice::Direct)?;
        let winograd = if WinogradConv::supports(&g) {
            let f2 = time(KernelChoice::Winograd(Tile::F2))?;
            let f4 = time(KernelChoice::Winograd(Tile::F4))?;
            format!("{f2:>12.3} {:>11.1} {f4:>12.3} {:>11.1}", flops / (f2 * 1e6), flops / (f4 * 1e6))
        } else {
            String::new()
        };
        println!(
            "{:>14} {:>8} {direct:>10.3} {:>9.1} {winograd}",
            format!("{cin}->{cout} s{stride}"),
            format!("{size}x{size}"),
            flops / (direct * 1e6)
        );
    }
    let head = rep::layers::Linear::new(1280, 1000, &mut rng);
    let features = rep::ndarray::Array2::from_shape_simple_fn((1, 1280), || rng.random_range(-1.0f32..1.0));
    let ms = mean_ms(200, || head.forward(&features).map(drop))?;
    println!("{:>14} {:>8} {:>10.3} {:>9.1}", "linear", "1280->1000", ms, 2.0 * 1.28e6 / (ms * 1e6));
    Ok(())
}
