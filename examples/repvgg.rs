//! `repvgg`: RepVGG from PyTorch checkpoints to a fused Rust model.
//!
//! ```text
//! cargo run --release --example repvgg                      # A0 demo on built-in defaults
//! cargo run --release --example repvgg -- convert [--arch A0] train.safetensors deploy.safetensors [--to official|timm]
//! cargo run --release --example repvgg -- infer [--arch A0] --weights w.safetensors --input x.npy --output y.npy
//! cargo run --release --example repvgg -- summary [--arch A0 | --weights w.safetensors] [--res 224]
//! cargo run --release --example repvgg -- bench --arch A0 [--batch 1] [--res 224] [--threads 2] [--iters 10] [--json] [--layers] [--kernels auto] [--export DIR]
//! ```
//!
//! `bench --export DIR` writes what the ONNX Runtime peer benchmark (`scripts/ort_export.py`)
//! needs to run the same network: the fused weights (`deploy.safetensors`, official names;
//! `cargo run -p rep-onnx --example onnx -- repvgg` exports them as ONNX), the input and the
//! planned logits (`input.npy`, `output_0.npy`).
//!
//! Checkpoints may use the official naming or timm's, train-time or deploy form, f32/f16/bf16;
//! all are detected. Errors are one line on stderr and a non-zero exit status.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/peer.rs"]
mod peer;
#[path = "support/timing.rs"]
mod timing;
use clap::{Parser, Subcommand};
use cli::InferFiles;
use rep::kernels::Tile;
use rep::layers::randomize_vectors;
use rep::ndarray::Array4;
use rep::plan::{KernelChoice, Plan};
use rep::rand::{Rng, SeedableRng, rngs::StdRng};
use rep::zoo::repvgg::{self, Arch, Checkpoint, Form, Naming, RepVgg};
use rep::{Costs, Hw, Reparameterize};
use std::io::Write;
use std::path::PathBuf;
use timing::median_ms;

type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser)]
#[command(name = "repvgg", about = "RepVGG: convert PyTorch checkpoints, run, inspect and time the fused model")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train-time checkpoint → deploy checkpoint, with an equivalence check.
    Convert {
        /// Architecture (A0 … B3g4); inferred from the checkpoint when omitted.
        #[arg(long)]
        arch: Option<String>,
        /// Train-time safetensors checkpoint (official or timm naming).
        input: PathBuf,
        /// Where to write the deploy checkpoint.
        output: PathBuf,
        /// Naming of the written checkpoint.
        #[arg(long, default_value = "official")]
        to: String,
    },
    /// Logits (`[N, classes]`) for an NCHW f32 `.npy` input; the checkpoint may be train-time
    /// or deploy, in either naming.
    Infer {
        #[arg(long)]
        arch: Option<String>,
        #[command(flatten)]
        files: InferFiles,
    },
    /// Per-layer table: output shape, parameters and multiply-adds, train-time vs fused.
    Summary {
        #[arg(long, conflicts_with = "weights")]
        arch: Option<String>,
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Input resolution.
        #[arg(long, default_value_t = 224)]
        res: usize,
    },
    /// Median latency and GFLOPS of the fused and train-time forms.
    Bench {
        #[arg(long)]
        arch: String,
        /// Images per forward, 1 to 256.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        batch: u16,
        /// Input height and width, 32 to 1024.
        #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u16).range(32..=1024))]
        res: u16,
        /// Worker threads, 1 to 256 (default: all cores).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: Option<u16>,
        /// Timed runs per form, 1 to 10000.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=10000))]
        iters: u16,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Also print the per-layer breakdown of the planned fused model.
        #[arg(long)]
        layers: bool,
        /// The machine's FP32 peak per thread in GFLOPS, for the "% of peak" column
        /// (286 = one Zen 5 core at 4.47 GHz: 2 × 16-lane FMA per cycle).
        #[arg(long, default_value_t = 286.0)]
        peak: f64,
        /// Convolution kernels of the plan: auto (F(4x4,3x3) on wide stride-1 3x3 layers of at
        /// least 16 tiles), direct (im2col everywhere), winograd (F(2x2,3x3) on every stride-1
        /// 3x3 layer) or winograd4 (F(4x4,3x3) there).
        #[arg(long, default_value = "auto")]
        kernels: String,
        /// Write the fused weights, the input and the planned logits to this directory.
        #[arg(long)]
        export: Option<PathBuf>,
    },
}

