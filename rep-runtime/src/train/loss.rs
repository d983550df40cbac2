//! Losses with their gradients (mean reduction, as PyTorch's defaults), computed in f64.

use crate::error::{Error, Result};
use ndarray::{Array, Array2, Dimension};

/// Mean cross-entropy of `logits` (`[N, K]`) against class indices, with optional label
/// smoothing `ε` (PyTorch's `cross_entropy(logits, labels, label_smoothing=ε)`): the target
/// is `q = (1 − ε)·onehot(y) + ε/K`, the loss `−(1/N) Σ_n Σ_k q_k log softmax(z_n)_k`, and its
/// gradient `(softmax(z_n) − q) / N`. Returns `(loss, dL/dlogits)`.
pub fn cross_entropy(logits: &Array2<f32>, labels: &[usize], smoothing: f64) -> Result<(f64, Array2<f32>)> {
    let (n, k) = logits.dim();
    if labels.len() != n {
        return Err(Error::shape("cross-entropy labels", &[n], &[labels.len()]));
    }
    if let Some((i, &label)) = labels.iter().enumerate().find(|&(_, &l)| l >= k) {
        return Err(Error::geometry(format!("label {i} is {label}; expected a class index below {k}")));
    }
    if !(0.0..=1.0).contains(&smoothing) {
        return Err(Error::geometry(format!("label smoothing must be in [0, 1], found {smoothing}")));
    }
    let mut grad = Array2::<f32>::zeros((n, k));
    let mut total = 0.0f64;
    for ((row, mut g), &label) in logits.outer_iter().zip(grad.outer_iter_mut()).zip(labels) {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z as f64));
        let sum: f64 = row.iter().map(|&z| (z as f64 - max).exp()).sum();
        let log_sum = max + sum.ln();
        for (j, (&z, g)) in row.iter().zip(g.iter_mut()).enumerate() {
            let q = smoothing / k as f64 + if j == label { 1.0 - smoothing } else { 0.0 };
            let log_p = z as f64 - log_sum;
            total -= q * log_p;
            *g = ((log_p.exp() - q) / n as f64) as f32;
        }
    }
    Ok((total / n.max(1) as f64, grad))
}

/// Mean squared error `(1/M) Σ (p − t)²` over all `M` values, and its gradient `2(p − t)/M`.
pub fn mse<D: Dimension>(prediction: &Array<f32, D>, target: &Array<f32, D>) -> Result<(f64, Array<f32, D>)> {
    if prediction.shape() != target.shape() {
        return Err(Error::shape("mse target", prediction.shape(), target.shape()));
    }
    let count = prediction.len().max(1) as f64;
    let diff = prediction - target;
    let loss = diff.iter().map(|&d| (d as f64).powi(2)).sum::<f64>() / count;
    Ok((loss, diff.mapv(|d| (2.0 * d as f64 / count) as f32)))
}
