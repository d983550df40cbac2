//! BatchNorm2d follows PyTorch: batch statistics and running-statistic updates in training,
//! running statistics untouched in eval; unusable statistics are errors.

mod common;

use common::{assert_close, random_bn, random_tensor, rng};
use ndarray::{Array1, Array4, array};
use rep::Error;
use rep::layers::{BatchNorm2d, Layer};

/// Two channels, N = 2, H = 1, W = 2: channel 0 sees 1, 2, 3, 4; channel 1 sees −2, 0, 0, 2.
fn batch() -> Array4<f32> {
    Array4::from_shape_vec((2, 2, 1, 2), vec![1.0, 2.0, -2.0, 0.0, 3.0, 4.0, 0.0, 2.0]).unwrap()
}

#[test]
fn training_step_matches_pytorch_by_hand() {
    let mut bn = BatchNorm2d::new(2);
    bn.weight = array![2.0, 1.0];
    bn.bias = array![0.5, -1.0];
    let y = bn.forward_train(&batch()).unwrap();

    // Channel 0: mean 2.5, biased var 1.25 (normalization), unbiased var 5/3 (running update).
    // Channel 1: mean 0, biased var 2, unbiased var 8/3.
    let (m0, v0, m1, v1) = (2.5f64, 1.25f64, 0.0f64, 2.0f64);
    let norm = |x: f64, m: f64, v: f64, g: f64, b: f64| (g * (x - m) / (v + 1e-5).sqrt() + b) as f32;
    let expected = Array4::from_shape_vec(
        (2, 2, 1, 2),
        vec![
            norm(1.0, m0, v0, 2.0, 0.5),
            norm(2.0, m0, v0, 2.0, 0.5),
            norm(-2.0, m1, v1, 1.0, -1.0),
            norm(0.0, m1, v1, 1.0, -1.0),
            norm(3.0, m0, v0, 2.0, 0.5),
            norm(4.0, m0, v0, 2.0, 0.5),
            norm(0.0, m1, v1, 1.0, -1.0),
            norm(2.0, m1, v1, 1.0, -1.0),
        ],
    )
    .unwrap();
    assert_close("normalized batch", &y, &expected);

    // running ← 0.9·running + 0.1·batch, with the unbiased variance.
    let close = |a: &Array1<f32>, b: [f64; 2]| a.iter().zip(b).all(|(x, y)| (*x as f64 - y).abs() < 1e-6);
    assert!(close(&bn.running_mean, [0.25, 0.0]), "{}", bn.running_mean);
    assert!(close(&bn.running_var, [0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.1 * 8.0 / 3.0]), "{}", bn.running_var);
    assert_eq!(bn.num_batches_tracked, 1);

    // A second step compounds, here with YOLOv7's momentum 0.03.
    bn.momentum = Some(0.03);
    bn.forward_train(&batch()).unwrap();
    let mean0 = 0.97 * 0.25 + 0.03 * 2.5;
    let var0 = 0.97 * (0.9 + 0.1 * 5.0 / 3.0) + 0.03 * 5.0 / 3.0;
    assert!(close(&bn.running_mean, [mean0, 0.0]), "{}", bn.running_mean);
    assert!((bn.running_var[0] as f64 - var0).abs() < 1e-6, "{}", bn.running_var);
    assert_eq!(bn.num_batches_tracked, 2);
}

#[test]
fn eval_uses_and_keeps_running_statistics() {
    let mut rng = rng(4);
    let bn = random_bn(3, &mut rng).with_eps_momentum(1e-3, 0.03);
    let before = bn.clone();
    let x = random_tensor((2, 3, 4, 5), &mut rng);
    let y = bn.forward(&x).unwrap();
    assert_eq!(bn, before);
    let expected = Array4::from_shape_fn(x.dim(), |(n, c, h, w)| {
        let std = (bn.running_var[c] as f64 + 1e-3).sqrt();
        ((x[[n, c, h, w]] as f64 - bn.running_mean[c] as f64) / std * bn.weight[c] as f64 + bn.bias[c] as f64) as f32
    });
    assert_close("eval", &y, &expected);
}

#[test]
fn unusable_statistics_are_errors() {
    let x = batch();
    let mut bn = BatchNorm2d::new(2);
    bn.running_var[1] = -0.5;
    let err = bn.forward(&x).unwrap_err();
    assert!(err.to_string().contains("running_var[1] = -0.5 is negative"), "{err}");

    let mut bn = BatchNorm2d::new(2);
    bn.running_mean[0] = f32::NAN;
    assert!(bn.forward(&x).unwrap_err().to_string().contains("running_mean[0] is NaN"));

    let bn = BatchNorm2d::new(2).with_eps_momentum(0.0, 0.1);
    assert!(bn.forward(&x).unwrap_err().to_string().contains("eps must be a positive number"));

    let bn = BatchNorm2d::new(3);
    let err = bn.forward(&x).unwrap_err();
    assert!(matches!(err, Error::Channels { expected: 3, found: 2, .. }), "{err}");

    let mut bn = BatchNorm2d::new(2);
    let err = bn.forward_train(&Array4::zeros((1, 2, 1, 1))).unwrap_err();
    assert!(err.to_string().contains("more than one value per channel"), "{err}");
    assert_eq!(bn.num_batches_tracked, 0);
}

#[test]
fn momentum_none_is_the_cumulative_average() {
    // PyTorch's `momentum=None`: m = 1 / num_batches_tracked, counted before the update.
    let mut bn = BatchNorm2d::new(2).with_eps_momentum(1e-5, None);
    let first = batch();
    let second = first.mapv(|v| 3.0 * v + 1.0);
    bn.forward_train(&first).unwrap();
    assert_eq!(bn.num_batches_tracked, 1);
    assert_eq!(bn.running_mean, array![2.5, 0.0], "the first batch replaces the initial statistics");
    bn.forward_train(&second).unwrap();
    assert_eq!(bn.num_batches_tracked, 2);
    // Second batch: channel 0 mean 8.5, unbiased var 15; channel 1 mean 1, unbiased var 24.
    let expected_mean = array![(2.5 + 8.5) / 2.0, (0.0 + 1.0) / 2.0];
    let expected_var = array![(5.0 / 3.0 + 15.0) / 2.0, (8.0 / 3.0 + 24.0) / 2.0];
    assert_close("running_mean", &bn.running_mean, &expected_mean);
    assert_close("running_var", &bn.running_var, &expected_var);
}

#[test]
fn num_batches_tracked_round_trips_through_checkpoints() {
    let mut bn = BatchNorm2d::new(2);
    for _ in 0..3 {
        bn.forward_train(&batch()).unwrap();
    }
    let state = rep::StateDict::from_parameters(&bn);
    assert_eq!(state.counters["num_batches_tracked"], 3);
    let bytes = state.to_bytes().unwrap();
    let mut fresh = BatchNorm2d::new(2);
    rep::StateDict::from_bytes(&bytes, "<memory>").unwrap().load_into(&mut fresh).unwrap();
    assert_eq!(fresh, bn);

    // PyTorch's own train checkpoint: every BN's count is read (int64 scalars) and written back.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/official_a0_w25/train.safetensors");
    let checkpoint = rep::zoo::repvgg::Checkpoint::load(&path).unwrap();
    assert_eq!(checkpoint.state.counters.len(), 61);
    let (_, loaded) = checkpoint.build(None).unwrap();
    let rep::zoo::repvgg::Loaded::Train(model) = loaded else { panic!("a train checkpoint") };
    let saved = rep::StateDict::from_parameters(model.as_ref());
    assert_eq!(saved.counters, checkpoint.state.counters);
}
