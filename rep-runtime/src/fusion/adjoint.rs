//! The transposes of the fusion algebra, for training the squeezed form (OREPA's online
//! training): given `dL/d(W, b)` of a folded convolution, the gradients of what it was folded
//! from. A gradient of an [`AffineConv`] is an `AffineConv` of the same geometry (`dL/dW`, `dL/db`).

use super::AffineConv;
use crate::error::{Error, Result};
use ndarray::{Array1, Array4, s};

impl AffineConv {
    /// The transpose of [`AffineConv::pad_to`] followed by the sum of branches: the part of the
    /// fused kernel's gradient `fused` that falls on this (smaller, centred) kernel; the bias
    /// gradient is shared whole.
    pub fn crop_gradient(&self, fused: &AffineConv) -> Result<AffineConv> {
        let (k, big) = (self.geometry.kernel, fused.geometry.kernel);
        if big.h < k.h || big.w < k.w || fused.weight.shape()[..2] != self.weight.shape()[..2] {
            return Err(Error::shape("fused kernel gradient", self.weight.shape(), fused.weight.shape()));
        }
        let (top, left) = ((big.h - k.h) / 2, (big.w - k.w) / 2);
        let weight = fused.weight.slice(s![.., .., top..top + k.h, left..left + k.w]).to_owned();
        AffineConv::new(self.geometry, weight, fused.bias.clone())
    }

    /// The transpose of [`AffineConv::then`]: with `W[o,i,u₁+u₂] = Σ_m W₂[o,m,u₂]·W₁[m,i,u₁]`
    /// and `b[o] = b₂[o] + Σ_{m,u₂} W₂[o,m,u₂]·b₁[m]`, the gradients of `self` (the first stage)
    /// and `next` given `merged`, the merged conv's: `dW₁[m,i,u₁] = Σ_{o,u₂} W₂[o,m,u₂]·dW[o,i,u₁+u₂]`,
    /// `dW₂[o,m,u₂] = Σ_{i,u₁} dW[o,i,u₁+u₂]·W₁[m,i,u₁] + db[o]·b₁[m]`,
    /// `db₁[m] = Σ_{o,u₂} W₂[o,m,u₂]·db[o]`, `db₂ = db`.
    pub fn then_adjoint(&self, next: &AffineConv, merged: &AffineConv) -> Result<(AffineConv, AffineConv)> {
        let (g1, g2) = (self.geometry, next.geometry);
        let expected = self.clone().then(next)?.geometry;
        if merged.geometry.weight_shape() != expected.weight_shape() {
            return Err(Error::shape("merged kernel gradient", &expected.weight_shape(), merged.weight.shape()));
        }
        // The merged kernel keeps only its group blocks: its transpose pads the rest with zeros.
        let dw = merged.dense_weight();
        let (mut dw1, mut dw2) = (Array4::<f64>::zeros(g1.weight_shape()), Array4::<f64>::zeros(g2.weight_shape()));
        let mut db1 = Array1::<f64>::zeros(g1.out_channels);
        let (k1, k2) = (g1.kernel, g2.kernel);
        let (mid2, in1) = (g2.in_per_group(), g1.in_per_group());
        for o in 0..g2.out_channels {
            let mid_start = (o / g2.out_per_group()) * mid2;
            for m_local in 0..mid2 {
                let m = mid_start + m_local;
                let in_start = (m / g1.out_per_group()) * in1;
                for (u2, v2) in taps(k2) {
                    let w2 = next.weight[[o, m_local, u2, v2]];
                    let mut dw2_sum = merged.bias[o] * self.bias[m];
                    db1[m] += w2 * merged.bias[o];
                    for c in 0..in1 {
                        for (u1, v1) in taps(k1) {
                            let d = dw[[o, in_start + c, u1 + u2, v1 + v2]];
                            dw1[[m, c, u1, v1]] += w2 * d;
                            dw2_sum += d * self.weight[[m, c, u1, v1]];
                        }
                    }
                    dw2[[o, m_local, u2, v2]] += dw2_sum;
                }
            }
        }
        Ok((AffineConv::new(g1, dw1, db1)?, AffineConv::new(g2, dw2, merged.bias.clone())?))
    }

    /// The transpose of [`AffineConv::then_channel_affine`] with factors `a` (`W'[o] = a[o]·W[o]`,
    /// `b'[o] = a[o]·b[o] + c[o]`), given `after`, the gradient of the result: the gradient of
    /// `self` (`a[o]·dW'[o]`, `a[o]·db'[o]`) and of the factors,
    /// `da[o] = Σ dW'[o]·W[o] + db'[o]·b[o]`.
    pub fn channel_affine_adjoint(&self, a: &[f64], after: &AffineConv) -> Result<(AffineConv, Vec<f64>)> {
        let out = self.geometry.out_channels;
        if a.len() != out || after.weight.shape() != self.weight.shape() {
            return Err(Error::shape("per-channel map gradient", self.weight.shape(), after.weight.shape()));
        }
        let mut before = after.clone();
        let mut da = vec![0.0; out];
        for o in 0..out {
            let (w, dw) = (self.weight.slice(s![o, .., .., ..]), after.weight.slice(s![o, .., .., ..]));
            da[o] = w.iter().zip(dw.iter()).map(|(w, d)| w * d).sum::<f64>() + after.bias[o] * self.bias[o];
            before.weight.slice_mut(s![o, .., .., ..]).mapv_inplace(|d| d * a[o]);
            before.bias[o] *= a[o];
        }
        Ok((before, da))
    }
}

/// Every `(u, v)` tap of a kernel.
fn taps(k: crate::geometry::Hw) -> impl Iterator<Item = (usize, usize)> {
    (0..k.h).flat_map(move |u| (0..k.w).map(move |v| (u, v)))
}
