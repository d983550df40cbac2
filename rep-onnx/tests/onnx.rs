//! ONNX export: the fused YOLOv7 written as ONNX holds the fused weights under their official
//! names, and its nodes, read back and run by tract (an independent ONNX runtime), give the
//! planned network's head outputs.

use ndarray::{Array4, ArrayD};
use ndarray_npy::read_npy;
use rep::plan::KernelChoice;
use rep::zoo::yolov7::{Yolov7Fused, checkpoint};
use rep_onnx::tract_onnx;
use rep_onnx::tract_onnx::prelude::*;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The project's fixtures (in the root crate's `tests/fixtures`).
fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join("yolov7_w125_nc2_64x64").join(name)
}

/// `max |a − b| / max |b|`.
fn relative_error(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let largest = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / largest
}

fn fused() -> Yolov7Fused {
    checkpoint::load(fixture("train.safetensors")).unwrap().into_deploy().unwrap()
}

#[test]
fn the_exported_yolov7_holds_the_fused_weights_under_their_official_names() {
    let fused = fused();
    let model = rep_onnx::yolov7(&fused, [1, 3, 64, 64]).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let exported: BTreeSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).filter(|n| !n.ends_with(".scales")).collect();
    // Every conv's weight and bias; the implicit vectors are folded into the head's convs.
    let state = rep::StateDict::from_parameters(&fused);
    let convs: BTreeSet<&str> =
        state.tensors.keys().map(String::as_str).filter(|k| !k.contains(".ia.") && !k.contains(".im.")).collect();
    let anchors: BTreeSet<&str> = convs.iter().copied().filter(|k| k.contains("anchor")).collect();
    assert_eq!(exported, &convs - &anchors);
    for t in &graph.initializer {
        if let Some(ours) = state.tensors.get(&t.name) {
            let values: Vec<f32> =
                t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            assert_eq!(values, ours.iter().copied().collect::<Vec<_>>(), "{}", t.name);
        }
    }
    let ops: BTreeSet<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, BTreeSet::from(["Concat", "Conv", "MaxPool", "Mul", "Resize", "Sigmoid"]));
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["model.105.m.0", "model.105.m.1", "model.105.m.2"]);
}

#[test]
fn the_exported_yolov7_runs_in_tract_as_the_planned_network() {
    let fused = fused();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("onnx_export");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("yolov7_w125.onnx");
    let _ = std::fs::remove_file(&path);
    rep_onnx::save(&rep_onnx::yolov7(&fused, [1, 3, 64, 64]).unwrap(), &path).unwrap();
    assert_eq!(rep_onnx::load(&path).unwrap(), rep_onnx::yolov7(&fused, [1, 3, 64, 64]).unwrap());

    let x: Array4<f32> = read_npy(fixture("input.npy")).unwrap();
    let x = x.slice(ndarray::s![..1, .., .., ..]).to_owned();
    let plan = fused.plan([1, 3, 64, 64], KernelChoice::Auto).unwrap();
    let mut state = plan.state().unwrap();
    plan.run(&mut state, x.view()).unwrap();

    let model = tract_onnx::onnx().model_for_path(&path).unwrap().into_optimized().unwrap().into_runnable().unwrap();
    let input = Tensor::from_shape(&[1, 3, 64, 64], x.as_slice().unwrap()).unwrap();
    let outputs = model.run(tvec!(input.into())).unwrap();
    assert_eq!(outputs.len(), 3);
    for (i, theirs) in outputs.iter().enumerate() {
        let view = theirs.to_plain_array_view::<f32>().unwrap();
        let theirs = ArrayD::from_shape_vec(view.shape().to_vec(), view.iter().copied().collect()).unwrap();
        let ours = plan.output(&state, i).unwrap().to_owned().into_dyn();
        assert_eq!(theirs.shape(), ours.shape(), "level {i}");
        let err = relative_error(&theirs, &ours);
        assert!(err <= 1e-5, "level {i}: tract vs planned {err:e}");
    }
}

/// Runs an ONNX model in tract on `x`; returns its first output.
fn run_in_tract(model: &rep_onnx::ModelProto, x: &Array4<f32>) -> ArrayD<f32> {
    let bytes = rep_onnx::to_bytes(model);
    let runnable = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = Tensor::from_shape(x.shape(), x.as_standard_layout().as_slice().unwrap()).unwrap();
    let outputs = runnable.run(tvec!(input.into())).unwrap();
    let view = outputs[0].to_plain_array_view::<f32>().unwrap();
    ArrayD::from_shape_vec(view.shape().to_vec(), view.iter().copied().collect()).unwrap()
}

