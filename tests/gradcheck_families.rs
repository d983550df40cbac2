//! The generated backward of each block family against central differences of an f64 reference
//! forward written out here from the paper's structure, reading the block's own parameters by
//! name: ACNet, YOLOv7's RepConvN, MobileOne (depthwise), DBB (BN-and-pad, avg pool, groups)
//! and RepVGG with squeeze-and-excitation, at strides 1 and 2 on odd sizes. Every input
//! gradient is checked, and a sample of every parameter's.

mod common;

use common::f64ref::{TOL, batch_norm64, conv64, dot, f64s};
use common::rng;
use ndarray::{Array4, IxDyn};
use rand::Rng;
use rep::ConvGeometry;
use rep::layers::{Parameters, randomize_vectors};
use rep::train::{Gradients, Train};
use std::collections::BTreeMap;

/// Every tensor of a block by name, as f64.
type Params = BTreeMap<String, Vec<f64>>;

const EPS: f64 = 1e-5;

/// ACNet: 3×3, 1×3 and 3×1 kernels with BN, summed, ReLU.
#[rep::block(post(relu))]
pub struct AcBlock<Cin, Cout, S> {
    square: ConvBn<Cin, Cout, 3, S>,
    hor: ConvBn<Cin, Cout, 1x3, S>,
    ver: ConvBn<Cin, Cout, 3x1, S>,
}

/// YOLOv7's RepConvN: conv+BN 3×3 and 1×1 (BN ε 1e-3), SiLU.
#[rep::block(post(silu))]
pub struct RepConvN<Cin, Cout, S> {
    rbr_dense: (Conv<Cin, Cout, 3, S>, Bn<Cout, Eps<1e-3>, Momentum<0.03>>),
    rbr_1x1: (Conv<Cin, Cout, 1, S>, Bn<Cout, Eps<1e-3>, Momentum<0.03>>),
}

/// MobileOne's depthwise half with two over-parameterized branches.
#[rep::block(post(relu))]
pub struct MobileOneDw<C, S> {
    conv0: ConvBn<C, C, 3, S, Groups<C>>,
    conv1: ConvBn<C, C, 3, S, Groups<C>>,
    scale: ConvBn<C, C, 1, S, Groups<C>>,
    #[rep(when = S == 1)]
    skip: Option<Bn<C>>,
}

/// DBB: k×k, 1×1, 1×1 → BN → avg pool → BN and 1×1 → BN → k×k → BN, the pool and the k×k
/// padding with the BN's value for zero (a constant of the step, as DBB detaches it).
#[rep::block(post(relu))]
pub struct Dbb<Cin, Cout, S, G> {
    origin: ConvBn<Cin, Cout, 3, S, Groups<G>>,
    one: ConvBn<Cin, Cout, 1, S, Groups<G>>,
    #[rep(names("conv", "bn", "avg", "avgbn"))]
    avg: (Conv<Cin, Cout, 1, Groups<G>>, Bn<Cout>, AvgPool<Cout, 3, S>, Bn<Cout>),
    #[rep(names("conv1", "bn1", "conv2", "bn2"))]
    kxk: (Conv<Cin, Cin, 1, Groups<G>>, Bn<Cin>, Conv<Cin, Cout, 3, S, Groups<G>>, Bn<Cout>),
}