/// Runs the command line `args` (program name first), writing the report to `out`.
fn run(args: &[&str], out: &mut dyn Write) -> CliResult {
    let cli = Cli::try_parse_from(args)?;
    match cli.command {
        None => demo(out),
        Some(Command::Convert { arch, input, output, to }) => convert(arch, &input, &output, &to, out),
        Some(Command::Infer { arch, files }) => infer(arch, &files.weights, &files.input, &files.output, out),
        Some(Command::Summary { arch, weights, res }) => summary(arch, weights, res, out),
        Some(Command::Bench { arch, batch, res, threads, iters, json, layers, peak, kernels, export }) => {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.map_or(0, usize::from)).build()?;
            let (batch, iters) = (usize::from(batch), usize::from(iters));
            let kernels = match kernels.as_str() {
                "auto" => KernelChoice::Auto,
                "direct" => KernelChoice::Direct,
                "winograd" => KernelChoice::Winograd(Tile::F2),
                "winograd4" => KernelChoice::Winograd(Tile::F4),
                other => {
                    return Err(
                        format!("unknown --kernels `{other}`; expected auto, direct, winograd or winograd4").into()
                    );
                }
            };
            let options = BenchOptions { batch, res: usize::from(res), iters, json, layers, peak, kernels, export };
            let report = pool.install(|| bench(&arch, &options))?;
            Ok(out.write_all(report.as_bytes())?)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = run(&args, &mut std::io::stdout()) {
        match e.downcast_ref::<clap::Error>() {
            Some(usage) => usage.exit(),
            None => {
                eprintln!("repvgg: {e}");
                std::process::exit(1);
            }
        }
    }
}

fn random_model(arch: &Arch, rng: &mut StdRng) -> rep::Result<RepVgg> {
    let mut model = RepVgg::new(arch, rng)?;
    randomize_vectors(&mut model, rng);
    Ok(model)
}

fn random_input(shape: (usize, usize, usize, usize), rng: &mut StdRng) -> Array4<f32> {
    Array4::from_shape_simple_fn(shape, || rng.random_range(-1.0f32..1.0))
}

fn demo(out: &mut dyn Write) -> CliResult {
    let mut rng = StdRng::seed_from_u64(0);
    let arch = Arch::named("A0", 1000)?;
    let model = random_model(&arch, &mut rng)?;
    let fused = model.fuse()?;
    let x = random_input((1, 3, 224, 224), &mut rng);
    let plan = Plan::new(&fused, [1, 3, 224, 224])?;
    let mut state = plan.state()?;
    let reference = model.forward(&x)?;
    let d = rep::compare::difference(&fused.forward(&x)?, &reference)?;
    let planned = rep::compare::difference(&plan.run(&mut state, x.view())?, &reference.view().into_dyn())?;
    let (abs, rel) = (d.max_abs, d.relative());
    let input = Hw::square(224);
    let runs = 5;
    let train_ms = median_ms(runs, || model.forward(&x).map(drop))?;
    let fused_ms = median_ms(runs, || fused.forward(&x).map(drop))?;
    let planned_ms = median_ms(runs, || plan.run(&mut state, x.view()).map(drop))?;
    writeln!(out, "RepVGG-A0, 224x224, batch 1, random weights and BN statistics (seed 0)")?;
    writeln!(out, "  fused vs train-time logits: max |diff| = {abs:.3e} (relative {rel:.3e})")?;
    writeln!(out, "  planned fused vs train-time logits: relative {:.3e}", planned.relative())?;
    writeln!(out, "  {:<12} {:>12} {:>14}", "form", "parameters", "multiply-adds")?;
    writeln!(out, "  {:<12} {:>12} {:>14}", "train-time", model.parameter_count(), model.macs(input)?.0)?;
    writeln!(out, "  {:<12} {:>12} {:>14}", "fused", fused.parameter_count(), fused.macs(input)?.0)?;
    writeln!(
        out,
        "  latency (median of {runs}, {} threads): train-time {train_ms:.1} ms, fused layer by layer {fused_ms:.1} ms, \
         fused planned {planned_ms:.1} ms ({:.2}x faster than train-time)",
        rayon::current_num_threads(),
        train_ms / planned_ms
    )?;
    Ok(())
}

/// `RepVGG-A0 (official naming, train form, 1000 classes)`.
fn describe(arch: &Arch, naming: Naming, form: Form) -> String {
    let form = if form == Form::Train { "train" } else { "deploy" };
    format!(
        "RepVGG-{} ({} naming, {form} form, {} classes)",
        arch.name(),
        format!("{naming:?}").to_lowercase(),
        arch.classes()
    )
}

fn convert(
    arch: Option<String>,
    input: &std::path::Path,
    output: &std::path::Path,
    to: &str,
    out: &mut dyn Write,
) -> CliResult {
    let naming: Naming = to.parse()?;
    eprintln!("converting {}", input.display());
    let report = repvgg::convert(input, output, arch.as_deref(), naming)?;
    let (abs, rel) = (report.check.max_abs, report.check.relative());
    writeln!(
        out,
        "equivalence check on a random 2x3x64x64 input: max |train - fused| = {abs:.3e} (relative {rel:.3e})"
    )?;
    writeln!(out, "wrote {} (RepVGG-{}, {to} naming, deploy form)", output.display(), report.arch.name())?;
    Ok(())
}

fn infer(
    arch: Option<String>,
    weights: &std::path::Path,
    input: &std::path::Path,
    output: &std::path::Path,
    out: &mut dyn Write,
) -> CliResult {
    eprintln!("loading {}", weights.display());
    let report = repvgg::infer(weights, input, output, arch.as_deref())?;
    eprintln!("{}", describe(&report.arch, report.naming, report.form));
    writeln!(out, "logits {:?} written to {}", report.logits.shape(), output.display())?;
    Ok(())
}

fn summary(arch: Option<String>, weights: Option<PathBuf>, res: usize, out: &mut dyn Write) -> CliResult {
    let arch = match (arch, weights) {
        (Some(name), _) => Arch::named(&name, 1000)?,
        (None, Some(weights)) => Checkpoint::load(weights)?.infer_arch()?,
        (None, None) => Arch::named("A0", 1000)?,
    };
    let model = RepVgg::new(&arch, &mut StdRng::seed_from_u64(0))?;
    let fused = model.fuse()?;
    let mut rows: Vec<(String, &dyn Costs, &dyn Costs, usize)> =
        vec![("stage0".into(), &model.stage0, &fused.stage0, rep::Block::out_channels(&model.stage0))];
    let stages = [
        (&model.stage1, &fused.stage1),
        (&model.stage2, &fused.stage2),
        (&model.stage3, &fused.stage3),
        (&model.stage4, &fused.stage4),
    ];
    for (s, (train, deploy)) in stages.into_iter().enumerate() {
        for (i, (t, f)) in train.iter().zip(deploy).enumerate() {
            rows.push((format!("stage{}.{i}", s + 1), t, f, rep::Block::out_channels(t)));
        }
    }
    writeln!(out, "RepVGG-{} at {res}x{res}", arch.name())?;
    writeln!(
        out,
        "{:<10} {:>14} {:>10} {:>10} {:>14} {:>14}",
        "layer", "output", "params", "fused", "MACs", "fused MACs"
    )?;
    let mut hw = Hw::square(res);
    for (name, train, fused, channels) in rows {
        let (macs, next) = train.macs(hw)?;
        let shape = format!("{channels}x{}x{}", next.h, next.w);
        let (p, fp, fm) = (train.parameter_count(), fused.parameter_count(), fused.macs(hw)?.0);
        writeln!(out, "{name:<10} {shape:>14} {p:>10} {fp:>10} {macs:>14} {fm:>14}")?;
        hw = next;
    }
    let head = model.linear.parameter_count();
    writeln!(out, "{:<10} {:>14} {head:>10} {head:>10} {:>14} {:>14}", "linear", arch.classes(), head, head)?;
    let input = Hw::square(res);
    writeln!(
        out,
        "{:<10} {:>14} {:>10} {:>10} {:>14} {:>14}",
        "total",
        "",
        model.parameter_count(),
        fused.parameter_count(),
        model.macs(input)?.0,
        fused.macs(input)?.0
    )?;
    Ok(())
}

/// What `repvgg bench` measures and prints.
struct BenchOptions {
    batch: usize,
    res: usize,
    iters: usize,
    json: bool,
    layers: bool,
    peak: f64,
    kernels: KernelChoice,
    export: Option<PathBuf>,
}

fn bench(arch: &str, options: &BenchOptions) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    use std::fmt::Write;
    let BenchOptions { batch, res, iters, json, .. } = *options;
    let mut out = String::new();
    let arch = Arch::named(arch, 1000)?;
    let mut rng = StdRng::seed_from_u64(0);
    eprintln!("building RepVGG-{}", arch.name());
    let model = random_model(&arch, &mut rng)?;
    let fused = model.fuse()?;
    let x = random_input((batch, 3, res, res), &mut rng);
    let macs = fused.macs(Hw::square(res))?.0 as f64 * batch as f64;
    let plan = Plan::with_kernels(&fused, [batch, 3, res, res], options.kernels)?;
    let mut state = plan.state()?;
    let timed = |label: &str, f: &mut dyn FnMut() -> rep::Result<()>| {
        let mut done = 0;
        let ms = median_ms(iters, || {
            done += 1;
            eprint!("\r{label} {done}/{iters}   ");
            f()
        });
        eprintln!();
        ms
    };
    if let Some(dir) = &options.export {
        peer::export(dir, &fused, &x, &[plan.run(&mut state, x.view())?.to_owned()])?;
    }
    let planned_ms = timed("fused, planned", &mut || plan.run(&mut state, x.view()).map(drop))?;
    let (run, heap) = counting::during(|| plan.run(&mut state, x.view()).map(drop));
    run?;
    let allocations = heap.allocations;
    let reference = fused.forward(&x)?;
    let plan_error =
        rep::compare::difference(&plan.run(&mut state, x.view())?, &reference.view().into_dyn())?.relative();
    let fused_ms = timed("fused, layer by layer", &mut || fused.forward(&x).map(drop))?;
    let train_ms = timed("train-time", &mut || model.forward(&x).map(drop))?;
    let gflops = |ms: f64| 2.0 * macs / (ms * 1e6);
    let threads = rayon::current_num_threads();
    let peak = options.peak * threads as f64;
    if json {
        writeln!(
            &mut out,
            "{{\"arch\":\"{}\",\"batch\":{batch},\"res\":{res},\"threads\":{threads},\"fused_ms\":{planned_ms:.3},\"fused_layers_ms\":{fused_ms:.3},\"train_ms\":{train_ms:.3},\"fused_gflops\":{:.1},\"peak_percent\":{:.1},\"speedup\":{:.3},\"allocations\":{allocations},\"plan_relative_error\":{plan_error:.2e}}}",
            arch.name(),
            gflops(planned_ms),
            100.0 * gflops(planned_ms) / peak,
            train_ms / planned_ms
        )?;
    } else {
        writeln!(
            &mut out,
            "RepVGG-{} at {res}x{res}, batch {batch}, {threads} thread(s), median of {iters}",
            arch.name()
        )?;
        writeln!(&mut out, "  {:<24} {:>9} {:>8} {:>8}", "form", "ms", "GFLOPS", "% peak")?;
        for (form, ms) in
            [("fused, planned", planned_ms), ("fused, layer by layer", fused_ms), ("train-time", train_ms)]
        {
            let g = gflops(ms);
            writeln!(&mut out, "  {form:<24} {ms:>9.2} {g:>8.1} {:>8.1}", 100.0 * g / peak)?;
        }
        writeln!(&mut out, "  speedup of the planned fused form over train-time: {:.2}x", train_ms / planned_ms)?;
        writeln!(&mut out, "  heap allocations in one planned forward: {allocations}")?;
        writeln!(&mut out, "  planned vs layer-by-layer logits: relative difference {plan_error:.2e}")?;
        writeln!(&mut out, "  (GFLOPS count the fused network's work, 2 x multiply-adds, for every form)")?;
    }
    if options.layers {
        writeln!(&mut out, "  {:<18} {:<10} {:>9} {:>8} {:>8}", "layer", "kernel", "ms", "GFLOPS", "share")?;
        let profile = plan.profile(&mut state, x.view(), iters)?;
        let total: f64 = profile.iter().map(|s| s.time.as_secs_f64()).sum();
        for step in profile {
            let secs = step.time.as_secs_f64();
            let g = 2.0 * step.macs as f64 / (secs * 1e9);
            writeln!(
                &mut out,
                "  {:<18} {:<10} {:>9.3} {g:>8.1} {:>7.1}%",
                step.name,
                step.kernel,
                secs * 1e3,
                100.0 * secs / total
            )?;
        }
    }
    Ok(out)
}

/// Counts heap allocations, to show that a planned forward pass is allocation-free.
#[path = "support/counting.rs"]
mod counting;
