//! YOLOv7 / Scaled-YOLOv4 parts: equivalence of every block (ε = 1e-3 included), implicit
//! folding, EMA against a hand computation, costs against the conv formula, scaling rules.

#[allow(dead_code)]
#[path = "../examples/yolo_parts.rs"]
mod yolo_parts;

mod common;

use common::{REL_TOL, random_tensor, relative_error, rng};
use rep::layers::{Layer, Parameters, randomize_vectors};
use rep::zoo::yolo::{ConvBnSilu, Ema, ImplicitHead, RepConv, RepConvN, Scaling, ema_decay, set_batch_norms};
use rep::{Const, Costs, Hw, Reparameterize, StateDict};

fn check<B>(what: &str, mut block: B, x: &ndarray::Array4<f32>, seed: u64)
where
    B: Layer + Parameters + Reparameterize,
    B::Fused: Layer,
{
    randomize_vectors(&mut block, &mut rng(seed));
    let fused = block.fuse().unwrap();
    let err = relative_error(&fused.forward(x).unwrap(), &block.forward(x).unwrap());
    assert!(err <= REL_TOL, "{what}: {err:e}");
}

#[test]
fn every_part_fuses_exactly() {
    for (seed, stride) in [(1u64, 1usize), (2, 2)] {
        let mut r = rng(seed);
        for (cin, cout) in [(8usize, 8usize), (6, 10)] {
            let x = random_tensor((2, cin, 13, 9), &mut r);
            for groups in [1usize, 2] {
                check("RepConv", RepConv::new(cin, cout, stride, groups, &mut r).unwrap(), &x, seed);
                check("RepConvN", RepConvN::new(cin, cout, stride, groups, &mut r).unwrap(), &x, seed);
            }
            for k in [1usize, 3, 5] {
                check("Conv", ConvBnSilu::new(cin, cout, k, stride, &mut r).unwrap(), &x, seed);
            }
            check("ImplicitHead", ImplicitHead::new(cin, cout, &mut r).unwrap(), &x, seed);
        }
    }
    let block = RepConv::new(Const::<8>, Const::<8>, Const::<1>, Const::<1>, &mut rng(0)).unwrap();
    assert!(block.rbr_identity.is_some());
    assert_eq!((block.rbr_dense.1.eps, block.rbr_dense.1.momentum), (1e-3, Some(0.03)));
    assert!(RepConv::new(8usize, 8usize, 2usize, 1usize, &mut rng(0)).unwrap().rbr_identity.is_none());
}

#[test]
fn implicit_knowledge_folds_into_the_conv() {
    let mut head = ImplicitHead::new(4usize, 3usize, &mut rng(0)).unwrap();
    head.head.0.implicit = ndarray::Array4::from_shape_vec((1, 4, 1, 1), vec![0.5, -1.0, 2.0, 0.25]).unwrap();
    head.head.2.implicit = ndarray::Array4::from_shape_vec((1, 3, 1, 1), vec![2.0, -0.5, 1.5]).unwrap();
    let fused = head.fuse().unwrap();
    // W' = m·W, b' = m·(b + W·a), by hand.
    let (w, b) = (&head.head.1.weight(), head.head.1.bias().unwrap());
    let (a, m) = ([0.5f32, -1.0, 2.0, 0.25], [2.0f32, -0.5, 1.5]);
    for o in 0..3 {
        let wa: f32 = (0..4).map(|c| w[[o, c, 0, 0]] * a[c]).sum();
        assert!((fused.conv.bias().unwrap()[o] - m[o] * (b[o] + wa)).abs() < 1e-6);
        for c in 0..4 {
            assert!((fused.conv.weight()[[o, c, 0, 0]] - m[o] * w[[o, c, 0, 0]]).abs() < 1e-6);
        }
    }
    let mut names = Vec::new();
    head.visit("model.105", &mut |n, t| names.push(format!("{n} {:?}", t.shape())));
    assert_eq!(
        names,
        [
            "model.105.ia.implicit [1, 4, 1, 1]",
            "model.105.m.weight [3, 4, 1, 1]",
            "model.105.m.bias [3]",
            "model.105.im.implicit [1, 3, 1, 1]"
        ]
    );
}

