//! [`Train`] for every layer a block is made of.

use super::{Gradients, Train};
use crate::error::{Error, Result};
use crate::kernels::{self, ConvOperands};
use crate::layers::{
    Activation, AvgPool2d, BatchNorm2d, Conv2d, ConvBn, FilterBank, IdentityBasedConv, ImplicitA, ImplicitM, Layer,
    Scale, SqueezeExcite, global_avg_pool, join,
};
use ndarray::{Array1, Array4, Axis, Zip};
use rayon::prelude::*;
use std::sync::Arc;

/// What a convolution's (or a fixed filter's) training forward keeps: its input and, when it
/// padded with given values, those values.
#[derive(Clone, Debug)]
pub struct ConvCache {
    input: Arc<Array4<f32>>,
    fill: Option<Array1<f32>>,
}

impl ConvCache {
    fn new(x: &Array4<f32>, fill: Option<&Array1<f32>>) -> ConvCache {
        ConvCache::shared(&Arc::new(x.clone()), fill)
    }

    fn shared(x: &Arc<Array4<f32>>, fill: Option<&Array1<f32>>) -> ConvCache {
        ConvCache { input: Arc::clone(x), fill: fill.cloned() }
    }
}

/// Layers that can pad their input with given per-channel values instead of zeros (DBB's
/// BN-and-pad: the value the stages before produce for a zero input). The fill is a constant
/// of the step, as in the original DBB code, which detaches it: no gradient flows through it.
pub trait TrainWithFill: Train {
    /// [`Train::forward_cached`] padding input channel `c` with `fill[c]`; the ordinary
    /// [`Train::backward`] takes the cache.
    fn forward_cached_with_fill(&mut self, x: &Array4<f32>, fill: &Array1<f32>) -> Result<(Array4<f32>, Self::Cache)>;
}

/// `W`, `b`: `dW = Σ dY ⋆ x`, `db = Σ dY`, `dx = Wᵀ ⋆ dY` ([`kernels::conv2d_backward`]).
/// A fixed [`Conv2d::pad_fill`] is a buffer, so it gets no gradient.
impl Train for Conv2d {
    type Cache = ConvCache;

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, ConvCache)> {
        Ok((self.forward(x)?, ConvCache::new(x, None)))
    }

    fn forward_cached_shared(&mut self, x: &Arc<Array4<f32>>) -> Result<(Array4<f32>, ConvCache)> {
        Ok((self.forward(x)?, ConvCache::shared(x, None)))
    }

    fn backward(&self, cache: ConvCache, dy: &Array4<f32>, prefix: &str, grads: &mut Gradients) -> Result<Array4<f32>> {
        let operands = ConvOperands { pad_fill: cache.fill.as_ref().map(|f| f.view()), ..self.operands() };
        let g = kernels::conv2d_backward(cache.input.view(), &self.geometry, operands, dy.view())?;
        grads.accumulate(&join(prefix, "weight"), g.weight.into_dyn())?;
        if self.bias.is_some() {
            grads.accumulate(&join(prefix, "bias"), g.bias.into_dyn())?;
        }
        Ok(g.input)
    }
}

impl TrainWithFill for Conv2d {
    fn forward_cached_with_fill(&mut self, x: &Array4<f32>, fill: &Array1<f32>) -> Result<(Array4<f32>, ConvCache)> {
        Ok((self.forward_with_fill(x, fill)?, ConvCache::new(x, Some(fill))))
    }
}

/// What BatchNorm's training forward keeps: its input and the batch statistics.
#[derive(Clone, Debug)]
pub struct BatchNormCache {
    x: Arc<Array4<f32>>,
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    /// Normalized with the batch's statistics (training mode) rather than the running ones.
    batch: bool,
}

impl BatchNorm2d {
    /// The eval-mode forward (running statistics, which stay as they are) keeping what the
    /// backward needs: training a network whose BatchNorms are frozen, as PyTorch does after
    /// `bn.eval()`. [`Train::backward`] then treats μ and σ² as constants: `dx = γ·s·dy`,
    /// `dγ = Σ dy·x̂`, `dβ = Σ dy`.
    pub fn forward_cached_frozen(&self, x: &Array4<f32>) -> Result<(Array4<f32>, BatchNormCache)> {
        self.frozen_cached(Arc::new(x.as_standard_layout().into_owned()))
    }

    fn frozen_cached(&self, x: Arc<Array4<f32>>) -> Result<(Array4<f32>, BatchNormCache)> {
        let y = self.forward(&x)?;
        let mean = self.running_mean.iter().map(|&m| m as f64).collect();
        let inv_std = self.running_var.iter().map(|&v| 1.0 / (v as f64 + self.eps).sqrt()).collect();
        Ok((y, BatchNormCache { x, mean, inv_std, batch: false }))
    }
}

