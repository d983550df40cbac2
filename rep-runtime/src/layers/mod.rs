//! Train-time and inference layers on NCHW `f32` tensors.
//!
//! Every layer has an eval-mode [`Layer::forward`]; layers that behave differently while
//! training (BatchNorm) override [`Layer::forward_train`]. Every layer with numbers exposes
//! them by name through [`Parameters`], with PyTorch's names (`weight`, `bias`,
//! `running_mean`, …) so that state dicts load as they are.

mod activation;
mod affine;
mod batchnorm;
mod conv;
mod conv_bn;
mod filter_bank;
mod identity_conv;
mod linear;
mod pool;
mod resample;
mod se;

pub use activation::Activation;
pub use affine::{ImplicitA, ImplicitM, Scale};
pub use batchnorm::BatchNorm2d;
pub use conv::Conv2d;
pub use conv_bn::ConvBn;
pub use filter_bank::FilterBank;
pub use identity_conv::IdentityBasedConv;
pub use linear::Linear;
pub use pool::{AvgPool2d, GlobalAvgPool, MaxPool2d, global_avg_pool};
pub use resample::{concat_channels, upsample_nearest};
pub use se::SqueezeExcite;

use crate::error::{Error, Result};
use crate::geometry::Hw;
use ndarray::{Array4, ArrayViewD, ArrayViewMutD};

/// A layer mapping an NCHW tensor to an NCHW tensor.
pub trait Layer {
    /// Eval-mode forward pass (BatchNorm uses its running statistics).
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>>;

    /// Training-mode forward pass; the same as [`Layer::forward`] unless the layer keeps
    /// statistics (BatchNorm normalizes with the batch's and updates its running ones).
    fn forward_train(&mut self, x: &Array4<f32>) -> Result<Array4<f32>> {
        self.forward(x)
    }
}

/// Named access to a layer's parameters and buffers, for loading and saving weights.
///
/// Names are dotted paths under `prefix` (`"stage1.0.rbr_dense.conv.weight"`), built with [`join`].
pub trait Parameters {
    /// Calls `f(name, tensor)` for every parameter and buffer.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>));

    /// Calls `f(name, tensor)` for every parameter and buffer, mutably.
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>));

    /// Calls `f(name, count)` for every integer buffer: BatchNorm's `num_batches_tracked`
    /// (an int64 in PyTorch checkpoints). Layers without one do nothing.
    fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, u64)) {
        let _ = (prefix, f);
    }

    /// Calls `f(name, count)` for every integer buffer, mutably.
    fn visit_counters_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut u64)) {
        let _ = (prefix, f);
    }

    /// Calls `f` on every BatchNorm, e.g. to set ε and momentum model-wide as YOLOv7 does
    /// (`bn.eps = 1e-3; bn.momentum = 0.03`). Layers without one do nothing.
    fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut BatchNorm2d)) {
        let _ = f;
    }
}

/// `total + more`, or an error when the sum of multiply-adds overflows a `u64` (what generated
/// [`Costs::macs`] implementations add with, so that a huge resolution never wraps).
pub fn add_macs(total: u64, more: u64) -> Result<u64> {
    total.checked_add(more).ok_or_else(|| {
        Error::geometry(format!("multiply-adds overflow u64 ({total} + {more}); the input is too large"))
    })
}

/// Parameter and multiply-add counts.
///
/// Multiply-adds count convolutions (`C_in/g · k_h · k_w · H_out · W_out · C_out`) and linear
/// layers; element-wise and per-channel operations are not counted. Parameters are learnable
/// numbers; buffers such as BN running statistics are not.
pub trait Costs {
    /// Learnable parameters.
    fn parameter_count(&self) -> usize;

    /// Multiply-adds for one image whose spatial size is `input`, and the output's spatial size.
    fn macs(&self, input: Hw) -> Result<(u64, Hw)>;
}

impl<T: Costs> Costs for Option<T> {
    fn parameter_count(&self) -> usize {
        self.as_ref().map_or(0, T::parameter_count)
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        self.as_ref().map_or(Ok((0, input)), |t| t.macs(input))
    }
}

