//! YOLOv7 declared with `#[rep::graph]`, node for node as the official
//! `cfg/training/yolov7.yaml` lists it (`model.N` is field `nN`, sources as the yaml's `from`),
//! at run-time widths. SPPCSPC (`model.51`) is itself a `#[rep::graph]`, held as one node
//! (`#[rep(graph)]`); the three RepConvs before the head read no shortcut, so their identity
//! branch is allowed. The official checkpoint loads into it by name, and with the zoo's IDetect
//! head on its three outputs it reproduces the official code's raw maps; its fused form plans
//! and agrees with it.

mod common;

use common::relative_error;
use ndarray::{Array4, Array5};
use ndarray_npy::read_npy;
use rep::Reparameterize;
use rep::layers::Parameters;
use rep::plan::KernelChoice;
use rep::zoo::yolo::{ConvBnSilu, RepConv, Scaling};
use rep::zoo::yolov7::{DetectionHead, Sppcspc, checkpoint, checkpoint::Loaded};
use rep::{StateDict, graph::GraphLayer};
use std::path::PathBuf;

/// YOLOv7 before its detection head; `cN` is the base width `N` scaled
/// (`make_divisible(N · width, 8)`). Outputs: P3, P4, P5 (`model.102` … `model.104`).
#[rep::graph(
    new(c32: usize, c64: usize, c128: usize, c256: usize, c512: usize, c1024: usize),
    outputs(n102, n103, n104)
)]
pub struct Yolov7 {
    #[rep(rename = "model.0")]
    n0: ConvBnSilu<3, { c32 }, 3, 1>,
    #[rep(rename = "model.1")]
    n1: ConvBnSilu<{ c32 }, { c64 }, 3, 2>,
    #[rep(rename = "model.2")]
    n2: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.3")]
    n3: ConvBnSilu<{ c64 }, { c128 }, 3, 2>,
    #[rep(rename = "model.4")]
    n4: ConvBnSilu<{ c128 }, { c64 }, 1, 1>,
    #[rep(rename = "model.5", from = -2)]
    n5: ConvBnSilu<{ c128 }, { c64 }, 1, 1>,
    #[rep(rename = "model.6")]
    n6: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.7")]
    n7: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.8")]
    n8: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.9")]
    n9: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.10", from = (-1, -3, -5, -6))]
    n10: Concat,
    #[rep(rename = "model.11")]
    n11: ConvBnSilu<{ 4 * c64 }, { c256 }, 1, 1>,
    #[rep(rename = "model.12")]
    n12: MaxPool<2, 2>,
    #[rep(rename = "model.13")]
    n13: ConvBnSilu<{ c256 }, { c128 }, 1, 1>,
    #[rep(rename = "model.14", from = -3)]
    n14: ConvBnSilu<{ c256 }, { c128 }, 1, 1>,
    #[rep(rename = "model.15")]
    n15: ConvBnSilu<{ c128 }, { c128 }, 3, 2>,
    #[rep(rename = "model.16", from = (-1, -3))]
    n16: Concat,
    #[rep(rename = "model.17")]
    n17: ConvBnSilu<{ 2 * c128 }, { c128 }, 1, 1>,
    #[rep(rename = "model.18", from = -2)]
    n18: ConvBnSilu<{ 2 * c128 }, { c128 }, 1, 1>,
    #[rep(rename = "model.19")]
    n19: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.20")]
    n20: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.21")]
    n21: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.22")]
    n22: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.23", from = (-1, -3, -5, -6))]
    n23: Concat,
    #[rep(rename = "model.24")]
    n24: ConvBnSilu<{ 4 * c128 }, { c512 }, 1, 1>,
    #[rep(rename = "model.25")]
    n25: MaxPool<2, 2>,
    #[rep(rename = "model.26")]
    n26: ConvBnSilu<{ c512 }, { c256 }, 1, 1>,
    #[rep(rename = "model.27", from = -3)]
    n27: ConvBnSilu<{ c512 }, { c256 }, 1, 1>,
    #[rep(rename = "model.28")]
    n28: ConvBnSilu<{ c256 }, { c256 }, 3, 2>,
    #[rep(rename = "model.29", from = (-1, -3))]
    n29: Concat,
    #[rep(rename = "model.30")]
    n30: ConvBnSilu<{ 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.31", from = -2)]
    n31: ConvBnSilu<{ 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.32")]
    n32: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.33")]
    n33: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.34")]
    n34: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.35")]
    n35: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.36", from = (-1, -3, -5, -6))]
    n36: Concat,
    #[rep(rename = "model.37")]
    n37: ConvBnSilu<{ 4 * c256 }, { c1024 }, 1, 1>,
    #[rep(rename = "model.38")]
    n38: MaxPool<2, 2>,
    #[rep(rename = "model.39")]
    n39: ConvBnSilu<{ c1024 }, { c512 }, 1, 1>,
    #[rep(rename = "model.40", from = -3)]
    n40: ConvBnSilu<{ c1024 }, { c512 }, 1, 1>,
    #[rep(rename = "model.41")]
    n41: ConvBnSilu<{ c512 }, { c512 }, 3, 2>,
    #[rep(rename = "model.42", from = (-1, -3))]
    n42: Concat,
    #[rep(rename = "model.43")]
    n43: ConvBnSilu<{ 2 * c512 }, { c256 }, 1, 1>,
    #[rep(rename = "model.44", from = -2)]
    n44: ConvBnSilu<{ 2 * c512 }, { c256 }, 1, 1>,
    #[rep(rename = "model.45")]
    n45: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.46")]
    n46: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.47")]
    n47: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.48")]
    n48: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.49", from = (-1, -3, -5, -6))]
    n49: Concat,
    #[rep(rename = "model.50")]
    n50: ConvBnSilu<{ 4 * c256 }, { c1024 }, 1, 1>,
    #[rep(graph, rename = "model.51")]
    n51: Sppcspc<{ c1024 }, { c512 }>,
    #[rep(rename = "model.52")]
    n52: ConvBnSilu<{ c512 }, { c256 }, 1, 1>,
    #[rep(rename = "model.53")]
    n53: Upsample<2>,
    #[rep(rename = "model.54", from = 37)]
    n54: ConvBnSilu<{ c1024 }, { c256 }, 1, 1>,
    #[rep(rename = "model.55", from = (-1, -2))]
    n55: Concat,
    #[rep(rename = "model.56")]
    n56: ConvBnSilu<{ 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.57", from = -2)]
    n57: ConvBnSilu<{ 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.58")]
    n58: ConvBnSilu<{ c256 }, { c128 }, 3, 1>,
    #[rep(rename = "model.59")]
    n59: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.60")]
    n60: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.61")]
    n61: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.62", from = (-1, -2, -3, -4, -5, -6))]
    n62: Concat,
    #[rep(rename = "model.63")]
    n63: ConvBnSilu<{ 4 * c128 + 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.64")]
    n64: ConvBnSilu<{ c256 }, { c128 }, 1, 1>,
    #[rep(rename = "model.65")]
    n65: Upsample<2>,
    #[rep(rename = "model.66", from = 24)]
    n66: ConvBnSilu<{ c512 }, { c128 }, 1, 1>,
    #[rep(rename = "model.67", from = (-1, -2))]
    n67: Concat,
    #[rep(rename = "model.68")]
    n68: ConvBnSilu<{ 2 * c128 }, { c128 }, 1, 1>,
    #[rep(rename = "model.69", from = -2)]
    n69: ConvBnSilu<{ 2 * c128 }, { c128 }, 1, 1>,
    #[rep(rename = "model.70")]
    n70: ConvBnSilu<{ c128 }, { c64 }, 3, 1>,
    #[rep(rename = "model.71")]
    n71: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.72")]
    n72: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.73")]
    n73: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.74", from = (-1, -2, -3, -4, -5, -6))]
    n74: Concat,
    #[rep(rename = "model.75")]
    n75: ConvBnSilu<{ 4 * c64 + 2 * c128 }, { c128 }, 1, 1>,
    #[rep(rename = "model.76")]
    n76: MaxPool<2, 2>,
    #[rep(rename = "model.77")]
    n77: ConvBnSilu<{ c128 }, { c128 }, 1, 1>,
    #[rep(rename = "model.78", from = -3)]
    n78: ConvBnSilu<{ c128 }, { c128 }, 1, 1>,
    #[rep(rename = "model.79")]
    n79: ConvBnSilu<{ c128 }, { c128 }, 3, 2>,
    #[rep(rename = "model.80", from = (-1, -3, 63))]
    n80: Concat,
    #[rep(rename = "model.81")]
    n81: ConvBnSilu<{ 2 * c128 + c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.82", from = -2)]
    n82: ConvBnSilu<{ 2 * c128 + c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.83")]
    n83: ConvBnSilu<{ c256 }, { c128 }, 3, 1>,
    #[rep(rename = "model.84")]
    n84: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.85")]
    n85: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.86")]
    n86: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.87", from = (-1, -2, -3, -4, -5, -6))]
    n87: Concat,
    #[rep(rename = "model.88")]
    n88: ConvBnSilu<{ 4 * c128 + 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.89")]
    n89: MaxPool<2, 2>,
    #[rep(rename = "model.90")]
    n90: ConvBnSilu<{ c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.91", from = -3)]
    n91: ConvBnSilu<{ c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.92")]
    n92: ConvBnSilu<{ c256 }, { c256 }, 3, 2>,
    #[rep(rename = "model.93", from = (-1, -3, 51))]
    n93: Concat,
    #[rep(rename = "model.94")]
    n94: ConvBnSilu<{ 2 * c256 + c512 }, { c512 }, 1, 1>,
    #[rep(rename = "model.95", from = -2)]
    n95: ConvBnSilu<{ 2 * c256 + c512 }, { c512 }, 1, 1>,
    #[rep(rename = "model.96")]
    n96: ConvBnSilu<{ c512 }, { c256 }, 3, 1>,
    #[rep(rename = "model.97")]
    n97: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.98")]
    n98: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.99")]
    n99: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.100", from = (-1, -2, -3, -4, -5, -6))]
    n100: Concat,
    #[rep(rename = "model.101")]
    n101: ConvBnSilu<{ 4 * c256 + 2 * c512 }, { c512 }, 1, 1>,
    #[rep(rename = "model.102", from = 75)]
    n102: RepConv<{ c128 }, { c256 }, 1, 1>,
    #[rep(rename = "model.103", from = 88)]
    n103: RepConv<{ c256 }, { c512 }, 1, 1>,
    #[rep(rename = "model.104", from = 101)]
    n104: RepConv<{ c512 }, { c1024 }, 1, 1>,
}

impl Yolov7 {
    /// The network at `width`, with PyTorch's initialization.
    fn at_width(width: f64) -> rep::Result<Self> {
        let s = Scaling { width, depth: 1.0 };
        let c = |base| s.channels(base);
        Yolov7::new(c(32), c(64), c(128), c(256), c(512), c(1024), &mut rep::rand::rng())
    }
}

/// A key of the detection head (`model.105.*`), which the declaration does not hold.
fn is_head(key: &str) -> bool {
    key.starts_with("model.105.")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yolov7_calibrated_w125_nc2_96x128").join(name)
}

/// The official train checkpoint (width 0.125) loads by name into the declaration (every key
/// but the head's, nothing missing); its outputs equal the zoo's table-built network bit for
/// bit, and the head's maps on them are the official code's raw maps, within ten times the
/// official code's own train-vs-fused gap (the tolerance `tests/yolov7.rs` holds the zoo to).
#[test]
fn the_declared_network_loads_the_official_checkpoint_and_reproduces_its_maps() {
    let state = StateDict::load(fixture("train.safetensors")).unwrap();
    let mut body = Yolov7::at_width(0.125).unwrap();
    let mut body_state = state.clone();
    body_state.tensors.retain(|key, _| !is_head(key));
    body_state.counters.retain(|key, _| !is_head(key));
    body_state.load_into(&mut body).unwrap();

    let Loaded::Train(zoo) = checkpoint::load(fixture("train.safetensors")).unwrap() else { panic!("train form") };
    let x: Array4<f32> = read_npy(fixture("input.npy")).unwrap();
    let features = body.forward_all(&x).unwrap();
    let table_built = zoo.graph.forward_all(&x).unwrap();
    assert_eq!(features.len(), table_built.len());
    for (level, (ours, zoos)) in features.iter().zip(&table_built).enumerate() {
        let err = relative_error(ours, zoos);
        assert!(ours == zoos, "P{}: the declaration and the zoo's table differ by {err:e}", level + 3);
    }

    let (train, deploy): (ndarray::Array3<f32>, ndarray::Array3<f32>) =
        (read_npy(fixture("expect_train.npy")).unwrap(), read_npy(fixture("expect_deploy.npy")).unwrap());
    let tolerance = 10.0 * relative_error(&train, &deploy);
    for (level, map) in zoo.head.maps(&features).unwrap().iter().enumerate() {
        let expected: Array5<f32> = read_npy(fixture(&format!("expect_train_p{}.npy", level + 3))).unwrap();
        let err = relative_error(map, &expected);
        assert!(err <= tolerance, "P{}: {err:e} > {tolerance:e}", level + 3);
    }

    // Fused (SPPCSPC fused inside its node) and planned: the same features.
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

/// Every weight of the declaration carries an official name (SPPCSPC's as
/// `model.51.cv1.conv.weight`, …): the body's names are exactly the checkpoint's keys without
/// the head's, at several widths; the channels meet at every node.
#[test]
fn the_declaration_names_its_weights_as_the_official_checkpoint_does() {
    let state = StateDict::load(fixture("train.safetensors")).unwrap();
    let mut official: Vec<String> =
        state.tensors.keys().chain(state.counters.keys()).filter(|k| !is_head(k)).cloned().collect();
    official.sort();
    for width in [0.125, 0.25, 0.5] {
        let body = Yolov7::at_width(width).unwrap();
        let mut names = Vec::new();
        body.visit("", &mut |name, _| names.push(name.to_owned()));
        body.visit_counters("", &mut |name, _| names.push(name.to_owned()));
        names.sort();
        assert_eq!(names, official, "width {width}");
        assert_eq!(body.graph().in_channels(), 3);
    }
}
