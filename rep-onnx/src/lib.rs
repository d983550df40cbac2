//! ONNX export of fused networks, for ONNX Runtime, TensorRT and every other ONNX consumer.
//!
//! [`OnnxGraph`] collects nodes in order (opset 17) and the weights as initializers under their
//! checkpoint names (`model.0.conv.weight`, …), so an exported file holds exactly the fused
//! weights `StateDict::from_parameters` saves. The protobuf types are the ONNX schema as
//! `tract-onnx` generates it; `prost` encodes them.
//!
//! ```no_run
//! # fn main() -> rep::Result<()> {
//! use rep::zoo::yolov7::checkpoint;
//! let fused = checkpoint::load("yolov7.safetensors")?.into_deploy()?;
//! rep_onnx::save(&rep_onnx::yolov7(&fused, [1, 3, 640, 640])?, "yolov7.onnx")?;
//! # Ok(())
//! # }
//! ```

mod zoo;

pub use tract_onnx;
pub use zoo::{export_repvgg, export_yolov7, yolov7};

use prost::Message;
use rep::graph::{Graph, Op, Source};
use rep::kernels::Activation;
use rep::layers::{Conv2d, Linear, MaxPool2d, SqueezeExcite, join};
use rep::plan::{Compile, Traced};
use rep::{Error, Result};
use std::path::Path;
pub use tract_onnx::pb::ModelProto;
use tract_onnx::pb::{
    AttributeProto, GraphProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
};

/// The ONNX operator set the exported nodes follow.
pub const OPSET: i64 = 17;

