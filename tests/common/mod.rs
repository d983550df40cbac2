//! Shared test support: a naive f64 reference convolution, random tensors, and the
//! project's tolerance check (ARCHITECTURE.md).
#![allow(dead_code)]

pub mod f64ref;

use ndarray::{Array, Array1, Array4, Dimension};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rep::ConvGeometry;

/// RepVGG's block, the DSL's running example: 3×3+BN, 1×1+BN and, when shapes allow, an
/// identity BN, summed, then ReLU.
#[rep::block(post(relu))]
pub struct RepVgg<Cin, Cout, S> {
    dense: ConvBn<Cin, Cout, 3, S>,
    pointwise: ConvBn<Cin, Cout, 1, S>,
    #[rep(when = Cin == Cout && S == 1)]
    identity: Option<Bn<Cout>>,
}

/// The project's tolerance (ARCHITECTURE.md): `max |ours − expected| ≤ 1e-5 · max(1, max |expected|)`.
pub const REL_TOL: f32 = 1e-5;

/// A seeded RNG.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform values in [-1, 1).
pub fn random_tensor(shape: (usize, usize, usize, usize), rng: &mut StdRng) -> Array4<f32> {
    Array4::from_shape_simple_fn(shape, || rng.random_range(-1.0..1.0))
}

/// Uniform values in [-1, 1).
pub fn random_vector(len: usize, rng: &mut StdRng) -> Array1<f32> {
    Array1::from_shape_simple_fn(len, || rng.random_range(-1.0..1.0))
}

/// `max |a − b| / max(1, max |b|)`.
pub fn relative_error<D: Dimension>(a: &Array<f32, D>, b: &Array<f32, D>) -> f32 {
    rep::compare::difference(a, b).expect("shapes differ").relative()
}

/// Panics with the measured error when it exceeds [`REL_TOL`].
pub fn assert_close<D: Dimension>(what: &str, ours: &Array<f32, D>, expected: &Array<f32, D>) {
    let err = relative_error(ours, expected);
    assert!(err <= REL_TOL, "{what}: relative error {err:e} > {REL_TOL:e}");
}

/// Naive direct convolution in f64 — the independent reference for every kernel path.
/// Padded positions of input channel `c` read `fill[c]` (zero when `None`).
pub fn reference_conv(
    x: &Array4<f32>,
    weight: &Array4<f32>,
    bias: Option<&Array1<f32>>,
    g: &ConvGeometry,
    fill: Option<&Array1<f32>>,
) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    assert_eq!(c, g.in_channels);
    let eff_h = g.dilation.h * (g.kernel.h - 1) + 1;
    let eff_w = g.dilation.w * (g.kernel.w - 1) + 1;
    let oh = (h + 2 * g.padding.h - eff_h) / g.stride.h + 1;
    let ow = (w + 2 * g.padding.w - eff_w) / g.stride.w + 1;
    let (cin_g, cout_g) = (g.in_channels / g.groups, g.out_channels / g.groups);
    Array4::from_shape_fn((n, g.out_channels, oh, ow), |(b, o, i, j)| {
        let mut acc = bias.map_or(0.0, |b| b[o] as f64);
        let group = o / cout_g;
        for ci in 0..cin_g {
            let ch = group * cin_g + ci;
            for u in 0..g.kernel.h {
                for v in 0..g.kernel.w {
                    let ih = (i * g.stride.h + u * g.dilation.h) as isize - g.padding.h as isize;
                    let iw = (j * g.stride.w + v * g.dilation.w) as isize - g.padding.w as isize;
                    let value = if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                        fill.map_or(0.0, |f| f[ch] as f64)
                    } else {
                        x[[b, ch, ih as usize, iw as usize]] as f64
                    };
                    acc += weight[[o, ci, u, v]] as f64 * value;
                }
            }
        }
        acc as f32
    })
}

/// A conv + BN branch with random weights and non-trivial BN statistics.
pub fn random_conv_bn(g: ConvGeometry, rng: &mut StdRng) -> rep::layers::ConvBn {
    let mut branch = rep::layers::ConvBn::new(g, rng).expect("valid geometry");
    branch.bn.randomize(rng);
    branch
}

/// A BN with non-trivial statistics.
pub fn random_bn(channels: usize, rng: &mut StdRng) -> rep::layers::BatchNorm2d {
    let mut bn = rep::layers::BatchNorm2d::new(channels);
    bn.randomize(rng);
    bn
}

/// An example binary, which `cargo test` builds beside the test binaries (run the tests with
/// `cargo test`, not `--test NAME` alone, so that the examples exist).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_owned();
    let path = deps.parent().unwrap().join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} is missing: run the tests with `cargo test`, which builds the examples", path.display());
    path
}
