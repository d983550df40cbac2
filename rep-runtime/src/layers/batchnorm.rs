//! BatchNorm2d with PyTorch's training and eval semantics.

use super::Costs;
use super::{Layer, Parameters, check_channels, join, per_channel_affine};
use crate::error::{Error, Result};
use crate::geometry::Hw;
use ndarray::{Array1, Array4, ArrayViewD, ArrayViewMutD};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

/// Batch normalization over the channel axis of an NCHW tensor.
///
/// Eval: `y = γ (x − μ) / √(σ² + ε) + β` with the running statistics, i.e. the per-channel
/// affine map `y = a·x + b`, `a = γ/√(σ² + ε)`, `b = β − μ·a` ([`BatchNorm2d::affine`]).
///
/// Training: normalizes with the batch mean and *biased* batch variance, then updates
/// `μ ← (1 − m)·μ + m·mean`, `σ² ← (1 − m)·σ² + m·var·n/(n − 1)` (the unbiased variance, with
/// `n = N·H·W`), exactly as PyTorch does, and counts the batch in `num_batches_tracked`; with
/// `momentum: None` the running statistics are the cumulative average (`m = 1/batches`).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm2d {
    /// γ, the learned scale.
    pub weight: Array1<f32>,
    /// β, the learned shift.
    pub bias: Array1<f32>,
    /// μ, the running mean.
    pub running_mean: Array1<f32>,
    /// σ², the running variance.
    pub running_var: Array1<f32>,
    /// ε added to the variance (PyTorch default 1e-5; YOLOv7 uses 1e-3).
    pub eps: f64,
    /// Weight `m` of the newest batch in the running statistics (PyTorch default 0.1);
    /// `None` is PyTorch's `momentum=None`, the cumulative average: `m = 1 / num_batches_tracked`
    /// after counting the batch.
    pub momentum: Option<f64>,
    /// Training batches seen (PyTorch's `num_batches_tracked`).
    pub num_batches_tracked: u64,
    /// Whether training forwards use the running statistics and leave them unchanged (PyTorch's
    /// BN in `eval()` mode; see [`crate::train::Train::freeze_batch_norm`]). Not saved.
    pub frozen: bool,
}

impl BatchNorm2d {
    /// γ = 1, β = 0, μ = 0, σ² = 1, ε = 1e-5, momentum 0.1: PyTorch's initial state.
    pub fn new(channels: usize) -> Self {
        BatchNorm2d {
            weight: Array1::ones(channels),
            bias: Array1::zeros(channels),
            running_mean: Array1::zeros(channels),
            running_var: Array1::ones(channels),
            eps: 1e-5,
            momentum: Some(0.1),
            num_batches_tracked: 0,
            frozen: false,
        }
    }

    /// Sets ε and the momentum (`None`: the cumulative average).
    pub fn with_eps_momentum(mut self, eps: f64, momentum: impl Into<Option<f64>>) -> Self {
        self.eps = eps;
        self.momentum = momentum.into();
        self
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.weight.len()
    }

    /// Draws non-trivial parameters and statistics, as the reference fixtures do:
    /// γ ∈ U[0.5, 1.5], β ~ N(0, 0.2²), μ ~ N(0, 0.5²), σ² ∈ U[0.5, 2]. For tests and demos,
    /// so that a wrong fold cannot pass by accident.
    pub fn randomize(&mut self, rng: &mut impl Rng) {
        let beta = Normal::new(0.0f32, 0.2).expect("valid");
        let mu = Normal::new(0.0f32, 0.5).expect("valid");
        self.weight.mapv_inplace(|_| rng.random_range(0.5..1.5));
        self.bias.mapv_inplace(|_| beta.sample(rng));
        self.running_mean.mapv_inplace(|_| mu.sample(rng));
        self.running_var.mapv_inplace(|_| rng.random_range(0.5..2.0));
    }

