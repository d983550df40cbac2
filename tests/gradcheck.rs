//! Every backward against central finite differences of an f64 reference forward.
//!
//! The scalar checked is `L = Σ r ⊙ y` for a fixed random `r` (so `dL/dy = r`); each
//! analytic gradient (f32) must match `(L(θ + h) − L(θ − h)) / 2h` (f64, h = 1e-6) within
//! 1e-5 of the gradient's largest value, on random shapes with strides 1 and 2, groups,
//! dilation, asymmetric kernels and padding, pad fills and odd sizes.

mod common;

use common::f64ref::{
    EPS, add, assert_gradient, batch_norm64, check_block, conv_bn, conv64, dot, eval_batch_norm64, f64s, get, numeric,
};
use common::rng;
use ndarray::{Array1, Array4, ArrayD, Axis, IxDyn};
use rand::Rng;
use rep::layers::{Activation, AvgPool2d, Conv2d, GlobalAvgPool, Linear, Parameters, SqueezeExcite};
use rep::train::{Gradients, Train, cross_entropy};
use rep::{ConvGeometry, kernels};

fn random(shape: &[usize], rng: &mut impl Rng) -> ArrayD<f32> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.random_range(-1.0..1.0))
}

fn random4(shape: (usize, usize, usize, usize), rng: &mut impl Rng) -> Array4<f32> {
    random(&[shape.0, shape.1, shape.2, shape.3], rng).into_dimensionality().unwrap()
}

#[test]
fn conv2d_gradients_of_input_weight_bias_and_pad_fill() {
    let mut rng = rng(1);
    let cases = [
        ConvGeometry::new(4, 6, (3, 2)).stride((2, 1)).padding((1, 0)).dilation((1, 2)).groups(2),
        ConvGeometry::new(3, 3, 3).stride(2).padding(1).groups(3),
        ConvGeometry::new(5, 2, 1),
        ConvGeometry::new(2, 4, (1, 3)).padding((0, 2)).stride((1, 2)),
        ConvGeometry::new(3, 4, 3).padding(1),
        ConvGeometry::new(4, 6, 3).padding((2, 0)).groups(2),
        ConvGeometry::new(3, 2, (2, 3)).padding((1, 2)),
    ];
    // With a pad fill, and zero-padded (where stride-1 layers take the transposed-convolution
    // path for dx).
    for (case, (g, with_fill)) in cases.iter().flat_map(|g| [(g, true), (g, false)]).enumerate() {
        let shape = [2, g.in_channels, 7, 5];
        let x = random4((2, g.in_channels, 7, 5), &mut rng);
        let w: Array4<f32> = random(&g.weight_shape(), &mut rng).into_dimensionality().unwrap();
        let b = Array1::from_shape_simple_fn(g.out_channels, || rng.random_range(-1.0..1.0));
        let fill = if with_fill {
            Array1::from_shape_simple_fn(g.in_channels, || rng.random_range(-1.0..1.0))
        } else {
            Array1::zeros(g.in_channels)
        };
        let out = g.output_size(7, 5).unwrap();
        let r = random4((2, g.out_channels, out.h, out.w), &mut rng);
        let pad_fill = with_fill.then(|| fill.view());
        let operands = kernels::ConvOperands { weight: w.view(), bias: Some(b.view()), pad_fill };
        let grads = kernels::conv2d_backward(x.view(), g, operands, r.view()).unwrap();
        let (x64, w64, b64, f64_, r64) = (f64s(&x), f64s(&w), f64s(&b), f64s(&fill), f64s(&r));
        let loss = |x: &[f64], w: &[f64], b: &[f64], f: &[f64]| dot(&r64, &conv64(x, shape, w, Some(b), g, Some(f)));
        assert_gradient(
            &format!("case {case} dx"),
            grads.input.iter().copied(),
            &numeric(&x64, |x| loss(x, &w64, &b64, &f64_)),
        );
        assert_gradient(
            &format!("case {case} dW"),
            grads.weight.iter().copied(),
            &numeric(&w64, |w| loss(&x64, w, &b64, &f64_)),
        );
        assert_gradient(
            &format!("case {case} db"),
            grads.bias.iter().copied(),
            &numeric(&b64, |b| loss(&x64, &w64, b, &f64_)),
        );
        if with_fill {
            assert_gradient(
                &format!("case {case} dfill"),
                grads.pad_fill.iter().copied(),
                &numeric(&f64_, |f| loss(&x64, &w64, &b64, f)),
            );
        }
    }
}

