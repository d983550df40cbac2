//! The transposes of the fusion algebra, for training the squeezed form (OREPA's online
//! training): given `dL/d(W, b)` of a folded convolution, the gradients of what it was folded
//! from. A gradient of an [`AffineConv`] is an `AffineConv` of the same geometry (`dL/dW`, `dL/db`).

use super::AffineConv;
use crate::error::{Error, Result};
use crate::kernels::matmul_f64;
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
        let expected = super::sequential::merged_geometry(g1, g2)?;
        if merged.geometry.weight_shape() != expected.weight_shape() {
            return Err(Error::shape("merged kernel gradient", &expected.weight_shape(), merged.weight.shape()));
        }
        let (dw1, mut dw2) = if g1.groups == g2.groups && (one(g1.kernel) || one(g2.kernel)) {
            product_adjoint(self, next, merged)
        } else {
            direct_adjoint(self, next, merged)
        };
        // The bias: b[o] = b₂[o] + Σ_{m,t} W₂[o,m,t]·b₁[m].
        let mut db1 = Array1::<f64>::zeros(g1.out_channels);
        let (mids, taps2) = (g2.in_per_group(), g2.kernel.h * g2.kernel.w);
        let w2 = next.weight.as_standard_layout();
        let w2 = w2.as_slice().expect("standard layout");
        let dw2_values = dw2.as_slice_mut().expect("fresh array");
        for o in 0..g2.out_channels {
            let (mid_start, db) = ((o / g2.out_per_group()) * mids, merged.bias[o]);
            let rows = (o * mids..(o + 1) * mids).map(|row| row * taps2..(row + 1) * taps2);
            for (m_local, row) in rows.enumerate() {
                let m = mid_start + m_local;
                db1[m] += w2[row.clone()].iter().sum::<f64>() * db;
                dw2_values[row].iter_mut().for_each(|d| *d += db * self.bias[m]);
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

fn one(k: crate::geometry::Hw) -> bool {
    k.to_array() == [1, 1]
}

/// The kernel part of [`AffineConv::then_adjoint`] as two products per group, when both stages
/// share their groups and one is 1×1 (the transposes of `compose`'s products):
/// `W_g = W₂_g · W₁_g` gives `dW₂_g = dW_g · W₁_gᵀ` and `dW₁_g = W₂_gᵀ · dW_g`, with the taps
/// moved next to the output channels when the first stage is the 1×1.
fn product_adjoint(first: &AffineConv, second: &AffineConv, merged: &AffineConv) -> (Array4<f64>, Array4<f64>) {
    let (g1, g2, g) = (first.geometry, second.geometry, merged.geometry);
    let (mut dw1, mut dw2) = (Array4::<f64>::zeros(g1.weight_shape()), Array4::<f64>::zeros(g2.weight_shape()));
    let (cin_g, cout_g, mid_g) = (g.in_per_group(), g.out_per_group(), g2.in_per_group());
    let taps = g.kernel.h * g.kernel.w;
    for group in 0..g1.groups {
        let (outs, mids) = (group * cout_g..(group + 1) * cout_g, group * mid_g..(group + 1) * mid_g);
        let d = merged.weight.slice(s![outs.clone(), .., .., ..]);
        let w1 = first.weight.slice(s![mids.clone(), .., .., ..]);
        let w2 = second.weight.slice(s![outs.clone(), .., .., ..]);
        if one(g2.kernel) {
            // W_g [O, I·taps] = W₂ [O, M] · W₁ [M, I·taps]
            let d = d.to_shape((cout_g, cin_g * taps)).expect("contiguous");
            let (a, b) =
                (w2.to_shape((cout_g, mid_g)).expect("1x1"), w1.to_shape((mid_g, cin_g * taps)).expect("contiguous"));
            let da = matmul_f64(d.view(), b.t());
            let db = matmul_f64(a.t(), d.view());
            dw2.slice_mut(s![outs, .., .., ..])
                .assign(&da.into_shape_with_order((cout_g, mid_g, 1, 1)).expect("sizes"));
            dw1.slice_mut(s![mids, .., .., ..])
                .assign(&db.into_shape_with_order((mid_g, cin_g, g.kernel.h, g.kernel.w)).expect("sizes"));
        } else {
            // W_g as [O·taps, I] = W₂ as [O·taps, M] · W₁ [M, I]
            let d = d.permuted_axes([0, 2, 3, 1]).as_standard_layout().into_owned();
            let d = d.into_shape_with_order((cout_g * taps, cin_g)).expect("sizes");
            let a = w2.permuted_axes([0, 2, 3, 1]).as_standard_layout().into_owned();
            let a = a.into_shape_with_order((cout_g * taps, mid_g)).expect("sizes");
            let b = w1.to_shape((mid_g, cin_g)).expect("1x1");
            let da = matmul_f64(d.view(), b.t()).into_shape_with_order((cout_g, g.kernel.h, g.kernel.w, mid_g));
            let db = matmul_f64(a.t(), d.view());
            dw2.slice_mut(s![outs, .., .., ..]).assign(&da.expect("sizes").permuted_axes([0, 3, 1, 2]));
            dw1.slice_mut(s![mids, .., .., ..]).assign(&db.into_shape_with_order((mid_g, cin_g, 1, 1)).expect("sizes"));
        }
    }
    (dw1, dw2)
}

/// The kernel part of [`AffineConv::then_adjoint`] by direct loops over a dense kernel (any
/// groups; the transpose of `compose`'s loops, costing as much).
fn direct_adjoint(first: &AffineConv, second: &AffineConv, merged: &AffineConv) -> (Array4<f64>, Array4<f64>) {
    let (g1, g2) = (first.geometry, second.geometry);
    // The merged kernel keeps only its group blocks: its transpose pads the rest with zeros.
    let dense = merged.dense_weight();
    let dense = dense.as_slice().expect("fresh array");
    let (w1, w2) = (first.weight.as_standard_layout(), second.weight.as_standard_layout());
    let (w1, w2) = (w1.as_slice().expect("standard layout"), w2.as_slice().expect("standard layout"));
    let (mut dw1, mut dw2) = (Array4::<f64>::zeros(g1.weight_shape()), Array4::<f64>::zeros(g2.weight_shape()));
    let (d1, d2) = (dw1.as_slice_mut().expect("fresh array"), dw2.as_slice_mut().expect("fresh array"));
    let (k1, k2, out_k) = (g1.kernel, g2.kernel, merged.geometry.kernel);
    let (taps1, taps2, taps) = (k1.h * k1.w, k2.h * k2.w, out_k.h * out_k.w);
    let (mid2, in1, ins) = (g2.in_per_group(), g1.in_per_group(), g1.in_channels);
    for o in 0..g2.out_channels {
        let mid_start = (o / g2.out_per_group()) * mid2;
        for m_local in 0..mid2 {
            let m = mid_start + m_local;
            let in_start = (m / g1.out_per_group()) * in1;
            let second_row = (o * mid2 + m_local) * taps2..(o * mid2 + m_local + 1) * taps2;
            for c in 0..in1 {
                let first_row = (m * in1 + c) * taps1..(m * in1 + c + 1) * taps1;
                let d = &dense[(o * ins + in_start + c) * taps..(o * ins + in_start + c + 1) * taps];
                let (w1_m, w2_o) = (&w1[first_row.clone()], &w2[second_row.clone()]);
                for (t2, &b) in w2_o.iter().enumerate() {
                    let (u2, v2) = (t2 / k2.w, t2 % k2.w);
                    let mut sum = 0.0;
                    for (t1, (&a, g1_value)) in w1_m.iter().zip(&mut d1[first_row.clone()]).enumerate() {
                        let value = d[(t1 / k1.w + u2) * out_k.w + t1 % k1.w + v2];
                        *g1_value += b * value;
                        sum += value * a;
                    }
                    d2[second_row.start + t2] += sum;
                }
            }
        }
    }
    (dw1, dw2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::ConvGeometry;

    fn random(g: ConvGeometry, seed: u64) -> AffineConv {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let weight = Array4::from_shape_simple_fn(g.weight_shape(), &mut next);
        let bias = Array1::from_shape_simple_fn(g.out_channels, &mut next);
        AffineConv::new(g, weight, bias).unwrap()
    }

    /// The two products equal the direct loops, for a 1×1 on either side, with groups.
    #[test]
    fn products_equal_direct_loops() {
        let pairs = [
            (ConvGeometry::new(4, 6, 1).groups(2), ConvGeometry::new(6, 8, 3).padding(1).groups(2)),
            (ConvGeometry::new(6, 4, (3, 1)).stride(2).groups(2), ConvGeometry::new(4, 8, 1).groups(2)),
            (ConvGeometry::new(5, 3, 1), ConvGeometry::new(3, 7, 3)),
        ];
        for (seed, (g1, g2)) in pairs.into_iter().enumerate() {
            let (first, second) = (random(g1, seed as u64), random(g2, 100 + seed as u64));
            let merged = first.clone().then(&second).unwrap();
            let d = random(merged.geometry, 200 + seed as u64);
            let (p1, p2) = product_adjoint(&first, &second, &d);
            let (q1, q2) = direct_adjoint(&first, &second, &d);
            for (p, q) in [(p1, q1), (p2, q2)] {
                let worst = (&p - &q).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
                assert!(worst < 1e-12, "pair {seed}: {worst:e}");
            }
        }
    }
}
