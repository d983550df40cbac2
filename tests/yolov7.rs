//! YOLOv7 against the official code: the official train-time and fused checkpoints load under
//! their own names, and the network, its fused form and the official fused form compute the
//! official outputs.

mod common;

use common::relative_error;
use ndarray::{Array3, Array4, Array5};
use ndarray_npy::read_npy;
use rep::io::StateDict;
use rep::kernels::Tile;
use rep::plan::KernelChoice;
use rep::zoo::yolov7::checkpoint::{self, Form, Loaded};
use rep::zoo::yolov7::{Config, Variant, Yolov7};
use rep::{Costs, Reparameterize};
use std::path::PathBuf;

fn fixture(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yolov7_w125_nc2_64x64").join(file)
}

fn input() -> Array4<f32> {
    read_npy(fixture("input.npy")).unwrap()
}

fn train_model() -> Yolov7 {
    match checkpoint::load(fixture("train.safetensors")).unwrap() {
        Loaded::Train(model) => *model,
        Loaded::Deploy(_) => panic!("train.safetensors loaded as a fused model"),
    }
}

#[test]
fn the_configuration_is_inferred_from_the_checkpoints() {
    for (file, form) in [("train.safetensors", Form::Train), ("deploy.safetensors", Form::Deploy)] {
        let state = StateDict::load(fixture(file)).unwrap();
        let (config, found) = checkpoint::configuration(&state).unwrap();
        assert_eq!(found, form, "{file}");
        assert_eq!(config.variant, Variant::Yolov7);
        assert_eq!(config.scaling.width, 0.125);
        assert_eq!(config.classes, 2);
    }
}

#[test]
fn the_official_train_checkpoint_computes_the_official_maps_and_detections() {
    let model = train_model();
    let x = input();
    let maps = model.forward_maps(&x).unwrap();
    for (level, map) in maps.iter().enumerate() {
        let expected: Array5<f32> = read_npy(fixture(&format!("expect_train_p{}.npy", level + 3))).unwrap();
        assert_eq!(map.dim(), expected.dim(), "P{}", level + 3);
        let err = relative_error(map, &expected);
        assert!(err <= 1e-5, "P{}: {err:e}", level + 3);
    }
    let z = model.forward(&x).unwrap();
    let expected: Array3<f32> = read_npy(fixture("expect_train.npy")).unwrap();
    let err = relative_error(&z, &expected);
    assert!(err <= 1e-5, "z: {err:e}");
}

#[test]
fn fusing_computes_the_official_fused_detections_and_exports_the_official_keys() {
    let model = train_model();
    let fused = model.fuse().unwrap();
    let z = fused.forward(&input()).unwrap();
    let expected: Array3<f32> = read_npy(fixture("expect_deploy.npy")).unwrap();
    let err = relative_error(&z, &expected);
    assert!(err <= 1e-5, "fused z: {err:e}");

    // Our fused weights under the official fused model's names, the same 192 keys and shapes.
    let ours = StateDict::from_parameters(&fused);
    let official = StateDict::load(fixture("deploy.safetensors")).unwrap();
    let shapes = |s: &StateDict| s.tensors.iter().map(|(k, t)| (k.clone(), t.shape().to_vec())).collect::<Vec<_>>();
    assert_eq!(ours.tensors.len(), 192);
    assert_eq!(shapes(&ours), shapes(&official));
    // And values that agree with the official fold (the fold is the same arithmetic in f64).
    for (key, theirs) in &official.tensors {
        let err = relative_error(&ours.tensors[key], theirs);
        assert!(err <= 1e-5, "{key}: {err:e}");
    }
}

