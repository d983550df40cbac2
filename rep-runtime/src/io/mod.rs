//! Weight I/O: safetensors checkpoints to and from any [`Parameters`] value.
//!
//! Loading validates the whole checkpoint against the model first and reports every missing,
//! unexpected or mis-shaped key in one [`Mismatch`]; only when there is none are the values
//! copied, so a failed load leaves the model untouched.

mod files;
mod npy;

pub use files::{ensure_distinct, write_atomic};
pub use npy::{read_npy, write_npy};

use crate::error::{Error, Result};
use crate::layers::Parameters;
use ndarray::ArrayD;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Refuses a model holding a NaN or ±∞ in any parameter or buffer, naming the first one by its
/// dotted name and flat index (what fusing and saving check before they start).
pub fn check_finite(model: &dyn Parameters) -> Result<()> {
    let mut found = Ok(());
    model.visit("", &mut |name, t| {
        if found.is_ok() {
            found = Error::check_finite(name, t.iter());
        }
    });
    found
}

/// Checkpoint entries that describe bookkeeping, not numbers, and are skipped on load
/// (PyTorch's int64 `num_batches_tracked`).
const IGNORED_SUFFIXES: &[&str] = &[".num_batches_tracked"];

/// The tensors of a checkpoint, by name, converted to `f32`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDict {
    /// Every tensor, by its dotted name.
    pub tensors: BTreeMap<String, ArrayD<f32>>,
}

impl StateDict {
    /// Reads a safetensors file. F32, F64, F16 and BF16 entries become `f32`; integer entries
    /// are kept only if they are bookkeeping (`num_batches_tracked`), which is dropped.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses safetensors bytes; `origin` names them in errors.
    pub fn from_bytes(bytes: &[u8], origin: impl AsRef<Path>) -> Result<Self> {
        let origin = origin.as_ref();
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Safetensors { path: origin.to_owned(), reason: e.to_string() })?;
        let mut tensors = BTreeMap::new();
        for (name, view) in file.tensors() {
            if is_ignored(&name) {
                continue;
            }
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => chunks::<4>(data).map(f32::from_le_bytes).collect(),
                Dtype::F64 => chunks::<8>(data).map(|b| f64::from_le_bytes(b) as f32).collect(),
                Dtype::F16 => chunks::<2>(data).map(|b| half::f16::from_le_bytes(b).to_f32()).collect(),
                Dtype::BF16 => chunks::<2>(data).map(|b| half::bf16::from_le_bytes(b).to_f32()).collect(),
                other => return Err(Error::Dtype { key: name, dtype: format!("{other:?}") }),
            };
            let array = ArrayD::from_shape_vec(view.shape().to_vec(), values)
                .map_err(|e| Error::Safetensors { path: origin.to_owned(), reason: format!("{name}: {e}") })?;
            tensors.insert(name, array);
        }
        Ok(StateDict { tensors })
    }

    /// Collects a model's parameters and buffers.
    pub fn from_parameters(model: &dyn Parameters) -> Self {
        let mut tensors = BTreeMap::new();
        model.visit("", &mut |name, t| {
            tensors.insert(name.to_owned(), t.to_owned());
        });
        StateDict { tensors }
    }

    /// Writes the tensors as an F32 safetensors file, atomically ([`write_atomic`]): an
    /// existing file is replaced only once the new one is complete on disk.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_bytes().map_err(|reason| Error::Safetensors { path: path.to_owned(), reason })?;
        write_atomic(path, |file| std::io::Write::write_all(file, &bytes))
    }

    /// The tensors as F32 safetensors bytes.
    pub fn to_bytes(&self) -> std::result::Result<Vec<u8>, String> {
        let raw: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(name, t)| (name.clone(), t.shape().to_vec(), t.iter().flat_map(|v| v.to_le_bytes()).collect()))
            .collect();
        let views = raw
            .iter()
            .map(|(name, shape, data)| {
                safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        safetensors::serialize(views, None).map_err(|e| e.to_string())
    }

    /// Copies every tensor into `model` after checking that names and shapes match exactly and
    /// that every value is finite; on any problem nothing is copied and the problem is reported
    /// (every missing, unexpected or mis-shaped key at once; the first non-finite value by key
    /// and index). A model with two parameters of one name is refused, never half-loaded.
    pub fn load_into(&self, model: &mut dyn Parameters) -> Result<()> {
        let mut mismatch = Mismatch::default();
        let mut expected = BTreeMap::new();
        let mut duplicate = None;
        model.visit("", &mut |name, t| {
            if expected.insert(name.to_owned(), t.shape().to_vec()).is_some() {
                duplicate.get_or_insert_with(|| name.to_owned());
            }
        });
        if let Some(name) = duplicate {
            return Err(Error::Checkpoint(format!(
                "the model has two parameters named `{name}`, so no checkpoint can load into it"
            )));
        }
        for (name, shape) in &expected {
            match self.tensors.get(name) {
                None => mismatch.missing.push(name.clone()),
                Some(t) if t.shape() != shape.as_slice() => {
                    mismatch.wrong_shape.push((name.clone(), shape.clone(), t.shape().to_vec()));
                }
                Some(_) => {}
            }
        }
        mismatch.unexpected = self.tensors.keys().filter(|k| !expected.contains_key(*k)).cloned().collect();
        if !mismatch.is_empty() {
            return Err(Error::StateDict(mismatch));
        }
        for name in expected.keys() {
            Error::check_finite(name, self.tensors[name].iter())?;
        }
        model.visit_mut("", &mut |name, mut t| {
            // Names and shapes were checked above, for this very model.
            if let Some(source) = self.tensors.get(name).filter(|s| s.shape() == t.shape()) {
                t.assign(source);
            }
        });
        Ok(())
    }

    /// A view of the names with `prefix.` removed from those that have it (e.g. `module.`
    /// from a DataParallel checkpoint); names without it are kept as they are.
    pub fn strip_prefix(mut self, prefix: &str) -> Self {
        let dotted = format!("{prefix}.");
        self.tensors = std::mem::take(&mut self.tensors)
            .into_iter()
            .map(|(k, v)| (k.strip_prefix(&dotted).map(str::to_owned).unwrap_or(k), v))
            .collect();
        self
    }
}

fn is_ignored(name: &str) -> bool {
    IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn chunks<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    data.chunks_exact(N).map(|c| c.try_into().expect("exact chunk"))
}

/// Everything that keeps a checkpoint from loading into a model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Names the model has and the checkpoint lacks.
    pub missing: Vec<String>,
    /// Names the checkpoint has and the model lacks.
    pub unexpected: Vec<String>,
    /// `(name, expected shape, found shape)`.
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl Mismatch {
    /// True when checkpoint and model agree.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
}

/// Lines shown per kind of problem before the rest is counted.
const SHOWN: usize = 8;

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checkpoint does not match the model ({} missing, {} unexpected, {} wrong shape); nothing was loaded",
            self.missing.len(),
            self.unexpected.len(),
            self.wrong_shape.len()
        )?;
        let mut list = |what: &str, lines: Vec<String>| -> fmt::Result {
            for line in lines.iter().take(SHOWN) {
                write!(f, "\n  {what} {line}")?;
            }
            if lines.len() > SHOWN {
                write!(f, "\n  … and {} more", lines.len() - SHOWN)?;
            }
            Ok(())
        };
        list("missing key:", self.missing.clone())?;
        list("unexpected key:", self.unexpected.clone())?;
        let wrong = self.wrong_shape.iter().map(|(n, e, g)| format!("{n}: expected {e:?}, found {g:?}")).collect();
        list("wrong shape for", wrong)
    }
}