/// Training mode, as PyTorch's `batch_norm_backward`: with `x̂ = (x − μ_B)·s`, `s = 1/√(σ²_B + ε)`
/// and `m = N·H·W` values per channel, `dβ = Σ dy`, `dγ = Σ dy·x̂`,
/// `dx = γ·s·(dy − dβ/m − x̂·dγ/m)`: sums and per-channel constants in f64, the element-wise
/// maps in f32, plane by plane.
impl Train for BatchNorm2d {
    type Cache = BatchNormCache;

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, BatchNormCache)> {
        self.forward_cached_shared(&Arc::new(x.as_standard_layout().into_owned()))
    }

    fn forward_cached_shared(&mut self, x: &Arc<Array4<f32>>) -> Result<(Array4<f32>, BatchNormCache)> {
        let x = if x.is_standard_layout() { Arc::clone(x) } else { Arc::new(x.as_standard_layout().into_owned()) };
        if self.frozen {
            return self.frozen_cached(x);
        }
        let statistics = self.update_statistics(&x)?;
        let mean: Vec<f64> = statistics.iter().map(|s| s.0).collect();
        let inv_std: Vec<f64> = statistics.iter().map(|s| 1.0 / (s.1 + self.eps).sqrt()).collect();
        // y = a·x + b per channel, a = γ·s and b = β − μ·a formed in f64.
        let (a, b): (Vec<f32>, Vec<f32>) = (0..self.channels())
            .map(|c| {
                let a = self.weight[c] as f64 * inv_std[c];
                (a as f32, (self.bias[c] as f64 - mean[c] * a) as f32)
            })
            .unzip();
        // One pass from x into a fresh y (not a copy of x, then a pass over the copy).
        let mut y = Array4::<f32>::zeros(x.dim());
        let (channels, plane) = (self.channels(), (x.shape()[2] * x.shape()[3]).max(1));
        let inputs = x.as_slice().expect("standard layout").par_chunks(plane);
        let planes = y.as_slice_mut().expect("fresh array").par_chunks_mut(plane).zip(inputs);
        planes.with_min_len(kernels::planes_per_task(plane)).enumerate().for_each(|(p, (out, input))| {
            let c = p % channels;
            out.iter_mut().zip(input).for_each(|(y, &x)| *y = x * a[c] + b[c]);
        });
        Ok((y, BatchNormCache { x, mean, inv_std, batch: true }))
    }

    fn backward(
        &self,
        cache: BatchNormCache,
        dy: &Array4<f32>,
        prefix: &str,
        grads: &mut Gradients,
    ) -> Result<Array4<f32>> {
        check_same("batch norm output gradient", dy, &cache.x)?;
        let (n, channels, h, w) = cache.x.dim();
        let (plane, count) = (h * w, (n * h * w) as f64);
        let dy = dy.as_standard_layout();
        let (x, d) = (cache.x.as_slice().expect("standard layout"), dy.as_slice().expect("standard layout"));
        let planes_of = |c: usize| (0..n).map(move |i| (i * channels + c) * plane..(i * channels + c + 1) * plane);
        // Per channel: Σ dy and Σ dy·(x − μ) in f64, channels in parallel.
        let sums: Vec<(f64, f64)> = (0..channels)
            .into_par_iter()
            .with_min_len(kernels::planes_per_task(n * plane))
            .map(|c| {
                let mean = cache.mean[c];
                planes_of(c).fold((0.0f64, 0.0f64), |(sum, dot), range| {
                    let (xs, ds) = (&x[range.clone()], &d[range]);
                    let plane_sum: f64 = ds.iter().map(|&d| d as f64).sum();
                    let plane_dot: f64 = xs.iter().zip(ds).map(|(&x, &d)| d as f64 * (x as f64 - mean)).sum();
                    (sum + plane_sum, dot + plane_dot)
                })
            })
            .collect();
        // dx = γ·s·(dy − mean(dy) − (x − μ)·Σ dy·(x − μ)·s²/m), per plane in f32.
        let constants: Vec<[f32; 4]> = (0..channels)
            .map(|c| {
                let (s, gamma) = (cache.inv_std[c], self.weight[c] as f64);
                // With running statistics, μ and σ² are constants: no terms through them.
                let (mean_dy, projection) =
                    if cache.batch { (sums[c].0 / count, sums[c].1 * s * s / count) } else { (0.0, 0.0) };
                [cache.mean[c] as f32, mean_dy as f32, projection as f32, (gamma * s) as f32]
            })
            .collect();
        let mut dx = Array4::<f32>::zeros(cache.x.dim());
        let planes = dx.as_slice_mut().expect("fresh array").par_chunks_mut(plane.max(1));
        planes.with_min_len(kernels::planes_per_task(plane)).enumerate().for_each(|(p, out)| {
            let [mean, mean_dy, projection, scale] = constants[p % channels];
            let range = p * plane..(p + 1) * plane;
            for ((out, &x), &d) in out.iter_mut().zip(&x[range.clone()]).zip(&d[range]) {
                *out = (d - mean_dy - (x - mean) * projection) * scale;
            }
        });
        let dgamma: Array1<f32> = sums.iter().zip(&cache.inv_std).map(|(&(_, dot), s)| (dot * s) as f32).collect();
        let dbeta: Array1<f32> = sums.iter().map(|&(sum_dy, _)| sum_dy as f32).collect();
        grads.accumulate(&join(prefix, "weight"), dgamma.into_dyn())?;
        grads.accumulate(&join(prefix, "bias"), dbeta.into_dyn())?;
        Ok(dx)
    }

    fn freeze_batch_norm(&mut self, frozen: bool) {
        self.frozen = frozen;
    }
}

