//! OREPA: online (squeezed) training forward against the structural one, fused against
//! train-time, our squeezed kernel against the official formulas computed independently, and
//! the official checkpoint naming in both directions.

mod common;

use common::{REL_TOL, random_tensor, relative_error, rng};
use ndarray::{Array4, ArrayD};
use rep::layers::{Layer, Parameters, randomize_vectors};
use rep::zoo::orepa::{Orepa, from_official, internal_channels, to_official};
use rep::{Reparameterize, StateDict};

type Block = Orepa<usize, usize, usize, usize, usize, usize>;

fn block(cin: usize, cout: usize, stride: usize, groups: usize, seed: u64) -> Block {
    let mut r = rng(seed);
    let mut b = Orepa::new(cin, cout, 3usize, stride, groups, internal_channels(cin, groups), &mut r).unwrap();
    randomize_vectors(&mut b, &mut r);
    b
}

#[test]
fn online_training_forward_equals_the_structural_one() {
    for (cin, cout, stride, groups) in [(4, 8, 1, 1), (6, 6, 2, 1), (8, 8, 1, 2), (8, 12, 2, 4)] {
        let mut online = block(cin, cout, stride, groups, 3);
        let mut structural = online.clone();
        let x = random_tensor((3, cin, 11, 9), &mut rng(4));
        let (a, b) = (online.forward_train(&x).unwrap(), structural.forward_train_structural(&x).unwrap());
        let err = relative_error(&a, &b);
        assert!(err <= REL_TOL, "{cin}->{cout} s{stride} g{groups}: {err:e}");
        assert_eq!(online.bn.num_batches_tracked, 1);
        let (ra, rb) = (&online.bn.running_var, &structural.bn.running_var);
        assert!(ra.iter().zip(rb).all(|(p, q)| (p - q).abs() <= 1e-5 * q.abs().max(1.0)));
        assert!(ra.iter().any(|v| (v - 1.0).abs() > 1e-3), "running statistics must have moved");

        let fused = online.fuse().unwrap();
        let err = relative_error(&fused.forward(&x).unwrap(), &online.forward(&x).unwrap());
        assert!(err <= REL_TOL, "fused {cin}->{cout} s{stride} g{groups}: {err:e}");
    }
}

/// The example, run as a user runs it: its online and structural training steps agree, the
/// fused network equals the trained one, and fusing shrinks the parameters.
#[test]
fn the_example_network_trains_online_and_fuses() {
    let output = std::process::Command::new(common::example_binary("orepa")).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let number_after = |label: &str| -> f32 {
        let rest = stdout.split(label).nth(1).unwrap_or_else(|| panic!("no `{label}` in {stdout}"));
        rest.trim_start().split([' ', ',', '\n']).next().unwrap().parse().unwrap()
    };
    let errors = [number_after("output"), number_after("running statistics"), number_after("(eval):")];
    assert!(errors.iter().all(|e| *e <= REL_TOL), "{errors:?}");
    let (params, fused) = (number_after("parameters"), number_after("->"));
    assert!(fused * 3.0 < params, "{stdout}");
}

/// OREPA's `weight_gen`, written out independently from the official tensors (groups = 1).
fn official_kernel(state: &StateDict, cin: usize, cout: usize, k: usize) -> Array4<f64> {
    let t = |name: &str| -> ArrayD<f64> { state.tensors[name].mapv(f64::from) };
    let (origin, avg_conv, pfir, one) =
        (t("weight_orepa_origin"), t("weight_orepa_avg_conv"), t("weight_orepa_pfir_conv"), t("weight_orepa_1x1"));
    let (id1, conv2, dw, pw, vector) = (
        t("weight_orepa_1x1_kxk_idconv1"),
        t("weight_orepa_1x1_kxk_conv2"),
        t("weight_orepa_gconv_dw"),
        t("weight_orepa_gconv_pw"),
        t("vector"),
    );
    let half = cout as f64 / 2.0;
    let prior = |o: usize, h: usize, w: usize| {
        let o = o as f64;
        if o < half {
            (std::f64::consts::PI * (h as f64 + 0.5) * (o + 1.0) / 3.0).cos()
        } else {
            (std::f64::consts::PI * (w as f64 + 0.5) * (o + 1.0 - half) / 3.0).cos()
        }
    };
    let internal = id1.shape()[0];
    Array4::from_shape_fn((cout, cin, k, k), |(o, i, h, w)| {
        let mut sum = origin[[o, i, h, w]] * vector[[0, o]];
        sum += avg_conv[[o, i, 0, 0]] / (k * k) as f64 * vector[[1, o]];
        sum += pfir[[o, i, 0, 0]] * prior(o, h, w) * vector[[2, o]];
        let id = |m: usize| if i == m % cin { 1.0 } else { 0.0 };
        sum += (0..internal).map(|m| (id1[[m, i, 0, 0]] + id(m)) * conv2[[o, m, h, w]]).sum::<f64>() * vector[[3, o]];
        if (h, w) == (k / 2, k / 2) {
            sum += one[[o, i, 0, 0]] * vector[[4, o]];
        }
        sum += (0..8).map(|e| dw[[i * 8 + e, 0, h, w]] * pw[[o, i * 8 + e, 0, 0]]).sum::<f64>() * vector[[5, o]];
        sum
    })
}

