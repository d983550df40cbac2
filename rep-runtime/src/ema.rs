//! Exponential moving average of a model's weights, as YOLOv7 deploys it.

use crate::error::{Error, Result};
use crate::layers::Parameters;
use ndarray::ArrayD;

/// YOLOv7's EMA decay ramp: `d = decay · (1 − exp(−updates / 2000))`.
pub fn ema_decay(decay: f64, updates: u64) -> f64 {
    decay * (1.0 - (-(updates as f64) / 2000.0).exp())
}

/// An exponential moving average of every parameter and buffer (BN running statistics
/// included) of a model: after each optimizer step, `ema ← d·ema + (1 − d)·model`, with `d`
/// from [`ema_decay`]. The averaged model is an ordinary model: it runs and fuses like any other.
#[derive(Clone, Debug)]
pub struct Ema<M> {
    /// The averaged model.
    pub model: M,
    /// The asymptotic decay (YOLOv7: 0.9999).
    pub decay: f64,
    /// Updates so far.
    pub updates: u64,
}

impl<M: Parameters + Clone> Ema<M> {
    /// Starts the average at a copy of `model`.
    pub fn new(model: &M, decay: f64) -> Self {
        Ema { model: model.clone(), decay, updates: 0 }
    }

    /// One update towards `model`; returns the decay used. Models whose tensors differ (a
    /// different depth or width) are refused before anything changes.
    pub fn update(&mut self, model: &M) -> Result<f64> {
        let mut current: Vec<(String, ArrayD<f32>)> = Vec::new();
        model.visit("", &mut |name, t| current.push((name.to_owned(), t.to_owned())));
        let mut mismatch = None;
        let mut index = 0;
        self.model.visit("", &mut |name, t| {
            let found = current.get(index).map(|(n, v)| (n.as_str(), v.shape()));
            if mismatch.is_none() && found != Some((name, t.shape())) {
                mismatch =
                    Some(Error::shape(format!("EMA tensor `{name}`"), t.shape(), found.map_or(&[][..], |f| f.1)));
            }
            index += 1;
        });
        if let Some(error) = mismatch {
            return Err(error);
        }
        if index != current.len() {
            return Err(Error::shape("EMA tensor count", &[index], &[current.len()]));
        }
        self.updates += 1;
        let d = ema_decay(self.decay, self.updates);
        let mut next = current.into_iter();
        self.model.visit_mut("", &mut |_, mut average| {
            if let Some((_, value)) = next.next() {
                average.zip_mut_with(&value, |a, &v| *a = (d * *a as f64 + (1.0 - d) * v as f64) as f32);
            }
        });
        Ok(d)
    }
}
