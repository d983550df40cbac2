//! Sequential merge: two convolutions in a row with a 1×1 on one side become one convolution.

use super::AffineConv;
use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use crate::layers::Conv2d;
use ndarray::{Array1, Array4};

/// A 1×1 convolution with stride 1 and no padding: the stage a sequential merge needs.
fn is_plain_1x1(g: &ConvGeometry) -> bool {
    g.kernel.to_array() == [1, 1] && g.stride.to_array() == [1, 1] && g.padding.to_array() == [0, 0]
}

impl AffineConv {
    /// [`AffineConv::then`] for a conv layer, checking first that the layer pads its input as
    /// the merge assumes: when `self` is the 1×1 stage and `next` pads, `next` must pad with
    /// `self`'s bias ([`Conv2d::with_pad_fill`]); zero padding after a non-zero bias would make
    /// the merged conv differ on the border, and is refused.
    pub fn then_conv(self, next: &Conv2d) -> Result<AffineConv> {
        if is_plain_1x1(&self.geometry) && next.geometry.padding.to_array() != [0, 0] {
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

    /// Merges `self` followed by `next` into one convolution, when one of the two is a 1×1
    /// with stride 1 and no padding. Per spatial tap `(u, v)`, over the channel dimension:
    ///
    /// * `self` is the 1×1 (DBB/OREPA 1×1 → k×k): `W[o,i,u,v] = Σ_m W₂[o,m,u,v]·W₁[m,i]`,
    ///   `b[o] = b₂[o] + Σ_{m,u,v} W₂[o,m,u,v]·b₁[m]`, geometry of `next`. Exact on the border
    ///   only when `next` pads its input with `b₁` (per channel) instead of zero —
    ///   [`crate::layers::Conv2d::pad_fill`], as DBB's BN-and-pad layer does — because the
    ///   merged conv sees zero-padded `x`, whose 1×1 image is `b₁`, not 0.
    /// * `next` is the 1×1 (depthwise k×k → pointwise 1×1, OREPA's linear DW-sepconv):
    ///   `W[o,i,u,v] = Σ_m W₂[o,m]·W₁[m,i,u,v]`, `b = W₂·b₁ + b₂`, geometry of `self`.
    ///   Exact everywhere.
    ///
    /// Groups: when both stages have `g` groups the result has `g`; otherwise the result is
    /// dense (`groups = 1`).
    pub fn then(self, next: &AffineConv) -> Result<AffineConv> {
        let (first, second) = (self.geometry, next.geometry);
        if second.in_channels != first.out_channels {
            return Err(Error::fusion(
                "sequential merge",
                format!(
                    "the first stage outputs {} channels but the second expects {}",
                    first.out_channels, second.in_channels
                ),
            ));
        }
        let groups = if first.groups == second.groups { first.groups } else { 1 };
        let (w1, w2) = (self.dense_weight(), next.dense_weight());
        if is_plain_1x1(&first) {
            let geometry = ConvGeometry { in_channels: first.in_channels, groups, ..second };
            let (kh, kw) = (second.kernel.h, second.kernel.w);
            let dense = Array4::from_shape_fn((second.out_channels, first.in_channels, kh, kw), |(o, i, u, v)| {
                (0..first.out_channels).map(|m| w2[[o, m, u, v]] * w1[[m, i, 0, 0]]).sum()
            });
            let bias = Array1::from_shape_fn(second.out_channels, |o| {
                let spread: f64 =
                    (0..first.out_channels).map(|m| self.bias[m] * w2.slice(ndarray::s![o, m, .., ..]).sum()).sum();
                next.bias[o] + spread
            });
            AffineConv::from_dense(geometry, &dense, bias)
        } else if is_plain_1x1(&second) {
            let geometry = ConvGeometry { out_channels: second.out_channels, groups, ..first };
            let (kh, kw) = (first.kernel.h, first.kernel.w);
            let dense = Array4::from_shape_fn((second.out_channels, first.in_channels, kh, kw), |(o, i, u, v)| {
                (0..first.out_channels).map(|m| w2[[o, m, 0, 0]] * w1[[m, i, u, v]]).sum()
            });
            let bias = Array1::from_shape_fn(second.out_channels, |o| {
                next.bias[o] + (0..first.out_channels).map(|m| w2[[o, m, 0, 0]] * self.bias[m]).sum::<f64>()
            });
            AffineConv::from_dense(geometry, &dense, bias)
        } else {
            Err(Error::fusion(
                "sequential merge",
                format!(
                    "neither stage is a 1x1 conv with stride 1 and no padding (first: {first}, second: {second}); \
                     two k×k convs in a row are one conv only away from the border"
                ),
            ))
        }
    }
}