#[test]
fn squeezed_kernel_matches_the_official_formulas_and_names_round_trip() {
    let (cin, cout) = (4, 6);
    let ours = block(cin, cout, 1, 1, 9);
    let official = to_official(StateDict::from_parameters(&ours)).unwrap();
    for key in
        ["weight_orepa_origin", "weight_orepa_1x1_kxk_idconv1", "weight_orepa_gconv_dw", "vector", "bn.running_var"]
    {
        assert!(
            official.tensors.contains_key(key),
            "{key} missing from {:?}",
            official.tensors.keys().collect::<Vec<_>>()
        );
    }
    assert_eq!(official.tensors["vector"].shape(), &[6, cout]);
    let expected = official_kernel(&official, cin, cout, 3);
    let squeezed = ours.squeeze().unwrap().weight;
    let err = (&squeezed - &expected).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
    // f32 storage (the DCT filters, the identity added back) limits agreement to ~1e-8.
    let scale = expected.fold(1.0f64, |m, v| m.max(v.abs()));
    assert!(err < 1e-6 * scale, "squeezed kernel differs from the official weight_gen by {err:e}");

    // The official naming loads back into a fresh block, exactly.
    let mut official = official;
    for buffer in ["weight_orepa_avg_avg", "weight_orepa_prior", "id_tensor"] {
        official.tensors.insert(buffer.into(), ArrayD::zeros(vec![1]));
    }
    let mut fresh = block(cin, cout, 1, 1, 10);
    from_official(official).unwrap().load_into(&mut fresh).unwrap();
    assert_eq!(StateDict::from_parameters(&fresh), StateDict::from_parameters(&ours));

    // Deploy names: the fused conv is `orepa_reparam`.
    let mut names = Vec::new();
    ours.fuse().unwrap().visit("", &mut |n, _| names.push(n.to_owned()));
    assert_eq!(names, ["orepa_reparam.weight", "orepa_reparam.bias"]);
}

#[test]
fn identity_initialized_first_stage_and_initial_scales() {
    let b = Orepa::new(4usize, 4usize, 3usize, 1usize, 1usize, 4usize, &mut rng(0)).unwrap();
    let w = &b.one_kxk.0.weight();
    assert!((0..4).all(|o| (0..4).all(|c| w[[o, c, 0, 0]] == if o == c { 1.0 } else { 0.0 })));
    let scales: Vec<f32> = [&b.origin.1, &b.avg.2, &b.prior.2, &b.one_kxk.2, &b.pointwise.1, &b.dw_separable.2]
        .iter()
        .map(|s| s.weight[0])
        .collect();
    assert_eq!(scales, [0.25, 0.25, 0.0, 0.5, 1.0, 0.5]);
}

#[test]
fn malformed_official_checkpoints_are_errors() {
    let ours = block(4, 4, 1, 1, 2);
    let mut official = to_official(StateDict::from_parameters(&ours)).unwrap();
    official.tensors.insert("weight_orepa_1x1_kxk_idconv1".into(), ArrayD::zeros(vec![4]));
    let err = from_official(official.clone()).unwrap_err();
    assert!(err.to_string().contains("weight_orepa_1x1_kxk_idconv1: expected shape"), "{err}");
    official.tensors.remove("vector");
    official.tensors.insert("weight_orepa_1x1_kxk_idconv1".into(), ArrayD::zeros(vec![4, 4, 1, 1]));
    let err = from_official(official).unwrap_err();
    assert_eq!(err.to_string(), "OREPA checkpoint: missing `vector`");
}

/// `Orepa::from_state_dict` (the zoo's adapter) reads channels, kernel, groups and the internal
/// width from an official checkpoint's shapes and reproduces the block exactly; a checkpoint
/// of another family is refused by name.
#[test]
fn official_checkpoints_build_the_block_they_hold() {
    for (cin, cout, stride, groups) in [(4, 6, 2, 1), (8, 8, 1, 2), (16, 16, 1, 8)] {
        let ours = block(cin, cout, stride, groups, 11);
        let official = to_official(StateDict::from_parameters(&ours)).unwrap();
        let rebuilt = Block::from_state_dict(&official, stride).unwrap();
        assert_eq!(StateDict::from_parameters(&rebuilt).tensors, StateDict::from_parameters(&ours).tensors);
        let x = random_tensor((2, cin, 9, 7), &mut rng(12));
        assert_eq!(rebuilt.forward(&x).unwrap(), ours.forward(&x).unwrap(), "{cin}->{cout} g{groups}");
    }
    let err = Block::from_state_dict(&StateDict::from_parameters(&block(4, 4, 1, 1, 13)), 1).unwrap_err();
    assert_eq!(err.to_string(), "not an OREPA train-time checkpoint in the official naming: no `weight_orepa_origin`");
}
