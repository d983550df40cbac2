//! Optimizers with `torch.optim`'s update rules, over parameters found by name.

use super::Gradients;
use crate::error::{Error, Result};
use crate::layers::Parameters;
use ndarray::{ArrayD, ArrayViewMutD, Zip};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Updates a model's parameters from their gradients.
///
/// Only tensors with a gradient are touched (PyTorch skips parameters whose `.grad` is
/// `None`), so buffers such as BN running statistics are never updated here.
pub trait Optimizer {
    /// One update of every parameter of `model` that has a gradient in `grads`. A gradient
    /// that names no tensor of the model, has another shape or holds a NaN or an infinity (a
    /// diverged step) is an error naming it, and nothing is updated.
    fn step(&mut self, model: &mut dyn Parameters, grads: &Gradients) -> Result<()>;

    /// The base learning rate (each group scales it).
    fn learning_rate(&self) -> f64;

    /// Sets the base learning rate, e.g. from a [`super::Schedule`] before each step.
    fn set_learning_rate(&mut self, lr: f64);
}

/// The options of one parameter group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupOptions {
    /// Factor on the optimizer's learning rate.
    pub lr_scale: f64,
    /// Weight decay (L2 added to the gradient for SGD, decoupled for AdamW).
    pub weight_decay: f64,
}

/// A predicate on a parameter's name and shape.
type Matcher = Box<dyn Fn(&str, &[usize]) -> bool + Send + Sync>;

/// Parameter groups: the first rule whose predicate matches a parameter gives its options,
/// the default otherwise.
pub struct ParamGroups {
    default: GroupOptions,
    rules: Vec<(Matcher, GroupOptions)>,
}

impl ParamGroups {
    /// One group: every parameter takes `weight_decay` and the base learning rate.
    pub fn uniform(weight_decay: f64) -> Self {
        ParamGroups { default: GroupOptions { lr_scale: 1.0, weight_decay }, rules: Vec::new() }
    }

    /// timm's split: `weight_decay` on weights of two or more dimensions, none on vectors
    /// (BatchNorm's γ and β, biases, scaling layers).
    pub fn no_decay_on_vectors(weight_decay: f64) -> Self {
        Self::uniform(weight_decay).with(|_, shape| shape.len() <= 1, GroupOptions { lr_scale: 1.0, weight_decay: 0.0 })
    }

    /// Adds a rule, tried after the ones before it.
    pub fn with(
        mut self,
        matches: impl Fn(&str, &[usize]) -> bool + Send + Sync + 'static,
        options: GroupOptions,
    ) -> Self {
        self.rules.push((Box::new(matches), options));
        self
    }

    /// The options of the parameter `name` of `shape`.
    pub fn options(&self, name: &str, shape: &[usize]) -> GroupOptions {
        self.rules.iter().find(|(m, _)| m(name, shape)).map_or(self.default, |(_, o)| *o)
    }
}

impl std::fmt::Debug for ParamGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamGroups").field("default", &self.default).field("rules", &self.rules.len()).finish()
    }
}

