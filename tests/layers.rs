//! The remaining layers on hand-computed cases: pooling, activations, SE, Linear.

mod common;

use common::{assert_close, random_tensor, rng};
use ndarray::{Array1, Array2, Array4, array};
use rep::layers::{Activation, AvgPool2d, Layer, Linear, SqueezeExcite, global_avg_pool};

#[test]
fn avg_pool_counts_padding_as_pytorch_does() {
    // 1×1×2×2 input [[1, 2], [3, 4]], 3×3 window, stride 1, padding 1.
    let x = Array4::from_shape_vec((1, 1, 2, 2), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let with_pad = AvgPool2d::new(3, 1, 1).forward(&x).unwrap();
    assert_eq!(with_pad, Array4::from_elem((1, 1, 2, 2), 10.0 / 9.0));
    let without = AvgPool2d { count_include_pad: false, ..AvgPool2d::new(3, 1, 1) }.forward(&x).unwrap();
    assert_eq!(without, Array4::from_elem((1, 1, 2, 2), 2.5));
    let strided = AvgPool2d::new(2, 2, 0).forward(&x).unwrap();
    assert_eq!(strided, Array4::from_elem((1, 1, 1, 1), 2.5));
    assert!(AvgPool2d::new(3, 1, 2).forward(&x).is_err(), "padding above half the window");
}

#[test]
fn activations() {
    let x = Array4::from_shape_vec((1, 1, 1, 3), vec![-2.0f32, 0.0, 3.0]).unwrap();
    let run = |a: Activation| a.forward(&x).unwrap().into_iter().collect::<Vec<_>>();
    assert_eq!(run(Activation::Identity), [-2.0, 0.0, 3.0]);
    assert_eq!(run(Activation::Relu), [0.0, 0.0, 3.0]);
    assert_eq!(run(Activation::LeakyRelu(0.1)), [-0.2, 0.0, 3.0]);
    let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
    assert_eq!(run(Activation::Sigmoid), [sigmoid(-2.0), 0.5, sigmoid(3.0)]);
    let silu = run(Activation::Silu);
    for (ours, expected) in silu.iter().zip([-2.0 * sigmoid(-2.0), 0.0, 3.0 * sigmoid(3.0)]) {
        assert!((ours - expected).abs() < 1e-6, "silu {ours} vs {expected}");
    }
}

#[test]
fn global_pool_and_linear() {
    let x = Array4::from_shape_fn((2, 3, 2, 2), |(n, c, h, w)| (n * 100 + c * 10 + h * 2 + w) as f32);
    let pooled = global_avg_pool(&x);
    assert_eq!(pooled, array![[1.5, 11.5, 21.5], [101.5, 111.5, 121.5]]);
    let linear = Linear { weight: array![[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]], bias: Some(array![1.0, 0.0]) };
    let y = linear.forward(&pooled).unwrap();
    assert_eq!(y, array![[1.0 + 1.5 - 21.5, 17.25], [1.0 + 101.5 - 121.5, 167.25]]);
}

#[test]
fn squeeze_excite_gates_each_channel() {
    let mut rng = rng(9);
    let se = SqueezeExcite::new(6, 2, &mut rng).unwrap();
    let x = random_tensor((2, 6, 3, 5), &mut rng);
    let y = se.forward(&x).unwrap();
    // By hand: mean → W_r·m + b_r → ReLU → W_e·h + b_e → σ → scale.
    let mean = global_avg_pool(&x);
    let wr: Array2<f32> = se.down.weight().clone().into_shape_with_order((2, 6)).unwrap();
    let we: Array2<f32> = se.up.weight().clone().into_shape_with_order((6, 2)).unwrap();
    let (br, be): (&Array1<f32>, &Array1<f32>) = (se.down.bias().unwrap(), se.up.bias().unwrap());
    let expected = Array4::from_shape_fn(x.dim(), |(n, c, h, w)| {
        let hidden = (wr.dot(&mean.row(n)) + br).mapv(|v| v.max(0.0));
        let gate = 1.0 / (1.0 + (-(we.row(c).dot(&hidden) + be[c])).exp());
        x[[n, c, h, w]] * gate
    });
    assert_close("se", &y, &expected);
}
