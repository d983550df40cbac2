//! Branch kernels without a convolution of their own (identity, avg-pool), centring a small
//! kernel inside a larger one, and summing branches.

use super::AffineConv;
use crate::error::{Error, Result};
use crate::geometry::{ConvGeometry, Hw};
use crate::layers::{AvgPool2d, BatchNorm2d};
use ndarray::{Array1, Array4};

/// A kernel that is `value` at every tap of the "diagonal" input channel: output channel `o`
/// reads input channel `o mod (C/g)` of its group.
fn diagonal(geometry: ConvGeometry, value: f64) -> Result<AffineConv> {
    let cin_g = geometry.in_per_group();
    let weight =
        Array4::from_shape_fn(geometry.weight_shape(), |(o, c, _, _)| if c == o % cin_g { value } else { 0.0 });
    AffineConv::new(geometry, weight, Array1::zeros(geometry.out_channels))
}

/// The identity as a 1×1 convolution over `channels` channels with `groups` groups:
/// `W[o, o mod (C/g)] = 1`. Pad it to the block's kernel with [`AffineConv::pad_to`] (or let
/// [`sum_branches`] do it).
pub fn identity(channels: usize, groups: usize) -> Result<AffineConv> {
    diagonal(ConvGeometry::new(channels, channels, 1).groups(groups), 1.0)
}

/// RepVGG's identity branch, a BN on the block input: `identity(C, g)` followed by the BN.
pub fn bn_identity(bn: &BatchNorm2d, groups: usize) -> Result<AffineConv> {
    identity(bn.channels(), groups)?.then_bn(bn)
}

/// Average pooling as a convolution: `1/(k_h·k_w)` on every tap of the diagonal channel of each
/// group, with the pool's stride and padding. Only PyTorch's default `count_include_pad = true`
/// is a convolution; the other mode is refused.
pub fn avg_pool_kernel(channels: usize, groups: usize, pool: &AvgPool2d) -> Result<AffineConv> {
    if !pool.count_include_pad {
        return Err(Error::fusion(
            "avg pool",
            "count_include_pad = false divides border windows by fewer taps, which no convolution does",
        ));
    }
    let geometry = pool.geometry(channels).groups(groups);
    diagonal(geometry, 1.0 / (pool.kernel.h * pool.kernel.w) as f64)
}

impl AffineConv {
    /// Zero-pads the kernel to `kernel` around its centre (1×1 → k×k, 1×k / k×1 → k×k) and
    /// widens the padding by `d·(K − k)/2`, so the output is unchanged. An axis of size 1 takes
    /// the target `dilation`, on other axes dilation is kept.
    pub fn pad_to(self, kernel: impl Into<Hw>, dilation: impl Into<Hw>) -> Result<Self> {
        let (kernel, dilation) = (kernel.into(), dilation.into());
        let g = self.geometry;
        let mut geometry = g;
        let axes = [(g.kernel.h, kernel.h, dilation.h), (g.kernel.w, kernel.w, dilation.w)];
        let mut offsets = [0; 2];
        for (axis, &(k, target, d)) in axes.iter().enumerate() {
            if target < k || (target - k) % 2 != 0 {
                return Err(Error::fusion(
                    "kernel padding",
                    format!("a {} kernel cannot be centred inside {kernel}", g.kernel),
                ));
            }
            offsets[axis] = (target - k) / 2;
            let d = if k == 1 { d } else { [g.dilation.h, g.dilation.w][axis] };
            let pad = [g.padding.h, g.padding.w][axis] + d * offsets[axis];
            match axis {
                0 => (geometry.dilation.h, geometry.padding.h) = (d, pad),
                _ => (geometry.dilation.w, geometry.padding.w) = (d, pad),
            }
        }
        geometry.kernel = kernel;
        let mut weight = Array4::zeros(geometry.weight_shape());
        weight
            .slice_mut(ndarray::s![.., .., offsets[0]..offsets[0] + g.kernel.h, offsets[1]..offsets[1] + g.kernel.w])
            .assign(&self.weight);
        AffineConv::new(geometry, weight, self.bias)
    }
}

