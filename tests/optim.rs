//! Optimizers and schedules against `torch.optim`'s update rules, written out independently in
//! f64 here, over three steps with changing gradients.

use ndarray::{Array1, Array4, ArrayD};
use rep::ConvGeometry;
use rep::layers::{Conv2d, Parameters};
use rep::train::{AdamW, Gradients, Optimizer, ParamGroups, Schedule, Sgd};

/// A conv with bias: one 4-D weight and one vector.
fn layer() -> Conv2d {
    let g = ConvGeometry::new(2, 2, 1);
    let weight = Array4::from_shape_fn((2, 2, 1, 1), |(o, c, _, _)| 0.5 - 0.3 * o as f32 + 0.2 * c as f32);
    Conv2d::from_weights(g, weight, Some(Array1::from(vec![0.1, -0.2]))).unwrap()
}

/// The gradients of step `t`: fixed, different per step.
fn grads(t: usize) -> Gradients {
    let mut grads = Gradients::new();
    let w = ArrayD::from_shape_fn(vec![2, 2, 1, 1], |i| (i[0] as f32 - i[1] as f32 + 0.3) * (t as f32 + 1.0) * 0.7);
    grads.accumulate("weight", w.view()).unwrap();
    grads.accumulate("bias", ArrayD::from_elem(vec![2], 0.25 - t as f32 * 0.5).view()).unwrap();
    grads
}

fn values(layer: &Conv2d) -> Vec<(String, Vec<f64>)> {
    let mut out = Vec::new();
    layer.visit("", &mut |name, t| out.push((name.to_owned(), t.iter().map(|&v| v as f64).collect())));
    out
}

fn assert_near(ours: &Conv2d, expected: &[(String, Vec<f64>)]) {
    for ((name, got), (_, want)) in values(ours).iter().zip(expected) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{name}: {g} vs {w}");
        }
    }
}

#[test]
fn sgd_momentum_dampening_nesterov_and_weight_decay() {
    for nesterov in [false, true] {
        let (lr, momentum, dampening, decay) = (0.1, 0.9, 0.2, 0.01);
        let mut ours = layer();
        let mut sgd = Sgd::new(lr, momentum, decay);
        sgd.dampening = dampening;
        sgd.nesterov = nesterov;
        let mut expected = values(&ours);
        let mut buffers: Vec<Vec<f64>> = Vec::new();
        for t in 0..3 {
            let g = grads(t);
            sgd.step(&mut ours, &g).unwrap();
            for (k, (name, p)) in expected.iter_mut().enumerate() {
                let d: Vec<f64> =
                    g.get(name).unwrap().iter().zip(p.iter()).map(|(&g, p)| g as f64 + decay * p).collect();
                if t == 0 {
                    buffers.push(d.clone());
                } else {
                    buffers[k] = buffers[k].iter().zip(&d).map(|(b, d)| momentum * b + (1.0 - dampening) * d).collect();
                }
                let step: Vec<f64> = if nesterov {
                    d.iter().zip(&buffers[k]).map(|(d, b)| d + momentum * b).collect()
                } else {
                    buffers[k].clone()
                };
                p.iter_mut().zip(step).for_each(|(p, s)| *p -= lr * s);
            }
            assert_near(&ours, &expected);
        }
    }
}

#[test]
fn adamw_with_no_decay_on_vectors() {
    let (lr, decay, (b1, b2), eps) = (0.01, 0.05, (0.9, 0.999), 1e-8);
    let mut ours = layer();
    let mut adam = AdamW::new(lr, ParamGroups::no_decay_on_vectors(decay));
    let mut expected = values(&ours);
    let mut moments: Vec<(Vec<f64>, Vec<f64>)> =
        expected.iter().map(|(_, p)| (vec![0.0; p.len()], vec![0.0; p.len()])).collect();
    for t in 1..=3 {
        let g = grads(t - 1);
        adam.step(&mut ours, &g).unwrap();
        for (k, (name, p)) in expected.iter_mut().enumerate() {
            let decay = if name == "bias" { 0.0 } else { decay };
            let (m, v) = &mut moments[k];
            for (i, (p, &g)) in p.iter_mut().zip(g.get(name).unwrap().iter()).enumerate() {
                let g = g as f64;
                *p *= 1.0 - lr * decay;
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let (m_hat, v_hat) = (m[i] / (1.0 - b1.powi(t as i32)), v[i] / (1.0 - b2.powi(t as i32)));
                *p -= lr * m_hat / (v_hat.sqrt() + eps);
            }
        }
        assert_near(&ours, &expected);
    }
}