/// Checks `block`'s backward on `x` against central differences of `reference(x, params, frozen)`,
/// where `frozen` holds the tensors after the step's forward (running statistics updated), for
/// the values a step treats as constants.
fn check_family<B: Train + Parameters>(
    what: &str,
    block: &mut B,
    x: &Array4<f32>,
    reference: impl Fn(&[f64], &Params, &Params) -> Vec<f64>,
) {
    let mut rng = rng(99);
    let mut params = Params::new();
    block.visit("", &mut |name, t| {
        params.insert(name.to_owned(), f64s(t.iter()));
    });
    let (y, cache) = block.forward_cached(x).unwrap();
    let r = Array4::from_shape_simple_fn(y.dim(), || rng.random_range(-1.0f32..1.0));
    let mut grads = Gradients::new();
    let dx = block.backward(cache, &r, "", &mut grads).unwrap();
    let r64 = f64s(&r);
    // After the step: running statistics updated, as DBB's pad value reads them.
    let mut frozen = Params::new();
    block.visit("", &mut |name, t| {
        frozen.insert(name.to_owned(), f64s(t.iter()));
    });
    let loss = |x: &[f64], p: &Params| dot(&r64, &reference(x, p, &frozen));
    let x64 = f64s(x);
    let (ours, theirs) = (dot(&r64, &f64s(&y)), loss(&x64, &params));
    assert!((ours - theirs).abs() < 1e-4 * theirs.abs().max(1.0), "{what}: forward {ours} vs reference {theirs}");

    let central = |f: &dyn Fn(f64) -> f64, at: f64| {
        (f(at + common::f64ref::H) - f(at - common::f64ref::H)) / (2.0 * common::f64ref::H)
    };
    let compare = |name: &str, analytic: &[f32], indices: &[usize], numeric: &dyn Fn(usize) -> f64| {
        let values: Vec<(f64, f64)> = indices.iter().map(|&i| (analytic[i] as f64, numeric(i))).collect();
        // At least 0.1: a gradient that vanishes by BN's scale invariance (a depthwise 1×1
        // right before a training BN) is f32 rounding, ~1e-7 of the terms summed.
        let scale = analytic.iter().fold(0.1f64, |m, v| m.max(v.abs() as f64));
        let worst = values.iter().map(|(a, n)| (a - n).abs()).fold(0.0, f64::max);
        assert!(worst <= TOL * scale, "{what} {name}: {:e} of the largest", worst / scale);
    };
    let all: Vec<usize> = (0..x64.len()).collect();
    compare("dx", dx.as_slice().unwrap(), &all, &|i| {
        central(
            &|v| {
                let mut probe = x64.clone();
                probe[i] = v;
                loss(&probe, &params)
            },
            x64[i],
        )
    });
    let trainable: Vec<&String> = params.keys().filter(|n| !n.contains("running")).collect();
    let with_gradients: Vec<&str> = grads.iter().map(|(n, _)| n).collect();
    assert_eq!(with_gradients, trainable.iter().map(|n| n.as_str()).collect::<Vec<_>>(), "{what}: gradient names");
    for name in trainable {
        let analytic = grads.get(name).unwrap().clone().into_shape_with_order(IxDyn(&[params[name].len()])).unwrap();
        let len = analytic.len();
        let sample: Vec<usize> =
            if len <= 12 { (0..len).collect() } else { (0..12).map(|_| rng.random_range(0..len)).collect() };
        compare(name, analytic.as_slice().unwrap(), &sample, &|i| {
            central(
                &|v| {
                    let mut p = params.clone();
                    p.get_mut(name).unwrap()[i] = v;
                    loss(&x64, &p)
                },
                params[name][i],
            )
        });
    }
}

/// The values of `name` in `p`.
fn get<'a>(p: &'a Params, name: &str) -> &'a [f64] {
    p.get(name).unwrap_or_else(|| panic!("no tensor `{name}`"))
}

/// conv (no bias) → train-mode BN of the tensors under `prefix.conv` / `prefix.bn`.
fn conv_bn(
    x: &[f64],
    shape: [usize; 4],
    g: &ConvGeometry,
    p: &Params,
    conv: &str,
    bn: &str,
    eps: f64,
) -> (Vec<f64>, [usize; 4]) {
    let z = conv64(x, shape, get(p, &format!("{conv}.weight")), None, g, None);
    let out = g.output_size(shape[2], shape[3]).unwrap();
    let dims = [shape[0], g.out_channels, out.h, out.w];
    (batch_norm64(&z, dims, get(p, &format!("{bn}.weight")), get(p, &format!("{bn}.bias")), eps), dims)
}

fn add(a: &mut [f64], b: &[f64]) {
    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
}