    /// Checks lengths, ε and that every number is finite and every variance non-negative.
    pub fn validate(&self) -> Result<()> {
        let c = self.channels();
        for (name, v) in
            [("bias", &self.bias), ("running_mean", &self.running_mean), ("running_var", &self.running_var)]
        {
            if v.len() != c {
                return Err(Error::shape(format!("batch norm {name}"), &[c], v.shape()));
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(Error::BatchNorm(format!("eps must be a positive number, found {}", self.eps)));
        }
        for (name, v) in [
            ("weight", &self.weight),
            ("bias", &self.bias),
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ] {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::BatchNorm(format!("{name}[{i}] is {}, expected a finite number", v[i])));
            }
        }
        if let Some(i) = self.running_var.iter().position(|&v| v < 0.0) {
            return Err(Error::BatchNorm(format!(
                "running_var[{i}] = {} is negative; a variance must be ≥ 0",
                self.running_var[i]
            )));
        }
        Ok(())
    }

    /// The eval-mode map as per-channel `(a, b)` in f64: `a = γ/√(σ² + ε)`, `b = β − μ·a`.
    pub fn affine(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        self.validate()?;
        let scale: Vec<f64> = (0..self.channels())
            .map(|c| self.weight[c] as f64 / (self.running_var[c] as f64 + self.eps).sqrt())
            .collect();
        let shift =
            (0..self.channels()).map(|c| self.bias[c] as f64 - self.running_mean[c] as f64 * scale[c]).collect();
        Ok((scale, shift))
    }
}

impl Layer for BatchNorm2d {
    fn forward(&self, x: &Array4<f32>) -> Result<Array4<f32>> {
        check_channels("batch_norm", x, self.channels())?;
        let (a, b) = self.affine()?;
        Ok(per_channel_affine(x, &a, &b))
    }

    fn forward_train(&mut self, x: &Array4<f32>) -> Result<Array4<f32>> {
        if self.frozen {
            return self.forward(x);
        }
        let statistics = self.update_statistics(x)?;
        let (a, b): (Vec<f64>, Vec<f64>) = statistics
            .iter()
            .enumerate()
            .map(|(c, &(mean, var))| {
                let a = self.weight[c] as f64 / (var + self.eps).sqrt();
                (a, self.bias[c] as f64 - mean * a)
            })
            .unzip();
        Ok(per_channel_affine(x, &a, &b))
    }
}

impl BatchNorm2d {
    /// The batch's per-channel mean and *biased* variance (in f64), after folding them into the
    /// running statistics and counting the batch (the bookkeeping of a training forward).
    pub(crate) fn update_statistics(&mut self, x: &Array4<f32>) -> Result<Vec<(f64, f64)>> {
        check_channels("batch_norm", x, self.channels())?;
        self.validate()?;
        let (n, _, h, w) = x.dim();
        let count = n * h * w;
        if count < 2 {
            return Err(Error::BatchNorm(format!(
                "training needs more than one value per channel, found input {:?}",
                x.shape()
            )));
        }
        self.num_batches_tracked += 1;
        let m = self.momentum.unwrap_or(1.0 / self.num_batches_tracked as f64);
        let x = x.as_standard_layout();
        let (values, channels, plane) = (x.as_slice().expect("standard layout"), self.channels(), h * w);
        let statistics: Vec<(f64, f64)> = (0..channels)
            .into_par_iter()
            .with_min_len(crate::kernels::planes_per_task(n * plane))
            .map(|c| {
                let planes = || (0..n).map(|i| &values[(i * channels + c) * plane..(i * channels + c + 1) * plane]);
                let mean = planes().map(|p| p.iter().map(|&v| v as f64).sum::<f64>()).sum::<f64>() / count as f64;
                let squares: f64 = planes().map(|p| p.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>()).sum();
                (mean, squares / count as f64)
            })
            .collect();
        for (c, &(mean, var)) in statistics.iter().enumerate() {
            let unbiased = var * count as f64 / (count - 1) as f64;
            self.running_mean[c] = ((1.0 - m) * self.running_mean[c] as f64 + m * mean) as f32;
            self.running_var[c] = ((1.0 - m) * self.running_var[c] as f64 + m * unbiased) as f32;
        }
        Ok(statistics)
    }
}

impl Parameters for BatchNorm2d {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
        for (name, t) in [
            ("weight", &self.weight),
            ("bias", &self.bias),
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ] {
            f(&join(prefix, name), t.view().into_dyn());
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
        for (name, t) in [
            ("weight", &mut self.weight),
            ("bias", &mut self.bias),
            ("running_mean", &mut self.running_mean),
            ("running_var", &mut self.running_var),
        ] {
            f(&join(prefix, name), t.view_mut().into_dyn());
        }
    }

    fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, u64)) {
        f(&join(prefix, "num_batches_tracked"), self.num_batches_tracked);
    }

    fn visit_counters_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut u64)) {
        f(&join(prefix, "num_batches_tracked"), &mut self.num_batches_tracked);
    }

    fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut BatchNorm2d)) {
        f(self);
    }
}

impl Costs for BatchNorm2d {
    fn parameter_count(&self) -> usize {
        self.weight.len() + self.bias.len()
    }

    fn macs(&self, input: Hw) -> Result<(u64, Hw)> {
        Ok((0, input))
    }
}