/// Calls `update(name, parameter, gradient, options)` for every parameter with a gradient, after
/// checking that every gradient names a parameter of its shape.
fn for_each_parameter(
    model: &mut dyn Parameters,
    grads: &Gradients,
    groups: &ParamGroups,
    mut update: impl FnMut(&str, ArrayViewMutD<'_, f32>, &ArrayD<f32>, GroupOptions),
) -> Result<()> {
    let mut shapes = BTreeMap::new();
    model.visit("", &mut |name, t| {
        shapes.insert(name.to_owned(), t.shape().to_vec());
    });
    for (name, g) in grads.iter() {
        match shapes.get(name) {
            None => return Err(Error::geometry(format!("gradient `{name}` names no tensor of the model"))),
            Some(shape) if shape != g.shape() => {
                return Err(Error::shape(format!("gradient `{name}`"), shape, g.shape()));
            }
            Some(_) => Error::check_finite(&format!("gradient of `{name}`"), g.iter())?,
        }
    }
    model.visit_mut("", &mut |name, p| {
        if let Some(g) = grads.get(name) {
            let options = groups.options(name, p.shape());
            update(name, p, g, options);
        }
    });
    Ok(())
}

/// Stochastic gradient descent as `torch.optim.SGD`: `d = g + λ·p`; with momentum μ,
/// `b ← d` on the first step and `b ← μ·b + (1 − dampening)·d` after, then `d = b` (or
/// `d + μ·b` with Nesterov); `p ← p − lr·d`. In f32, in that order.
#[derive(Debug)]
pub struct Sgd {
    lr: f64,
    /// Momentum μ (0: none).
    pub momentum: f64,
    /// Dampening of the momentum's new term.
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    groups: ParamGroups,
    buffers: BTreeMap<String, ArrayD<f32>>,
}

impl Sgd {
    /// SGD with learning rate `lr`, momentum `momentum` and one group of weight decay
    /// `weight_decay` (no dampening, no Nesterov: PyTorch's defaults).
    pub fn new(lr: f64, momentum: f64, weight_decay: f64) -> Self {
        Sgd::with_groups(lr, momentum, ParamGroups::uniform(weight_decay))
    }

    /// SGD over parameter groups.
    pub fn with_groups(lr: f64, momentum: f64, groups: ParamGroups) -> Self {
        Sgd { lr, momentum, dampening: 0.0, nesterov: false, groups, buffers: BTreeMap::new() }
    }

    /// The momentum buffers by parameter name (PyTorch's `state[p]["momentum_buffer"]`), to
    /// save with a checkpoint.
    pub fn momentum_buffers(&self) -> &BTreeMap<String, ArrayD<f32>> {
        &self.buffers
    }

    /// Restores momentum buffers saved from [`Sgd::momentum_buffers`], to resume training
    /// where it stopped; a non-finite value is refused, naming the buffer.
    pub fn load_momentum_buffers(&mut self, buffers: BTreeMap<String, ArrayD<f32>>) -> Result<()> {
        for (name, buffer) in &buffers {
            Error::check_finite(&format!("momentum buffer `{name}`"), buffer.iter())?;
        }
        self.buffers = buffers;
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, model: &mut dyn Parameters, grads: &Gradients) -> Result<()> {
        let (lr, momentum, dampening, nesterov) = (self.lr, self.momentum as f32, self.dampening as f32, self.nesterov);
        for (name, g) in grads.iter() {
            if let Some(b) = self.buffers.get(name)
                && b.shape() != g.shape()
            {
                return Err(Error::shape(format!("momentum buffer `{name}`"), g.shape(), b.shape()));
            }
        }
        let buffers = &mut self.buffers;
        for_each_parameter(model, grads, &self.groups, |name, mut p, g, options| {
            let (decay, rate) = (options.weight_decay as f32, (lr * options.lr_scale) as f32);
            let first = momentum != 0.0 && !buffers.contains_key(name);
            let buffer =
                (momentum != 0.0).then(|| buffers.entry(name.to_owned()).or_insert_with(|| ArrayD::zeros(g.raw_dim())));
            // One pass per element, in torch.optim.SGD's order: d = g + λ·p; b = d on the first
            // step, else μ·b + (1 − dampening)·d; the step is b, or d + μ·b with Nesterov.
            let update = |p: &mut f32, g: f32, b: Option<&mut f32>| {
                let d = g + decay * *p;
                let step = match b {
                    Some(b) => {
                        *b = if first { d } else { momentum * *b + (1.0 - dampening) * d };
                        if nesterov { d + momentum * *b } else { *b }
                    }
                    None => d,
                };
                *p += -rate * step;
            };
            let g = g.as_standard_layout();
            let g = g.as_slice().expect("standard layout");
            match (p.as_slice_mut(), buffer) {
                (Some(p), Some(b)) => {
                    let b = b.as_slice_mut().expect("fresh array");
                    let chunk = crate::kernels::PARALLEL_ELEMENTS;
                    p.par_chunks_mut(chunk).zip(g.par_chunks(chunk)).zip(b.par_chunks_mut(chunk)).for_each(
                        |((p, g), b)| p.iter_mut().zip(g).zip(b).for_each(|((p, &g), b)| update(p, g, Some(b))),
                    );
                }
                (Some(p), None) => {
                    let chunk = crate::kernels::PARALLEL_ELEMENTS;
                    p.par_chunks_mut(chunk)
                        .zip(g.par_chunks(chunk))
                        .for_each(|(p, g)| p.iter_mut().zip(g).for_each(|(p, &g)| update(p, g, None)));
                }
                (None, buffer) => {
                    // A parameter that is not contiguous: element by element.
                    let mut b = buffer.map(|b| b.iter_mut().collect::<Vec<_>>());
                    for (i, (p, &g)) in p.iter_mut().zip(g).enumerate() {
                        update(p, g, b.as_mut().map(|b| &mut *b[i]));
                    }
                }
            }
        })
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
}

/// AdamW as `torch.optim.AdamW`: `p ← p·(1 − lr·λ)`; `m ← m + (1 − β₁)(g − m)`;
/// `v ← β₂·v + (1 − β₂)·g²`; `p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)`.
#[derive(Debug)]
pub struct AdamW {
    lr: f64,
    /// β₁, β₂ (PyTorch: 0.9, 0.999).
    pub betas: (f64, f64),
    /// ε (PyTorch: 1e-8).
    pub eps: f64,
    groups: ParamGroups,
    state: BTreeMap<String, AdamState>,
}

#[derive(Debug)]
struct AdamState {
    step: i32,
    m: ArrayD<f32>,
    v: ArrayD<f32>,
}

impl AdamW {
    /// AdamW with PyTorch's defaults for β and ε.
    pub fn new(lr: f64, groups: ParamGroups) -> Self {
        AdamW { lr, betas: (0.9, 0.999), eps: 1e-8, groups, state: BTreeMap::new() }
    }

    /// The moments by parameter name (PyTorch's `state[p]["exp_avg"]`, `["exp_avg_sq"]`,
    /// `["step"]`), to save with a checkpoint: `(name, step, m, v)`.
    pub fn moments(&self) -> impl Iterator<Item = (&str, i32, &ArrayD<f32>, &ArrayD<f32>)> {
        self.state.iter().map(|(name, s)| (name.as_str(), s.step, &s.m, &s.v))
    }

    /// Restores one parameter's moments saved from [`AdamW::moments`], to resume training; the
    /// two must have one shape, a step count ≥ 1 and finite values.
    pub fn load_moments(&mut self, name: &str, step: i32, m: ArrayD<f32>, v: ArrayD<f32>) -> Result<()> {
        if m.shape() != v.shape() {
            return Err(Error::shape(format!("AdamW moments of `{name}`"), m.shape(), v.shape()));
        }
        if step < 1 {
            return Err(Error::geometry(format!("AdamW step of `{name}` is {step}; expected at least 1")));
        }
        Error::check_finite(&format!("AdamW exp_avg of `{name}`"), m.iter())?;
        Error::check_finite(&format!("AdamW exp_avg_sq of `{name}`"), v.iter())?;
        self.state.insert(name.to_owned(), AdamState { step, m, v });
        Ok(())
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, model: &mut dyn Parameters, grads: &Gradients) -> Result<()> {
        let (lr, (beta1, beta2), eps) = (self.lr, self.betas, self.eps);
        for (name, g) in grads.iter() {
            if let Some(s) = self.state.get(name)
                && s.m.shape() != g.shape()
            {
                return Err(Error::shape(format!("AdamW moments of `{name}`"), g.shape(), s.m.shape()));
            }
        }
        let state = &mut self.state;
        for_each_parameter(model, grads, &self.groups, |name, mut p, g, options| {
            let lr = lr * options.lr_scale;
            let s = state.entry(name.to_owned()).or_insert_with(|| AdamState {
                step: 0,
                m: ArrayD::zeros(g.raw_dim()),
                v: ArrayD::zeros(g.raw_dim()),
            });
            s.step += 1;
            let decay = (1.0 - lr * options.weight_decay) as f32;
            p.mapv_inplace(|p| p * decay);
            let (b1, b2) = (beta1 as f32, beta2 as f32);
            Zip::from(&mut s.m).and(&mut s.v).and(g).for_each(|m, v, &g| {
                *m += (1.0 - b1) * (g - *m);
                *v = b2 * *v + (1.0 - b2) * g * g;
            });
            let step_size = (lr / (1.0 - beta1.powi(s.step))) as f32;
            let correction = (1.0 - beta2.powi(s.step)).sqrt() as f32;
            Zip::from(&mut p).and(&s.m).and(&s.v).for_each(|p, &m, &v| {
                *p -= step_size * m / (v.sqrt() / correction + eps as f32);
            });
        })
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
}
