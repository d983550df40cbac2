//! Sequential merge: two convolutions in a row with a 1×1 on one side become one convolution.

use super::AffineConv;
use crate::error::{Error, Result};
use crate::geometry::{ConvGeometry, Hw};
use crate::kernels::matmul_f64;
use crate::layers::Conv2d;
use ndarray::{Array1, Array4, s};

impl AffineConv {
    /// [`AffineConv::then`] for a conv layer, checking first that the layer pads its input as
    /// the merge assumes: when `self` is the 1×1 stage and `next` pads, `next` must pad with
    /// `self`'s bias ([`Conv2d::with_pad_fill`]); zero padding after a non-zero bias would make
    /// the merged conv differ on the border, and is refused.
    pub fn then_conv(self, next: &Conv2d) -> Result<AffineConv> {
        if let Some(fill) = &next.pad_fill {
            Error::check_finite("conv pad fill", fill.iter())?;
        }
        if self.geometry.is_pointwise() && next.geometry.padding.to_array() != [0, 0] {
            let fill: Vec<f64> = match &next.pad_fill {
                Some(f) => f.iter().map(|&v| v as f64).collect(),
                None => vec![0.0; next.geometry.in_channels],
            };
            let wrong = self.bias.iter().zip(&fill).position(|(b, f)| (b - f).abs() > 1e-6 * b.abs().max(1.0));
            if let Some(c) = wrong {
                let how = if next.pad_fill.is_some() { "pads with other values than" } else { "pads with zeros, not" };
                return Err(Error::fusion(
                    "sequential merge",
                    format!(
                        "the k×k conv {how} the bias of the 1×1 stage before it (channel {c}: padding {}, bias {}); \
                         pad it with that bias (Conv2d::with_pad_fill) or the border of the merged conv will differ",
                        fill[c], self.bias[c]
                    ),
                ));
            }
        }
        self.then(&AffineConv::from_conv_ignoring_fill(next)?)
    }

    /// Merges `self` followed by `next` into one convolution. Per output channel `o`, input
    /// channel `i` and tap, over the intermediate channels `m` (within the groups):
    ///
    /// * `next` is a 1×1 without padding (depthwise k×k → pointwise 1×1, OREPA's linear
    ///   DW-sepconv): `W[o,i,t] = Σ_m W₂[o,m]·W₁[m,i,t]`, geometry of `self` (strides multiply).
    ///   Exact everywhere.
    /// * `self` is a 1×1 with stride 1 and no padding (DBB/OREPA 1×1 → k×k):
    ///   `W[o,i,t] = Σ_m W₂[o,m,t]·W₁[m,i]`, geometry of `next`. Exact on the border only when
    ///   `next` pads its input with `self`'s bias ([`crate::layers::Conv2d::pad_fill`], DBB's
    ///   BN-and-pad), because the merged conv sees zero-padded `x`, whose 1×1 image is `b₁`.
    /// * both k×k (OREPA's linear deep stem): `W[o,i,u₁+u₂] = Σ_m W₂[o,m,u₂]·W₁[m,i,u₁]`, a
    ///   `(k₁+k₂−1)` kernel. Exact only when neither pads (the intermediate map's zero border
    ///   is not what the merged conv would compute there) and the first has stride 1; otherwise
    ///   refused.
    ///
    /// Bias: `b[o] = b₂[o] + Σ_{m,t} W₂[o,m,t]·b₁[m]`. Groups: equal groups stay; nested ones
    /// (one count divides the other) give the smaller count; others give a dense conv.
    pub fn then(self, next: &AffineConv) -> Result<AffineConv> {
        let geometry = merged_geometry(self.geometry, next.geometry)?;
        let second = next.geometry;
        let weight = compose(&self, next, geometry);
        let w2 = next.weight.as_standard_layout();
        let w2 = w2.as_slice().expect("standard layout");
        let (mids, taps2) = (second.in_per_group(), second.kernel.h * second.kernel.w);
        let bias = Array1::from_shape_fn(second.out_channels, |o| {
            let start = (o / second.out_per_group()) * mids;
            let rows = w2[o * mids * taps2..(o + 1) * mids * taps2].chunks_exact(taps2);
            let spread: f64 = rows.enumerate().map(|(m, taps)| taps.iter().sum::<f64>() * self.bias[start + m]).sum();
            next.bias[o] + spread
        });
        AffineConv::new(geometry, weight, bias)
    }
}

/// The geometry of `first` followed by `second` as one convolution (see [`AffineConv::then`]),
/// or the reason there is none.
pub(super) fn merged_geometry(first: ConvGeometry, second: ConvGeometry) -> Result<ConvGeometry> {
    if second.in_channels != first.out_channels {
        return Err(Error::fusion(
            "sequential merge",
            format!(
                "the first stage outputs {} channels but the second expects {}",
                first.out_channels, second.in_channels
            ),
        ));
    }
    let unpadded = |g: &ConvGeometry| g.padding.to_array() == [0, 0];
    let one = |g: &ConvGeometry| g.kernel.to_array() == [1, 1];
    let stride1 = |g: &ConvGeometry| g.stride.to_array() == [1, 1];
    let geometry = if one(&second) && unpadded(&second) {
        let stride = Hw::new(first.stride.h * second.stride.h, first.stride.w * second.stride.w);
        ConvGeometry { out_channels: second.out_channels, stride, ..first }
    } else if one(&first) && unpadded(&first) && stride1(&first) {
        ConvGeometry { in_channels: first.in_channels, ..second }
    } else if unpadded(&first) && unpadded(&second) && stride1(&first) && first.dilation == second.dilation {
        let kernel = Hw::new(first.kernel.h + second.kernel.h - 1, first.kernel.w + second.kernel.w - 1);
        ConvGeometry { in_channels: first.in_channels, kernel, ..second }
    } else {
        return Err(Error::fusion(
            "sequential merge",
            format!(
                "{first} followed by {second} is not one convolution: two k×k convs merge only without padding \
                     (the intermediate map's zero border is not what a merged conv computes) and with stride 1 in \
                     the first; otherwise one of them must be a 1x1 without padding"
            ),
        ));
    };
    let groups = rep_rules::merged_groups(first.groups, second.groups);
    Ok(ConvGeometry { groups, ..geometry })
}