#[test]
fn the_planned_network_computes_the_official_fused_detections_with_every_kernel_choice() {
    let fused = train_model().fuse().unwrap();
    let x = input();
    let expected: Array3<f32> = read_npy(fixture("expect_deploy.npy")).unwrap();
    for choice in [KernelChoice::Auto, KernelChoice::Direct, KernelChoice::Winograd(Tile::F2)] {
        let plan = fused.plan([1, 3, 64, 64], choice).unwrap();
        let mut state = plan.state().unwrap();
        let z = fused.forward_planned(&plan, &mut state, x.view()).unwrap();
        let err = relative_error(&z, &expected);
        assert!(err <= 1e-5, "{choice:?}: {err:e}");
        // Liveness: buffers within 1.5× the most bytes alive at once (1.29× measured), and well
        // under one buffer per value (3.1× less measured).
        let (buffers, peak, values) = (plan.buffer_bytes(), plan.peak_live_bytes(), plan.value_bytes());
        assert!(2 * buffers <= 3 * peak && 2 * buffers < values, "{buffers} {peak} {values}");
    }
    // A NaN in the input lands where the unplanned network puts it (Winograd layers included).
    let plan = fused.plan([1, 3, 64, 64], KernelChoice::Winograd(Tile::F2)).unwrap();
    let mut state = plan.state().unwrap();
    let mut x = x;
    x[[0, 1, 20, 30]] = f32::NAN;
    let planned = fused.forward_planned(&plan, &mut state, x.view()).unwrap();
    let unplanned = fused.forward(&x).unwrap();
    let nan = |z: &Array3<f32>| z.mapv(|v| v.is_nan());
    assert_eq!(nan(&planned), nan(&unplanned));
    assert!(planned.iter().any(|v| v.is_nan()));
    // A state of another plan, or an input of another shape, is an error.
    let other = fused.plan([1, 3, 32, 32], KernelChoice::Auto).unwrap();
    assert!(fused.forward_planned(&other, &mut state, x.view()).is_err());
    assert!(fused.forward_planned(&plan, &mut state, Array4::zeros((1, 3, 32, 32)).view()).is_err());
}

#[test]
fn the_official_fused_checkpoint_computes_the_official_detections() {
    let loaded = checkpoint::load(fixture("deploy.safetensors")).unwrap();
    assert!(matches!(loaded, Loaded::Deploy(_)));
    let z = loaded.forward(&input()).unwrap();
    let expected: Array3<f32> = read_npy(fixture("expect_deploy.npy")).unwrap();
    let err = relative_error(&z, &expected);
    assert!(err <= 1e-5, "official fused z: {err:e}");
}

#[test]
fn a_saved_train_model_reloads_with_the_same_keys_and_counts() {
    let model = train_model();
    let state = StateDict::from_parameters(&model);
    let official = StateDict::load(fixture("train.safetensors")).unwrap();
    assert_eq!(state.tensors.len() + state.counters.len(), 566);
    assert_eq!(state.tensors.keys().collect::<Vec<_>>(), official.tensors.keys().collect::<Vec<_>>());
    assert_eq!(state.counters, official.counters);
    // The official parameter count (`sum(p.numel() for p in model.parameters())`).
    assert_eq!(model.parameter_count(), 591_654);
}

#[test]
fn random_networks_fuse_exactly_in_both_variants() {
    let mut rng = common::rng(7);
    for (variant, width, classes) in [(Variant::Yolov7, 0.125, 3), (Variant::Tiny, 0.25, 1)] {
        let mut model = Yolov7::new(Config::new(variant, width, classes).unwrap(), &mut rng).unwrap();
        rep::layers::randomize_vectors(&mut model, &mut rng);
        let x = common::random_tensor((2, 3, 64, 96), &mut rng);
        let train = model.forward(&x).unwrap();
        let fused = model.fuse().unwrap().forward(&x).unwrap();
        assert_eq!(train.dim(), (2, 3 * (8 * 12 + 4 * 6 + 2 * 3), 5 + classes));
        let err = relative_error(&fused, &train);
        assert!(err <= 1e-5, "{variant:?}: fused vs train {err:e}");
    }
}

/// The fixtures made by `scripts/yolov7_fixture.py` with the official code: YOLOv7 and
/// YOLOv7-tiny whose BatchNorm statistics are calibrated on data, so that every layer matters
/// to the outputs (swapping two sources of one concatenation changes them by about 100 %).
/// Such a deep, well-conditioned network also carries f32 rounding to the outputs: the official
/// code's own train and fused outputs differ by 4.2e-5 (YOLOv7) and 2.3e-5 (tiny) relative. The
/// tolerance is ten times that difference.
#[test]
fn calibrated_networks_match_the_official_code_in_both_variants() {
    for (dir, variant) in [
        ("yolov7_calibrated_w125_nc2_96x128", Variant::Yolov7),
        ("yolov7_tiny_calibrated_w125_nc2_96x128", Variant::Tiny),
    ] {
        let file = |name: &str| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join(name);
        let x: Array4<f32> = read_npy(file("input.npy")).unwrap();
        let (expect_train, expect_deploy): (Array3<f32>, Array3<f32>) =
            (read_npy(file("expect_train.npy")).unwrap(), read_npy(file("expect_deploy.npy")).unwrap());
        let official_gap = relative_error(&expect_train, &expect_deploy);
        assert!(official_gap < 1e-4, "{dir}: the fixture itself is ill-conditioned ({official_gap:e})");
        let tolerance = 10.0 * official_gap;
        let check = |what: &str, ours: &Array3<f32>, theirs: &Array3<f32>| {
            let err = relative_error(ours, theirs);
            assert!(err <= tolerance, "{dir}, {what}: {err:e} > {tolerance:e}");
        };

        let Loaded::Train(model) = checkpoint::load(file("train.safetensors")).unwrap() else { panic!("{dir}: form") };
        assert_eq!(model.config().variant, variant);
        for (level, map) in model.forward_maps(&x).unwrap().iter().enumerate() {
            let expected: Array5<f32> = read_npy(file(&format!("expect_train_p{}.npy", level + 3))).unwrap();
            let err = relative_error(map, &expected);
            assert!(err <= tolerance, "{dir}, P{}: {err:e} > {tolerance:e}", level + 3);
        }
        check("train z", &model.forward(&x).unwrap(), &expect_train);
        check("fused z", &model.fuse().unwrap().forward(&x).unwrap(), &expect_deploy);
        let official_fused = checkpoint::load(file("deploy.safetensors")).unwrap();
        assert!(matches!(official_fused, Loaded::Deploy(_)));
        check("official fused z", &official_fused.forward(&x).unwrap(), &expect_deploy);
    }
}

