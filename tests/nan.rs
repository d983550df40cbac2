//! NaN stays NaN, as in PyTorch: every activation, every kernel path (im2col, pointwise,
//! depthwise, Winograd F(2×2) and F(4×4), the classifier) in the train-time, fused and planned
//! forms puts a NaN of the input at exactly the output positions whose window contains it.

mod common;

use common::{RepVgg, random_tensor, reference_conv, rng};
use ndarray::{Array2, Array4, ArrayD, Ix2};
use rep::kernels::Tile;
use rep::layers::{Activation, Conv2d, Layer, Linear, randomize_vectors};
use rep::plan::{KernelChoice, Plan};
use rep::{ConvGeometry, Reparameterize};

const ACTIVATIONS: [Activation; 5] =
    [Activation::Identity, Activation::Relu, Activation::Silu, Activation::LeakyRelu(0.1), Activation::Sigmoid];

/// PyTorch's value of each activation at NaN, +∞ and −∞ (`torch.relu`, `F.silu`,
/// `F.leaky_relu`, `torch.sigmoid`).
#[test]
fn activations_follow_pytorch_on_non_finite_values() {
    let expected: [(Activation, [f32; 3]); 5] = [
        (Activation::Identity, [f32::NAN, f32::INFINITY, f32::NEG_INFINITY]),
        (Activation::Relu, [f32::NAN, f32::INFINITY, 0.0]),
        (Activation::Silu, [f32::NAN, f32::INFINITY, f32::NAN]),
        (Activation::LeakyRelu(0.1), [f32::NAN, f32::INFINITY, f32::NEG_INFINITY]),
        (Activation::Sigmoid, [f32::NAN, 1.0, 0.0]),
    ];
    let inputs = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    for (activation, outputs) in expected {
        // The scalar form and the slice form (a separate, vectorized loop), on a slice long
        // enough to be vectorized with the special values at several lane positions.
        let mut slice: Vec<f32> = (0..67).map(|i| inputs[i % 3]).collect();
        activation.apply_slice(&mut slice);
        for (i, &x) in inputs.iter().enumerate() {
            let want = outputs[i];
            let same = |y: f32| (y.is_nan() && want.is_nan()) || y == want;
            assert!(same(activation.apply(x)), "{activation:?}({x}) = {}, PyTorch gives {want}", activation.apply(x));
            assert!(slice.iter().skip(i).step_by(3).all(|&y| same(y)), "{activation:?} on a slice at {x}");
        }
    }
}

/// Output positions that are NaN.
fn nan_mask(y: &ArrayD<f32>) -> Vec<usize> {
    y.iter().enumerate().filter(|(_, v)| v.is_nan()).map(|(i, _)| i).collect()
}

/// A random input with NaN at a few positions (corners, edges and inside, in several channels).
fn input_with_nans(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
    let mut x = random_tensor(shape, &mut rng(seed));
    let (n, c, h, w) = shape;
    for (i, &(b, ch, r, col)) in
        [(0, 0, 0, 0), (n - 1, c - 1, h - 1, w - 1), (0, c / 2, h / 2, w / 3), (n - 1, 0, 1, w - 2)].iter().enumerate()
    {
        x[[b, ch, r, col]] = if i == 1 { f32::INFINITY } else { f32::NAN };
    }
    x
}

/// Where `expected` is finite, `ours` is within the project's tolerance of it.
fn assert_finite_close(ours: &ArrayD<f32>, expected: &ArrayD<f32>, what: &str) {
    let scale = expected.iter().filter(|v| v.is_finite()).fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in ours.iter().zip(expected).enumerate().filter(|(_, (_, b))| b.is_finite()) {
        assert!((a - b).abs() <= 1e-5 * scale, "{what}: output {i} is {a}, expected {b}");
    }
}

