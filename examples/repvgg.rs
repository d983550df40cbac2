//! `repvgg`: RepVGG from PyTorch checkpoints to a fused Rust model.
//!
//! ```text
//! cargo run --release --example repvgg                      # A0 demo on built-in defaults
//! cargo run --release --example repvgg -- convert [--arch A0] train.safetensors deploy.safetensors [--to official|timm]
//! cargo run --release --example repvgg -- infer [--arch A0] --weights w.safetensors --input x.npy --output y.npy
//! cargo run --release --example repvgg -- summary [--arch A0 | --weights w.safetensors] [--res 224]
//! cargo run --release --example repvgg -- bench --arch A0 [--batch 1] [--threads 2] [--iters 10] [--json]
//! ```
//!
//! Checkpoints may use the official naming or timm's, train-time or deploy form, f32/f16/bf16;
//! all are detected. Errors are one line on stderr and a non-zero exit status.

use clap::{Parser, Subcommand};
use rep::layers::randomize_vectors;
use rep::ndarray::Array4;
use rep::rand::{Rng, SeedableRng, rngs::StdRng};
use rep::repvgg::{Arch, Checkpoint, Form, Loaded, Naming, RepVgg, save_deploy};
use rep::{Costs, Hw, Reparameterize};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

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
    /// Logits for an NCHW f32 `.npy` input.
    Infer {
        #[arg(long)]
        arch: Option<String>,
        /// Train-time or deploy checkpoint, either naming.
        #[arg(long)]
        weights: PathBuf,
        /// NCHW f32 input `.npy`.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the `[N, classes]` logits `.npy`.
        #[arg(long)]
        output: PathBuf,
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
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line `args` (program name first), writing the report to `out`.
pub fn run(args: &[&str], out: &mut dyn Write) -> CliResult {
    let cli = Cli::try_parse_from(args)?;
    match cli.command {
        None => demo(out),
        Some(Command::Convert { arch, input, output, to }) => convert(arch, &input, &output, &to, out),
        Some(Command::Infer { arch, weights, input, output }) => infer(arch, &weights, &input, &output, out),
        Some(Command::Summary { arch, weights, res }) => summary(arch, weights, res, out),
        Some(Command::Bench { arch, batch, threads, iters, json }) => {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or(0)).build()?;
            let report = pool.install(|| bench(&arch, batch, iters, json))?;
            Ok(out.write_all(report.as_bytes())?)
        }
    }
}

#[allow(dead_code)]
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

fn median_ms(runs: usize, mut f: impl FnMut() -> rep::Result<()>) -> rep::Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn demo(out: &mut dyn Write) -> CliResult {
    let mut rng = StdRng::seed_from_u64(0);
    let arch = Arch::named("A0", 1000)?;
    let model = random_model(&arch, &mut rng)?;
    let fused = model.fuse()?;
    let x = random_input((1, 3, 224, 224), &mut rng);
    let d = rep::compare::difference(&fused.forward(&x)?, &model.forward(&x)?)?;
    let (abs, rel) = (d.max_abs, d.relative());
    let input = Hw::square(224);
    let runs = 5;
    let train_ms = median_ms(runs, || model.forward(&x).map(drop))?;
    let fused_ms = median_ms(runs, || fused.forward(&x).map(drop))?;
    writeln!(out, "RepVGG-A0, 224x224, batch 1, random weights and BN statistics (seed 0)")?;
    writeln!(out, "  fused vs train-time logits: max |diff| = {abs:.3e} (relative {rel:.3e})")?;
    writeln!(out, "  {:<12} {:>12} {:>14}", "form", "parameters", "multiply-adds")?;
    writeln!(out, "  {:<12} {:>12} {:>14}", "train-time", model.parameter_count(), model.macs(input)?.0)?;
    writeln!(out, "  {:<12} {:>12} {:>14}", "fused", fused.parameter_count(), fused.macs(input)?.0)?;
    writeln!(
        out,
        "  latency (median of {runs}): train-time {train_ms:.1} ms, fused {fused_ms:.1} ms, speedup {:.2}x",
        train_ms / fused_ms
    )?;
    Ok(())
}

fn named(arch: Option<String>) -> rep::Result<Option<Arch>> {
    // The class count comes from the checkpoint; a named layout is checked against it on load.
    arch.map(|name| Arch::named(&name, 1)).transpose()
}

