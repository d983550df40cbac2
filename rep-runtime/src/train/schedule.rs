//! Learning-rate schedules, as functions of the step.

/// A learning rate for each optimizer step (counted from 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The same rate every step.
    Constant(f64),
    /// Linear warm-up from 0 to `base` over `warmup` steps, then cosine decay to `min` at
    /// `total`: `min + (base − min)·(1 + cos(π·t))/2` with `t = (step − warmup)/(total − warmup)`
    /// (timm's and PyTorch's `CosineAnnealingLR` curve, stepped per iteration).
    WarmupCosine {
        /// Peak rate.
        base: f64,
        /// Final rate.
        min: f64,
        /// Warm-up steps.
        warmup: usize,
        /// Steps in all.
        total: usize,
    },
    /// `base · gamma^⌊step / every⌋` (PyTorch's `StepLR`).
    Step {
        /// Initial rate.
        base: f64,
        /// Decay factor.
        gamma: f64,
        /// Steps between decays.
        every: usize,
    },
}

impl Schedule {
    /// The rate at `step`.
    pub fn at(&self, step: usize) -> f64 {
        match *self {
            Schedule::Constant(lr) => lr,
            Schedule::WarmupCosine { base, min, warmup, total } => {
                if step < warmup {
                    base * (step + 1) as f64 / warmup as f64
                } else {
                    let span = total.saturating_sub(warmup).max(1) as f64;
                    let t = ((step - warmup) as f64 / span).min(1.0);
                    min + (base - min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
                }
            }
            Schedule::Step { base, gamma, every } => base * gamma.powi((step / every.max(1)) as i32),
        }
    }
}