#[test]
fn every_conv_kernel_path_puts_nan_where_pytorch_does() {
    let geometries = [
        ("im2col 3x3 stride 2", ConvGeometry::new(6, 8, 3).stride(2).padding(1)),
        ("im2col 3x3 grouped", ConvGeometry::new(8, 8, 3).padding(1).groups(2)),
        ("pointwise", ConvGeometry::new(6, 8, 1)),
        ("depthwise", ConvGeometry::new(6, 6, 3).padding(1).groups(6)),
        ("winograd-eligible 3x3", ConvGeometry::new(8, 8, 3).padding(1)),
        ("dilated 1x3", ConvGeometry::new(6, 4, (1, 3)).padding((0, 2)).dilation(2)),
    ];
    let mut r = rng(3);
    for (name, g) in geometries {
        let conv = Conv2d::new_with_bias(g, &mut r).unwrap();
        let x = input_with_nans((2, g.in_channels, 9, 11), 4);
        let expected = reference_conv(&x, conv.weight(), conv.bias(), &g, None).into_dyn();
        let expected_nan = nan_mask(&expected);
        assert!(!expected_nan.is_empty(), "{name}: the test must put NaN somewhere");
        for activation in ACTIVATIONS {
            // The activation of the exact output (its values at ±∞ are checked against
            // PyTorch's above: SiLU makes −∞ NaN, as PyTorch's does).
            let expected_after = nan_mask(&expected.mapv(|v| activation.apply(v)));
            let y = conv.forward_then(&x, activation).unwrap().into_dyn();
            assert_eq!(nan_mask(&y), expected_after, "{name}, layer by layer, then {activation:?}");
        }
        for choice in [KernelChoice::Direct, KernelChoice::Winograd(Tile::F2), KernelChoice::Winograd(Tile::F4)] {
            let plan =
                Plan::with_kernels(&(conv.clone(), Activation::Relu), [2, g.in_channels, 9, 11], choice).unwrap();
            let mut state = plan.state().unwrap();
            let y = plan.run(&mut state, x.view()).unwrap().to_owned();
            assert_eq!(nan_mask(&y), expected_nan, "{name}, planned with {choice:?}");
            // And the finite outputs are the exact convolution's (then ReLU).
            let exact = expected.mapv(|v| Activation::Relu.apply(v));
            assert_finite_close(&y, &exact, &format!("{name}, planned with {choice:?}"));
            // The same plan, on a finite input again, gives finite numbers.
            let finite = random_tensor((2, g.in_channels, 9, 11), &mut r);
            assert!(plan.run(&mut state, finite.view()).unwrap().iter().all(|v| v.is_finite()), "{name}, {choice:?}");
        }
    }
}

#[test]
fn a_nan_weight_gives_nan_like_pytorch() {
    let g = ConvGeometry::new(4, 4, 3).padding(1);
    let mut conv = Conv2d::new_with_bias(g, &mut rng(5)).unwrap();
    conv.weight_mut()[[2, 1, 0, 0]] = f32::NAN;
    let x = random_tensor((1, 4, 6, 6), &mut rng(6));
    let expected = nan_mask(&reference_conv(&x, conv.weight(), conv.bias(), &g, None).into_dyn());
    assert_eq!(nan_mask(&conv.forward(&x).unwrap().into_dyn()), expected);
    for choice in [KernelChoice::Direct, KernelChoice::Winograd(Tile::F2), KernelChoice::Winograd(Tile::F4)] {
        let plan = Plan::with_kernels(&conv, [1, 4, 6, 6], choice).unwrap();
        let mut state = plan.state().unwrap();
        assert_eq!(nan_mask(&plan.run(&mut state, x.view()).unwrap().to_owned()), expected, "{choice:?}");
    }
}

#[test]
fn the_classifier_keeps_nan_rows_nan() {
    let linear = Linear::new(40, 300, &mut rng(7));
    let mut x = Array2::from_shape_fn((6, 40), |(i, j)| (i * 40 + j) as f32 / 240.0);
    x[[3, 17]] = f32::NAN;
    let y = linear.forward(&x).unwrap();
    for (row, values) in y.outer_iter().enumerate() {
        assert!(values.iter().all(|v| v.is_nan() == (row == 3)), "row {row}");
    }
    // Planned: global average pool then the classifier (blocked dot products).
    let x4 = x.clone().into_shape_with_order((6, 40, 1, 1)).unwrap();
    let plan = Plan::new(&(rep::layers::GlobalAvgPool, linear), [6, 40, 1, 1]).unwrap();
    let mut state = plan.state().unwrap();
    let y = plan.run(&mut state, x4.view()).unwrap().into_dimensionality::<Ix2>().unwrap().to_owned();
    for (row, values) in y.outer_iter().enumerate() {
        assert!(values.iter().all(|v| v.is_nan() == (row == 3)), "planned, row {row}");
    }
}