/// On maps large enough that the backward runs in several bands of output rows (and a short
/// last one), the gradients are the adjoint of the convolution: `⟨dx, δx⟩ + ⟨dfill, δf⟩ =
/// ⟨r, conv(δx; fill δf)⟩` and `⟨dW, δW⟩ = ⟨r, conv(x, δW)⟩`, the right sides in f64.
#[test]
fn conv2d_backward_is_the_adjoint_on_large_maps() {
    let mut rng = rng(21);
    for g in [
        ConvGeometry::new(5, 7, 3).padding(1),
        ConvGeometry::new(4, 6, 3).stride(2).padding(1).groups(2),
        ConvGeometry::new(3, 4, (3, 5)).padding((2, 1)).dilation((2, 1)),
    ] {
        let shape = [2, g.in_channels, 37, 45];
        let x = random4((2, g.in_channels, 37, 45), &mut rng);
        let w: Array4<f32> = random(&g.weight_shape(), &mut rng).into_dimensionality().unwrap();
        let fill = Array1::from_shape_simple_fn(g.in_channels, || rng.random_range(-1.0..1.0));
        let out = g.output_size(37, 45).unwrap();
        let r = random4((2, g.out_channels, out.h, out.w), &mut rng);
        let operands = kernels::ConvOperands { weight: w.view(), bias: None, pad_fill: Some(fill.view()) };
        let grads = kernels::conv2d_backward(x.view(), &g, operands, r.view()).unwrap();
        let (dx_probe, dw_probe) = (random4((2, g.in_channels, 37, 45), &mut rng), random(&g.weight_shape(), &mut rng));
        let df_probe = Array1::from_shape_simple_fn(g.in_channels, || rng.random_range(-1.0..1.0));
        let r64 = f64s(&r);
        let close = |what: &str, ours: f64, exact: f64| {
            assert!((ours - exact).abs() <= 1e-4 * exact.abs().max(1.0), "{g} {what}: {ours} vs {exact}");
        };
        let ours = dot(&f64s(&grads.input), &f64s(&dx_probe)) + dot(&f64s(&grads.pad_fill), &f64s(&df_probe));
        let exact = dot(&r64, &conv64(&f64s(&dx_probe), shape, &f64s(&w), None, &g, Some(&f64s(&df_probe))));
        close("dx, dfill", ours, exact);
        let ours = dot(&f64s(&grads.weight), &f64s(&dw_probe));
        let exact = dot(&r64, &conv64(&f64s(&x), shape, &f64s(&dw_probe), None, &g, Some(&f64s(&fill))));
        close("dW", ours, exact);
    }
}