#[test]
fn yolov7_weight_names() {
    let names = |m: &dyn Parameters| {
        let mut n = Vec::new();
        m.visit("", &mut |name, _| n.push(name.to_owned()));
        n
    };
    let conv = ConvBnSilu::new(3usize, 8usize, 3usize, 2usize, &mut rng(0)).unwrap();
    assert_eq!(names(&conv), ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"]);
    assert_eq!(names(&conv.fuse().unwrap()), ["conv.weight", "conv.bias"]);
    let repconv = RepConv::new(8usize, 8usize, 1usize, 1usize, &mut rng(0)).unwrap();
    let all = names(&repconv);
    for key in ["rbr_dense.0.weight", "rbr_dense.1.running_mean", "rbr_1x1.0.weight", "rbr_identity.running_var"] {
        assert!(all.iter().any(|n| n == key), "{key} not in {all:?}");
    }
    assert_eq!(names(&repconv.fuse().unwrap()), ["rbr_reparam.weight", "rbr_reparam.bias"]);
}

#[test]
fn batch_norm_options_are_set_model_wide() {
    let mut net = yolo_parts::TinyYolo::new(&yolo_parts::SETTINGS[0].1, &mut rng(0)).unwrap();
    set_batch_norms(&mut net, 1e-4, 0.5);
    let mut count = 0;
    net.visit_batch_norms(&mut |bn| {
        assert_eq!((bn.eps, bn.momentum), (1e-4, Some(0.5)));
        count += 1;
    });
    assert!(count > 10, "{count} batch norms");
}

#[test]
fn ema_update_matches_a_hand_computation() {
    let model = ConvBnSilu::new(2usize, 3usize, 1usize, 1usize, &mut rng(0)).unwrap();
    let mut ema = Ema::new(&model, 0.9999);
    let mut trained = model.clone();
    randomize_vectors(&mut trained, &mut rng(1));
    trained.conv.conv.weight_mut().mapv_inplace(|w| w + 1.0);
    let d = ema.update(&trained).unwrap();
    assert_eq!(ema.updates, 1);
    assert!((d - 0.9999 * (1.0 - (-1.0f64 / 2000.0).exp())).abs() < 1e-15);
    assert!((ema_decay(0.9999, 2000) - 0.9999 * (1.0 - (-1.0f64).exp())).abs() < 1e-15);
    let (before, after, now) = (
        StateDict::from_parameters(&model),
        StateDict::from_parameters(&ema.model),
        StateDict::from_parameters(&trained),
    );
    for (key, average) in &after.tensors {
        for ((e, m), t) in average.iter().zip(&before.tensors[key]).zip(&now.tensors[key]) {
            let expected = (d * *m as f64 + (1.0 - d) * *t as f64) as f32;
            assert!((e - expected).abs() <= 1e-6 * expected.abs().max(1.0), "{key}: {e} vs {expected}");
        }
    }
    // A model of another shape is refused before anything changes.
    let other = ConvBnSilu::new(2usize, 4usize, 1usize, 1usize, &mut rng(0)).unwrap();
    let mut ema4 = Ema::new(&model, 0.9999);
    assert!(ema4.update(&other).is_err());
    assert_eq!((ema4.updates, StateDict::from_parameters(&ema4.model)), (0, before));
}

#[test]
fn costs_follow_the_conv_formula() {
    let conv = ConvBnSilu::new(16usize, 32usize, 3usize, 2usize, &mut rng(0)).unwrap();
    let (macs, out) = conv.macs(Hw::square(64)).unwrap();
    assert_eq!(out, Hw::square(32));
    assert_eq!(macs, 16 * 9 * 32 * 32 * 32);
    assert_eq!(conv.parameter_count(), 32 * 16 * 9 + 2 * 32);
    let dense = RepConvN::new(16usize, 16usize, 1usize, 1usize, &mut rng(0)).unwrap();
    assert_eq!(dense.fuse().unwrap().macs(Hw::new(10, 6)).unwrap().0, 16 * 9 * 60 * 16);
    let grouped = RepConvN::new(16usize, 16usize, 1usize, 4usize, &mut rng(0)).unwrap();
    assert_eq!(grouped.fuse().unwrap().macs(Hw::new(10, 6)).unwrap().0, 4 * 9 * 60 * 16);
}

#[test]
fn compound_scaling_rules_and_the_example_table() {
    let s = Scaling { width: 0.25, depth: 0.33 };
    assert_eq!((s.channels(64), s.channels(30), s.channels(256)), (16, 8, 64));
    assert_eq!((s.blocks(1), s.blocks(3), s.blocks(9)), (1, 1, 3));
    let s = Scaling { width: 0.5, depth: 0.67 };
    assert_eq!((s.channels(30), s.blocks(3), s.blocks(9)), (16, 2, 6));

    let rows = yolo_parts::report(0).unwrap();
    for row in &rows {
        assert!(
            row.fused_error <= REL_TOL && row.ema_error <= REL_TOL,
            "{}: {} / {}",
            row.name,
            row.fused_error,
            row.ema_error
        );
        let [(_, m320, _, f320), (_, m640, _, f640)] = row.costs;
        assert_eq!((m640, f640), (4 * m320, 4 * f320), "MACs grow with resolution²");
    }
    // Width ×2 roughly quadruples the cost (depth grows too).
    assert!(rows[2].costs[0].1 > 4 * rows[1].costs[0].1 && rows[1].costs[0].1 > 4 * rows[0].costs[0].1);
}

/// IDetect stores the level index in the middle of its names; the key map moves it both ways.
#[test]
fn idetect_names_round_trip_through_the_key_map() {
    use rep::zoo::yolo::idetect_key_map;
    let mut ours = StateDict::default();
    for (i, (cin, cout)) in [(8usize, 21usize), (16, 21), (32, 21)].into_iter().enumerate() {
        let head = ImplicitHead::new(cin, cout, &mut rng(i as u64)).unwrap();
        for (k, v) in StateDict::from_parameters(&head).tensors {
            ours.tensors.insert(format!("heads.{i}.{k}"), v);
        }
    }
    let map = idetect_key_map("model.105", 3, |i| format!("heads.{i}"));
    let theirs = map.export(ours.clone()).unwrap();
    let mut keys: Vec<&str> = theirs.tensors.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        &keys[..4],
        ["model.105.ia.0.implicit", "model.105.ia.1.implicit", "model.105.ia.2.implicit", "model.105.im.0.implicit"]
    );
    assert!(theirs.tensors.contains_key("model.105.m.2.weight") && theirs.tensors.contains_key("model.105.m.0.bias"));
    assert!(map.import(theirs).unwrap() == ours);
}
