//! Official YOLOv7 checkpoints saved as safetensors: the configuration inferred from the keys
//! and shapes (variant, width, classes), train-time or fused form, loaded under the official
//! names.
//!
//! The official `.pt` files pickle the whole model; three lines of PyTorch write its state dict
//! as safetensors (run inside the official repository, so that the pickle can be read):
//!
//! ```python
//! import torch, safetensors.torch
//! model = torch.load("yolov7.pt", map_location="cpu", weights_only=False)["model"].float()
//! safetensors.torch.save_file(model.state_dict(), "yolov7.safetensors")
//! ```

use super::{Config, Variant, Yolov7, Yolov7Fused};
use crate::io::StateDict;
use crate::ndarray::Array3;
use crate::ndarray::Array4;
use crate::{Error, Reparameterize, Result};
use std::path::Path;

pub use crate::zoo::checkpoint::Form;

/// A YOLOv7 built from a checkpoint, in the form the checkpoint had (train-time: `Conv` with
/// `bn`, RepConv branches; fused: `conv.bias`, `rbr_reparam`).
pub type Loaded = crate::zoo::checkpoint::Loaded<Yolov7>;

impl Loaded {
    /// Eval-mode detections `z` `[B, Σ 3·H·W, 5 + classes]`.
    pub fn forward(&self, x: &Array4<f32>) -> Result<Array3<f32>> {
        match self {
            Loaded::Train(model) => model.forward(x),
            Loaded::Deploy(model) => model.forward(x),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        match self {
            Loaded::Train(model) => model.config(),
            Loaded::Deploy(model) => model.config(),
        }
    }
}

/// Reads a safetensors checkpoint, infers its configuration and form, and loads it (every key,
/// shape and value checked first; nothing is half-loaded).
pub fn load(path: impl AsRef<Path>) -> Result<Loaded> {
    from_state(&StateDict::load(path)?)
}

/// Builds the network a state dict describes and loads it.
pub fn from_state(state: &StateDict) -> Result<Loaded> {
    let (config, form) = configuration(state)?;
    let held = state.tensors.values().fold(0u64, |sum, t| sum.saturating_add(t.len() as u64));
    let needed = config.variant.layout().conv_weights(&config.scaling);
    if held < needed {
        return Err(Error::Checkpoint(format!(
            "the checkpoint holds {held} values, but a {} of width {} has {needed} convolution weights; \
             its shapes claim a network it does not hold",
            config.variant.name(),
            config.scaling.width
        )));
    }
    Ok(match form {
        Form::Train => {
            let mut model =
                Yolov7::new(config, &mut <crate::rand::rngs::StdRng as crate::rand::SeedableRng>::seed_from_u64(0))?;
            state.load_into(&mut model)?;
            Loaded::Train(Box::new(model))
        }
        Form::Deploy => {
            let mut model = Yolov7Fused::new(config)?;
            state.load_into(&mut model)?;
            Loaded::Deploy(Box::new(model))
        }
    })
}

/// The configuration and form of a state dict, read off its keys and shapes.
///
/// * The variant from the head's index (`model.105.anchors`: YOLOv7; `model.77.anchors`: tiny).
/// * The width from the widest layer's output channels (`model.50.conv.weight` in YOLOv7, whose
///   base width is 1024; `model.28` in tiny, 512): `width = channels / base`. That layer's
///   kernel must hold values and be `[C, C, 1, 1]` (`[C, 2C, 1, 1]` in tiny), so every size
///   built from it is bounded by the file's length.
/// * The classes from the head's first conv: `na · (classes + 5)` outputs.
pub fn configuration(state: &StateDict) -> Result<(Config, Form)> {
    let head = head_index(state)?;
    let variant = match head {
        105 => Variant::Yolov7,
        77 => Variant::Tiny,
        other => {
            return Err(Error::Checkpoint(format!(
                "the detection head is `model.{other}`; YOLOv7 has it at model.105, YOLOv7-tiny at model.77"
            )));
        }
    };
    let shape = |key: &str| state.tensors.get(key).map(|t| t.shape().to_vec());
    let (widest, base, base_in) = variant.layout().widest;
    let key = format!("model.{widest}.conv.weight");
    let channels = match shape(&key).as_deref() {
        Some(&[c, c_in, 1, 1]) if c > 0 && c % 8 == 0 && c_in.checked_mul(base) == Some(c * base_in) => c,
        other => {
            return Err(Error::Checkpoint(format!(
                "cannot infer the width: `{key}` has shape {other:?}; expected [C, {}·C, 1, 1] with C a positive multiple of 8",
                base_in / base
            )));
        }
    };
    let anchors_key = format!("model.{head}.anchors");
    let per_level = match shape(&anchors_key).as_deref() {
        Some(&[3, na, 2]) if na > 0 => na,
        other => return Err(Error::Checkpoint(format!("`{anchors_key}` has shape {other:?}; expected [3, na, 2]"))),
    };
    let conv_key = format!("model.{head}.m.0.weight");
    let classes = match shape(&conv_key).as_deref() {
        Some(&[outputs, _, 1, 1]) if outputs % per_level == 0 && outputs / per_level > 5 => outputs / per_level - 5,
        other => {
            return Err(Error::Checkpoint(format!(
                "`{conv_key}` has shape {other:?}; expected [{per_level}·(classes + 5), C, 1, 1]"
            )));
        }
    };
    let mut config = Config::new(variant, channels as f64 / base as f64, classes)?;
    if per_level != 3 {
        let anchors = config.anchors.levels.iter_mut();
        anchors.for_each(|(_, level)| level.resize(per_level, (1.0, 1.0)));
    }
    let form = match (state.tensors.contains_key("model.0.bn.weight"), state.tensors.contains_key("model.0.conv.bias"))
    {
        (true, false) => Form::Train,
        (false, true) => Form::Deploy,
        _ => {
            return Err(Error::Checkpoint(
                "neither a train-time (`model.0.bn.weight`) nor a fused (`model.0.conv.bias`) YOLOv7 checkpoint".into(),
            ));
        }
    };
    Ok((config, form))
}

/// The index `N` of the `model.N.anchors` key.
fn head_index(state: &StateDict) -> Result<usize> {
    let heads: Vec<usize> =
        state.tensors.keys().filter_map(|k| k.strip_prefix("model.")?.strip_suffix(".anchors")?.parse().ok()).collect();
    match heads[..] {
        [head] => Ok(head),
        _ => Err(Error::Checkpoint(format!(
            "not a YOLOv7 checkpoint: expected one `model.N.anchors` key (the detection head), found {}",
            heads.len()
        ))),
    }
}

/// The largest relative difference between the fused and the train-time network that
/// [`convert`] accepts. A deep network carries f32 rounding to its outputs (the official code's
/// own fused YOLOv7 differs from its train-time form by about 4e-5 relative on a network whose
/// BatchNorm statistics come from data), so the bound is 1e-4 rather than the 1e-5 that holds
/// per block.
pub const CONVERT_TOLERANCE: f32 = 1e-4;

/// What [`convert`] did.
#[derive(Clone, Debug)]
pub struct Conversion {
    /// The configuration converted.
    pub config: Config,
    /// Fused against train-time detections on a random 1×3×64×64 input.
    pub check: crate::compare::Difference,
}

/// Fuses the train-time checkpoint `input` and writes its fused form under the official names
/// (those the official `Model.fuse()` leaves) to `output`, after checking the fused network
/// against the train-time one. Nothing is written when anything fails; an existing `output` is
/// replaced only by a complete file, and never when it is `input`.
pub fn convert(input: &Path, output: &Path) -> Result<Conversion> {
    crate::io::ensure_distinct(output, &[input])?;
    let Loaded::Train(model) = load(input)? else {
        return Err(Error::Checkpoint(format!("{} is already a fused checkpoint", input.display())));
    };
    let fused = model.fuse()?;
    let mut rng = <crate::rand::rngs::StdRng as crate::rand::SeedableRng>::seed_from_u64(0);
    let x = Array4::from_shape_simple_fn((1, 3, 64, 64), || crate::rand::Rng::random_range(&mut rng, 0.0f32..1.0));
    let check = crate::compare::difference(&fused.forward(&x)?, &model.forward(&x)?)?;
    if !check.within(CONVERT_TOLERANCE) {
        return Err(Error::Checkpoint(format!(
            "the fused network differs from the train-time network by {:.3e} (relative); nothing written",
            check.relative()
        )));
    }
    StateDict::from_parameters(&fused).save(output)?;
    Ok(Conversion { config: model.config().clone(), check })
}

/// Runs the checkpoint `weights` (either form; fused, then planned for the input's shape) on the
/// NCHW `f32` `.npy` file `input` and writes the detections `z` `[B, Σ 3·H·W, 5 + classes]` to
/// `output`; returns the configuration and form.
pub fn infer(weights: &Path, input: &Path, output: &Path) -> Result<(Config, Form)> {
    crate::io::ensure_distinct(output, &[input, weights])?;
    let loaded = load(weights)?;
    let form = loaded.form();
    let config = loaded.config().clone();
    let x: Array4<f32> = crate::io::read_npy(input)?;
    let fused = loaded.into_deploy()?;
    let plan = fused.plan(x.dim().into(), crate::plan::KernelChoice::Auto)?;
    // The plan holds its own weights: only the anchors outlive the model (peak memory).
    let anchors = fused.head.anchors.to_anchors();
    drop(fused);
    let z = super::planned_detections(&plan, &mut plan.state()?, x.view(), &anchors)?;
    crate::io::write_npy(output, &z)?;
    Ok((config, form))
}