#[test]
fn batch_norm_training_gradients() {
    let mut rng = rng(2);
    for shape in [(3, 4, 5, 3), (4, 2, 1, 1), (2, 3, 2, 3)] {
        let x = random4(shape, &mut rng);
        let mut bn = common::random_bn(shape.1, &mut rng);
        let r = random4(shape, &mut rng);
        let (gamma, beta) = (f64s(&bn.weight), f64s(&bn.bias));
        let (_, cache) = bn.forward_cached(&x).unwrap();
        let mut grads = Gradients::new();
        let dx = bn.backward(cache, &r, "bn", &mut grads).unwrap();
        let dims = [shape.0, shape.1, shape.2, shape.3];
        let (x64, r64) = (f64s(&x), f64s(&r));
        let loss = |x: &[f64], g: &[f64], b: &[f64]| dot(&r64, &batch_norm64(x, dims, g, b, bn.eps));
        assert_gradient("BN dx", dx.iter().copied(), &numeric(&x64, |x| loss(x, &gamma, &beta)));
        assert_gradient(
            "BN dγ",
            grads.get("bn.weight").unwrap().iter().copied(),
            &numeric(&gamma, |g| loss(&x64, g, &beta)),
        );
        assert_gradient(
            "BN dβ",
            grads.get("bn.bias").unwrap().iter().copied(),
            &numeric(&beta, |b| loss(&x64, &gamma, b)),
        );
        assert_eq!(grads.len(), 2, "running statistics get no gradient");
    }
}

/// A frozen BN (eval mode, running statistics) as a per-channel affine map of its input.
#[test]
fn frozen_batch_norm_gradients() {
    let mut rng = rng(12);
    let x = random4((2, 3, 4, 5), &mut rng);
    let bn = common::random_bn(3, &mut rng);
    let r = random4((2, 3, 4, 5), &mut rng);
    let (y, cache) = bn.forward_cached_frozen(&x).unwrap();
    assert_eq!(y, rep::layers::Layer::forward(&bn, &x).unwrap());
    let mut grads = Gradients::new();
    let dx = bn.backward(cache, &r, "bn", &mut grads).unwrap();
    let (gamma, beta, mean, var) = (f64s(&bn.weight), f64s(&bn.bias), f64s(&bn.running_mean), f64s(&bn.running_var));
    let (x64, r64) = (f64s(&x), f64s(&r));
    let loss = |x: &[f64], g: &[f64], b: &[f64]| {
        let y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let c = (i / 20) % 3;
                g[c] * (v - mean[c]) / (var[c] + bn.eps).sqrt() + b[c]
            })
            .collect();
        dot(&r64, &y)
    };
    assert_gradient("frozen BN dx", dx.iter().copied(), &numeric(&x64, |x| loss(x, &gamma, &beta)));
    let dgamma = grads.get("bn.weight").unwrap().iter().copied();
    assert_gradient("frozen BN dγ", dgamma, &numeric(&gamma, |g| loss(&x64, g, &beta)));
    let dbeta = grads.get("bn.bias").unwrap().iter().copied();
    assert_gradient("frozen BN dβ", dbeta, &numeric(&beta, |b| loss(&x64, &gamma, b)));
}