/// Sums named branches into one convolution: `x⋆W₁ + b₁ + x⋆W₂ + b₂ = x⋆(W₁ + W₂) + (b₁ + b₂)`.
///
/// Smaller kernels are centred inside the largest (per axis). The branches must agree on input
/// and output channels, stride, groups and dilation, and read windows with the same centre
/// (`2p − d·(k − 1)` equal per axis); otherwise the error names the branch and what differs.
pub fn sum_branches(branches: &[(&str, AffineConv)]) -> Result<AffineConv> {
    let Some((first_name, first)) = branches.first() else {
        return Err(Error::fusion("block", "there are no branches to sum"));
    };
    let reference = first.geometry;
    let spacing = |pick: fn(&ConvGeometry) -> (usize, usize)| {
        branches
            .iter()
            .find_map(|(name, b)| Some((*name, pick(&b.geometry))).filter(|(_, (k, _))| *k > 1))
            .map(|(name, (_, d))| (name, d))
    };
    let spacing_h = spacing(|g| (g.kernel.h, g.dilation.h));
    let spacing_w = spacing(|g| (g.kernel.w, g.dilation.w));
    for (name, branch) in branches {
        let g = branch.geometry;
        let differ = |what: &str, ours: String, theirs: String| {
            Error::fusion(
                format!("branch `{name}`"),
                format!("its {what} is {ours} but branch `{first_name}` has {theirs}"),
            )
        };
        if g.in_channels != reference.in_channels {
            return Err(differ("input channel count", g.in_channels.to_string(), reference.in_channels.to_string()));
        }
        if g.out_channels != reference.out_channels {
            return Err(differ("output channel count", g.out_channels.to_string(), reference.out_channels.to_string()));
        }
        if g.stride != reference.stride {
            return Err(differ("stride", g.stride.to_string(), reference.stride.to_string()));
        }
        if g.groups != reference.groups {
            return Err(differ("group count", g.groups.to_string(), reference.groups.to_string()));
        }
        // Tap spacing matters along an axis only where a kernel has more than one tap there:
        // every such kernel must share the spacing of the first one.
        for (k, d, spacing, axis) in
            [(g.kernel.h, g.dilation.h, spacing_h, "height"), (g.kernel.w, g.dilation.w, spacing_w, "width")]
        {
            if let Some((first, rd)) = spacing
                && k > 1
                && d != rd
            {
                return Err(Error::fusion(
                    format!("branch `{name}`"),
                    format!("its dilation along the {axis} is {d} but branch `{first}` has {rd}"),
                ));
            }
        }
        if g.centre_offset2() != reference.centre_offset2() {
            return Err(differ(
                "window centre (padding)",
                format!("at padding {} for kernel {}", g.padding, g.kernel),
                format!(
                    "padding {} for kernel {}; a k-sized branch needs padding p_main − d·(k_main − k)/2",
                    reference.padding, reference.kernel
                ),
            ));
        }
    }
    let kernel = branches
        .iter()
        .fold(Hw::square(1), |acc, (_, b)| Hw::new(acc.h.max(b.geometry.kernel.h), acc.w.max(b.geometry.kernel.w)));
    // The fused kernel takes, per axis, the spacing every kernel with taps there shares.
    let dilation = Hw::new(spacing_h.map_or(1, |(_, d)| d), spacing_w.map_or(1, |(_, d)| d));
    let mut total: Option<AffineConv> = None;
    for (name, branch) in branches {
        let padded = branch.clone().pad_to(kernel, dilation).map_err(|e| match e {
            Error::Fusion { reason, .. } => Error::fusion(format!("branch `{name}`"), reason),
            other => other,
        })?;
        total = Some(match total {
            None => padded,
            Some(mut acc) => {
                acc.weight += &padded.weight;
                acc.bias += &padded.bias;
                acc
            }
        });
    }
    Ok(total.expect("at least one branch"))
}
