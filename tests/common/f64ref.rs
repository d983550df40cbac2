//! f64 references for gradient checks: central differences, a reference convolution and
//! train-mode BatchNorm, and the comparison the checks make.

use ndarray::{Array4, IxDyn};
use rand::Rng;
use rep::ConvGeometry;
use rep::layers::Parameters;
use rep::train::{Gradients, Train};
use std::collections::BTreeMap;

/// Every tensor of a block by name, as f64.
pub type Params = BTreeMap<String, Vec<f64>>;

/// PyTorch's default BN ε.
pub const EPS: f64 = 1e-5;

/// Step of the central differences.
pub const H: f64 = 1e-6;
/// Allowed `max |analytic − numeric|`, relative to the largest numeric value.
pub const TOL: f64 = 1e-5;

/// Central differences of `loss` with respect to every entry of `theta`.
pub fn numeric(theta: &[f64], loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut probe = theta.to_vec();
    (0..theta.len())
        .map(|i| {
            probe[i] = theta[i] + H;
            let up = loss(&probe);
            probe[i] = theta[i] - H;
            let down = loss(&probe);
            probe[i] = theta[i];
            (up - down) / (2.0 * H)
        })
        .collect()
}

/// Panics unless the analytic gradient matches the numeric one within [`TOL`] of its largest value.
pub fn assert_gradient(what: &str, analytic: impl IntoIterator<Item = f32>, numeric: &[f64]) {
    let analytic: Vec<f64> = analytic.into_iter().map(f64::from).collect();
    assert_eq!(analytic.len(), numeric.len(), "{what}: length");
    let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
    let worst = analytic.iter().zip(numeric).map(|(a, n)| (a - n).abs()).fold(0.0, f64::max);
    assert!(worst <= TOL * scale, "{what}: max |analytic − numeric| = {worst:e}, {:e} of the largest", worst / scale);
}

/// The values as f64.
pub fn f64s<'a>(t: impl IntoIterator<Item = &'a f32>) -> Vec<f64> {
    t.into_iter().map(|&v| v as f64).collect()
}

/// `Σ r ⊙ y`.
pub fn dot(r: &[f64], y: &[f64]) -> f64 {
    r.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// The f64 reference convolution (cross-correlation, padded positions reading `fill[c]`).
pub fn conv64(
    x: &[f64],
    shape: [usize; 4],
    w: &[f64],
    b: Option<&[f64]>,
    g: &ConvGeometry,
    fill: Option<&[f64]>,
) -> Vec<f64> {
    let [n, _, h, wd] = shape;
    let out = g.output_size(h, wd).unwrap();
    let (cin_g, cout_g) = (g.in_per_group(), g.out_per_group());
    let mut y = Vec::with_capacity(n * g.out_channels * out.h * out.w);
    for b_ in 0..n {
        for o in 0..g.out_channels {
            for i in 0..out.h {
                for j in 0..out.w {
                    let mut acc = b.map_or(0.0, |b| b[o]);
                    for ci in 0..cin_g {
                        let ch = (o / cout_g) * cin_g + ci;
                        for u in 0..g.kernel.h {
                            for v in 0..g.kernel.w {
                                let ih = (i * g.stride.h + u * g.dilation.h) as isize - g.padding.h as isize;
                                let iw = (j * g.stride.w + v * g.dilation.w) as isize - g.padding.w as isize;
                                let value = if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                    fill.map_or(0.0, |f| f[ch])
                                } else {
                                    x[((b_ * shape[1] + ch) * h + ih as usize) * wd + iw as usize]
                                };
                                acc += w[((o * cin_g + ci) * g.kernel.h + u) * g.kernel.w + v] * value;
                            }
                        }
                    }
                    y.push(acc);
                }
            }
        }
    }
    y
}

/// Train-mode BatchNorm in f64: batch mean and biased variance per channel.
pub fn batch_norm64(x: &[f64], shape: [usize; 4], gamma: &[f64], beta: &[f64], eps: f64) -> Vec<f64> {
    let [n, c, h, w] = shape;
    let at = |b: usize, ch: usize, k: usize| (b * c + ch) * h * w + k;
    let mut y = vec![0.0; x.len()];
    for ch in 0..c {
        let values: Vec<f64> =
            (0..n).flat_map(|b| (0..h * w).map(move |k| (b, k))).map(|(b, k)| x[at(b, ch, k)]).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        for b in 0..n {
            for k in 0..h * w {
                y[at(b, ch, k)] = gamma[ch] * (x[at(b, ch, k)] - mean) / (var + eps).sqrt() + beta[ch];
            }
        }
    }
    y
}

/// Checks `block`'s backward on `x` against central differences of `reference(x, params, frozen)`,
/// where `frozen` holds the tensors after the step's forward (running statistics updated), for
/// the values a step treats as constants.
pub fn check_block<B: Train + Parameters>(
    what: &str,
    block: &mut B,
    x: &Array4<f32>,
    reference: impl Fn(&[f64], &Params, &Params) -> Vec<f64>,
) {
    let mut rng = super::rng(99);
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

    let central = |f: &dyn Fn(f64) -> f64, at: f64| (f(at + H) - f(at - H)) / (2.0 * H);
    // A gradient that vanishes by BN's scale invariance (a depthwise 1×1 right before a
    // training BN) is pure f32 rounding of the terms summed: each tensor is compared at least at
    // a tenth of the block's largest gradient.
    let largest = grads.iter().flat_map(|(_, g)| g.iter()).fold(0.0f64, |m, v| m.max(v.abs() as f64));
    let compare = |name: &str, analytic: &[f32], indices: &[usize], numeric: &dyn Fn(usize) -> f64| {
        let values: Vec<(f64, f64)> = indices.iter().map(|&i| (analytic[i] as f64, numeric(i))).collect();
        let scale = analytic.iter().fold(0.1 * largest, |m, v| m.max(v.abs() as f64)).max(1e-3);
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
pub fn get<'a>(p: &'a Params, name: &str) -> &'a [f64] {
    p.get(name).unwrap_or_else(|| panic!("no tensor `{name}`"))
}

/// conv (no bias) → train-mode BN of the tensors under `prefix.conv` / `prefix.bn`.
pub fn conv_bn(
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

/// Eval-mode BN in f64 on the tensors under `bn`: `γ (x − μ)/√(σ² + ε) + β` per channel.
pub fn eval_batch_norm64(x: &[f64], shape: [usize; 4], p: &Params, bn: &str) -> Vec<f64> {
    let (g, v) = (get(p, &format!("{bn}.weight")), get(p, &format!("{bn}.running_var")));
    let zero = bn_zero(p, bn);
    let plane = shape[2] * shape[3];
    x.iter()
        .enumerate()
        .map(|(i, _)| (i / plane) % shape[1])
        .zip(x)
        .map(|(c, x)| x * g[c] / (v[c] + EPS).sqrt() + zero[c])
        .collect()
}

pub fn add(a: &mut [f64], b: &[f64]) {
    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
}

/// The eval-mode BN's value for a zero input: `β − μ·γ/√(σ² + ε)` per channel.
pub fn bn_zero(p: &Params, bn: &str) -> Vec<f64> {
    let (g, b) = (get(p, &format!("{bn}.weight")), get(p, &format!("{bn}.bias")));
    let (m, v) = (get(p, &format!("{bn}.running_mean")), get(p, &format!("{bn}.running_var")));
    (0..g.len()).map(|c| b[c] - m[c] * g[c] / (v[c] + EPS).sqrt()).collect()
}
