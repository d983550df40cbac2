//! YOLOv7-tiny declared with `#[rep::graph]`, node for node as the official
//! `cfg/training/yolov7-tiny.yaml` lists it (`model.N` is field `nN`, sources as the yaml's
//! `from`), at run-time widths: the official checkpoint loads into it by name, and with the
//! zoo's IDetect head on its three outputs it reproduces the official code's raw maps; its
//! fused form plans and agrees with it.

mod common;

use common::relative_error;
use ndarray::{Array4, Array5};
use ndarray_npy::read_npy;
use rep::Reparameterize;
use rep::layers::Parameters;
use rep::plan::KernelChoice;
use rep::zoo::yolo::Scaling;
use rep::zoo::yolov7::{ConvBnLeaky, DetectionHead, checkpoint, checkpoint::Loaded};
use rep::{StateDict, graph::GraphLayer};
use std::path::PathBuf;

/// YOLOv7-tiny before its detection head; `cN` is the base width `N` scaled
/// (`make_divisible(N · width, 8)`). Outputs: P3, P4, P5 (`model.74` … `model.76`).
#[rep::graph(new(c32: usize, c64: usize, c128: usize, c256: usize, c512: usize), outputs(n74, n75, n76))]
pub struct Yolov7Tiny {
    #[rep(rename = "model.0")]
    n0: ConvBnLeaky<3, { c32 }, 3, 2>,
    #[rep(rename = "model.1")]
    n1: ConvBnLeaky<{ c32 }, { c64 }, 3, 2>,
    #[rep(rename = "model.2")]
    n2: ConvBnLeaky<{ c64 }, { c32 }, 1, 1>,
    #[rep(rename = "model.3", from = -2)]
    n3: ConvBnLeaky<{ c64 }, { c32 }, 1, 1>,
    #[rep(rename = "model.4")]
    n4: ConvBnLeaky<{ c32 }, { c32 }, 3, 1>,
    #[rep(rename = "model.5")]
    n5: ConvBnLeaky<{ c32 }, { c32 }, 3, 1>,
    #[rep(rename = "model.6", from = (-1, -2, -3, -4))]
    n6: Concat,
    #[rep(rename = "model.7")]
    n7: ConvBnLeaky<{ 4 * c32 }, { c64 }, 1, 1>,
    #[rep(rename = "model.8")]
    n8: MaxPool<2, 2, 0>,
    #[rep(rename = "model.9")]
    n9: ConvBnLeaky<{ c64 }, { c64 }, 1, 1>,
    #[rep(rename = "model.10", from = -2)]
    n10: ConvBnLeaky<{ c64 }, { c64 }, 1, 1>,
    #[rep(rename = "model.11")]
    n11: ConvBnLeaky<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.12")]
    n12: ConvBnLeaky<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.13", from = (-1, -2, -3, -4))]
    n13: Concat,
    #[rep(rename = "model.14")]
    n14: ConvBnLeaky<{ 4 * c64 }, { c128 }, 1, 1>,
    #[rep(rename = "model.15")]
    n15: MaxPool<2, 2, 0>,
    #[rep(rename = "model.16")]
    n16: ConvBnLeaky<{ c128 }, { c128 }, 1, 1>,
    #[rep(rename = "model.17", from = -2)]
    n17: ConvBnLeaky<{ c128 }, { c128 }, 1, 1>,
    #[rep(rename = "model.18")]
    n18: ConvBnLeaky<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.19")]
    n19: ConvBnLeaky<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.20", from = (-1, -2, -3, -4))]
    n20: Concat,
    #[rep(rename = "model.21")]
    n21: ConvBnLeaky<{ 4 * c128 }, { c256 }, 1, 1>,
    #[rep(rename = "model.22")]
    n22: MaxPool<2, 2, 0>,
    #[rep(rename = "model.23")]
    n23: ConvBnLeaky<{ c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.24", from = -2)]
    n24: ConvBnLeaky<{ c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.25")]
    n25: ConvBnLeaky<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.26")]
    n26: ConvBnLeaky<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "model.27", from = (-1, -2, -3, -4))]
    n27: Concat,
    #[rep(rename = "model.28")]
    n28: ConvBnLeaky<{ 4 * c256 }, { c512 }, 1, 1>,
    #[rep(rename = "model.29")]
    n29: ConvBnLeaky<{ c512 }, { c256 }, 1, 1>,
    #[rep(rename = "model.30", from = -2)]
    n30: ConvBnLeaky<{ c512 }, { c256 }, 1, 1>,
    #[rep(rename = "model.31")]
    n31: MaxPool<5, 1, 2>,
    #[rep(rename = "model.32", from = -2)]
    n32: MaxPool<9, 1, 4>,
    #[rep(rename = "model.33", from = -3)]
    n33: MaxPool<13, 1, 6>,
    #[rep(rename = "model.34", from = (-1, -2, -3, -4))]
    n34: Concat,
    #[rep(rename = "model.35")]
    n35: ConvBnLeaky<{ 4 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.36", from = (-1, -7))]
    n36: Concat,
    #[rep(rename = "model.37")]
    n37: ConvBnLeaky<{ 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "model.38")]
    n38: ConvBnLeaky<{ c256 }, { c128 }, 1, 1>,
    #[rep(rename = "model.39")]
    n39: Upsample<2>,
    #[rep(rename = "model.40", from = 21)]
    n40: ConvBnLeaky<{ c256 }, { c128 }, 1, 1>,
    #[rep(rename = "model.41", from = (-1, -2))]
    n41: Concat,
    #[rep(rename = "model.42")]
    n42: ConvBnLeaky<{ 2 * c128 }, { c64 }, 1, 1>,
    #[rep(rename = "model.43", from = -2)]
    n43: ConvBnLeaky<{ 2 * c128 }, { c64 }, 1, 1>,
    #[rep(rename = "model.44")]
    n44: ConvBnLeaky<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.45")]
    n45: ConvBnLeaky<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.46", from = (-1, -2, -3, -4))]
    n46: Concat,
    #[rep(rename = "model.47")]
    n47: ConvBnLeaky<{ 4 * c64 }, { c128 }, 1, 1>,
    #[rep(rename = "model.48")]
    n48: ConvBnLeaky<{ c128 }, { c64 }, 1, 1>,
    #[rep(rename = "model.49")]
    n49: Upsample<2>,
    #[rep(rename = "model.50", from = 14)]
    n50: ConvBnLeaky<{ c128 }, { c64 }, 1, 1>,
    #[rep(rename = "model.51", from = (-1, -2))]
    n51: Concat,
    #[rep(rename = "model.52")]
    n52: ConvBnLeaky<{ 2 * c64 }, { c32 }, 1, 1>,
    #[rep(rename = "model.53", from = -2)]
    n53: ConvBnLeaky<{ 2 * c64 }, { c32 }, 1, 1>,
    #[rep(rename = "model.54")]
    n54: ConvBnLeaky<{ c32 }, { c32 }, 3, 1>,
    #[rep(rename = "model.55")]
    n55: ConvBnLeaky<{ c32 }, { c32 }, 3, 1>,
    #[rep(rename = "model.56", from = (-1, -2, -3, -4))]
    n56: Concat,
    #[rep(rename = "model.57")]
    n57: ConvBnLeaky<{ 4 * c32 }, { c64 }, 1, 1>,
    #[rep(rename = "model.58")]
    n58: ConvBnLeaky<{ c64 }, { c128 }, 3, 2>,
    #[rep(rename = "model.59", from = (-1, 47))]
    n59: Concat,
    #[rep(rename = "model.60")]
    n60: ConvBnLeaky<{ 2 * c128 }, { c64 }, 1, 1>,
    #[rep(rename = "model.61", from = -2)]
    n61: ConvBnLeaky<{ 2 * c128 }, { c64 }, 1, 1>,
    #[rep(rename = "model.62")]
    n62: ConvBnLeaky<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.63")]
    n63: ConvBnLeaky<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "model.64", from = (-1, -2, -3, -4))]
    n64: Concat,
    #[rep(rename = "model.65")]
    n65: ConvBnLeaky<{ 4 * c64 }, { c128 }, 1, 1>,
    #[rep(rename = "model.66")]
    n66: ConvBnLeaky<{ c128 }, { c256 }, 3, 2>,
    #[rep(rename = "model.67", from = (-1, 37))]
    n67: Concat,
    #[rep(rename = "model.68")]
    n68: ConvBnLeaky<{ 2 * c256 }, { c128 }, 1, 1>,
    #[rep(rename = "model.69", from = -2)]
    n69: ConvBnLeaky<{ 2 * c256 }, { c128 }, 1, 1>,
    #[rep(rename = "model.70")]
    n70: ConvBnLeaky<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.71")]
    n71: ConvBnLeaky<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "model.72", from = (-1, -2, -3, -4))]
    n72: Concat,
    #[rep(rename = "model.73")]
    n73: ConvBnLeaky<{ 4 * c128 }, { c256 }, 1, 1>,
    #[rep(rename = "model.74", from = 57)]
    n74: ConvBnLeaky<{ c64 }, { c128 }, 3, 1>,
    #[rep(rename = "model.75", from = 65)]
    n75: ConvBnLeaky<{ c128 }, { c256 }, 3, 1>,
    #[rep(rename = "model.76", from = 73)]
    n76: ConvBnLeaky<{ c256 }, { c512 }, 3, 1>,
}

