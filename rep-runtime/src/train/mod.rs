//! Training: backward passes, gradients by name, losses and optimizers.
//!
//! Every layer that learns implements [`Train`]: a train-mode forward that also returns what
//! its backward needs (its *cache*: the input, or BN's normalized values; held by the caller,
//! never hidden in the layer), and a backward that adds `dL/dθ` of each parameter to
//! [`Gradients`] under the parameter's dotted name and returns `dL/dx`. `#[rep::block]` and
//! `#[rep::model]` generate both for their types by composing these, in reverse order for the
//! backward: no run-time graph, no tape.
//!
//! ```text
//! let (logits, cache) = model.forward_cached(&x)?;        // train mode: batch statistics
//! let (loss, dlogits) = cross_entropy(&logits, &labels, 0.0)?;
//! model.backward(cache, &dlogits, &mut grads)?;            // grads["stage0.rbr_dense.conv.weight"], …
//! sgd.step(&mut model, &grads)?;
//! ```
//!
//! Formulas follow PyTorch's autograd and `torch.optim` (the tests compare with both).

mod graph;
mod head;
mod layers;
mod loss;
mod online;
mod optim;
mod schedule;

pub use graph::{CachedOutputs, GraphCache, NodeCache, max_pool_backward};
pub use head::{concat_channels_backward, upsample_nearest_backward};
pub use layers::{BatchNormCache, ConvCache, SqueezeExciteCache, TrainWithFill};
pub use loss::{cross_entropy, mse};
pub use online::{OnlineCache, accumulate_conv_gradient, accumulate_factors};
pub use optim::{AdamW, GroupOptions, Optimizer, ParamGroups, Sgd};
pub use schedule::Schedule;

use crate::error::{Error, Result};
use crate::io::StateDict;
use ndarray::{Array4, ArrayD, CowArray, IxDyn, Zip};
use std::collections::BTreeMap;
use std::path::Path;

/// A layer with a backward pass.
pub trait Train {
    /// What [`Train::forward_cached`] keeps for [`Train::backward`].
    type Cache;

    /// Train-mode forward (BatchNorm normalizes with the batch's statistics and updates its
    /// running ones, as [`crate::layers::Layer::forward_train`]), returning the output and the cache.
    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, Self::Cache)>;

    /// [`Train::forward_cached`] on an input several layers read (a block's input, which every
    /// branch starts from): layers that keep their input share it instead of copying it.
    fn forward_cached_shared(&mut self, x: &std::sync::Arc<Array4<f32>>) -> Result<(Array4<f32>, Self::Cache)> {
        self.forward_cached(x)
    }

    /// Given `dy = dL/dy` for the output of the forward that made `cache`, adds `dL/dθ` of each
    /// parameter to `grads` under `prefix` (the names [`crate::layers::Parameters::visit`]
    /// gives) and returns `dL/dx`.
    fn backward(
        &self,
        cache: Self::Cache,
        dy: &Array4<f32>,
        prefix: &str,
        grads: &mut Gradients,
    ) -> Result<Array4<f32>>;

    /// Freezes (`true`) or unfreezes every BatchNorm inside: a frozen BN normalizes with its
    /// running statistics and leaves them unchanged, in [`Train::forward_cached`] and
    /// [`crate::layers::Layer::forward_train`] alike, while γ and β still learn — PyTorch's BN
    /// in `eval()` mode inside a training step (fine-tuning with frozen statistics). Layers
    /// without a BN have nothing to freeze.
    fn freeze_batch_norm(&mut self, frozen: bool) {
        let _ = frozen;
    }
}

/// A whole network with a backward pass, as `#[rep::model]` generates it: input images, output
/// logits (or feature maps), parameters named from the root.
pub trait Network {
    /// The network's output (`Array2<f32>` logits when it ends in a linear head).
    type Output;
    /// What the forward keeps for the backward.
    type Cache;