#[test]
fn only_parameters_with_gradients_move_and_bad_gradients_change_nothing() {
    let mut ours = layer();
    let before = values(&ours);
    let mut only_bias = Gradients::new();
    only_bias.accumulate("bias", ArrayD::from_elem(vec![2], 1.0).view()).unwrap();
    Sgd::new(0.1, 0.0, 0.5).step(&mut ours, &only_bias).unwrap();
    let after = values(&ours);
    assert_eq!(after[0], before[0], "the weight had no gradient: weight decay does not touch it");
    assert_ne!(after[1], before[1]);

    let mut stray = Gradients::new();
    stray.accumulate("wieght", ArrayD::zeros(vec![2, 2, 1, 1]).view()).unwrap();
    let err = Sgd::new(0.1, 0.0, 0.0).step(&mut ours, &stray).unwrap_err().to_string();
    assert!(err.contains("`wieght` names no tensor"), "{err}");
    let mut misshapen = Gradients::new();
    misshapen.accumulate("bias", ArrayD::zeros(vec![3]).view()).unwrap();
    let err = Sgd::new(0.1, 0.0, 0.0).step(&mut ours, &misshapen).unwrap_err().to_string();
    assert!(err.contains("expected shape [2], found [3]"), "{err}");
    assert_eq!(values(&ours), after, "nothing updated on error");
}

#[test]
fn schedules() {
    let cosine = Schedule::WarmupCosine { base: 0.1, min: 0.001, warmup: 10, total: 110 };
    assert!((cosine.at(0) - 0.01).abs() < 1e-12 && (cosine.at(9) - 0.1).abs() < 1e-12, "linear warm-up");
    assert!((cosine.at(10) - 0.1).abs() < 1e-12);
    assert!((cosine.at(60) - (0.001 + 0.099 * 0.5)).abs() < 1e-12, "half way down the cosine");
    assert!((cosine.at(110) - 0.001).abs() < 1e-12 && (cosine.at(500) - 0.001).abs() < 1e-12);
    let step = Schedule::Step { base: 0.1, gamma: 0.5, every: 30 };
    assert_eq!((step.at(29), step.at(30), step.at(65)), (0.1, 0.05, 0.025));
}

/// AdamW's moments saved and restored mid-run continue exactly as an uninterrupted run.
#[test]
fn adamw_resumes_from_its_moments() {
    let mut straight = layer();
    let mut adam = AdamW::new(0.01, ParamGroups::uniform(0.01));
    for t in 0..3 {
        adam.step(&mut straight, &grads(t)).unwrap();
    }
    let mut resumed = layer();
    let mut first = AdamW::new(0.01, ParamGroups::uniform(0.01));
    first.step(&mut resumed, &grads(0)).unwrap();
    let saved: Vec<(String, i32, ArrayD<f32>, ArrayD<f32>)> =
        first.moments().map(|(n, s, m, v)| (n.to_owned(), s, m.clone(), v.clone())).collect();
    let mut second = AdamW::new(0.01, ParamGroups::uniform(0.01));
    for (name, step, m, v) in saved {
        second.load_moments(&name, step, m, v).unwrap();
    }
    for t in 1..3 {
        second.step(&mut resumed, &grads(t)).unwrap();
    }
    assert_eq!(values(&resumed), values(&straight));
    let bad = second.load_moments("bias", 0, ArrayD::zeros(vec![2]), ArrayD::zeros(vec![2])).unwrap_err();
    assert!(bad.to_string().contains("expected at least 1"), "{bad}");
}

/// A diverged step (a NaN or infinite gradient) is refused by name before any weight changes.
#[test]
fn non_finite_gradients_are_refused_and_nothing_moves() {
    let mut ours = layer();
    let before = values(&ours);
    let mut grads = grads(0);
    let mut bad = ArrayD::from_elem(vec![2], 0.5f32);
    bad[[1]] = f32::NAN;
    grads.clear();
    grads.accumulate("weight", ArrayD::from_elem(vec![2, 2, 1, 1], 0.1f32).view()).unwrap();
    grads.accumulate("bias", bad.view()).unwrap();
    for optimizer in
        [&mut Sgd::new(0.1, 0.9, 0.0) as &mut dyn Optimizer, &mut AdamW::new(0.1, ParamGroups::uniform(0.0))]
    {
        let err = optimizer.step(&mut ours, &grads).unwrap_err().to_string();
        assert!(err.contains("gradient of `bias`[1] is NaN"), "{err}");
        assert_eq!(values(&ours), before, "nothing updated");
    }
}