/// Draws non-trivial values for every vector of a model (1-D tensors and YOLOR's `implicit`
/// parameters), so that a wrong fold cannot pass by accident (for tests and demos):
/// `running_var` ∈ U[0.5, 2], `running_mean` ~ N(0, 0.5²), `bias` ~ N(0, 0.2²), any other
/// vector (BN γ, scaling layers, implicit vectors) ∈ U[0.5, 1.5].
pub fn randomize_vectors(model: &mut dyn Parameters, rng: &mut impl rand::Rng) {
    let normal = |std: f32| rand_distr::Normal::new(0.0f32, std).expect("valid");
    model.visit_mut("", &mut |name, mut t| {
        if t.ndim() != 1 && !name.ends_with("implicit") {
            return;
        }
        let draw: &mut dyn FnMut() -> f32 = if name.ends_with("running_var") {
            &mut || rng.random_range(0.5..2.0)
        } else if name.ends_with("running_mean") {
            &mut || rand_distr::Distribution::sample(&normal(0.5), rng)
        } else if name.ends_with("bias") {
            &mut || rand_distr::Distribution::sample(&normal(0.2), rng)
        } else {
            &mut || rng.random_range(0.5..1.5)
        };
        t.mapv_inplace(|_| draw());
    });
}

/// `prefix.name`, or either alone when the other is empty (an empty name puts a layer's
/// weights directly under its parent, as YOLO's `Conv` does with `conv.weight`, `bn.weight`).
pub fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}.{name}"),
    }
}

impl<T: Parameters> Parameters for Option<T> {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
        if let Some(inner) = self {
            inner.visit(prefix, f);
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
        if let Some(inner) = self {
            inner.visit_mut(prefix, f);
        }
    }

    fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, u64)) {
        if let Some(inner) = self {
            inner.visit_counters(prefix, f);
        }
    }

    fn visit_counters_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut u64)) {
        if let Some(inner) = self {
            inner.visit_counters_mut(prefix, f);
        }
    }

    fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut BatchNorm2d)) {
        if let Some(inner) = self {
            inner.visit_batch_norms(f);
        }
    }
}

/// Implements [`Parameters`] for a struct whose fields are tensors (`name`) or optional
/// tensors (`?name`), each visited under its field name.
macro_rules! tensor_parameters {
    ($ty:ty { $($field:ident),* $(; optional $($opt:ident),*)? }) => {
        impl $crate::layers::Parameters for $ty {
            fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ndarray::ArrayViewD<'_, f32>)) {
                $( f(&$crate::layers::join(prefix, stringify!($field)), self.$field.view().into_dyn()); )*
                $($( if let Some(t) = &self.$opt {
                    f(&$crate::layers::join(prefix, stringify!($opt)), t.view().into_dyn());
                } )*)?
            }

            fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ndarray::ArrayViewMutD<'_, f32>)) {
                $( f(&$crate::layers::join(prefix, stringify!($field)), self.$field.view_mut().into_dyn()); )*
                $($( if let Some(t) = &mut self.$opt {
                    f(&$crate::layers::join(prefix, stringify!($opt)), t.view_mut().into_dyn());
                } )*)?
            }
        }
    };
}
pub(crate) use tensor_parameters;

/// Implements [`Parameters`] for a struct whose fields are layers, each visited under its
/// field name (`conv.weight`, `bn.running_mean`, …).
macro_rules! child_parameters {
    ($ty:ty { $($field:ident),* }) => {
        impl $crate::layers::Parameters for $ty {
            fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ndarray::ArrayViewD<'_, f32>)) {
                $( self.$field.visit(&$crate::layers::join(prefix, stringify!($field)), f); )*
            }

            fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ndarray::ArrayViewMutD<'_, f32>)) {
                $( self.$field.visit_mut(&$crate::layers::join(prefix, stringify!($field)), f); )*
            }

            fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, u64)) {
                $( self.$field.visit_counters(&$crate::layers::join(prefix, stringify!($field)), f); )*
            }

            fn visit_counters_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut u64)) {
                $( self.$field.visit_counters_mut(&$crate::layers::join(prefix, stringify!($field)), f); )*
            }

            fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut $crate::layers::BatchNorm2d)) {
                $( self.$field.visit_batch_norms(f); )*
            }
        }
    };
}
pub(crate) use child_parameters;

/// Checks that `x` has `expected` channels.
pub(crate) fn check_channels(layer: &'static str, x: &Array4<f32>, expected: usize) -> Result<()> {
    let found = x.shape()[1];
    if found == expected { Ok(()) } else { Err(Error::Channels { layer, expected, found }) }
}

/// `y[n,c,h,w] = a[c]·x[n,c,h,w] + b[c]`, computed in f64 and rounded once.
pub(crate) fn per_channel_affine(x: &Array4<f32>, a: &[f64], b: &[f64]) -> Array4<f32> {
    let mut y = x.to_owned();
    for mut image in y.outer_iter_mut() {
        for (c, mut plane) in image.outer_iter_mut().enumerate() {
            plane.mapv_inplace(|v| (a[c] * v as f64 + b[c]) as f32);
        }
    }
    y
}
