//! `rep`: one command for every family of the zoo — convert an original train-time checkpoint
//! to the original's deploy form (with an equivalence check), run it on an `.npy` input, or
//! count its parameters and multiply-adds.
//!
//! ```text
//! cargo run --release --example rep -- convert --family dbb --stride 2 dbb.safetensors dbb-deploy.safetensors
//! cargo run --release --example rep -- convert --family repvgg [--arch A0] [--to timm] train.safetensors deploy.safetensors
//! cargo run --release --example rep -- summary --family mobileone --groups 12 --weights m1.safetensors [--res 56]
//! cargo run --release --example rep -- convert --family orepa --stride 2 orepa.safetensors orepa-deploy.safetensors
//! cargo run --release --example rep -- infer --family acnet --stride 2 --weights acb.safetensors --input x.npy --output y.npy
//! cargo run --release --example rep -- convert --family yolov7 yolov7.safetensors yolov7-deploy.safetensors
//! cargo run --release --example rep -- infer --family yolov7 --weights yolov7.safetensors --input x.npy --output z.npy
//! cargo run --release --example rep -- summary --family yolov7 --weights yolov7.safetensors [--res 640]
//! ```
//!
//! Stride and groups are constructor arguments the weights do not record. Errors are one line on
//! stderr and a non-zero exit status.

#[path = "support/cli.rs"]
mod cli;
use clap::{Args, Parser, Subcommand, ValueEnum};
use cli::InferFiles;
use rep::ndarray::Array4;
use rep::zoo::acnet::AcBlock;
use rep::zoo::adapter::{BlockOptions, FromCheckpoint, convert_block};
use rep::zoo::dbb::Dbb;
use rep::zoo::mobileone::MobileOneBlock;
use rep::zoo::orepa::Orepa;
use rep::zoo::repvgg::{self, Naming};
use rep::zoo::{yolo, yolov7};
use rep::{Costs, Hw, StateDict};
use std::path::{Path, PathBuf};

#[macro_use]
#[path = "support/say.rs"]
mod say;

type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser)]
#[command(name = "rep", about = "Every family of the zoo: convert original checkpoints, run and inspect them")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Family {
    Repvgg,
    Dbb,
    Acnet,
    Mobileone,
    Orepa,
    /// YOLOv7 and YOLOv7-tiny networks (variant, width and classes read from the weights).
    Yolov7,
}

/// The block and what its weights do not record.
#[derive(Args)]
struct Block {
    /// The family whose original names the checkpoint uses.
    #[arg(long, value_enum)]
    family: Family,
    /// Stride of the block (not in the weights).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    stride: u16,
    /// Groups of the block (not in the weights; DBB's are read from them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    groups: u32,
}

