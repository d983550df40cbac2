//! What the `repvgg` command does, as library functions: convert a train checkpoint to its
//! deploy form with an equivalence check, and run a checkpoint on an `.npy` input. Each writes
//! atomically, refuses an output that is one of its inputs, and returns a report.

use super::{Arch, Checkpoint, Form, Loaded, Naming, save_deploy};
use crate::compare::{Difference, difference};
use crate::ndarray::{Array2, Array4, Ix2};
use crate::plan::Plan;
use crate::rand::{Rng, SeedableRng, rngs::StdRng};
use crate::{Error, Reparameterize, Result};
use std::path::Path;

/// The largest relative difference between the fused and the train-time model that
/// [`convert`] accepts (the project's tolerance).
pub const CONVERT_TOLERANCE: f32 = 1e-5;

/// A checkpoint built into a model: the architecture, the model in the checkpoint's form, and
/// the checkpoint itself (its naming and form).
pub struct Opened {
    /// The architecture, inferred or as named.
    pub arch: Arch,
    /// The model.
    pub model: Loaded,
    /// The checkpoint it came from.
    pub checkpoint: Checkpoint,
}

/// Loads a checkpoint and builds its model; a named architecture (`"A0"`, …) takes its class
/// count from the checkpoint and is checked against it.
pub fn open(weights: &Path, arch: Option<&str>) -> Result<Opened> {
    let checkpoint = Checkpoint::load(weights)?;
    let named = arch
        .map(|name| Arch::named(name, 1)?.with_classes(checkpoint.infer_arch().map_or(1000, |a| a.classes)))
        .transpose()?;
    let (arch, model) = checkpoint.build(named.as_ref())?;
    Ok(Opened { arch, model, checkpoint })
}

/// What [`convert`] did.
#[derive(Clone, Debug)]
pub struct Conversion {
    /// The architecture converted.
    pub arch: Arch,
    /// The naming the deploy file was written in.
    pub naming: Naming,
    /// Fused against train-time logits on a random 2×3×64×64 input.
    pub check: Difference,
}

/// Fuses the train-time checkpoint `input` and writes its deploy form to `output` in `naming`,
/// after checking the fused model against the train-time one on a random input (within
/// [`CONVERT_TOLERANCE`], NaN failing). Nothing is written when anything fails, and an existing
/// `output` is replaced only by a complete file.
pub fn convert(input: &Path, output: &Path, arch: Option<&str>, naming: Naming) -> Result<Conversion> {
    crate::io::ensure_distinct(output, &[input])?;
    let Opened { arch, model, .. } = open(input, arch)?;
    let Loaded::Train(model) = model else {
        return Err(Error::Checkpoint(format!("{} is already a deploy checkpoint", input.display())));
    };
    let fused = model.fuse()?;
    let mut rng = StdRng::seed_from_u64(0);
    let x = Array4::from_shape_simple_fn((2, 3, 64, 64), || rng.random_range(-1.0f32..1.0));
    let check = difference(&fused.forward(&x)?, &model.forward(&x)?)?;
    if !check.within(CONVERT_TOLERANCE) {
        return Err(Error::Checkpoint(format!(
            "the fused model differs from the train-time model by {:.3e} (relative); nothing written",
            check.relative()
        )));
    }
    save_deploy(&fused, output, naming)?;
    Ok(Conversion { arch, naming, check })
}

/// What [`infer`] did.
#[derive(Clone, Debug)]
pub struct Inference {
    /// The architecture run.
    pub arch: Arch,
    /// The naming the checkpoint used.
    pub naming: Naming,
    /// The form the weights were in (train-time weights are fused first).
    pub form: Form,
    /// The logits written, `[N, classes]`.
    pub logits: Array2<f32>,
}

/// Runs the checkpoint `weights` (either form, either naming; fused and planned for the
/// input's shape) on the NCHW `f32` `.npy` file `input` and writes the logits to `output`.
pub fn infer(weights: &Path, input: &Path, output: &Path, arch: Option<&str>) -> Result<Inference> {
    crate::io::ensure_distinct(output, &[input, weights])?;
    let Opened { arch, model, checkpoint } = open(weights, arch)?;
    // The weights now live in `model`, and the plan takes its own copy: neither the file's
    // tensors nor the model stay alive beside the plan (peak memory).
    let (naming, form) = (checkpoint.naming, checkpoint.form);
    drop(checkpoint);
    let x: Array4<f32> = crate::io::read_npy(input)?;
    let plan = Plan::new(&model.into_deploy()?, x.dim().into())?;
    let mut state = plan.state()?;
    let logits = plan
        .run(&mut state, x.view())?
        .into_dimensionality::<Ix2>()
        .map_err(|e| Error::Checkpoint(format!("the network's output is not [N, classes]: {e}")))?;
    let logits = logits.to_owned();
    crate::io::write_npy(output, &logits)?;
    Ok(Inference { arch, naming, form, logits })
}
