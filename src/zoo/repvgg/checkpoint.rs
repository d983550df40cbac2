//! PyTorch RepVGG checkpoints: the official and timm namings, train and deploy forms,
//! architecture inference from the shapes, and deploy export.

use super::{Arch, RepVgg, RepVggFused};
use crate::io::StateDict;
use crate::ndarray::{Array2, Array4};
use crate::{Error, Result};
use std::path::Path;
use std::str::FromStr;

/// Which implementation's state-dict names a checkpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// DingXiaoH/RepVGG: `stage0.rbr_dense.conv.weight`, `stage1.0.rbr_identity.running_var`,
    /// `linear.weight`; deploy `stage1.0.rbr_reparam.weight`.
    Official,
    /// timm's ByobNet: `stem.conv_kxk.conv.weight`, `stages.0.1.identity.running_var`,
    /// `head.fc.weight`; deploy `stages.0.0.reparam_conv.weight`.
    Timm,
}

/// Renamed path segments, official ↔ timm.
const SEGMENTS: &[(&str, &str)] = &[
    ("rbr_dense", "conv_kxk"),
    ("rbr_1x1", "conv_1x1"),
    ("rbr_identity", "identity"),
    ("rbr_reparam", "reparam_conv"),
    ("se", "attn"),
    ("down", "fc1"),
    ("up", "fc2"),
];

impl Naming {
    /// The naming of a state dict: timm's when it has `stem.*` or `stages.*` keys, the official
    /// one when it has `stage0.*`.
    pub fn detect(state: &StateDict) -> Result<Naming> {
        let keys = || state.tensors.keys();
        if keys().any(|k| k.starts_with("stem.") || k.starts_with("stages.")) {
            Ok(Naming::Timm)
        } else if keys().any(|k| k.starts_with("stage0.")) {
            Ok(Naming::Official)
        } else {
            Err(Error::Checkpoint(
                "not a RepVGG checkpoint: no `stage0.*` (official) or `stem.*` (timm) keys".to_owned(),
            ))
        }
    }

    /// A key in this naming, in the official naming.
    pub fn to_official(self, key: &str) -> String {
        match self {
            Naming::Official => key.to_owned(),
            Naming::Timm => rename_key(key, false),
        }
    }

    /// An official key in this naming.
    pub fn from_official(self, key: &str) -> String {
        match self {
            Naming::Official => key.to_owned(),
            Naming::Timm => rename_key(key, true),
        }
    }
}

/// The leading path segments that differ between the namings, rewritten, and how many were
/// consumed: `stage0` ↔ `stem`, `stage{k}` ↔ `stages.{k−1}`, `linear` ↔ `head.fc`.
fn rename_prefix(parts: &[&str], to_timm: bool) -> (Vec<String>, usize) {
    let stage = |s: &str| s.strip_prefix("stage").and_then(|k| k.parse::<usize>().ok());
    match (to_timm, parts) {
        (true, ["stage0", ..]) => (vec!["stem".into()], 1),
        (true, [s, ..]) if stage(s).is_some() => {
            (vec!["stages".into(), stage(s).unwrap_or(1).saturating_sub(1).to_string()], 1)
        }
        (true, ["linear", ..]) => (vec!["head".into(), "fc".into()], 1),
        (false, ["stem", ..]) => (vec!["stage0".into()], 1),
        (false, ["stages", k, ..]) if k.parse::<usize>().is_ok() => {
            (vec![format!("stage{}", k.parse::<usize>().unwrap_or(0) + 1)], 2)
        }
        (false, ["head", "fc", ..]) => (vec!["linear".into()], 2),
        _ => (Vec::new(), 0),
    }
}

/// A whole key from one naming to the other (`to_timm` gives the direction).
fn rename_key(key: &str, to_timm: bool) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    let (mut out, used) = rename_prefix(&parts, to_timm);
    for segment in &parts[used..] {
        let renamed = SEGMENTS.iter().find_map(|&(official, timm)| match to_timm {
            true if *segment == official => Some(timm),
            false if *segment == timm => Some(official),
            _ => None,
        });
        out.push(renamed.unwrap_or(segment).to_owned());
    }
    out.join(".")
}

impl FromStr for Naming {
    type Err = Error;

    fn from_str(s: &str) -> Result<Naming> {
        match s {
            "official" => Ok(Naming::Official),
            "timm" => Ok(Naming::Timm),
            other => Err(Error::Architecture(format!("unknown naming `{other}`; expected official or timm"))),
        }
    }
}

pub use crate::zoo::checkpoint::Form;

/// A RepVGG checkpoint, its keys in the official naming.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The tensors, renamed to the official naming, `module.` stripped.
    pub state: StateDict,
    /// The naming the file used.
    pub naming: Naming,
    /// Train-time or deploy weights.
    pub form: Form,
}

/// A RepVGG built from a checkpoint, in the form the checkpoint had (train-time: `rbr_dense`,
/// `rbr_1x1`, `rbr_identity` per block; deploy: `rbr_reparam`).
pub type Loaded = crate::zoo::checkpoint::Loaded<RepVgg>;

impl Loaded {
    /// Logits `[N, classes]` (eval mode).
    pub fn forward(&self, x: &Array4<f32>) -> Result<Array2<f32>> {
        match self {
            Loaded::Train(model) => model.forward(x),
            Loaded::Deploy(model) => model.forward(x),
        }
    }
}

