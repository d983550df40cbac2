//! `yolov7 bench`: a YOLOv7 (or YOLOv7-tiny) of random weights at a width and resolution,
//! timed train-time, fused layer by layer, and fused and planned; with the heap allocations of
//! one planned forward and the planned-vs-unplanned difference.
//!
//! ```text
//! cargo run --release --example yolov7 -- bench [--variant yolov7] [--width 1.0] [--res 640] \
//!     [--threads 1] [--iters 10] [--json] [--export DIR] [--kernels] [--steps] [--conv auto] \
//!     [--planned-only]
//! ```
//!
//! `--kernels` adds the time of each kind of step (Winograd, im2col, pointwise, max pool, …)
//! summed over the plan, `--steps` every step's. `--export DIR` writes what the ONNX Runtime
//! peer benchmark (`scripts/ort_export.py`) needs to run the same network: the fused weights
//! under the official names (`deploy.safetensors`, exported as ONNX by
//! `cargo run -p rep-onnx --example onnx`), the input and the planned head outputs (`input.npy`,
//! `output_{0,1,2}.npy`). `--planned-only` times only the planned form (for benchmarks that
//! alternate with a peer's runs).

#[path = "support/counting.rs"]
mod counting;

#[path = "support/peer.rs"]
mod peer;
#[path = "support/timing.rs"]
mod timing;
use clap::{Parser, Subcommand, ValueEnum};
use rep::ndarray::Array4;
use rep::plan::KernelChoice;
use rep::rand::{Rng, SeedableRng, rngs::StdRng};
use rep::zoo::yolov7::{Config, Variant, Yolov7};
use rep::{Costs, Hw, Reparameterize};
use std::fmt::Write as _;
use std::path::PathBuf;
use timing::median_ms;

type CliResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser)]
#[command(name = "yolov7", about = "YOLOv7: planned inference benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum VariantArg {
    Yolov7,
    Tiny,
}

#[derive(Subcommand)]
enum Command {
    /// Time train-time, fused and planned forwards of a random network.
    Bench {
        #[arg(long, value_enum, default_value = "yolov7")]
        variant: VariantArg,
        /// Width multiplier.
        #[arg(long, default_value_t = 1.0)]
        width: f64,
        /// Square input resolution (a multiple of 32).
        #[arg(long, default_value_t = 640, value_parser = clap::value_parser!(u32).range(32..=4096))]
        res: u32,
        /// Threads (rayon's default when omitted).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        threads: Option<u16>,
        /// Timed runs of each form (the median is reported).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
        iters: u16,
        /// One line of JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write the network for the ONNX Runtime benchmark into this directory.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Also print the time of each kind of step (kernel), summed over the plan.
        #[arg(long)]
        kernels: bool,
        /// Also print the time of every step of the plan.
        #[arg(long)]
        steps: bool,
        /// Convolution kernels: auto (default: F(4×4) on wide stride-1 3×3 layers of at least 16
        /// tiles), direct, winograd (F(2×2) everywhere it applies) or winograd4 (F(4×4)
        /// everywhere it applies).
        #[arg(long, default_value = "auto")]
        conv: String,
        /// Time only the planned form (no layer-by-layer or train-time runs).
        #[arg(long)]
        planned_only: bool,
    },
}

struct Bench {
    variant: Variant,
    width: f64,
    res: usize,
    iters: usize,
    json: bool,
    export: Option<PathBuf>,
    kernels: bool,
    steps: bool,
    choice: KernelChoice,
    planned_only: bool,
}