#[rep::block(post(silu, se(hidden = C / 4)))]
pub struct Gated<C> {
    dense: ConvBn<C, C, 3>,
    pointwise: ConvBn<C, C, 1>,
}

#[rep::model]
pub struct Net {
    stem: RepVgg<3, 32, 2>,
    body: RepVgg<32, 32, 1>,
    gated: Gated<32>,
    pool: GlobalAvgPool,
    head: Linear<32, 5>,
}

#[test]
fn a_whole_network_keeps_nan_in_every_form() {
    let mut r = rng(8);
    let mut model = Net::new(&mut r).unwrap();
    randomize_vectors(&mut model, &mut r);
    let fused = model.fuse().unwrap();
    // Image 0 has one NaN pixel; image 1 is clean; image 2 is all NaN, image 3 all +∞.
    let mut x = random_tensor((4, 3, 15, 13), &mut r);
    x[[0, 1, 7, 6]] = f32::NAN;
    x.slice_mut(ndarray::s![2, .., .., ..]).fill(f32::NAN);
    x.slice_mut(ndarray::s![3, .., .., ..]).fill(f32::INFINITY);
    let train = model.forward(&x).unwrap();
    let deployed = fused.forward(&x).unwrap();
    let mut outputs = vec![("train-time", train), ("fused", deployed)];
    for choice in [KernelChoice::Auto, KernelChoice::Direct, KernelChoice::Winograd(Tile::F4)] {
        let plan = Plan::with_kernels(&fused, [4, 3, 15, 13], choice).unwrap();
        let mut state = plan.state().unwrap();
        let y = plan.run(&mut state, x.view()).unwrap().into_dimensionality::<Ix2>().unwrap().to_owned();
        outputs.push(("planned", y));
    }
    for (form, y) in outputs {
        for image in [0, 2, 3] {
            assert!(y.row(image).iter().all(|v| !v.is_finite()), "{form}: image {image} gave {:?}", y.row(image));
        }
        assert!(y.row(1).iter().all(|v| v.is_finite()), "{form}: the clean image");
    }
}

/// SiLU and the sigmoid on slices (a sixteen-lane `eˣ` on AVX-512) stay within a few ulp of
/// the exact values, computed in f64, over the whole range where they are not 0 or ±∞ (results
/// below the smallest normal f32, or below x = −88, are 0, as PyTorch's `x · sigmoid(x)` is).
#[test]
fn vectorized_silu_and_sigmoid_are_accurate() {
    use rand::Rng;
    let mut rng = rng(31);
    let mut values: Vec<f32> = (0..20_000).map(|_| rng.random_range(-110.0f32..110.0)).collect();
    values.extend((0..2_000).map(|_| rng.random_range(-1.0f32..1.0) * 1e-3));
    values.extend([0.0, -0.0, 88.7, 89.5, -87.0, -103.0, -104.5, 1e-30, -1e-30]);
    for (activation, exact) in [
        (Activation::Silu, (|x: f64| x / (1.0 + (-x).exp())) as fn(f64) -> f64),
        (Activation::Sigmoid, |x: f64| 1.0 / (1.0 + (-x).exp())),
    ] {
        let mut ours = values.clone();
        activation.apply_slice(&mut ours);
        for (&x, &y) in values.iter().zip(&ours) {
            let want = exact(x as f64);
            let err = (y as f64 - want).abs();
            // Below x = −88, e^(−x) overflows f32 and the result is 0 (PyTorch's too), for an
            // exact value under 1e-36.
            let floor = if x < -88.0 { want.abs() } else { f32::MIN_POSITIVE as f64 };
            let tolerance = 4.0 * f32::EPSILON as f64 * want.abs() + floor;
            assert!(err <= tolerance, "{activation:?}({x:e}) = {y:e}, exact {want:e} ({err:e})");
            let scalar = activation.apply(x);
            assert!((y - scalar).abs() <= 4.0 * f32::EPSILON * scalar.abs().max(f32::MIN_POSITIVE), "{x:e}");
        }
    }
}