impl Checkpoint {
    /// Reads a safetensors checkpoint and detects its naming and form.
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
        Checkpoint::from_state(StateDict::load(path)?)
    }

    /// Detects naming and form of a state dict and renames its keys to the official naming.
    pub fn from_state(state: StateDict) -> Result<Checkpoint> {
        let state = state.strip_prefix("module");
        let naming = Naming::detect(&state)?;
        let tensors = state.tensors.into_iter().map(|(k, v)| (naming.to_official(&k), v)).collect();
        let counters = state.counters.into_iter().map(|(k, v)| (naming.to_official(&k), v)).collect();
        let state = StateDict { tensors, counters };
        let form = if state.tensors.keys().any(|k| k.contains(".rbr_reparam.")) { Form::Deploy } else { Form::Train };
        Ok(Checkpoint { state, naming, form })
    }

    fn shape(&self, key: &str) -> Option<&[usize]> {
        self.state.tensors.get(key).map(|t| t.shape())
    }

    /// The kernel of the block at `prefix`: `[C_out, C_in/g, 3, 3]`, holding values.
    ///
    /// Only kernels whose values are in the file are used, so every size inferred from them is
    /// bounded by the file's length (a zero-element tensor could claim any channel count).
    fn kernel_shape(&self, prefix: &str) -> Result<&[usize]> {
        let (train, deploy) = (format!("{prefix}.rbr_dense.conv.weight"), format!("{prefix}.rbr_reparam.weight"));
        let shape = self.shape(&train).or_else(|| self.shape(&deploy)).filter(|s| s.len() == 4).ok_or_else(|| {
            Error::Checkpoint(format!(
                "cannot infer the architecture: no 4-D `{train}` or `{deploy}` in the checkpoint"
            ))
        })?;
        if shape[2..] != [3, 3] || shape.contains(&0) {
            return Err(Error::Checkpoint(format!(
                "cannot infer the architecture: the kernel of `{prefix}` has shape {shape:?}; \
                 expected [C_out, C_in/groups, 3, 3] with no zero dimension"
            )));
        }
        Ok(shape)
    }

    /// The architecture, read off the keys (blocks per stage) and shapes (widths, groups, classes).
    pub fn infer_arch(&self) -> Result<Arch> {
        let mut depths = [0usize; 4];
        for (stage, depth) in depths.iter_mut().enumerate() {
            let prefix = format!("stage{}.", stage + 1);
            *depth = self
                .state
                .tensors
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix)?.split('.').next()?.parse::<usize>().ok())
                .max()
                .map_or(0, |i| i + 1);
        }
        let mut widths = [0usize; 5];
        let mut groups = Vec::new();
        let mut cin = 3;
        for stage in 0..5 {
            let blocks = if stage == 0 { 1 } else { depths[stage - 1] };
            for index in 0..blocks {
                let prefix = if stage == 0 { "stage0".to_owned() } else { format!("stage{stage}.{index}") };
                let shape = self.kernel_shape(&prefix)?;
                if shape[1] == 0 || cin % shape[1] != 0 {
                    return Err(Error::Checkpoint(format!(
                        "cannot infer the architecture: `{prefix}` has kernel {shape:?} for {cin} input channels"
                    )));
                }
                groups.push(cin / shape[1]);
                widths[stage] = shape[0];
                cin = shape[0];
            }
        }
        let classes = match self.shape("linear.weight") {
            Some([classes, features]) if *features == widths[4] => *classes,
            other => {
                return Err(Error::Checkpoint(format!(
                    "cannot infer the architecture: `linear.weight` should be [classes, {}], found {other:?}",
                    widths[4]
                )));
            }
        };
        let mut arch = Arch::new("inferred", depths, widths, groups, classes)?;
        arch.se = self.state.tensors.contains_key("stage0.se.down.weight");
        Ok(arch.recognise())
    }

    /// Builds the model of `arch` (inferred when `None`) and loads the weights; every missing,
    /// unexpected or mis-shaped key is reported together and nothing is half-loaded.
    pub fn build(&self, arch: Option<&Arch>) -> Result<(Arch, Loaded)> {
        let arch = match (arch, self.infer_arch()) {
            (Some(wanted), Ok(found)) if !wanted.same_layout(&found) => {
                return Err(Error::Checkpoint(format!(
                    "the checkpoint is not RepVGG-{}: it has depths {:?}, widths {:?} (RepVGG-{} has {:?}, {:?}){}",
                    wanted.name,
                    found.depths,
                    found.widths,
                    wanted.name,
                    wanted.depths,
                    wanted.widths,
                    if found.name != "inferred" {
                        format!("; it looks like RepVGG-{}", found.name)
                    } else {
                        String::new()
                    }
                )));
            }
            (Some(wanted), _) => wanted.clone(),
            (None, found) => found?,
        };
        let loaded = match self.form {
            Form::Train => {
                let mut rng = <crate::rand::rngs::StdRng as crate::rand::SeedableRng>::seed_from_u64(0);
                let mut model = RepVgg::new(&arch, &mut rng)?;
                self.state.load_into(&mut model)?;
                Loaded::Train(Box::new(model))
            }
            Form::Deploy => {
                // The fused skeleton directly: no train-time model is built and fused.
                let mut fused = RepVggFused::new(&arch)?;
                self.state.load_into(&mut fused)?;
                Loaded::Deploy(Box::new(fused))
            }
        };
        Ok((arch, loaded))
    }
}

/// Writes deploy weights in either naming: loadable by the official model built with
/// `deploy=True`, or by timm's after `reparameterize_model`.
///
/// The file is written atomically, and only when every number is finite.
pub fn save_deploy(model: &RepVggFused, path: impl AsRef<Path>, naming: Naming) -> Result<()> {
    crate::io::check_finite(model)?;
    let state = StateDict::from_parameters(model);
    let tensors = state.tensors.into_iter().map(|(k, v)| (naming.from_official(&k), v)).collect();
    StateDict { tensors, ..StateDict::default() }.save(path)
}