/// Through the whole kernel `W = I + Δ`: the gradient of Δ is that of `W`, under `weight`.
impl Train for IdentityBasedConv {
    type Cache = ConvCache;

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, ConvCache)> {
        self.kernel().forward_cached(x)
    }

    fn forward_cached_shared(&mut self, x: &Arc<Array4<f32>>) -> Result<(Array4<f32>, ConvCache)> {
        self.kernel().forward_cached_shared(x)
    }

    fn backward(&self, cache: ConvCache, dy: &Array4<f32>, prefix: &str, grads: &mut Gradients) -> Result<Array4<f32>> {
        self.kernel().backward(cache, dy, prefix, grads)
    }
}

impl TrainWithFill for IdentityBasedConv {
    fn forward_cached_with_fill(&mut self, x: &Array4<f32>, fill: &Array1<f32>) -> Result<(Array4<f32>, ConvCache)> {
        self.kernel().forward_cached_with_fill(x, fill)
    }
}

/// The conv's backward after the BN's, under `conv.` and `bn.`.
impl Train for ConvBn {
    type Cache = (ConvCache, BatchNormCache);

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, Self::Cache)> {
        self.forward_cached_shared(&Arc::new(x.clone()))
    }

    fn forward_cached_shared(&mut self, x: &Arc<Array4<f32>>) -> Result<(Array4<f32>, Self::Cache)> {
        let (z, conv) = self.conv.forward_cached_shared(x)?;
        let (y, bn) = self.bn.forward_cached_shared(&Arc::new(z))?;
        Ok((y, (conv, bn)))
    }

    fn backward(
        &self,
        (conv, bn): Self::Cache,
        dy: &Array4<f32>,
        prefix: &str,
        grads: &mut Gradients,
    ) -> Result<Array4<f32>> {
        let dz = self.bn.backward(bn, dy, &join(prefix, "bn"), grads)?;
        self.conv.backward(conv, &dz, &join(prefix, "conv"), grads)
    }

    fn freeze_batch_norm(&mut self, frozen: bool) {
        self.bn.freeze_batch_norm(frozen);
    }
}

impl Activation {
    /// `dy/dx` at `x`, as PyTorch's backward formulas: ReLU `x > 0` (so 0 at 0 and at NaN),
    /// SiLU `σ(x)·(1 + x·(1 − σ(x)))`, LeakyReLU `1` or the slope, sigmoid `σ(x)·(1 − σ(x))`.
    pub fn derivative(self, x: f32) -> f32 {
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        match self {
            Activation::Identity => 1.0,
            Activation::Relu => (x > 0.0) as u8 as f32,
            Activation::Silu => {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }
            Activation::LeakyRelu(slope) => {
                if x > 0.0 {
                    1.0
                } else {
                    slope
                }
            }
            Activation::Sigmoid => {
                let s = sigmoid(x);
                s * (1.0 - s)
            }
        }
    }
}

/// `dx = dy · f′(x)`; the cache is the input.
impl Train for Activation {
    type Cache = Array4<f32>;

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, Array4<f32>)> {
        Ok((self.forward(x)?, x.clone()))
    }

    fn backward(&self, x: Array4<f32>, dy: &Array4<f32>, _: &str, _: &mut Gradients) -> Result<Array4<f32>> {
        check_same("activation output gradient", dy, &x)?;
        let x_len = x.len();
        let mut dx = x;
        let zip = Zip::from(&mut dx).and(dy);
        let activation = *self;
        if x_len >= kernels::PARALLEL_ELEMENTS {
            zip.par_for_each(|x, &d| *x = d * activation.derivative(*x));
        } else {
            zip.for_each(|x, &d| *x = d * activation.derivative(*x));
        }
        Ok(dx)
    }
}