/// The eval-mode BN's value for a zero input: `β − μ·γ/√(σ² + ε)` per channel.
fn bn_zero(p: &Params, bn: &str) -> Vec<f64> {
    let (g, b) = (get(p, &format!("{bn}.weight")), get(p, &format!("{bn}.bias")));
    let (m, v) = (get(p, &format!("{bn}.running_mean")), get(p, &format!("{bn}.running_var")));
    (0..g.len()).map(|c| b[c] - m[c] * g[c] / (v[c] + EPS).sqrt()).collect()
}

fn random_input(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
    let mut rng = rng(seed);
    Array4::from_shape_simple_fn(shape, || rng.random_range(-1.0f32..1.0))
}

#[test]
fn acnet() {
    for stride in [1usize, 2] {
        let mut r = rng(1);
        let mut block = AcBlock::new(3usize, 4usize, stride, &mut r).unwrap();
        randomize_vectors(&mut block, &mut r);
        let x = random_input((2, 3, 5, 6), 2);
        let shape = [2, 3, 5, 6];
        check_family("ACNet", &mut block, &x, |x, p, _| {
            let g = |k: (usize, usize), pad: (usize, usize)| ConvGeometry::new(3, 4, k).stride(stride).padding(pad);
            let (mut y, _) = conv_bn(x, shape, &g((3, 3), (1, 1)), p, "square.conv", "square.bn", EPS);
            add(&mut y, &conv_bn(x, shape, &g((1, 3), (0, 1)), p, "hor.conv", "hor.bn", EPS).0);
            add(&mut y, &conv_bn(x, shape, &g((3, 1), (1, 0)), p, "ver.conv", "ver.bn", EPS).0);
            y.iter().map(|v| v.max(0.0)).collect()
        });
    }
}

#[test]
fn repconv_n() {
    let mut r = rng(3);
    let mut block = RepConvN::new(4usize, 4usize, 1usize, &mut r).unwrap();
    randomize_vectors(&mut block, &mut r);
    let x = random_input((2, 4, 5, 5), 4);
    let shape = [2, 4, 5, 5];
    check_family("RepConvN", &mut block, &x, |x, p, _| {
        let (mut y, _) =
            conv_bn(x, shape, &ConvGeometry::new(4, 4, 3).padding(1), p, "rbr_dense.0", "rbr_dense.1", 1e-3);
        add(&mut y, &conv_bn(x, shape, &ConvGeometry::new(4, 4, 1), p, "rbr_1x1.0", "rbr_1x1.1", 1e-3).0);
        y.iter().map(|v| v / (1.0 + (-v).exp())).collect()
    });
}

#[test]
fn mobileone_depthwise() {
    for stride in [1usize, 2] {
        let mut r = rng(5);
        let mut block = MobileOneDw::new(4usize, stride, &mut r).unwrap();
        randomize_vectors(&mut block, &mut r);
        let x = random_input((2, 4, 5, 6), 6);
        let shape = [2, 4, 5, 6];
        check_family("MobileOne", &mut block, &x, |x, p, _| {
            let g = |k: usize| ConvGeometry::new(4, 4, k).stride(stride).padding(k / 2).groups(4);
            let (mut y, _) = conv_bn(x, shape, &g(3), p, "conv0.conv", "conv0.bn", EPS);
            add(&mut y, &conv_bn(x, shape, &g(3), p, "conv1.conv", "conv1.bn", EPS).0);
            add(&mut y, &conv_bn(x, shape, &g(1), p, "scale.conv", "scale.bn", EPS).0);
            if stride == 1 {
                add(&mut y, &batch_norm64(x, shape, get(p, "skip.weight"), get(p, "skip.bias"), EPS));
            }
            y.iter().map(|v| v.max(0.0)).collect()
        });
    }
}