/// The merged kernel `W[o,i,u₁+u₂] = Σ_m W₂[o,m,u₂]·W₁[m,i,u₁]` in `geometry`'s grouped layout:
/// a GEMM per group when both stages share their groups and one is 1×1, direct loops otherwise
/// (which cost `O · M/g₂ · I/g₁ · taps₁ · taps₂`, small for depthwise stages).
fn compose(first: &AffineConv, second: &AffineConv, geometry: ConvGeometry) -> Array4<f64> {
    let (g1, g2) = (first.geometry, second.geometry);
    let (k1, k2) = (g1.kernel, g2.kernel);
    let mut weight = Array4::<f64>::zeros(geometry.weight_shape());
    let (cin_g, cout_g) = (geometry.in_per_group(), geometry.out_per_group());
    if g1.groups == g2.groups && (k1.to_array() == [1, 1] || k2.to_array() == [1, 1]) {
        let (mid_g, taps) = (g2.in_per_group(), geometry.kernel.h * geometry.kernel.w);
        for g in 0..g1.groups {
            let (outs, mids, ins) = (g * cout_g..(g + 1) * cout_g, g * mid_g..(g + 1) * mid_g, ..);
            let w1 = first.weight.slice(s![mids.clone(), ins, .., ..]);
            let w2 = second.weight.slice(s![outs.clone(), .., .., ..]);
            let mut out = weight.slice_mut(s![outs, .., .., ..]);
            if k2.to_array() == [1, 1] {
                // [O_g, M_g] · [M_g, I_g·taps]
                let a = w2.to_shape((cout_g, mid_g)).expect("1x1 kernel");
                let b = w1.to_shape((mid_g, cin_g * taps)).expect("contiguous slice");
                out.assign(
                    &matmul_f64(a.view(), b.view())
                        .into_shape_with_order((cout_g, cin_g, geometry.kernel.h, geometry.kernel.w))
                        .expect("sizes"),
                );
            } else {
                // [O_g·taps, M_g] · [M_g, I_g], taps moved next to O and back.
                let a = w2.permuted_axes([0, 2, 3, 1]).as_standard_layout().into_owned();
                let a = a.into_shape_with_order((cout_g * taps, mid_g)).expect("sizes");
                let b = w1.to_shape((mid_g, cin_g)).expect("1x1 kernel");
                let product = matmul_f64(a.view(), b.view())
                    .into_shape_with_order((cout_g, geometry.kernel.h, geometry.kernel.w, cin_g))
                    .expect("sizes");
                out.assign(&product.permuted_axes([0, 3, 1, 2]));
            }
        }
        return weight;
    }
    // Direct loops into a dense kernel, then keep the group blocks of `geometry`.
    let (w1, w2) = (first.weight.as_standard_layout(), second.weight.as_standard_layout());
    let (w1, w2) = (w1.as_slice().expect("standard layout"), w2.as_slice().expect("standard layout"));
    let (taps1, taps2) = (k1.h * k1.w, k2.h * k2.w);
    let (out_k, ins) = (geometry.kernel, g1.in_channels);
    let taps = out_k.h * out_k.w;
    let mut dense = vec![0.0f64; geometry.out_channels * ins * taps];
    let (mid2, in1) = (g2.in_per_group(), g1.in_per_group());
    for o in 0..g2.out_channels {
        let mid_start = (o / g2.out_per_group()) * mid2;
        for m_local in 0..mid2 {
            let m = mid_start + m_local;
            let in_start = (m / g1.out_per_group()) * in1;
            let w2_o = &w2[(o * mid2 + m_local) * taps2..(o * mid2 + m_local + 1) * taps2];
            for c in 0..in1 {
                let w1_m = &w1[(m * in1 + c) * taps1..(m * in1 + c + 1) * taps1];
                let d = &mut dense[(o * ins + in_start + c) * taps..(o * ins + in_start + c + 1) * taps];
                if taps2 == 1 {
                    d.iter_mut().zip(w1_m).for_each(|(d, w)| *d += w2_o[0] * w);
                } else if taps1 == 1 {
                    d.iter_mut().zip(w2_o).for_each(|(d, w)| *d += w1_m[0] * w);
                } else {
                    for (t2, &b) in w2_o.iter().enumerate() {
                        let (u2, v2) = (t2 / k2.w, t2 % k2.w);
                        for (t1, &a) in w1_m.iter().enumerate() {
                            let (u1, v1) = (t1 / k1.w, t1 % k1.w);
                            d[(u1 + u2) * out_k.w + v1 + v2] += b * a;
                        }
                    }
                }
            }
        }
    }
    let dense = Array4::from_shape_vec((geometry.out_channels, ins, out_k.h, out_k.w), dense).expect("sizes");
    for o in 0..geometry.out_channels {
        let start = (o / cout_g) * cin_g;
        weight.slice_mut(s![o, .., .., ..]).assign(&dense.slice(s![o, start..start + cin_g, .., ..]));
    }
    weight
}