/// `y = w[c]·x`: `dw[c] = Σ dy·x`, `dx = w[c]·dy`.
impl Train for Scale {
    type Cache = Array4<f32>;

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, Array4<f32>)> {
        Ok((self.forward(x)?, x.clone()))
    }

    fn backward(&self, x: Array4<f32>, dy: &Array4<f32>, prefix: &str, grads: &mut Gradients) -> Result<Array4<f32>> {
        let (dw, dx) = per_channel_product_backward(&x, dy, self.weight.iter().copied())?;
        grads.accumulate(&join(prefix, "weight"), dw.into_dyn())?;
        Ok(dx)
    }
}

/// `y = x + a[c]`: `da[c] = Σ dy`, `dx = dy`.
impl Train for ImplicitA {
    type Cache = ();

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, ())> {
        Ok((self.forward(x)?, ()))
    }

    fn backward(&self, _: (), dy: &Array4<f32>, prefix: &str, grads: &mut Gradients) -> Result<Array4<f32>> {
        let da = dy.sum_axis(Axis(3)).sum_axis(Axis(2)).sum_axis(Axis(0));
        let da = da.into_shape_with_order(self.implicit.raw_dim()).map_err(|e| Error::geometry(e.to_string()))?;
        grads.accumulate(&join(prefix, "implicit"), da.into_dyn())?;
        Ok(dy.clone())
    }
}

/// `y = m[c]·x`: `dm[c] = Σ dy·x`, `dx = m[c]·dy`.
impl Train for ImplicitM {
    type Cache = Array4<f32>;

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, Array4<f32>)> {
        Ok((self.forward(x)?, x.clone()))
    }

    fn backward(&self, x: Array4<f32>, dy: &Array4<f32>, prefix: &str, grads: &mut Gradients) -> Result<Array4<f32>> {
        let (dm, dx) = per_channel_product_backward(&x, dy, self.implicit.iter().copied())?;
        let dm = dm.into_shape_with_order(self.implicit.raw_dim()).map_err(|e| Error::geometry(e.to_string()))?;
        grads.accumulate(&join(prefix, "implicit"), dm.into_dyn())?;
        Ok(dx)
    }
}

/// For `y = w[c]·x`: `(dw, dx)` with `dw[c] = Σ dy·x` (f64 sums) and `dx = w[c]·dy`.
fn per_channel_product_backward(
    x: &Array4<f32>,
    dy: &Array4<f32>,
    w: impl Iterator<Item = f32>,
) -> Result<(Array1<f32>, Array4<f32>)> {
    check_same("per-channel layer output gradient", dy, x)?;
    let mut dx = dy.clone();
    let mut dw = Vec::new();
    for (c, w_c) in w.enumerate() {
        let mut sum = 0.0f64;
        Zip::from(x.index_axis(Axis(1), c)).and(dy.index_axis(Axis(1), c)).for_each(|&x, &d| sum += (x * d) as f64);
        dw.push(sum as f32);
        dx.index_axis_mut(Axis(1), c).mapv_inplace(|d| d * w_c);
    }
    Ok((Array1::from(dw), dx))
}

impl TrainWithFill for ConvBn {
    fn forward_cached_with_fill(&mut self, x: &Array4<f32>, fill: &Array1<f32>) -> Result<(Array4<f32>, Self::Cache)> {
        let (z, conv) = self.conv.forward_cached_with_fill(x, fill)?;
        let (y, bn) = self.bn.forward_cached_shared(&Arc::new(z))?;
        Ok((y, (conv, bn)))
    }
}

/// A fixed window filter: only `dx`, through the transposed convolution of its window sums
/// (divided by the window area, or by each window's count of real positions).
impl Train for AvgPool2d {
    type Cache = ConvCache;

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, ConvCache)> {
        Ok((self.forward(x)?, ConvCache::new(x, None)))
    }

    fn backward(&self, cache: ConvCache, dy: &Array4<f32>, _: &str, _: &mut Gradients) -> Result<Array4<f32>> {
        let x = &*cache.input;
        let (_, channels, h, w) = x.dim();
        let geometry = self.geometry(channels);
        let ones = Array4::ones(geometry.weight_shape());
        let operands = ConvOperands { weight: ones.view(), bias: None, pad_fill: None };
        let scaled = if self.count_include_pad {
            dy / (self.kernel.h * self.kernel.w) as f32
        } else {
            let counts = kernels::conv2d(
                Array4::ones((1, 1, h, w)).view(),
                &self.geometry(1),
                ConvOperands { weight: Array4::ones((1, 1, self.kernel.h, self.kernel.w)).view(), ..operands },
            )?;
            dy / &counts
        };
        Ok(kernels::conv2d_backward(x.view(), &geometry, operands, scaled.view())?.input)
    }
}