/// An ONNX graph under construction: nodes in order, weights as named initializers.
#[derive(Debug, Default)]
pub struct OnnxGraph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl OnnxGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Conv` with its bias (weights `key.weight`, `key.bias`), then `activation`; the output is
    /// named `output`, which is returned.
    pub fn conv(&mut self, input: &str, conv: &Conv2d, key: &str, output: &str, activation: Activation) -> String {
        let g = conv.geometry();
        let (weight, bias) = (join(key, "weight"), join(key, "bias"));
        self.initializer(&weight, conv.weight().shape(), conv.weight().iter().copied());
        let zeros = vec![0.0; g.out_channels];
        let values: Vec<f32> = conv.bias().map_or(zeros, |b| b.to_vec());
        self.initializer(&bias, &[g.out_channels], values);
        let pre = if activation == Activation::Identity { output.to_owned() } else { format!("{output}.conv") };
        let attributes = vec![
            ints("kernel_shape", &[g.kernel.h, g.kernel.w]),
            ints("strides", &[g.stride.h, g.stride.w]),
            ints("pads", &[g.padding.h, g.padding.w, g.padding.h, g.padding.w]),
            ints("dilations", &[g.dilation.h, g.dilation.w]),
            int("group", g.groups as i64),
        ];
        self.node("Conv", &[input, &weight, &bias], &pre, attributes);
        self.activation(&pre, activation, output)
    }

    /// `activation` of `input` into `output` (SiLU as `x · Sigmoid(x)`); returns `output`.
    pub fn activation(&mut self, input: &str, activation: Activation, output: &str) -> String {
        match activation {
            Activation::Identity if input == output => {}
            Activation::Identity => self.node("Identity", &[input], output, vec![]),
            Activation::Relu => self.node("Relu", &[input], output, vec![]),
            Activation::Sigmoid => self.node("Sigmoid", &[input], output, vec![]),
            Activation::LeakyRelu(slope) => self.node("LeakyRelu", &[input], output, vec![float("alpha", slope)]),
            Activation::Silu => {
                let gate = format!("{output}.sigmoid");
                self.node("Sigmoid", &[input], &gate, vec![]);
                self.node("Mul", &[input, &gate], output, vec![]);
            }
        }
        output.to_owned()
    }

    /// Channel concatenation (`axis = 1`).
    pub fn concat(&mut self, inputs: &[&str], output: &str) -> String {
        self.node("Concat", inputs, output, vec![int("axis", 1)]);
        output.to_owned()
    }

    /// Element-wise sum.
    pub fn add(&mut self, inputs: &[&str], output: &str) -> String {
        self.node("Sum", inputs, output, vec![]);
        output.to_owned()
    }

    /// Max pooling (padding with −∞, as PyTorch).
    pub fn max_pool(&mut self, input: &str, pool: &MaxPool2d, output: &str) -> String {
        let (k, s, p) = (pool.kernel, pool.stride, pool.padding);
        let attributes =
            vec![ints("kernel_shape", &[k.h, k.w]), ints("strides", &[s.h, s.w]), ints("pads", &[p.h, p.w, p.h, p.w])];
        self.node("MaxPool", &[input], output, attributes);
        output.to_owned()
    }

    /// Nearest upsampling by `factor` (`Resize`, asymmetric coordinates, floor: PyTorch's
    /// `nn.Upsample(scale_factor, mode="nearest")`).
    pub fn upsample(&mut self, input: &str, factor: usize, output: &str) -> String {
        let scales = format!("{output}.scales");
        self.initializer(&scales, &[4], [1.0, 1.0, factor as f32, factor as f32]);
        let attributes = vec![
            string("mode", "nearest"),
            string("coordinate_transformation_mode", "asymmetric"),
            string("nearest_mode", "floor"),
        ];
        self.node("Resize", &[input, "", &scales], output, attributes);
        output.to_owned()
    }

    /// The nodes of a runtime graph reading `input`, each layer named `prefix.<node>`; returns
    /// the names of the graph's outputs.
    pub fn graph<L: ToOnnx>(&mut self, graph: &Graph<L>, input: &str, prefix: &str) -> Result<Vec<String>> {
        let mut names: Vec<String> = Vec::with_capacity(graph.nodes().len());
        for node in graph.nodes() {
            let sources: Vec<&str> = node
                .from
                .iter()
                .map(|s| match *s {
                    Source::Input => input,
                    Source::Node(j) => names[j].as_str(),
                })
                .collect();
            let name = join(prefix, &node.name);
            let output = match &node.op {
                Op::Layer(k) => graph.layers()[*k].to_onnx(self, sources[0], &name)?,
                Op::Concat => self.concat(&sources, &name),
                Op::Add => self.add(&sources, &name),
                Op::Upsample(factor) => self.upsample(sources[0], *factor, &name),
                Op::MaxPool(pool) => self.max_pool(sources[0], pool, &name),
            };
            names.push(output);
        }
        Ok(graph.outputs().iter().map(|&o| names[o].clone()).collect())
    }

    /// The nodes of a chain model's trace ([`rep::plan::trace`]) reading `input`; returns the
    /// name of its output. Weights keep their checkpoint names; every value is named after its
    /// step (made unique where two steps share a name).
    pub fn chain(&mut self, trace: &[(String, Traced)], input: &str) -> String {
        let mut used = std::collections::HashSet::new();
        let mut unique = |name: &str| {
            let base = if name.is_empty() { "output".to_owned() } else { name.to_owned() };
            let mut candidate = base.clone();
            for k in 1.. {
                if used.insert(candidate.clone()) {
                    break;
                }
                candidate = format!("{base}.{k}");
            }
            candidate
        };
        let mut value = input.to_owned();
        for (name, layer) in trace {
            let output = unique(name);
            value = match layer {
                Traced::Conv(conv, activation) => self.conv(&value, conv, name, &output, *activation),
                Traced::Activation(activation) => self.activation(&value, *activation, &output),
                Traced::SqueezeExcite(se) => self.squeeze_excite(&value, se, name, &output),
                Traced::GlobalAvgPool => {
                    let pooled = format!("{output}.pooled");
                    self.node("GlobalAveragePool", &[&value], &pooled, vec![]);
                    self.node("Flatten", &[&pooled], &output, vec![int("axis", 1)]);
                    output
                }
                Traced::Linear(linear) => self.linear(&value, linear, name, &output),
            };
        }
        value
    }

    /// Squeeze-and-excitation: `x · σ(up(relu(down(mean(x)))))`, its convs under
    /// `name.down`/`name.up` (or the names the block gives them).
    pub fn squeeze_excite(&mut self, input: &str, se: &SqueezeExcite, name: &str, output: &str) -> String {
        let pooled = self.node_out("GlobalAveragePool", &[input], &format!("{output}.pooled"), vec![]);
        let (down, up) = (join(name, se.names.0), join(name, se.names.1));
        let hidden = self.conv(&pooled, &se.down, &down, &format!("{output}.down"), Activation::Relu);
        let gate = self.conv(&hidden, &se.up, &up, &format!("{output}.gate"), Activation::Sigmoid);
        self.node("Mul", &[input, &gate], output, vec![]);
        output.to_owned()
    }

    /// A fully connected layer (`Gemm`, `y = x·Wᵀ + b`), weights under `name.weight`/`name.bias`.
    pub fn linear(&mut self, input: &str, linear: &Linear, name: &str, output: &str) -> String {
        let (weight, bias) = (join(name, "weight"), join(name, "bias"));
        self.initializer(&weight, linear.weight.shape(), linear.weight.iter().copied());
        let zeros = vec![0.0; linear.out_features()];
        self.initializer(&bias, &[linear.out_features()], linear.bias.as_ref().map_or(zeros, |b| b.to_vec()));
        self.node("Gemm", &[input, &weight, &bias], output, vec![int("transB", 1)]);
        output.to_owned()
    }

    /// The model: one float input `[N, C, H, W]` named `input`, the given outputs with their
    /// ranks (`[N, C, H, W]` maps or `[N, features]`), their sizes left to the consumer.
    pub fn model(self, input: (&str, [usize; 4]), outputs: &[(String, usize)]) -> ModelProto {
        let input_dims: Vec<Option<usize>> = input.1.iter().map(|&d| Some(d)).collect();
        let graph = GraphProto {
            name: "rep".into(),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![value_info(input.0, &input_dims)],
            output: outputs.iter().map(|(o, rank)| value_info(o, &vec![None; *rank])).collect(),
            ..GraphProto::default()
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "rep".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(graph),
            ..ModelProto::default()
        }
    }

    fn node_out(&mut self, op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> String {
        self.node(op, inputs, output, attribute);
        output.to_owned()
    }

    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|&i| i.to_owned()).collect(),
            output: vec![output.to_owned()],
            name: output.to_owned(),
            op_type: op.to_owned(),
            attribute,
            ..NodeProto::default()
        });
    }

    fn initializer(&mut self, name: &str, shape: &[usize], values: impl IntoIterator<Item = f32>) {
        self.initializers.push(TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            name: name.to_owned(),
            raw_data: values.into_iter().flat_map(f32::to_le_bytes).collect(),
            ..TensorProto::default()
        });
    }
}

/// A fused chain model (anything a [`rep::plan::Plan`] compiles: RepVGG, a `#[rep::model]`, a
/// fused block) as an ONNX model for inputs of shape `input`, output named `output`.
pub fn chain<M: Compile + ?Sized>(model: &M, input: [usize; 4]) -> Result<ModelProto> {
    let trace = rep::plan::trace(model, input)?;
    let mut graph = OnnxGraph::new();
    let output = graph.chain(&trace, "input");
    let rank = if trace.iter().any(|(_, layer)| matches!(layer, Traced::GlobalAvgPool)) { 2 } else { 4 };
    Ok(graph.model(("input", input), &[(output, rank)]))
}