#[test]
fn activation_gradients() {
    let mut rng = rng(3);
    // Away from ReLU's kink, where a finite difference straddles two slopes.
    let x = random4((2, 3, 4, 5), &mut rng).mapv(|v| if v.abs() < 1e-2 { 0.5 } else { v * 3.0 });
    let r = random4((2, 3, 4, 5), &mut rng);
    for mut activation in [Activation::Relu, Activation::Silu, Activation::LeakyRelu(0.1), Activation::Sigmoid] {
        let (_, cache) = activation.forward_cached(&x).unwrap();
        let dx = activation.backward(cache, &r, "", &mut Gradients::new()).unwrap();
        let f = |v: f64| match activation {
            Activation::Relu => v.max(0.0),
            Activation::Silu => v / (1.0 + (-v).exp()),
            Activation::LeakyRelu(s) => {
                if v > 0.0 {
                    v
                } else {
                    s as f64 * v
                }
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            Activation::Identity => v,
        };
        let r64 = f64s(&r);
        let numeric = numeric(&f64s(&x), |x| dot(&r64, &x.iter().map(|&v| f(v)).collect::<Vec<_>>()));
        assert_gradient(&format!("{activation:?}"), dx.iter().copied(), &numeric);
    }
}

#[test]
fn avg_pool_gradients_with_and_without_padded_positions_counted() {
    let mut rng = rng(4);
    let x = random4((2, 3, 7, 6), &mut rng);
    for count_include_pad in [true, false] {
        let mut pool = AvgPool2d { count_include_pad, ..AvgPool2d::new(3, 2, 1) };
        let (y, cache) = pool.forward_cached(&x).unwrap();
        let r = random4(y.dim(), &mut rng);
        let dx = pool.backward(cache, &r, "", &mut Gradients::new()).unwrap();
        let g = pool.geometry(3);
        let ones = vec![1.0; 9 * 3];
        let counts = conv64(&vec![1.0; 42], [1, 1, 7, 6], &[1.0; 9], None, &pool.geometry(1), None);
        let r64 = f64s(&r);
        let loss = |x: &[f64]| {
            let sums = conv64(x, [2, 3, 7, 6], &ones, None, &g, None);
            let plane = counts.len();
            let means: Vec<f64> = sums
                .iter()
                .enumerate()
                .map(|(i, s)| if count_include_pad { s / 9.0 } else { s / counts[i % plane] })
                .collect();
            dot(&r64, &means)
        };
        assert_gradient(
            &format!("avg pool (count_include_pad {count_include_pad})"),
            dx.iter().copied(),
            &numeric(&f64s(&x), loss),
        );
    }
}

#[test]
fn squeeze_excite_gradients() {
    let mut rng = rng(5);
    let mut se = SqueezeExcite::new(6, 3, &mut rng).unwrap();
    let x = random4((2, 6, 3, 4), &mut rng);
    check_block("SE", &mut se, &x, |x, p, _| {
        let (down_w, down_b, up_w, up_b) =
            (get(p, "down.weight"), get(p, "down.bias"), get(p, "up.weight"), get(p, "up.bias"));
        let mut y = x.to_vec();
        for n in 0..2 {
            let image = &x[n * 72..(n + 1) * 72];
            let pooled: Vec<f64> = (0..6).map(|c| image[c * 12..(c + 1) * 12].iter().sum::<f64>() / 12.0).collect();
            let hidden: Vec<f64> = (0..3)
                .map(|o| (down_b[o] + (0..6).map(|c| down_w[o * 6 + c] * pooled[c]).sum::<f64>()).max(0.0))
                .collect();
            for c in 0..6 {
                let logit = up_b[c] + (0..3).map(|o| up_w[c * 3 + o] * hidden[o]).sum::<f64>();
                let gate = 1.0 / (1.0 + (-logit).exp());
                y[n * 72 + c * 12..n * 72 + (c + 1) * 12].iter_mut().for_each(|v| *v *= gate);
            }
        }
        y
    });
}

#[test]
fn head_gradients_through_pool_linear_and_smoothed_cross_entropy() {
    let mut rng = rng(6);
    let linear = Linear::new(4, 5, &mut rng);
    let x = random4((3, 4, 2, 3), &mut rng);
    let labels = [4, 0, 2];
    let pooled = GlobalAvgPool.forward(&x).unwrap();
    let (loss, dlogits) = cross_entropy(&linear.forward(&pooled).unwrap(), &labels, 0.1).unwrap();
    let mut grads = Gradients::new();
    let dpooled = linear.backward(&pooled, &dlogits, "fc", &mut grads).unwrap();
    let dx = GlobalAvgPool.backward((2, 3), &dpooled);
    let reference = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut total = 0.0;
        for n in 0..3 {
            let p: Vec<f64> =
                (0..4).map(|c| x[(n * 4 + c) * 6..(n * 4 + c + 1) * 6].iter().sum::<f64>() / 6.0).collect();
            let z: Vec<f64> = (0..5).map(|o| b[o] + (0..4).map(|c| w[o * 4 + c] * p[c]).sum::<f64>()).collect();
            let log_sum = z.iter().map(|v| v.exp()).sum::<f64>().ln();
            total -=
                (0..5).map(|k| (0.1 / 5.0 + if k == labels[n] { 0.9 } else { 0.0 }) * (z[k] - log_sum)).sum::<f64>();
        }
        total / 3.0
    };
    let (x64, w64, b64) = (f64s(&x), f64s(&linear.weight), f64s(linear.bias.as_ref().unwrap()));
    assert!((loss - reference(&x64, &w64, &b64)).abs() <= 1e-6 * loss.abs(), "loss");
    assert_gradient("dx", dx.iter().copied(), &numeric(&x64, |x| reference(x, &w64, &b64)));
    assert_gradient(
        "dW",
        grads.get("fc.weight").unwrap().iter().copied(),
        &numeric(&w64, |w| reference(&x64, w, &b64)),
    );
    assert_gradient("db", grads.get("fc.bias").unwrap().iter().copied(), &numeric(&b64, |b| reference(&x64, &w64, b)));
}

