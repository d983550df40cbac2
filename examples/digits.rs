//! Train → fuse → deploy on real data: a five-block RepVGG learns the UCI handwritten digits
//! (8×8 grey images) with SGD, is fused into plain 3×3 convolutions, and the fused network,
//! run through an inference plan, predicts exactly what the trained one does.
//!
//! ```text
//! cargo run --release --example digits                       # 30 epochs, batch 32, lr 0.05
//! cargo run --release --example digits -- --epochs 5 --threads 2 --save out/
//! cargo run --release --example digits -- --epochs 8 --threads 2 --save out/ --resume out/
//! ```

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, Array4, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rep::ema::Ema;
use rep::plan::Plan;
use rep::train::{Gradients, Network, Optimizer, Schedule, Sgd, cross_entropy, shuffled_batches};
use rep::zoo::repvgg::RepVggBlock;
use rep::{Reparameterize, StateDict};
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::PathBuf;
use std::time::Instant;

#[macro_use]
#[path = "support/say.rs"]
mod say;

/// RepVGG blocks 1→16, 16→32 (stride 2), 32→32, 32→64 (stride 2), 64→64, then global average
/// pooling and a linear classifier.
#[rep::model]
pub struct Digits {
    stage0: RepVggBlock<1, 16, 1, 1, 0>,
    stage1: RepVggBlock<16, 32, 2, 1, 0>,
    stage2: RepVggBlock<32, 32, 1, 1, 0>,
    stage3: RepVggBlock<32, 64, 2, 1, 0>,
    stage4: RepVggBlock<64, 64, 1, 1, 0>,
    gap: GlobalAvgPool,
    linear: Linear<64, 10>,
}

#[derive(Parser)]
#[command(about = "Train a RepVGG on the UCI digits, fuse it, and deploy it through a plan")]
struct Args {
    /// Passes over the training rows.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1000))]
    epochs: u32,
    /// Images per step.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1437))]
    batch: u32,
    /// Peak learning rate (cosine schedule per step).
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: Option<u32>,
    /// Seed of the initialization and of the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory for the checkpoints: after every epoch the train-time weights
    /// (`digits-train.safetensors`, PyTorch names) and the optimizer state
    /// (`digits-ema.safetensors`: their exponential moving average;
    /// `digits-optimizer.safetensors`: momentum buffers, the epoch and the average's update
    /// count), at the end the deploy
    /// weights (`digits-deploy.safetensors`).
    #[arg(long)]
    save: Option<PathBuf>,
    /// Continue from the checkpoints `--save` wrote in this directory (same flags otherwise).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Stop after this epoch (the schedule still spans `--epochs`; continue with `--resume`).
    #[arg(long)]
    stop_after: Option<u32>,
}

const TRAIN_FILE: &str = "digits-train.safetensors";
const EMA_FILE: &str = "digits-ema.safetensors";
const OPTIMIZER_FILE: &str = "digits-optimizer.safetensors";

/// Everything a run changes as it trains: what a checkpoint holds.
struct Training {
    model: Digits,
    sgd: Sgd,
    /// YOLOv7's exponential moving average of the weights, updated after every step.
    ema: Ema<Digits>,
}

impl Training {
    /// Saves the weights, their average and the optimizer's state after `epoch`.
    fn save(&self, dir: &std::path::Path, epoch: u32) -> rep::Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| rep::Error::Io { path: dir.to_owned(), source })?;
        StateDict::from_parameters(&self.model).save(dir.join(TRAIN_FILE))?;
        StateDict::from_parameters(&self.ema.model).save(dir.join(EMA_FILE))?;
        let mut state = StateDict::default();
        for (name, buffer) in self.sgd.momentum_buffers() {
            state.tensors.insert(format!("momentum_buffer.{name}"), buffer.clone());
        }
        for (name, count) in [("epoch", u64::from(epoch)), ("ema_updates", self.ema.updates)] {
            // Counts below 2²⁴ are exact in f32.
            state.tensors.insert(name.into(), ndarray::arr1(&[count as f32]).into_dyn());
        }
        state.save(dir.join(OPTIMIZER_FILE))
    }

    /// Loads what [`Training::save`] wrote; returns the last finished epoch.
    fn resume(&mut self, dir: &std::path::Path) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
        StateDict::load(dir.join(TRAIN_FILE))?.load_into(&mut self.model)?;
        StateDict::load(dir.join(EMA_FILE))?.load_into(&mut self.ema.model)?;
        let state = StateDict::load(dir.join(OPTIMIZER_FILE))?;
        let count = |name: &str| {
            let value = state.tensors.get(name).and_then(|e| e.iter().next().copied());
            value
                .filter(|v| v.fract() == 0.0 && (0.0..16_777_216.0).contains(v))
                .map(|v| v as u64)
                .ok_or_else(|| format!("the optimizer file has no valid `{name}` (a whole number below 2²⁴)"))
        };
        let (epoch, updates) = (count("epoch")?, count("ema_updates")?);
        self.ema.updates = updates;
        let buffers = state
            .tensors
            .into_iter()
            .filter_map(|(name, t)| name.strip_prefix("momentum_buffer.").map(|n| (n.to_owned(), t)))
            .collect();
        self.sgd.load_momentum_buffers(buffers)?;
        Ok(u32::try_from(epoch)?)
    }
}

/// The data set: images `[N, 1, 8, 8]` scaled by 1/16, and labels.
struct Split {
    images: Array4<f32>,
    labels: Vec<usize>,
}

impl Split {
    fn batch(&self, rows: &[usize]) -> (Array4<f32>, Vec<usize>) {
        (self.images.select(Axis(0), rows), rows.iter().map(|&r| self.labels[r]).collect())
    }
}

