//! The zoo's YOLOv7 and YOLOv7-tiny are graph-DSL declarations (`rep::zoo::yolov7::Yolov7Body`,
//! `Yolov7TinyBody`), node for node as the official yaml files list them, SPPCSPC a nested
//! `#[rep::graph]`. Here the declarations on their own: every weight carries its official name
//! at any width, and a body loaded from an official checkpoint fuses (SPPCSPC inside its node)
//! and plans to the train-time features. `tests/yolov7.rs` checks the whole networks against
//! the official code's outputs.

mod common;

use common::relative_error;
use ndarray::Array4;
use ndarray_npy::read_npy;
use rep::layers::Parameters;
use rep::plan::KernelChoice;
use rep::zoo::yolo::Scaling;
use rep::zoo::yolov7::{Yolov7Body, Yolov7TinyBody};
use rep::{Reparameterize, StateDict};
use std::path::PathBuf;

fn fixture(dir: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join(name)
}

/// The checkpoint's state without the detection head (`model.{head}.*`), `model.` stripped.
fn body_state(dir: &str, head: usize) -> StateDict {
    let mut state = StateDict::load(fixture(dir, "train.safetensors")).unwrap();
    let head = format!("model.{head}.");
    state.tensors.retain(|key, _| !key.starts_with(&head));
    state.counters.retain(|key, _| !key.starts_with(&head));
    state.strip_prefix("model")
}

/// Every name a network visits, parameters and counters, sorted.
fn names(network: &impl Parameters) -> Vec<String> {
    let mut names = Vec::new();
    network.visit("", &mut |name, _| names.push(name.to_owned()));
    network.visit_counters("", &mut |name, _| names.push(name.to_owned()));
    names.sort();
    names
}

#[test]
fn the_declarations_name_their_weights_as_the_official_checkpoints_do() {
    let v7 = body_state("yolov7_calibrated_w125_nc2_96x128", 105);
    let tiny = body_state("yolov7_tiny_calibrated_w125_nc2_96x128", 77);
    let official = |state: &StateDict| {
        let mut keys: Vec<String> = state.tensors.keys().chain(state.counters.keys()).cloned().collect();
        keys.sort();
        keys
    };
    assert!(official(&v7).contains(&"51.cv7.conv.weight".to_owned()), "SPPCSPC's weights under its node");
    let mut rng = rep::rand::rng();
    for width in [0.125, 0.25, 0.5] {
        let c = |base| Scaling { width, depth: 1.0 }.channels(base);
        let body = Yolov7Body::new(c(32), c(64), c(128), c(256), c(512), c(1024), &mut rng).unwrap();
        assert_eq!(names(&body), official(&v7), "YOLOv7, width {width}");
        assert_eq!((body.in_channels(), body.out_channels()), (3, c(256)));
        let body = Yolov7TinyBody::new(c(32), c(64), c(128), c(256), c(512), &mut rng).unwrap();
        assert_eq!(names(&body), official(&tiny), "YOLOv7-tiny, width {width}");
        assert_eq!((body.in_channels(), body.out_channels()), (3, c(128)));
    }
}

#[test]
fn a_declared_body_loads_an_official_checkpoint_and_its_fused_plan_agrees() {
    let dir = "yolov7_calibrated_w125_nc2_96x128";
    let c = |base| Scaling { width: 0.125, depth: 1.0 }.channels(base);
    let mut body = Yolov7Body::new(c(32), c(64), c(128), c(256), c(512), c(1024), &mut rep::rand::rng()).unwrap();
    body_state(dir, 105).load_into(&mut body).unwrap();
    let x: Array4<f32> = read_npy(fixture(dir, "input.npy")).unwrap();
    let features = body.forward_all(&x).unwrap();
    assert_eq!(features.iter().map(|f| f.shape()[1]).collect::<Vec<_>>(), [c(256), c(512), c(1024)]);

    // This deep, calibrated network carries f32 rounding to its outputs: the tolerance is ten
    // times the official code's own train-vs-fused gap, as `tests/yolov7.rs` holds the zoo to.
    let (train, deploy): (ndarray::Array3<f32>, ndarray::Array3<f32>) =
        (read_npy(fixture(dir, "expect_train.npy")).unwrap(), read_npy(fixture(dir, "expect_deploy.npy")).unwrap());
    let tolerance = 10.0 * relative_error(&train, &deploy);
    let fused = body.fuse().unwrap();
    let plan = fused.plan([1, 3, 96, 128], KernelChoice::Auto).unwrap();
    let mut state = plan.state().unwrap();
    plan.run(&mut state, x.view()).unwrap();
    for (i, train_time) in features.iter().enumerate() {
        let planned = plan.output(&state, i).unwrap().to_owned().into_dimensionality().unwrap();
        let err = relative_error(&planned, train_time);
        assert!(err <= tolerance, "fused, planned P{}: {err:e} > {tolerance:e}", i + 3);
    }
}