#[test]
fn dbb_with_bn_and_pad() {
    for (stride, groups) in [(1usize, 2usize), (2, 1)] {
        let mut r = rng(7);
        let mut block = Dbb::new(4usize, 4usize, stride, groups, &mut r).unwrap();
        randomize_vectors(&mut block, &mut r);
        let x = random_input((2, 4, 6, 5), 8);
        let shape = [2, 4, 6, 5];
        check_family("DBB", &mut block, &x, |x, p, frozen| {
            let g = |k: usize, s: usize, pad: usize| ConvGeometry::new(4, 4, k).stride(s).padding(pad).groups(groups);
            let (mut y, out) = conv_bn(x, shape, &g(3, stride, 1), p, "origin.conv", "origin.bn", EPS);
            add(&mut y, &conv_bn(x, shape, &g(1, stride, 0), p, "one.conv", "one.bn", EPS).0);
            // 1×1 → BN → 3×3 padded with the BN's zero value (frozen: a constant of the step).
            let (inner, dims) = conv_bn(x, shape, &g(1, 1, 0), p, "kxk.conv1", "kxk.bn1", EPS);
            let z = conv64(
                &inner,
                dims,
                get(p, "kxk.conv2.weight"),
                None,
                &g(3, stride, 1),
                Some(&bn_zero(frozen, "kxk.bn1")),
            );
            add(&mut y, &batch_norm64(&z, out, get(p, "kxk.bn2.weight"), get(p, "kxk.bn2.bias"), EPS));
            // 1×1 → BN → 3×3 average (padding with the BN's zero value, counted) → BN.
            let (inner, dims) = conv_bn(x, shape, &g(1, 1, 0), p, "avg.conv", "avg.bn", EPS);
            let pool = ConvGeometry::new(4, 4, 3).stride(stride).padding(1).groups(4);
            let z = conv64(&inner, dims, &[1.0 / 9.0; 36], None, &pool, Some(&bn_zero(frozen, "avg.bn")));
            add(&mut y, &batch_norm64(&z, out, get(p, "avg.avgbn.weight"), get(p, "avg.avgbn.bias"), EPS));
            y.iter().map(|v| v.max(0.0)).collect()
        });
    }
}

#[test]
fn repvgg_with_squeeze_excitation() {
    let mut r = rng(9);
    let mut block = rep::zoo::repvgg::RepVggBlock::new(16usize, 16usize, 1usize, 1usize, 1usize, &mut r).unwrap();
    randomize_vectors(&mut block, &mut r);
    let x = random_input((2, 16, 3, 4), 10);
    let shape = [2, 16, 3, 4];
    check_family("RepVGG + SE", &mut block, &x, |x, p, _| {
        let (mut y, _) =
            conv_bn(x, shape, &ConvGeometry::new(16, 16, 3).padding(1), p, "rbr_dense.conv", "rbr_dense.bn", EPS);
        add(&mut y, &conv_bn(x, shape, &ConvGeometry::new(16, 16, 1), p, "rbr_1x1.conv", "rbr_1x1.bn", EPS).0);
        add(&mut y, &batch_norm64(x, shape, get(p, "rbr_identity.weight"), get(p, "rbr_identity.bias"), EPS));
        let plane = 12;
        for n in 0..2 {
            let image = &y[n * 16 * plane..(n + 1) * 16 * plane];
            let pooled: Vec<f64> =
                (0..16).map(|c| image[c * plane..(c + 1) * plane].iter().sum::<f64>() / plane as f64).collect();
            let (dw, db) = (get(p, "se.down.weight"), get(p, "se.down.bias"));
            let hidden = (db[0] + (0..16).map(|c| dw[c] * pooled[c]).sum::<f64>()).max(0.0);
            let (uw, ub) = (get(p, "se.up.weight"), get(p, "se.up.bias"));
            for c in 0..16 {
                let gate = 1.0 / (1.0 + (-(ub[c] + uw[c] * hidden)).exp());
                y[(n * 16 + c) * plane..(n * 16 + c + 1) * plane].iter_mut().for_each(|v| *v *= gate);
            }
        }
        y.iter().map(|v| v.max(0.0)).collect()
    });
}