/// `model` run in tract on `x` gives `ours` within 1e-5 relative.
fn assert_tract_agrees(model: &rep_onnx::ModelProto, x: &Array4<f32>, ours: ArrayD<f32>) {
    let err = relative_error(&run_in_tract(model, x), &ours);
    assert!(err <= 1e-5, "tract vs ours {err:e}");
}

/// The official RepVGG checkpoint (A0 layout at width ×0.25), fused: its ONNX export holds the
/// fused weights under the official names (`stage0.rbr_reparam.weight`, …, `linear.weight`) and
/// runs in tract to our logits.
#[test]
fn a_fused_repvgg_exports_and_runs_in_tract_as_our_forward() {
    let dir = fixtures().join("official_a0_w25");
    let (_, loaded) = rep::zoo::repvgg::Checkpoint::load(dir.join("train.safetensors")).unwrap().build(None).unwrap();
    let fused = loaded.into_deploy().unwrap();
    let x: Array4<f32> = read_npy(dir.join("input.npy")).unwrap();
    let model = rep_onnx::chain(&fused, [2, 3, 64, 64]).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let exported: BTreeSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let state = rep::StateDict::from_parameters(&fused);
    assert_eq!(exported, state.tensors.keys().map(String::as_str).collect());
    assert_tract_agrees(&model, &x, fused.forward(&x).unwrap().into_dyn());
}

/// Squeeze-and-excitation (RepVGG-D2se style blocks) exports too.
#[test]
fn repvgg_with_squeeze_excitation_exports_and_runs_in_tract() {
    use rep::zoo::repvgg::{Arch, RepVgg};
    let arch = Arch::custom([1, 1, 1, 1], (0.25, 0.25), 1, 5).unwrap().with_se(true);
    let mut rng = <rep::rand::rngs::StdRng as rep::rand::SeedableRng>::seed_from_u64(3);
    let mut model = RepVgg::new(&arch, &mut rng).unwrap();
    rep::layers::randomize_vectors(&mut model, &mut rng);
    let fused = rep::Reparameterize::fuse(&model).unwrap();
    let x = Array4::from_shape_fn((1, 3, 32, 32), |(_, c, h, w)| ((c * 7 + h * 3 + w) % 11) as f32 / 11.0 - 0.5);
    let onnx = rep_onnx::chain(&fused, [1, 3, 32, 32]).unwrap();
    let ops: BTreeSet<&str> = onnx.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.as_str()).collect();
    assert!(ops.contains("GlobalAveragePool") && ops.contains("Gemm") && ops.contains("Sigmoid"), "{ops:?}");
    assert_tract_agrees(&onnx, &x, fused.forward(&x).unwrap().into_dyn());
}

/// The command-line exports: either YOLOv7 form, and RepVGG; a size YOLOv7 cannot take is
/// refused, and nothing is written over the input.
#[test]
fn checkpoints_export_from_either_form() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("onnx_cli");
    std::fs::create_dir_all(&out).unwrap();
    let dir = fixtures().join("yolov7_w125_nc2_64x64");
    let mut counts = Vec::new();
    for form in ["train", "deploy"] {
        let path = out.join(format!("yolov7-{form}.onnx"));
        rep_onnx::export_yolov7(&dir.join(format!("{form}.safetensors")), &path, 64).unwrap();
        counts.push(rep_onnx::load(&path).unwrap().graph.unwrap().node.len());
    }
    assert_eq!(counts[0], counts[1]);
    let err = rep_onnx::export_yolov7(&dir.join("train.safetensors"), &out.join("bad.onnx"), 65).unwrap_err();
    assert!(err.to_string().contains("multiple of 32"), "{err}");
    let input = dir.join("train.safetensors");
    assert!(rep_onnx::export_yolov7(&input, &input, 64).is_err());

    let repvgg = out.join("repvgg.onnx");
    let train = fixtures().join("official_a0_w25/train.safetensors");
    let arch = rep_onnx::export_repvgg(&train, &repvgg, None, 64, 3).unwrap();
    assert_eq!(arch.classes(), 10);
    let graph = rep_onnx::load(&repvgg).unwrap().graph.unwrap();
    assert!(graph.initializer.iter().any(|t| t.name == "stage0.rbr_reparam.weight"));
    assert_eq!(graph.output.len(), 1);
    // The batch given is the batch exported.
    let x = Array4::from_shape_fn((3, 3, 64, 64), |(n, c, h, w)| ((n + 2 * c + 3 * h + 5 * w) % 7) as f32 / 7.0);
    assert_eq!(run_in_tract(&rep_onnx::load(&repvgg).unwrap(), &x).shape(), &[3, 10]);
    let err = rep_onnx::export_repvgg(&train, &out.join("none.onnx"), None, 64, 0).unwrap_err();
    assert!(err.to_string().contains("batch"), "{err}");
}