/// Loads a checkpoint; a named architecture takes its class count from the checkpoint.
fn load(arch: Option<String>, weights: &std::path::Path) -> rep::Result<(Arch, Loaded, Checkpoint)> {
    eprintln!("loading {}", weights.display());
    let checkpoint = Checkpoint::load(weights)?;
    let arch = named(arch)?.map(|arch| Arch { classes: checkpoint.infer_arch().map_or(1000, |a| a.classes), ..arch });
    let (arch, loaded) = checkpoint.build(arch.as_ref())?;
    eprintln!(
        "RepVGG-{} ({} naming, {} form, {} classes)",
        arch.name,
        format!("{:?}", checkpoint.naming).to_lowercase(),
        if checkpoint.form == Form::Train { "train" } else { "deploy" },
        arch.classes
    );
    Ok((arch, loaded, checkpoint))
}

fn convert(
    arch: Option<String>,
    input: &std::path::Path,
    output: &std::path::Path,
    to: &str,
    out: &mut dyn Write,
) -> CliResult {
    let naming: Naming = to.parse()?;
    let (arch, loaded, _) = load(arch, input)?;
    let Loaded::Train(model) = loaded else {
        return Err(format!("{} is already a deploy checkpoint", input.display()).into());
    };
    eprintln!("fusing {} blocks", arch.layers());
    let fused = model.fuse()?;
    let mut rng = StdRng::seed_from_u64(0);
    let x = random_input((2, 3, 64, 64), &mut rng);
    let d = rep::compare::difference(&fused.forward(&x)?, &model.forward(&x)?)?;
    let (abs, rel) = (d.max_abs, d.relative());
    writeln!(
        out,
        "equivalence check on a random 2x3x64x64 input: max |train - fused| = {abs:.3e} (relative {rel:.3e})"
    )?;
    if rel > 1e-5 {
        return Err(
            format!("fused model differs from the train-time model by {rel:.3e} (relative); nothing written").into()
        );
    }
    save_deploy(&fused, output, naming)?;
    writeln!(out, "wrote {} (RepVGG-{}, {to} naming, deploy form)", output.display(), arch.name)?;
    Ok(())
}

fn infer(
    arch: Option<String>,
    weights: &std::path::Path,
    input: &std::path::Path,
    output: &std::path::Path,
    out: &mut dyn Write,
) -> CliResult {
    let (_, loaded, _) = load(arch, weights)?;
    let x: Array4<f32> = ndarray_npy::read_npy(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let logits = loaded.forward(&x)?;
    ndarray_npy::write_npy(output, &logits).map_err(|e| format!("{}: {e}", output.display()))?;
    writeln!(out, "logits {:?} written to {}", logits.shape(), output.display())?;
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
    writeln!(out, "RepVGG-{} at {res}x{res}", arch.name)?;
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
    writeln!(out, "{:<10} {:>14} {head:>10} {head:>10} {:>14} {:>14}", "linear", arch.classes, head, head)?;
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

fn bench(
    arch: &str,
    batch: usize,
    iters: usize,
    json: bool,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    use std::fmt::Write;
    let mut out = String::new();
    let arch = Arch::named(arch, 1000)?;
    let mut rng = StdRng::seed_from_u64(0);
    eprintln!("building RepVGG-{}", arch.name);
    let model = random_model(&arch, &mut rng)?;
    let fused = model.fuse()?;
    let x = random_input((batch, 3, 224, 224), &mut rng);
    let macs = fused.macs(Hw::square(224))?.0 as f64 * batch as f64;
    fused.forward(&x)?;
    let mut done = 0;
    let fused_ms = median_ms(iters, || {
        done += 1;
        eprint!("\rfused {done}/{iters}");
        fused.forward(&x).map(drop)
    })?;
    done = 0;
    let train_ms = median_ms(iters, || {
        done += 1;
        eprint!("\rtrain-time {done}/{iters}");
        model.forward(&x).map(drop)
    })?;
    eprintln!();
    let gflops = |ms: f64| 2.0 * macs / (ms * 1e6);
    let threads = rayon::current_num_threads();
    if json {
        writeln!(
            &mut out,
            "{{\"arch\":\"{}\",\"batch\":{batch},\"threads\":{threads},\"fused_ms\":{fused_ms:.3},\"train_ms\":{train_ms:.3},\"fused_gflops\":{:.1},\"speedup\":{:.3}}}",
            arch.name,
            gflops(fused_ms),
            train_ms / fused_ms
        )?;
    } else {
        writeln!(&mut out, "RepVGG-{} batch {batch}, {threads} thread(s), median of {iters}", arch.name)?;
        writeln!(&mut out, "  fused:      {fused_ms:8.2} ms  {:6.1} GFLOPS", gflops(fused_ms))?;
        writeln!(&mut out, "  train-time: {train_ms:8.2} ms  {:6.1} GFLOPS (fused-equivalent work)", gflops(train_ms))?;
        writeln!(&mut out, "  speedup:    {:.2}x", train_ms / fused_ms)?;
    }
    Ok(out)
}