    /// Train-mode forward, returning the output and the cache.
    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Self::Output, Self::Cache)>;

    /// Adds `dL/dθ` of every parameter to `grads` given `dL/d output`.
    fn backward(&self, cache: Self::Cache, dy: &Self::Output, grads: &mut Gradients) -> Result<()>;

    /// Freezes or unfreezes every BatchNorm of the network ([`Train::freeze_batch_norm`]).
    fn freeze_batch_norm(&mut self, frozen: bool);
}

/// `dL/dθ` by parameter name (the dotted names of [`crate::layers::Parameters::visit`]).
///
/// Backward passes *add* to it, so gradients accumulate over micro-batches until
/// [`Gradients::clear`] (PyTorch's `zero_grad()`, which sets them to `None`) or
/// [`Gradients::zero`]. Buffers (running statistics, fixed filters) never get one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gradients {
    tensors: BTreeMap<String, ArrayD<f32>>,
}

impl Gradients {
    /// No gradients.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `gradient` (a view, or an owned array, which is stored without a copy) to the one
    /// stored under `name` (stores it if there is none). A stored gradient of another shape is an
    /// error naming both.
    pub fn accumulate<'a>(&mut self, name: &str, gradient: impl Into<CowArray<'a, f32, IxDyn>>) -> Result<()> {
        let gradient = gradient.into();
        match self.tensors.get_mut(name) {
            Some(stored) if stored.shape() == gradient.shape() => {
                Zip::from(stored).and(&gradient).for_each(|s, &g| *s += g);
                Ok(())
            }
            Some(stored) => Err(Error::shape(format!("gradient `{name}`"), stored.shape(), gradient.shape())),
            None => {
                self.tensors.insert(name.to_owned(), gradient.into_owned());
                Ok(())
            }
        }
    }

    /// The gradient of `name`, if the last backward passes reached it.
    pub fn get(&self, name: &str) -> Option<&ArrayD<f32>> {
        self.tensors.get(name)
    }

    /// Every gradient, by name, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ArrayD<f32>)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many tensors have a gradient.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether no tensor has a gradient.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Forgets every gradient (PyTorch's `zero_grad(set_to_none=True)`, its default): an
    /// optimizer then skips parameters that the next backward does not reach.
    pub fn clear(&mut self) {
        self.tensors.clear();
    }

    /// Sets every stored gradient to zero, keeping its memory.
    pub fn zero(&mut self) {
        self.tensors.values_mut().for_each(|t| t.fill(0.0));
    }

    /// Multiplies every gradient by `factor` (e.g. `1/k` after accumulating `k` micro-batches
    /// whose losses were means).
    pub fn scale(&mut self, factor: f32) {
        self.tensors.values_mut().for_each(|t| t.mapv_inplace(|g| g * factor));
    }

    /// Saves the gradients as safetensors (f32, atomically), under their parameter names.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        StateDict { tensors: self.tensors.clone(), counters: BTreeMap::new() }.save(path)
    }

    /// Loads gradients saved by [`Gradients::save`] (or by PyTorch: `{n: p.grad for n, p in …}`).
    /// Non-finite values load as they are: a gradient file is a diagnostic, not weights.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let dict = StateDict::load(path)?;
        Ok(Gradients { tensors: dict.tensors })
    }
}

/// The identity op of a branch: `dx = dy`.
impl Train for () {
    type Cache = ();

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, ())> {
        Ok((x.clone(), ()))
    }

    fn backward(&self, _: (), dy: &Array4<f32>, _: &str, _: &mut Gradients) -> Result<Array4<f32>> {
        Ok(dy.clone())
    }
}

/// The indices `0..len` shuffled with `rng` and cut into mini-batches of `batch` (the last one
/// shorter when `batch` does not divide `len`): one epoch of PyTorch's
/// `DataLoader(shuffle=True)`, reproducible from the seed.
pub fn shuffled_batches(len: usize, batch: usize, rng: &mut impl rand::Rng) -> Vec<Vec<usize>> {
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(rng);
    order.chunks(batch.max(1)).map(<[usize]>::to_vec).collect()
}
