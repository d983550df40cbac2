//! The zoo's networks as ONNX: YOLOv7's layers and head, and the `convert --to onnx` commands
//! for YOLOv7 and RepVGG checkpoints.

use crate::{ModelProto, OnnxGraph, ToOnnx, chain, save};
use rep::kernels::Activation;
use rep::layers::join;
use rep::zoo::repvgg::{self, Arch, Opened};
use rep::zoo::yolov7::{Config, SppcspcLayerFused, Yolov7Fused, Yolov7LayerFused, checkpoint};
use rep::{Error, Result};
use std::path::Path;

/// Each fused layer as ONNX nodes: its conv with bias (`conv` or `rbr_reparam`) and activation,
/// or SPPCSPC's own graph.
impl ToOnnx for Yolov7LayerFused {
    fn to_onnx(&self, graph: &mut OnnxGraph, input: &str, name: &str) -> Result<String> {
        let (conv, key, activation) = match self {
            Yolov7LayerFused::Conv(l) => (&l.conv, "conv", Activation::Silu),
            Yolov7LayerFused::ConvLeaky(l) => (&l.conv, "conv", Activation::LeakyRelu(0.1)),
            Yolov7LayerFused::RepConv(l) => (&l.conv, "rbr_reparam", Activation::Silu),
            Yolov7LayerFused::Sppcspc(inner) => {
                let outputs = graph.graph(inner.graph(), input, name)?;
                return Ok(outputs.into_iter().next().expect("SPPCSPC has one output"));
            }
        };
        Ok(graph.conv(input, conv, &join(name, key), name, activation))
    }
}

/// SPPCSPC's fused layers: every one a YOLO `Conv` (SiLU).
impl ToOnnx for SppcspcLayerFused {
    fn to_onnx(&self, graph: &mut OnnxGraph, input: &str, name: &str) -> Result<String> {
        use SppcspcLayerFused::*;
        let (cv1(l) | cv2(l) | cv3(l) | cv4(l) | cv5(l) | cv6(l) | cv7(l)) = self;
        Ok(graph.conv(input, &l.conv, &join(name, "conv"), name, Activation::Silu))
    }
}

/// A fused YOLOv7 as an ONNX model for inputs `[N, 3, H, W]` (opset [`crate::OPSET`]), under
/// the official weight names: every layer and the head's three 1×1 convs (implicit vectors
/// folded in). Its outputs are the head's raw maps `model.{N}.m.0` … `m.2`
/// (`[B, na·(5 + classes), H, W]` per level, before the sigmoid and the decoding that
/// `Yolo::forward` adds).
pub fn yolov7(fused: &Yolov7Fused, input: [usize; 4]) -> Result<ModelProto> {
    let mut onnx = OnnxGraph::new();
    let features = onnx.graph(&fused.graph, "input", "model")?;
    let head = fused.head_name();
    let mut outputs = Vec::new();
    for (i, (feature, level)) in features.iter().zip(&fused.head.levels).enumerate() {
        let name = format!("{head}.m.{i}");
        outputs.push((onnx.conv(feature, &level.conv, &name, &name, Activation::Identity), 4));
    }
    Ok(onnx.model(("input", input), &outputs))
}

/// Writes the YOLOv7 checkpoint `input` (either form; a train-time one is fused first) as an
/// ONNX model for inputs `[1, 3, size, size]` ([`yolov7`]); returns its configuration.
pub fn export_yolov7(input: &Path, output: &Path, size: usize) -> Result<Config> {
    rep::io::ensure_distinct(output, &[input])?;
    if size == 0 || !size.is_multiple_of(32) || size > 1 << 14 {
        return Err(Error::Architecture(format!(
            "the input size must be a positive multiple of 32 up to 16384, found {size}"
        )));
    }
    let fused = checkpoint::load(input)?.into_deploy()?;
    save(&yolov7(&fused, [1, 3, size, size])?, output)?;
    Ok(fused.config().clone())
}

/// Writes the RepVGG checkpoint `input` (either form; a train-time one is fused first) as an
/// ONNX model for inputs `[batch, 3, size, size]` ([`chain`]: the fused weights under the
/// official names, the logits as output); returns its architecture.
pub fn export_repvgg(input: &Path, output: &Path, arch: Option<&str>, size: usize, batch: usize) -> Result<Arch> {
    rep::io::ensure_distinct(output, &[input])?;
    if size == 0 || size > 1 << 14 {
        return Err(Error::Architecture(format!("the input size must be in 1..=16384, found {size}")));
    }
    if batch == 0 || batch > 1 << 12 {
        return Err(Error::Architecture(format!("the batch must be in 1..=4096, found {batch}")));
    }
    let Opened { arch, model, .. } = repvgg::open(input, arch)?;
    save(&chain(&model.into_deploy()?, [batch, 3, size, size])?, output)?;
    Ok(arch)
}