#[test]
fn generated_block_backward_matches_finite_differences() {
    let mut rng = rng(7);
    for (cin, cout, stride) in [(4usize, 4usize, 1usize), (3, 5, 2)] {
        let mut block = common::RepVgg::new(cin, cout, stride, &mut rng).unwrap();
        rep::layers::randomize_vectors(&mut block, &mut rng);
        let x = random4((2, cin, 5, 6), &mut rng);
        let shape = [2, cin, 5, 6];
        check_block("RepVGG block", &mut block, &x, |x, p, _| {
            let g = |k: usize| ConvGeometry::new(cin, cout, k).stride(stride).padding(k / 2);
            let (mut sum, _) = conv_bn(x, shape, &g(3), p, "dense.conv", "dense.bn", EPS);
            add(&mut sum, &conv_bn(x, shape, &g(1), p, "pointwise.conv", "pointwise.bn", EPS).0);
            if cin == cout && stride == 1 {
                add(&mut sum, &batch_norm64(x, shape, get(p, "identity.weight"), get(p, "identity.bias"), EPS));
            }
            sum.iter().map(|v| v.max(0.0)).collect()
        });
    }
}

/// A generated block with its BNs frozen: the training forward is the eval forward, the running
/// statistics do not move, and every gradient (γ and β too) matches finite differences of the
/// eval-mode reference.
#[test]
fn generated_block_with_frozen_batch_norm() {
    let mut rng = rng(8);
    let (cin, cout) = (4usize, 4usize);
    let mut block = common::RepVgg::new(cin, cout, 1, &mut rng).unwrap();
    rep::layers::randomize_vectors(&mut block, &mut rng);
    block.freeze_batch_norm(true);
    let x = random4((2, cin, 5, 6), &mut rng);
    let state = |b: &common::RepVgg<usize, usize, usize>| rep::StateDict::from_parameters(b).tensors;
    let before = state(&block);
    let eval = rep::layers::Layer::forward(&block, &x).unwrap();
    assert_eq!(block.forward_cached(&x).unwrap().0, eval);
    assert_eq!(state(&block), before, "a frozen BN keeps its running statistics and batch count");
    let shape = [2, cin, 5, 6];
    check_block("frozen RepVGG block", &mut block, &x, |x, p, _| {
        let mut sum = vec![0.0; x.len()];
        for (name, k) in [("dense", 3), ("pointwise", 1)] {
            let g = ConvGeometry::new(cin, cout, k).padding(k / 2);
            let z = conv64(x, shape, get(p, &format!("{name}.conv.weight")), None, &g, None);
            add(&mut sum, &eval_batch_norm64(&z, shape, p, &format!("{name}.bn")));
        }
        add(&mut sum, &eval_batch_norm64(x, shape, p, "identity"));
        sum.iter().map(|v| v.max(0.0)).collect()
    });
}