/// The convolution weights a layout counts without building it are those the built network
/// holds; a checkpoint whose shapes claim a far larger network than its values is refused
/// before anything of that size is allocated.
#[test]
fn checkpoints_that_claim_more_than_they_hold_are_refused_before_building() {
    for (variant, width) in [(Variant::Yolov7, 0.125), (Variant::Yolov7, 0.25), (Variant::Tiny, 0.5)] {
        let config = Config::new(variant, width, 3).unwrap();
        let fused = rep::zoo::yolov7::Yolov7Fused::new(config.clone()).unwrap();
        let mut held = 0u64;
        rep::layers::Parameters::visit(&fused.graph, "", &mut |_, t| {
            if t.ndim() == 4 {
                held += t.len() as u64;
            }
        });
        assert_eq!(variant.layout().conv_weights(&config.scaling), held, "{variant:?} {width}");
    }

    // The official file, with its widest layer claiming width 2 (1024 → 2048 channels).
    let mut state = StateDict::load(fixture("train.safetensors")).unwrap();
    state.tensors.insert("model.50.conv.weight".into(), ndarray::ArrayD::zeros(vec![2048, 2048, 1, 1]));
    let err = checkpoint::from_state(&state).unwrap_err().to_string();
    assert!(err.contains("a yolov7 of width 2 has"), "{err}");
    assert!(err.contains("its shapes claim a network it does not hold"), "{err}");
}

/// A training step on the raw maps: every parameter (and no buffer) gets its gradient under the
/// official name, and an SGD step on `½ Σ map²` lowers it, in both variants.
#[test]
fn yolov7_trains_on_its_maps() {
    use rep::train::{Gradients, Optimizer, Sgd};
    for variant in [Variant::Yolov7, Variant::Tiny] {
        let mut rng = common::rng(17);
        let mut model = Yolov7::new(Config::new(variant, 0.125, 1).unwrap(), &mut rng).unwrap();
        let x = common::random_tensor((2, 3, 64, 64), &mut rng);
        let loss =
            |maps: &[Array5<f32>]| maps.iter().flat_map(|m| m.iter()).map(|v| 0.5 * (*v as f64).powi(2)).sum::<f64>();
        let (maps, cache) = model.forward_cached_maps(&x).unwrap();
        let before = loss(&maps);
        let mut grads = Gradients::new();
        model.backward_maps(cache, &maps, &mut grads).unwrap();
        let mut trainable = Vec::new();
        rep::layers::Parameters::visit(&model, "", &mut |name, _| {
            if !name.contains("running_") && !name.ends_with("anchors") && !name.ends_with("anchor_grid") {
                trainable.push(name.to_owned());
            }
        });
        trainable.sort();
        let named: Vec<String> = grads.iter().map(|(n, _)| n.to_owned()).collect();
        assert_eq!(named, trainable, "{variant:?}");
        assert!(named.contains(&"model.105.ia.2.implicit".to_owned()) || variant == Variant::Tiny);
        Sgd::new(1e-4, 0.0, 0.0).step(&mut model, &grads).unwrap();
        let (after, _) = model.forward_cached_maps(&x).unwrap();
        assert!(loss(&after) < before, "{variant:?}: {} -> {}", before, loss(&after));
    }
}
