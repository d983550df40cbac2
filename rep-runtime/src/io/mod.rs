//! Weight I/O: safetensors checkpoints to and from any [`Parameters`] value.
//!
//! Loading validates the whole checkpoint against the model first and reports every missing,
//! unexpected or mis-shaped key in one [`Mismatch`]; only when there is none are the values
//! copied, so a failed load leaves the model untouched.

mod files;
mod keys;
mod npy;

pub use files::{ensure_distinct, write_atomic};
pub use keys::KeyMap;
pub use npy::{read_npy, write_npy};

pub use crate::error::Mismatch;
use crate::error::{Error, Result};
use crate::layers::Parameters;
use ndarray::ArrayD;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
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

/// The name of PyTorch's integer buffers: BatchNorm's count of training batches, an int64.
const COUNTER: &str = "num_batches_tracked";

/// The tensors of a checkpoint, by name: the numbers converted to `f32`, and the integer
/// counters (BatchNorm's `num_batches_tracked`) kept as they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDict {
    /// Every floating-point tensor, by its dotted name.
    pub tensors: BTreeMap<String, ArrayD<f32>>,
    /// Every `…num_batches_tracked` counter, by its dotted name (int64 scalars in the file).
    pub counters: BTreeMap<String, i64>,
}

impl StateDict {
    /// Reads a safetensors file. F32, F64, F16 and BF16 entries become `f32`; `num_batches_tracked`
    /// entries (one integer each) become counters; other dtypes are refused.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (bytes, _) = files::read_whole::<u8>(path)?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses safetensors bytes; `origin` names them in errors.
    pub fn from_bytes(bytes: &[u8], origin: impl AsRef<Path>) -> Result<Self> {
        let origin = origin.as_ref();
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Safetensors { path: origin.to_owned(), reason: e.to_string() })?;
        let (mut tensors, mut counters) = (BTreeMap::new(), BTreeMap::new());
        for (name, view) in file.tensors() {
            let data = view.data();
            if is_counter(&name) {
                let count = match (view.dtype(), data.len()) {
                    (Dtype::I64, 8) => i64::from_le_bytes(data.try_into().expect("8 bytes")),
                    (Dtype::I32, 4) => i32::from_le_bytes(data.try_into().expect("4 bytes")).into(),
                    (dtype, _) => {
                        return Err(Error::Safetensors {
                            path: origin.to_owned(),
                            reason: format!("{name}: expected one I64, found {dtype:?} of shape {:?}", view.shape()),
                        });
                    }
                };
                counters.insert(name, count);
                continue;
            }
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
        Ok(StateDict { tensors, counters })
    }

    /// Collects a model's parameters, buffers and counters.
    pub fn from_parameters(model: &dyn Parameters) -> Self {
        let (mut tensors, mut counters) = (BTreeMap::new(), BTreeMap::new());
        model.visit("", &mut |name, t| {
            tensors.insert(name.to_owned(), t.to_owned());
        });
        model.visit_counters("", &mut |name, count| {
            counters.insert(name.to_owned(), i64::try_from(count).unwrap_or(i64::MAX));
        });
        StateDict { tensors, counters }
    }

    /// Writes the tensors as an F32 safetensors file, atomically ([`write_atomic`]): an
    /// existing file is replaced only once the new one is complete on disk.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_bytes().map_err(|reason| Error::Safetensors { path: path.to_owned(), reason })?;
        write_atomic(path, |file| std::io::Write::write_all(file, &bytes))
    }

    /// The tensors as F32 safetensors bytes, the counters as I64 scalars (as PyTorch saves them).
    pub fn to_bytes(&self) -> std::result::Result<Vec<u8>, String> {
        let floats = self.tensors.iter().map(|(name, t)| {
            (name.clone(), Dtype::F32, t.shape().to_vec(), t.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
        });
        let counters =
            self.counters.iter().map(|(name, c)| (name.clone(), Dtype::I64, Vec::new(), c.to_le_bytes().to_vec()));
        let raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = floats.chain(counters).collect();
        let views = raw
            .iter()
            .map(|(name, dtype, shape, data)| {
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).map(|v| (name.clone(), v))
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
        let mut counters = Vec::new();
        model.visit_counters("", &mut |name, _| counters.push(name.to_owned()));
        for name in &counters {
            if let Some(&count) = self.counters.get(name)
                && count < 0
            {
                return Err(Error::Checkpoint(format!("{name} is {count}; a count of batches cannot be negative")));
            }
        }
        model.visit_mut("", &mut |name, mut t| {
            // Names and shapes were checked above, for this very model.
            if let Some(source) = self.tensors.get(name).filter(|s| s.shape() == t.shape()) {
                t.assign(source);
            }
        });
        // Counters are optional (older checkpoints lack them): those present are kept.
        model.visit_counters_mut("", &mut |name, count| {
            if let Some(&stored) = self.counters.get(name) {
                *count = stored.unsigned_abs();
            }
        });
        Ok(())
    }

    /// A view of the names with `prefix.` removed from those that have it (e.g. `module.`
    /// from a DataParallel checkpoint); names without it are kept as they are.
    pub fn strip_prefix(mut self, prefix: &str) -> Self {
        let dotted = format!("{prefix}.");
        let strip = |k: String| k.strip_prefix(&dotted).map(str::to_owned).unwrap_or(k);
        self.tensors = std::mem::take(&mut self.tensors).into_iter().map(|(k, v)| (strip(k), v)).collect();
        self.counters = std::mem::take(&mut self.counters).into_iter().map(|(k, v)| (strip(k), v)).collect();
        self
    }
}

fn is_counter(name: &str) -> bool {
    name == COUNTER || name.ends_with(&format!(".{COUNTER}"))
}

fn chunks<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    data.chunks_exact(N).map(|c| c.try_into().expect("exact chunk"))
}