/// The digits shipped in `data/`: row `i` is a test row when `i % 5 == 4`.
fn load() -> Result<(Split, Split), Box<dyn std::error::Error + Send + Sync>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv.gz");
    let reader = BufReader::new(flate2::read::GzDecoder::new(std::fs::File::open(&path)?));
    let (mut train, mut test) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for (i, line) in reader.lines().enumerate() {
        let values: Vec<u32> = line?.split(',').map(str::parse).collect::<Result<_, _>>()?;
        if values.len() != 65 || values[64] > 9 {
            return Err(format!("{}: row {i} is not 64 pixels and a digit", path.display()).into());
        }
        let split = if i % 5 == 4 { &mut test } else { &mut train };
        split.0.extend(values[..64].iter().map(|&v| v as f32 / 16.0));
        split.1.push(values[64] as usize);
    }
    let split = |(pixels, labels): (Vec<f32>, Vec<usize>)| -> Result<Split, ndarray::ShapeError> {
        Ok(Split { images: Array4::from_shape_vec((labels.len(), 1, 8, 8), pixels)?, labels })
    };
    Ok((split(train)?, split(test)?))
}

fn predictions(logits: &Array2<f32>) -> Vec<usize> {
    logits
        .outer_iter()
        .map(|row| row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0)
        .collect()
}

fn accuracy(predicted: &[usize], labels: &[usize]) -> f64 {
    predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64
}

fn progress(steps: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    let style = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("a valid template");
    bar.set_style(style);
    bar
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let threads = args.threads.map_or(0, |t| t as usize); // 0: rayon's default, every core
    // Run inside the pool, so that the kernels' parallel loops start on a worker thread
    // instead of handing each one over from the main thread.
    rayon::ThreadPoolBuilder::new().num_threads(threads).build()?.install(|| run(args))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (train, test) = load()?;
    let model = Digits::new(&mut StdRng::seed_from_u64(args.seed))?;
    let steps_per_epoch = train.labels.len().div_ceil(args.batch as usize);
    let schedule =
        Schedule::WarmupCosine { base: args.lr, min: 0.0, warmup: 0, total: args.epochs as usize * steps_per_epoch };
    let mut run = Training { ema: Ema::new(&model, 0.9999), model, sgd: Sgd::new(args.lr, 0.9, 1e-4) };
    let done = match &args.resume {
        Some(dir) => {
            let done = run.resume(dir)?;
            say!("resumed from {} after epoch {done}", dir.display());
            done
        }
        None => 0,
    };
    let mut grads = Gradients::new();
    let mut step = done as usize * steps_per_epoch;
    let last = args.stop_after.map_or(args.epochs, |stop| stop.min(args.epochs));
    for epoch in done + 1..=last {
        let (started, bar) = (Instant::now(), progress(steps_per_epoch as u64));
        let (mut loss_sum, mut correct) = (0.0, 0);
        // Each epoch's order comes from the seed and the epoch alone, so a resumed run sees the
        // batches an uninterrupted one would have.
        let mut shuffle = StdRng::seed_from_u64(args.seed.wrapping_add(u64::from(epoch)));
        for rows in shuffled_batches(train.labels.len(), args.batch as usize, &mut shuffle) {
            let (x, labels) = train.batch(&rows);
            grads.clear();
            let (logits, cache) = run.model.forward_cached(&x)?;
            let (loss, dlogits) = cross_entropy(&logits, &labels, 0.0)?;
            run.model.backward(cache, &dlogits, &mut grads)?;
            run.sgd.set_learning_rate(schedule.at(step));
            run.sgd.step(&mut run.model, &grads)?;
            run.ema.update(&run.model)?;
            step += 1;
            loss_sum += loss * rows.len() as f64;
            correct += predictions(&logits).iter().zip(&labels).filter(|(p, l)| p == l).count();
            bar.inc(1);
            bar.set_message(format!("loss {loss:.4}"));
        }
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        let n = train.labels.len() as f64;
        say!(
            "epoch {epoch:>3}: loss {:.4}, train accuracy {:.1} %, {seconds:.2} s ({:.0} images/s)",
            loss_sum / n,
            100.0 * correct as f64 / n,
            n / seconds
        );
        if let Some(dir) = &args.save {
            run.save(dir, epoch)?;
        }
    }

    let trained = predictions(&run.model.forward(&test.images)?);
    say!("test accuracy (train-time form): {:.1} %", 100.0 * accuracy(&trained, &test.labels));
    let averaged = predictions(&run.ema.model.forward(&test.images)?);
    say!(
        "test accuracy (EMA of the weights, {} updates): {:.1} %",
        run.ema.updates,
        100.0 * accuracy(&averaged, &test.labels)
    );
    let fused = run.model.fuse()?;
    let plan = Plan::new(&fused, test.images.dim().into())?;
    let mut state = plan.state()?;
    let logits = plan.run(&mut state, test.images.view())?.into_dimensionality::<ndarray::Ix2>()?.to_owned();
    let deployed = predictions(&logits);
    let same = trained.iter().zip(&deployed).filter(|(a, b)| a == b).count();
    say!(
        "test accuracy (fused, planned):  {:.1} %; {same} of {} predictions identical",
        100.0 * accuracy(&deployed, &test.labels),
        test.labels.len()
    );
    if let Some(dir) = args.save {
        run.save(&dir, last.max(done))?;
        StateDict::from_parameters(&fused).save(dir.join("digits-deploy.safetensors"))?;
        say!("saved {}", dir.display());
    }
    if same != deployed.len() {
        return Err("the fused network's predictions differ from the trained one's".into());
    }
    Ok(())
}