#[test]
fn gradients_accumulate_over_micro_batches_and_round_trip_through_safetensors() {
    let mut rng = rng(8);
    let mut conv = Conv2d::new_with_bias(ConvGeometry::new(2, 3, 3).padding(1), &mut rng).unwrap();
    let x = random4((4, 2, 5, 5), &mut rng);
    let r = random4((4, 3, 5, 5), &mut rng);
    let (_, cache) = conv.forward_cached(&x).unwrap();
    let mut whole = Gradients::new();
    conv.backward(cache, &r, "conv", &mut whole).unwrap();
    let mut parts = Gradients::new();
    for half in [0..2, 2..4] {
        let xs = x.slice_axis(Axis(0), half.clone().into()).to_owned();
        let (_, cache) = conv.forward_cached(&xs).unwrap();
        conv.backward(cache, &r.slice_axis(Axis(0), half.into()).to_owned(), "conv", &mut parts).unwrap();
    }
    for (name, g) in whole.iter() {
        let diff = (g - parts.get(name).unwrap()).mapv(f32::abs).iter().fold(0.0f32, |m, v| m.max(*v));
        assert!(diff <= 1e-5 * g.mapv(f32::abs).iter().fold(1.0f32, |m, v| m.max(*v)), "{name}");
    }
    let dir = std::env::temp_dir().join(format!("rep-grads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("grads.safetensors");
    whole.save(&path).unwrap();
    assert_eq!(Gradients::load(&path).unwrap(), whole);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// OREPA's online backward (one conv on the squeezed kernel, its gradient sent through the
/// transpose of the squeeze) equals the structural backward through every branch.
#[test]
fn online_and_structural_orepa_gradients_agree() {
    use rep::zoo::orepa::{Orepa, internal_channels};
    let mut rng = rng(9);
    for (cin, cout, stride, groups) in [(4usize, 6usize, 1usize, 1usize), (4, 4, 2, 2), (3, 5, 2, 1)] {
        let mut online =
            Orepa::new(cin, cout, 3usize, stride, groups, internal_channels(cin, groups), &mut rng).unwrap();
        rep::layers::randomize_vectors(&mut online, &mut rng);
        // Every scale non-zero, so that each branch's gradient is exercised.
        online.visit_mut("", &mut |name, mut t| {
            if name.ends_with(".weight") && t.ndim() == 1 && !name.starts_with("bn") {
                t.mapv_inplace(|v| v + 0.3);
            }
        });
        let mut structural = online.clone();
        let x = random4((2, cin, 7, 6), &mut rng);
        let (y_online, cache_online) = online.forward_cached(&x).unwrap();
        let (y_structural, cache_structural) = structural.forward_cached_structural(&x).unwrap();
        assert!(cache_online.2.is_some() && cache_online.0.0.is_none(), "the online forward keeps no branch cache");
        assert!(cache_structural.2.is_none() && cache_structural.0.0.is_some());
        let r = random4(y_online.dim(), &mut rng);
        let (mut g_online, mut g_structural) = (Gradients::new(), Gradients::new());
        let dx_online = online.backward(cache_online, &r, "", &mut g_online).unwrap();
        let dx_structural = structural.backward(cache_structural, &r, "", &mut g_structural).unwrap();
        let close = |what: &str, a: &ArrayD<f32>, b: &ArrayD<f32>| {
            let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let worst = a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(worst <= 1e-5 * scale, "{what}: {:e} of the largest", worst / scale);
        };
        close("output", &y_online.into_dyn(), &y_structural.into_dyn());
        close("dx", &dx_online.into_dyn(), &dx_structural.into_dyn());
        let names: Vec<&str> = g_structural.iter().map(|(n, _)| n).collect();
        assert_eq!(g_online.iter().map(|(n, _)| n).collect::<Vec<_>>(), names);
        for (name, g) in g_structural.iter() {
            close(name, g_online.get(name).unwrap(), g);
        }
    }
}

#[test]
fn per_channel_layer_gradients() {
    use rep::layers::{ImplicitA, ImplicitM, Scale};
    let mut rng = rng(10);
    let x = random4((2, 3, 4, 5), &mut rng);
    let r = random4((2, 3, 4, 5), &mut rng);
    let (x64, r64) = (f64s(&x), f64s(&r));
    let factors: Vec<f32> = (0..3).map(|_| rng.random_range(0.5..1.5)).collect();
    let f64_factors: Vec<f64> = factors.iter().map(|&v| v as f64).collect();
    // y = a[c]·x + b[c] as the reference of all three.
    let affine = |x: &[f64], a: &[f64], b: &[f64]| -> f64 {
        let y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let c = (i / 20) % 3;
                a[c] * v + b[c]
            })
            .collect();
        dot(&r64, &y)
    };
    let zeros = [0.0; 3];
    let ones = [1.0; 3];

    let mut scale = Scale { weight: Array1::from(factors.clone()) };
    let (_, cache) = scale.forward_cached(&x).unwrap();
    let mut grads = Gradients::new();
    let dx = scale.backward(cache, &r, "s", &mut grads).unwrap();
    assert_gradient("scale dx", dx.iter().copied(), &numeric(&x64, |x| affine(x, &f64_factors, &zeros)));
    assert_gradient(
        "scale dw",
        grads.get("s.weight").unwrap().iter().copied(),
        &numeric(&f64_factors, |a| affine(&x64, a, &zeros)),
    );

    let mut m = ImplicitM::with(Array1::from(factors.clone()));
    let (_, cache) = m.forward_cached(&x).unwrap();
    let dx = m.backward(cache, &r, "m", &mut grads).unwrap();
    assert_gradient("implicit M dx", dx.iter().copied(), &numeric(&x64, |x| affine(x, &f64_factors, &zeros)));
    assert_gradient(
        "implicit M",
        grads.get("m.implicit").unwrap().iter().copied(),
        &numeric(&f64_factors, |a| affine(&x64, a, &zeros)),
    );

    let mut a = ImplicitA::with(Array1::from(factors));
    let (_, cache) = a.forward_cached(&x).unwrap();
    let dx = a.backward(cache, &r, "a", &mut grads).unwrap();
    assert_gradient("implicit A dx", dx.iter().copied(), &numeric(&x64, |x| affine(x, &ones, &f64_factors)));
    assert_gradient(
        "implicit A",
        grads.get("a.implicit").unwrap().iter().copied(),
        &numeric(&f64_factors, |b| affine(&x64, &ones, b)),
    );
}

#[test]
fn upsample_and_concat_gradients() {
    use rep::layers::{concat_channels, upsample_nearest};
    use rep::train::{concat_channels_backward, upsample_nearest_backward};
    let mut rng = rng(11);
    let x = random4((2, 3, 3, 2), &mut rng);
    assert_eq!(upsample_nearest(&x, 2).unwrap().dim(), (2, 3, 6, 4));
    let r = random4((2, 3, 6, 4), &mut rng);
    let dx = upsample_nearest_backward(&r, 2).unwrap();
    let r64 = f64s(&r);
    let loss = |x: &[f64]| -> f64 {
        let up: Vec<f64> = (0..r64.len()).map(|i| x[(i / 24) * 6 + ((i / 4) % 6) / 2 * 2 + (i % 4) / 2]).collect();
        dot(&r64, &up)
    };
    assert_gradient("upsample dx", dx.iter().copied(), &numeric(&f64s(&x), loss));
    let y = random4((2, 2, 3, 2), &mut rng);
    let joined = concat_channels(&[&x, &y]).unwrap();
    let parts = concat_channels_backward(&joined, &[3, 2]).unwrap();
    assert_eq!((&parts[0], &parts[1]), (&x, &y), "the transpose of a concatenation splits it back");
    assert!(concat_channels_backward(&joined, &[3, 3]).is_err());
}