fn bench(options: &Bench) -> CliResult<String> {
    let mut rng = StdRng::seed_from_u64(0);
    let res = options.res;
    eprintln!("building {} at width {}", options.variant.name(), options.width);
    let mut model = Yolov7::new(Config::new(options.variant, options.width, 80)?, &mut rng)?;
    rep::layers::randomize_vectors(&mut model, &mut rng);
    let fused = model.fuse()?;
    let x = Array4::from_shape_simple_fn((1, 3, res, res), || rng.random_range(0.0f32..1.0));
    let plan = fused.plan([1, 3, res, res], options.choice)?;
    let mut state = plan.state()?;
    let iters = options.iters;
    let planned_ms = median_ms(iters, || fused.forward_planned(&plan, &mut state, x.view()).map(drop))?;
    let (run, heap) = counting::during(|| plan.run(&mut state, x.view()));
    run?;
    let planned = fused.forward_planned(&plan, &mut state, x.view())?;
    let plan_error = rep::compare::difference(&planned, &fused.forward(&x)?)?.relative();
    // The other forms (NaN when skipped).
    let (fused_ms, train_ms) = if options.planned_only {
        (f64::NAN, f64::NAN)
    } else {
        (median_ms(iters, || fused.forward(&x).map(drop))?, median_ms(iters.min(3), || model.forward(&x).map(drop))?)
    };
    let profile =
        if options.kernels || options.steps { plan.profile(&mut state, x.view(), iters)? } else { Vec::new() };
    if let Some(dir) = &options.export {
        plan.run(&mut state, x.view())?;
        let heads =
            (0..plan.outputs()).map(|i| Ok(plan.output(&state, i)?.to_owned())).collect::<CliResult<Vec<_>>>()?;
        peer::export(dir, &fused, &x, &heads)?;
    }
    let (macs, threads) = (fused.macs(Hw::square(res))?.0, rayon::current_num_threads());
    let name = options.variant.name();
    let mut out = String::new();
    if options.json {
        writeln!(
            out,
            "{{\"variant\":\"{name}\",\"width\":{},\"res\":{res},\"threads\":{threads},\"fused_ms\":{planned_ms:.3},\"fused_layers_ms\":{},\"train_ms\":{},\"speedup\":{},\"allocations\":{},\"plan_relative_error\":{plan_error:.2e},\"state_bytes\":{},\"gmacs\":{:.2}}}",
            options.width,
            json_number(fused_ms),
            json_number(train_ms),
            json_number(train_ms / planned_ms),
            heap.allocations,
            plan.state_bytes(),
            macs as f64 / 1e9
        )?;
    } else {
        writeln!(
            out,
            "{name} width {} at {res}x{res}, batch 1, {threads} thread(s), median of {iters}",
            options.width
        )?;
        writeln!(out, "  {:.2} G multiply-adds fused, {} parameters", macs as f64 / 1e9, fused.parameter_count())?;
        for (form, ms) in
            [("fused, planned", planned_ms), ("fused, layer by layer", fused_ms), ("train-time", train_ms)]
        {
            if ms.is_finite() {
                writeln!(out, "  {form:<24} {ms:>10.2} ms")?;
            }
        }
        if train_ms.is_finite() {
            writeln!(out, "  speedup of the planned fused form over train-time: {:.2}x", train_ms / planned_ms)?;
        }
        writeln!(out, "  heap allocations in one planned forward: {}", heap.allocations)?;
        writeln!(out, "  planned vs layer-by-layer detections: relative difference {plan_error:.2e}")?;
        writeln!(
            out,
            "  plan state: {:.1} MB (buffers by liveness {:.1} MB; every value in its own buffer would take {:.1} MB)",
            plan.state_bytes() as f64 / 1e6,
            plan.buffer_bytes() as f64 / 1e6,
            plan.value_bytes() as f64 / 1e6
        )?;
    }
    write_profile(&mut out, &profile, options.steps)?;
    Ok(out)
}

/// A number for JSON: `null` when not a number (a form that was not timed).
fn json_number(value: f64) -> String {
    if value.is_finite() { format!("{value:.3}") } else { "null".into() }
}

/// The profile's time and rate per kind of kernel, preceded by every step's when `steps`.
fn write_profile(out: &mut String, profile: &[rep::plan::StepTime], steps: bool) -> CliResult<()> {
    if steps {
        for step in profile {
            let ms = step.time.as_secs_f64() * 1e3;
            writeln!(
                out,
                "  {:<16} {:<10} {ms:>8.2} ms {:>8.1} GFLOPS",
                step.name,
                step.kernel,
                2.0 * step.macs as f64 / (ms * 1e6)
            )?;
        }
    }
    let mut kinds: Vec<(&str, f64, u64)> = Vec::new();
    for step in profile {
        match kinds.iter_mut().find(|(kind, ..)| *kind == step.kernel) {
            Some((_, ms, macs)) => (*ms, *macs) = (*ms + step.time.as_secs_f64() * 1e3, *macs + step.macs),
            None => kinds.push((step.kernel, step.time.as_secs_f64() * 1e3, step.macs)),
        }
    }
    for (kind, ms, macs) in kinds {
        writeln!(out, "  {kind:<12} {ms:>10.2} ms {:>8.1} GFLOPS", 2.0 * macs as f64 / (ms * 1e6))?;
    }
    Ok(())
}

fn main() {
    let Command::Bench { variant, width, res, threads, iters, json, export, kernels, steps, conv, planned_only } =
        Cli::parse().command;
    let choice = match conv.as_str() {
        "auto" => KernelChoice::Auto,
        "direct" => KernelChoice::Direct,
        "winograd" => KernelChoice::Winograd(rep::kernels::Tile::F2),
        "winograd4" => KernelChoice::Winograd(rep::kernels::Tile::F4),
        other => {
            eprintln!("error: --conv {other}: expected auto, direct, winograd or winograd4");
            std::process::exit(2);
        }
    };
    let variant = match variant {
        VariantArg::Yolov7 => Variant::Yolov7,
        VariantArg::Tiny => Variant::Tiny,
    };
    let options = Bench {
        variant,
        width,
        res: res as usize,
        iters: iters.into(),
        json,
        export,
        kernels,
        steps,
        choice,
        planned_only,
    };
    let result = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.map_or(0, usize::from))
        .build()
        .map_err(|e| e.into())
        .and_then(|pool| pool.install(|| bench(&options)));
    match result {
        Ok(out) => print!("{out}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