impl Block {
    fn options(&self) -> BlockOptions {
        BlockOptions { stride: self.stride.into(), groups: self.groups as usize }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Original train-time checkpoint → the original's deploy form, with an equivalence check.
    Convert {
        #[command(flatten)]
        block: Block,
        /// RepVGG only: the architecture (inferred when omitted).
        #[arg(long)]
        arch: Option<String>,
        /// RepVGG only: naming of the written file (official or timm).
        #[arg(long, default_value = "official")]
        to: String,
        /// The train-time checkpoint.
        input: PathBuf,
        /// Where to write the deploy checkpoint.
        output: PathBuf,
    },
    /// Output for an NCHW f32 `.npy` input, through the fused block.
    Infer {
        #[command(flatten)]
        block: Block,
        #[command(flatten)]
        files: InferFiles,
    },
    /// Parameters and multiply-adds, train-time and fused, at a resolution.
    Summary {
        #[command(flatten)]
        block: Block,
        #[arg(long)]
        weights: PathBuf,
        #[arg(long, default_value_t = 56, value_parser = clap::value_parser!(u32).range(1..=8192))]
        res: u32,
    },
}

fn convert<B: FromCheckpoint>(input: &Path, output: &Path, options: BlockOptions) -> CliResult {
    let report = convert_block::<B>(input, output, options)?;
    say!(
        "{} -> {} ({} block, fused vs train-time {:.1e} relative; keys {})",
        input.display(),
        output.display(),
        B::FAMILY,
        report.check.relative(),
        report.keys.join(", ")
    );
    Ok(())
}

fn infer<B: FromCheckpoint>(weights: &Path, input: &Path, output: &Path, options: BlockOptions) -> CliResult {
    rep::io::ensure_distinct(output, &[input, weights])?;
    let fused = B::from_checkpoint(&StateDict::load(weights)?, options)?.fuse()?;
    let x: Array4<f32> = rep::io::read_npy(input)?;
    let y = rep::layers::Layer::forward(&fused, &x)?;
    rep::io::write_npy(output, &y.into_dyn())?;
    say!("{} -> {}", input.display(), output.display());
    Ok(())
}

fn summary<B: FromCheckpoint>(weights: &Path, res: usize, options: BlockOptions) -> CliResult {
    let block = B::from_checkpoint(&StateDict::load(weights)?, options)?;
    let fused = block.fuse()?;
    let input = Hw::square(res);
    let ((macs, out), (fused_macs, _)) = (block.macs(input)?, fused.macs(input)?);
    say!("{} block at {res}x{res} -> {out}", B::FAMILY);
    say!("  train-time: {} parameters, {macs} multiply-adds", block.parameter_count());
    say!("  fused:      {} parameters, {fused_macs} multiply-adds", fused.parameter_count());
    Ok(())
}

/// Runs `$action::<Block type>` for the family's block type.
macro_rules! for_family {
    ($family:expr, $action:ident($($arg:expr),*)) => {
        match $family {
            Family::Dbb => $action::<Dbb>($($arg),*),
            Family::Acnet => $action::<AcBlock<usize, usize, usize, usize>>($($arg),*),
            Family::Mobileone => $action::<MobileOneBlock<usize, usize, usize, usize, usize, usize, usize>>($($arg),*),
            Family::Orepa => $action::<Orepa<usize, usize, usize, usize, usize, usize>>($($arg),*),
            Family::Repvgg => Err("for RepVGG networks use `convert --family repvgg` or the `repvgg` example".into()),
            Family::Yolov7 => unreachable!("YOLOv7 commands are dispatched before blocks"),
        }
    };
}

fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Convert { block, input, output, .. } if matches!(block.family, Family::Yolov7) => {
            let report = yolov7::checkpoint::convert(&input, &output)?;
            say!(
                "{} -> {} ({}, fused vs train-time {:.1e})",
                input.display(),
                output.display(),
                describe(&report.config),
                report.check.relative()
            );
            Ok(())
        }
        Command::Infer { block, files } if matches!(block.family, Family::Yolov7) => {
            let (config, form) = yolov7::checkpoint::infer(&files.weights, &files.input, &files.output)?;
            say!("{} -> {} ({}, {form:?} weights)", files.input.display(), files.output.display(), describe(&config));
            Ok(())
        }
        Command::Summary { block, weights, res } if matches!(block.family, Family::Yolov7) => {
            yolov7_summary(&weights, res as usize)
        }
        Command::Convert { block, arch, to, input, output } => match block.family {
            Family::Repvgg => {
                let naming = match to.as_str() {
                    "official" => Naming::Official,
                    "timm" => Naming::Timm,
                    other => return Err(format!("--to {other}: expected official or timm").into()),
                };
                let report = repvgg::convert(&input, &output, arch.as_deref(), naming)?;
                say!(
                    "{} -> {} (RepVGG {}, fused vs train-time {:.1e})",
                    input.display(),
                    output.display(),
                    report.arch.name(),
                    report.check.relative()
                );
                Ok(())
            }
            family => for_family!(family, convert(&input, &output, block.options())),
        },
        Command::Infer { block, files } => {
            for_family!(block.family, infer(&files.weights, &files.input, &files.output, block.options()))
        }
        Command::Summary { block, weights, res } => {
            for_family!(block.family, summary(&weights, res as usize, block.options()))
        }
    }
}

fn describe(config: &yolov7::Config) -> String {
    let name = config.variant.name();
    format!("{name}, width {}, {} classes", config.scaling.width, config.classes)
}

/// Per-node and total costs of a YOLOv7 checkpoint, train-time and fused, and the compound
/// scaling table of its variant.
fn yolov7_summary(weights: &Path, res: usize) -> CliResult {
    let model = match yolov7::checkpoint::load(weights)? {
        yolov7::checkpoint::Loaded::Train(model) => *model,
        yolov7::checkpoint::Loaded::Deploy(_) => return Err("summary needs the train-time checkpoint".into()),
    };
    let fused = rep::Reparameterize::fuse(&model)?;
    let input = Hw::square(res);
    let layout = model.config().variant.layout();
    say!("{} at {res}x{res}", describe(model.config()));
    say!("{:>5}  {:<22} {:<16} {:>10} {:>15}  output", "node", "module", "from", "parameters", "multiply-adds");
    let sizes = model.graph.node_macs(input)?;
    for (i, (node, (macs, out))) in model.graph.nodes().iter().zip(&sizes).enumerate() {
        let params = match node.op {
            rep::graph::Op::Layer(k) => model.graph.layers()[k].parameter_count(),
            _ => 0,
        };
        let (from, module) = layout.nodes[i];
        say!(
            "{i:>5}  {:<22} {:<16} {params:>10} {macs:>15}  {}x{out}",
            format!("{module:?}"),
            format!("{from:?}"),
            node.channels
        );
    }
    for (form, (params, macs)) in [
        ("train-time", (model.parameter_count(), model.macs(input)?.0)),
        ("fused", (fused.parameter_count(), fused.macs(input)?.0)),
    ] {
        say!("{form:>10}: {params} parameters, {macs} multiply-adds");
    }
    say!(
        "compound scaling of {} (fused; every module of the layout appears once, so depth scales nothing):",
        model.config().variant.name()
    );
    say!("{:>6} {:>6} {:>6} {:>12} {:>16}", "width", "depth", "res", "parameters", "multiply-adds");
    for (width, res) in [(0.25, 320), (0.5, 416), (1.0, 640), (1.25, 640)] {
        let config = yolov7::Config { scaling: yolo::Scaling { width, depth: 1.0 }, ..model.config().clone() };
        let scaled = yolov7::Yolov7Fused::new(config)?;
        say!("{width:>6} {:>6} {res:>6} {:>12} {:>16}", 1.0, scaled.parameter_count(), scaled.macs(Hw::square(res))?.0);
    }
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