/// A fused layer that appends itself to an ONNX graph.
pub trait ToOnnx {
    /// Appends this layer's nodes reading `input`, weights under `name`; returns its output's
    /// name.
    fn to_onnx(&self, graph: &mut OnnxGraph, input: &str, name: &str) -> Result<String>;
}

/// The model's protobuf encoding (what [`save`] writes).
pub fn to_bytes(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Writes `model` to `path` atomically (a temporary file, then a rename).
pub fn save(model: &ModelProto, path: impl AsRef<Path>) -> Result<()> {
    let bytes = to_bytes(model);
    rep::io::write_atomic(path.as_ref(), |w| std::io::Write::write_all(w, &bytes))
}

/// Reads an ONNX model (for checking an export; running it is ONNX Runtime's or tract's job).
pub fn load(path: impl AsRef<Path>) -> Result<ModelProto> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    ModelProto::decode(bytes.as_slice())
        .map_err(|e| Error::Checkpoint(format!("{}: not an ONNX model: {e}", path.display())))
}

/// A float tensor's name, type and shape; `None` dimensions are symbolic (`d0`, `d1`, …), for
/// the consumer to infer.
fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    use tensor_shape_proto::dimension::Value;
    let dim = |(i, d): (usize, &Option<usize>)| tensor_shape_proto::Dimension {
        value: Some(d.map_or_else(|| Value::DimParam(format!("d{i}")), |d| Value::DimValue(d as i64))),
        ..Default::default()
    };
    let shape = TensorShapeProto { dim: dims.iter().enumerate().map(dim).collect() };
    let tensor = type_proto::Tensor { elem_type: DataType::Float as i32, shape: Some(shape) };
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: value, ..Default::default() }
}

fn ints(name: &str, values: &[usize]) -> AttributeProto {
    let ints = values.iter().map(|&v| v as i64).collect();
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints, ..Default::default() }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f: value, ..Default::default() }
}

fn string(name: &str, value: &str) -> AttributeProto {
    let s = value.as_bytes().to_vec();
    AttributeProto { name: name.into(), r#type: AttributeType::String as i32, s, ..Default::default() }
}