impl Yolov7Tiny {
    /// The network at `width`, with PyTorch's initialization.
    fn at_width(width: f64) -> rep::Result<Self> {
        let s = Scaling { width, depth: 1.0 };
        let c = |base| s.channels(base);
        Yolov7Tiny::new(c(32), c(64), c(128), c(256), c(512), &mut rep::rand::rng())
    }
}

/// A key of the detection head (`model.77.*`), which the declaration does not hold.
fn is_head(key: &str) -> bool {
    key.starts_with("model.77.")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yolov7_tiny_calibrated_w125_nc2_96x128").join(name)
}

/// The official train checkpoint (width 0.125) loads by name into the declaration (every key
/// but the head's, nothing missing), and the head's maps on its three outputs are the official
/// code's raw maps, within ten times the official code's own train-vs-fused gap (the tolerance
/// `tests/yolov7.rs` holds the zoo's table-built network to).
#[test]
fn the_declared_network_loads_the_official_checkpoint_and_reproduces_its_maps() {
    let state = StateDict::load(fixture("train.safetensors")).unwrap();
    let mut body = Yolov7Tiny::at_width(0.125).unwrap();
    let mut body_state = state.clone();
    body_state.tensors.retain(|key, _| !is_head(key));
    body_state.counters.retain(|key, _| !is_head(key));
    body_state.load_into(&mut body).unwrap();

    let Loaded::Train(zoo) = checkpoint::load(fixture("train.safetensors")).unwrap() else { panic!("train form") };
    let x: Array4<f32> = read_npy(fixture("input.npy")).unwrap();
    let features = body.forward_all(&x).unwrap();
    // The zoo builds the same network from its table: the same values, bit for bit.
    let table_built = zoo.graph.forward_all(&x).unwrap();
    assert_eq!(features.len(), table_built.len());
    for (level, (ours, zoos)) in features.iter().zip(&table_built).enumerate() {
        assert!(
            ours == zoos,
            "P{}: the declaration and the zoo's table differ by {:e}",
            level + 3,
            relative_error(ours, zoos)
        );
    }

    let (train, deploy): (ndarray::Array3<f32>, ndarray::Array3<f32>) =
        (read_npy(fixture("expect_train.npy")).unwrap(), read_npy(fixture("expect_deploy.npy")).unwrap());
    let tolerance = 10.0 * relative_error(&train, &deploy);
    for (level, map) in zoo.head.maps(&features).unwrap().iter().enumerate() {
        let expected: Array5<f32> = read_npy(fixture(&format!("expect_train_p{}.npy", level + 3))).unwrap();
        let err = relative_error(map, &expected);
        assert!(err <= tolerance, "P{}: {err:e} > {tolerance:e}", level + 3);
    }

    // Fused and planned: the same features.
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

/// Every weight of the declaration carries an official name: the body's names are exactly the
/// checkpoint's keys without the head's, at any width; the channels meet at every node.
#[test]
fn the_declaration_names_its_weights_as_the_official_checkpoint_does() {
    let state = StateDict::load(fixture("train.safetensors")).unwrap();
    let mut official: Vec<String> =
        state.tensors.keys().chain(state.counters.keys()).filter(|k| !is_head(k)).cloned().collect();
    official.sort();
    for width in [0.125, 0.5, 1.0] {
        let body = Yolov7Tiny::at_width(width).unwrap();
        let mut names = Vec::new();
        body.visit("", &mut |name, _| names.push(name.to_owned()));
        let mut counters = Vec::new();
        body.visit_counters("", &mut |name, _| counters.push(name.to_owned()));
        names.extend(counters);
        names.sort();
        assert_eq!(names, official, "width {width}");
        assert_eq!(body.graph().in_channels(), 3);
    }
}