/// The window sums padded with `fill` (counted in the divisor, as [`AvgPool2d::forward_with_fill`]):
/// the input gradient does not depend on the fill.
impl TrainWithFill for AvgPool2d {
    fn forward_cached_with_fill(&mut self, x: &Array4<f32>, fill: &Array1<f32>) -> Result<(Array4<f32>, ConvCache)> {
        if !self.count_include_pad {
            return Err(Error::Unsupported("an avg pool that pads with values but does not count them".into()));
        }
        Ok((self.forward_with_fill(x, fill)?, ConvCache::new(x, Some(fill))))
    }
}

/// Constant filters: only `dx`.
impl Train for FilterBank {
    type Cache = ConvCache;

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, ConvCache)> {
        Ok((self.forward(x)?, ConvCache::new(x, None)))
    }

    fn backward(&self, cache: ConvCache, dy: &Array4<f32>, _: &str, _: &mut Gradients) -> Result<Array4<f32>> {
        Ok(kernels::conv2d_backward(cache.input.view(), &self.conv.geometry, self.conv.operands(), dy.view())?.input)
    }
}

impl TrainWithFill for FilterBank {
    fn forward_cached_with_fill(&mut self, x: &Array4<f32>, fill: &Array1<f32>) -> Result<(Array4<f32>, ConvCache)> {
        Ok((self.forward_with_fill(x, fill)?, ConvCache::new(x, Some(fill))))
    }
}

/// What squeeze-and-excitation's training forward keeps.
#[derive(Clone, Debug)]
pub struct SqueezeExciteCache {
    x: Array4<f32>,
    gate: Array4<f32>,
    down: ConvCache,
    relu: Array4<f32>,
    up: ConvCache,
    sigmoid: Array4<f32>,
}

/// `y = x·g`, `g = σ(up(ReLU(down(mean_hw x))))`: `dx = dy·g + (1/HW)·d(mean)`, where the
/// gate's gradient `Σ_hw dy·x` runs back through sigmoid, `up`, ReLU and `down`.
impl Train for SqueezeExcite {
    type Cache = SqueezeExciteCache;

    fn forward_cached(&mut self, x: &Array4<f32>) -> Result<(Array4<f32>, SqueezeExciteCache)> {
        let pooled = global_avg_pool(x).insert_axis(Axis(2)).insert_axis(Axis(3));
        let (hidden, down) = self.down.forward_cached(&pooled)?;
        let (hidden, relu) = Activation::Relu.forward_cached(&hidden)?;
        let (logits, up) = self.up.forward_cached(&hidden)?;
        let (gate, sigmoid) = Activation::Sigmoid.forward_cached(&logits)?;
        let y = x * &gate;
        Ok((y, SqueezeExciteCache { x: x.clone(), gate, down, relu, up, sigmoid }))
    }

    fn backward(
        &self,
        cache: SqueezeExciteCache,
        dy: &Array4<f32>,
        prefix: &str,
        grads: &mut Gradients,
    ) -> Result<Array4<f32>> {
        check_same("squeeze-excite output gradient", dy, &cache.x)?;
        let dgate = (dy * &cache.x).sum_axis(Axis(3)).sum_axis(Axis(2)).insert_axis(Axis(2)).insert_axis(Axis(3));
        let dlogits = Activation::Sigmoid.backward(cache.sigmoid, &dgate, "", grads)?;
        let dhidden = self.up.backward(cache.up, &dlogits, &join(prefix, self.names.1), grads)?;
        let dhidden = Activation::Relu.backward(cache.relu, &dhidden, "", grads)?;
        let dpooled = self.down.backward(cache.down, &dhidden, &join(prefix, self.names.0), grads)?;
        let (_, _, h, w) = cache.x.dim();
        let area = (h * w) as f32;
        Ok(dy * &cache.gate + &(dpooled / area))
    }
}

/// An error unless the gradient `dy` has the shape of the tensor `x` it belongs to.
fn check_same(what: &str, dy: &Array4<f32>, x: &Array4<f32>) -> Result<()> {
    if dy.shape() == x.shape() { Ok(()) } else { Err(Error::shape(what, x.shape(), dy.shape())) }
}
