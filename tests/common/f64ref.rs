//! f64 references for gradient checks: central differences, a reference convolution and
//! train-mode BatchNorm, and the comparison the checks make.

use rep::ConvGeometry;

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
