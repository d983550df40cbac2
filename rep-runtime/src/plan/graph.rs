//! Compiled inference for graph networks ([`crate::graph`]): every layer's steps planned as in
//! a chain [`super::Plan`], concatenation, addition, upsampling and max pooling between them,
//! and every value's buffer assigned by liveness — a buffer is reused as soon as the value in
//! it has had its last reader — instead of ping-pong.
//!
//! [`GraphPlan`] is immutable and shareable; its buffers live in a [`GraphPlanState`], one per
//! caller. [`GraphPlan::run`] allocates nothing; its outputs are read with
//! [`GraphPlan::output`].

use super::steps::Step;
use super::{Compile, KernelChoice, PlanBuilder, Shape, StepTime};
use crate::error::{Error, Result};
use crate::graph::{Graph, Op, Source};
use crate::kernels::{PARALLEL_ELEMENTS, all_finite, zeroed};
use crate::layers::{Conv2d, MaxPool2d, join};
use ndarray::{ArrayView4, ArrayViewD, IxDyn};
use rayon::prelude::*;
use std::time::Instant;

/// A value of a graph plan: the input, or the output of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value(usize);

/// What a graph step computes.
#[derive(Debug)]
enum GraphOp {
    /// One step of a planned layer (a convolution, an activation, …); boxed, being far larger
    /// than the other ops.
    Layer(Box<Step>),
    Concat,
    Add,
    Upsample(usize),
    MaxPool(MaxPool2d),
}

#[derive(Debug)]
struct GraphStep {
    op: GraphOp,
    inputs: Vec<Value>,
    output: Value,
}

/// Collects the steps of a graph plan, tracking every value's shape.
#[derive(Debug)]
pub struct GraphPlanBuilder {
    choice: KernelChoice,
    shapes: Vec<[usize; 4]>,
    steps: Vec<GraphStep>,
}

/// A layer or graph that can add itself to a graph plan, reading `input` and returning its
/// output value. Every [`Compile`] layer does so through [`GraphPlanBuilder::layer`].
pub trait CompileNode {
    /// Adds the steps computing this node from `input`, naming them under `name`.
    fn compile_node(&self, plan: &mut GraphPlanBuilder, input: Value, name: &str) -> Result<Value>;
}

impl GraphPlanBuilder {
    /// The network's input.
    pub fn input(&self) -> Value {
        Value(0)
    }

    /// The `[N, C, H, W]` shape of a value.
    pub fn shape(&self, value: Value) -> [usize; 4] {
        self.shapes[value.0]
    }

    fn push(&mut self, op: GraphOp, inputs: Vec<Value>, shape: [usize; 4]) -> Result<Value> {
        Shape::Map(shape).checked_len()?;
        self.shapes.push(shape);
        let output = Value(self.shapes.len() - 1);
        self.steps.push(GraphStep { op, inputs, output });
        Ok(output)
    }

    /// A chain layer (anything that compiles into a [`super::Plan`]) reading `input`.
    pub fn layer(&mut self, input: Value, layer: &(impl Compile + ?Sized), name: &str) -> Result<Value> {
        let mut chain = PlanBuilder::new(Shape::Map(self.shape(input)), self.choice);
        layer.compile(&mut chain, name)?;
        let mut value = input;
        for step in chain.steps {
            let shape = step.output.map(&step.name)?;
            value = self.push(GraphOp::Layer(Box::new(step)), vec![value], shape)?;
        }
        Ok(value)
    }

    /// Channel concatenation of `inputs` (same batch and spatial size).
    pub fn concat(&mut self, inputs: &[Value], name: &str) -> Result<Value> {
        let [n, _, h, w] = self.shape(inputs[0]);
        let mut channels = 0usize;
        for &v in inputs {
            let [vn, c, vh, vw] = self.shape(v);
            if (vn, vh, vw) != (n, h, w) {
                return Err(Error::shape(format!("`{name}`: concatenated tensor"), &[n, c, h, w], &[vn, c, vh, vw]));
            }
            channels =
                channels.checked_add(c).ok_or_else(|| Error::Geometry(format!("`{name}`: too many channels")))?;
        }
        self.push(GraphOp::Concat, inputs.to_vec(), [n, channels, h, w])
    }

    /// Element-wise sum of `inputs` (same shape).
    pub fn add(&mut self, inputs: &[Value], name: &str) -> Result<Value> {
        let shape = self.shape(inputs[0]);
        if let Some(&other) = inputs.iter().find(|&&v| self.shape(v) != shape) {
            return Err(Error::shape(format!("`{name}`: added tensor"), &shape, &self.shape(other)));
        }
        self.push(GraphOp::Add, inputs.to_vec(), shape)
    }

    /// Nearest upsampling by `factor`.
    pub fn upsample(&mut self, input: Value, factor: usize, name: &str) -> Result<Value> {
        let [n, c, h, w] = self.shape(input);
        let (uh, uw) = (h.checked_mul(factor), w.checked_mul(factor));
        let (Some(uh), Some(uw)) = (uh, uw) else {
            return Err(Error::Geometry(format!("`{name}`: upsampling {h}x{w} by {factor} overflows")));
        };
        self.push(GraphOp::Upsample(factor), vec![input], [n, c, uh, uw])
    }

    /// Max pooling.
    pub fn max_pool(&mut self, input: Value, pool: MaxPool2d, name: &str) -> Result<Value> {
        let [n, c, h, w] = self.shape(input);
        let out = pool.output_size(crate::Hw::new(h, w)).map_err(|e| Error::Geometry(format!("`{name}`: {e}")))?;
        self.push(GraphOp::MaxPool(pool), vec![input], [n, c, out.h, out.w])
    }
}

/// A graph network compiled for one input shape: its steps, which buffer holds each value, and
/// the buffers' sizes.
#[derive(Debug)]
pub struct GraphPlan {
    input: [usize; 4],
    shapes: Vec<[usize; 4]>,
    steps: Vec<GraphStep>,
    outputs: Vec<Value>,
    /// The buffer of each value (`usize::MAX` for the input, read where it lies).
    buffer_of: Vec<usize>,
    buffer_lens: Vec<usize>,
    workspace_len: usize,
    winograd: bool,
}

/// The buffers one caller runs a [`GraphPlan`] in.
#[derive(Debug)]
pub struct GraphPlanState {
    buffers: Vec<Vec<f32>>,
    input: Vec<f32>,
    workspace: Vec<f32>,
}

const INPUT_BUFFER: usize = usize::MAX;

impl GraphPlan {
    /// Plans `model` for inputs of shape `[N, C, H, W]`; `build` adds the model's steps to the
    /// builder and returns the values the plan outputs.
    pub fn new(
        input: [usize; 4],
        choice: KernelChoice,
        build: impl FnOnce(&mut GraphPlanBuilder) -> Result<Vec<Value>>,
    ) -> Result<GraphPlan> {
        Shape::Map(input).checked_len()?;
        let mut builder = GraphPlanBuilder { choice, shapes: vec![input], steps: Vec::new() };
        let outputs = build(&mut builder)?;
        let GraphPlanBuilder { shapes, steps, .. } = builder;
        let (buffer_of, buffer_lens) = assign_buffers(&shapes, &steps, &outputs);
        let workspace = steps.iter().filter_map(|s| match &s.op {
            GraphOp::Layer(step) => Some(step.workspace_len()),
            _ => None,
        });
        let workspace_len = workspace.collect::<Result<Vec<_>>>()?.into_iter().max().unwrap_or(0);
        let winograd = steps.iter().any(|s| matches!(&s.op, GraphOp::Layer(step) if step.is_winograd()));
        Ok(GraphPlan { input, shapes, steps, outputs, buffer_of, buffer_lens, workspace_len, winograd })
    }

    /// Plans a graph whose layers compile as nodes.
    pub fn for_graph<L: CompileNode>(graph: &Graph<L>, input: [usize; 4], choice: KernelChoice) -> Result<GraphPlan> {
        GraphPlan::new(input, choice, |plan| graph_values(graph, plan, plan.input(), ""))
    }

    /// A fresh state, allocated fallibly; one run on zeros warms every buffer and the calling
    /// thread's kernel scratch.
    pub fn state(&self) -> Result<GraphPlanState> {
        let buffers = self.buffer_lens.iter().map(|&len| zeroed(len, "graph plan buffer")).collect::<Result<_>>()?;
        let input = zeroed(Shape::Map(self.input).len(), "graph plan input")?;
        let mut state = GraphPlanState { buffers, input, workspace: zeroed(self.workspace_len, "plan workspace")? };
        self.run(&mut state, ndarray::Array4::zeros(self.input).view())?;
        Ok(state)
    }

    /// Bytes of one state: what each caller needs of its own (the buffers by liveness).
    pub fn state_bytes(&self) -> usize {
        (self.buffer_lens.iter().sum::<usize>() + Shape::Map(self.input).len() + self.workspace_len) * size_of::<f32>()
    }

    /// Bytes every value would take in a buffer of its own: what liveness saves against.
    pub fn value_bytes(&self) -> usize {
        self.shapes[1..].iter().map(|s| s.iter().product::<usize>()).sum::<usize>() * size_of::<f32>()
    }

    /// Bytes of the buffers alone (without the input copy and the workspace).
    pub fn buffer_bytes(&self) -> usize {
        self.buffer_lens.iter().sum::<usize>() * size_of::<f32>()
    }

    /// The most bytes of values alive at once, a lower bound for [`GraphPlan::buffer_bytes`]: the
    /// values a step reads that are read again later, the outputs so far, and the step's output.
    pub fn peak_live_bytes(&self) -> usize {
        let mut last_use = vec![0usize; self.shapes.len()];
        for (i, step) in self.steps.iter().enumerate() {
            step.inputs.iter().for_each(|v| last_use[v.0] = i);
        }
        self.outputs.iter().for_each(|v| last_use[v.0] = usize::MAX);
        let len = |v: usize| self.shapes[v].iter().product::<usize>();
        let peak = (0..self.steps.len()).map(|i| {
            let output = self.steps[i].output.0;
            // Every value before step i's output was defined before step i (one value a step).
            let alive = (1..output).filter(|&v| last_use[v] >= i).map(len).sum::<usize>();
            alive + len(output)
        });
        peak.max().unwrap_or(0) * size_of::<f32>()
    }

    /// The number of output values.
    pub fn outputs(&self) -> usize {
        self.outputs.len()
    }

    /// Output `i` of the last run.
    pub fn output<'s>(&self, state: &'s GraphPlanState, i: usize) -> Result<ArrayViewD<'s, f32>> {
        let Some(&value) = self.outputs.get(i) else {
            return Err(Error::Geometry(format!("output {i} of a plan with {} outputs", self.outputs.len())));
        };
        let shape = self.shapes[value.0];
        let data = match self.buffer_of[value.0] {
            INPUT_BUFFER => &state.input[..],
            b => &state.buffers[b][..],
        };
        Ok(ArrayViewD::from_shape(IxDyn(&shape), &data[..Shape::Map(shape).len()]).expect("sized by the plan"))
    }

    /// Runs the network on `x` (of the planned shape) in `state`; allocates nothing, and keeps
    /// the pool's other threads awake through it (polling for its parallel jobs instead of
    /// sleeping between them). Read the results with [`GraphPlan::output`].
    pub fn run(&self, state: &mut GraphPlanState, x: ArrayView4<'_, f32>) -> Result<()> {
        super::awake::with_pool_awake(|| self.run_timed(state, x, |_, _| {}))
    }

    /// Runs every step, reading a row-major `x` where it lies (copying it into the state only
    /// when it is not row-major, or is itself an output), and reports each step's time.
    fn run_timed(
        &self,
        state: &mut GraphPlanState,
        x: ArrayView4<'_, f32>,
        mut record: impl FnMut(usize, std::time::Duration),
    ) -> Result<()> {
        if x.shape() != self.input {
            return Err(Error::shape("plan input", &self.input, x.shape()));
        }
        let lens_ok = state.buffers.len() == self.buffer_lens.len()
            && state.buffers.iter().zip(&self.buffer_lens).all(|(b, &len)| b.len() >= len)
            && state.workspace.len() >= self.workspace_len
            && state.input.len() >= x.len();
        if !lens_ok {
            return Err(Error::Geometry("graph plan state made by another plan".into()));
        }
        let GraphPlanState { buffers, input, workspace } = state;
        let values: &[f32] = match x.as_slice() {
            Some(values) if !self.outputs.contains(&Value(0)) => values,
            _ => {
                ndarray::ArrayViewMut4::from_shape(x.raw_dim(), &mut input[..x.len()]).expect("sized").assign(&x);
                &input[..x.len()]
            }
        };
        let finite = !self.winograd || all_finite(values);
        for (i, step) in self.steps.iter().enumerate() {
            let start = Instant::now();
            self.run_step(step, buffers, workspace, values, finite)?;
            record(i, start.elapsed());
        }
        Ok(())
    }

    /// Runs the network `runs` times on `x` and returns each step's median time (layer steps
    /// under their layer's name and kernel; the others as `concat`, `add`, `upsample`,
    /// `max-pool`).
    pub fn profile(&self, state: &mut GraphPlanState, x: ArrayView4<'_, f32>, runs: usize) -> Result<Vec<StepTime>> {
        let mut times = vec![Vec::with_capacity(runs.clamp(1, 1 << 16)); self.steps.len()];
        super::awake::with_pool_awake(|| {
            (0..runs.max(1)).try_for_each(|_| self.run_timed(state, x, |i, t| times[i].push(t)))
        })?;
        let profile = self.steps.iter().zip(times).map(|(step, mut t)| {
            t.sort();
            let (name, kernel, macs) = match &step.op {
                GraphOp::Layer(layer) => (layer.name.clone(), layer.kernel_name(), layer.macs()),
                GraphOp::Concat => (String::new(), "concat", 0),
                GraphOp::Add => (String::new(), "add", 0),
                GraphOp::Upsample(_) => (String::new(), "upsample", 0),
                GraphOp::MaxPool(_) => (String::new(), "max-pool", 0),
            };
            StepTime { name, kernel, macs, time: t[t.len() / 2] }
        });
        Ok(profile.collect())
    }

    /// One step: its output buffer is taken out while the step writes it (no allocation), so
    /// that its inputs (`input`: the network's) can be borrowed.
    fn run_step(
        &self,
        step: &GraphStep,
        buffers: &mut [Vec<f32>],
        workspace: &mut [f32],
        input: &[f32],
        finite: bool,
    ) -> Result<()> {
        let out_shape = self.shapes[step.output.0];
        let out_len = Shape::Map(out_shape).len();
        let out_buffer = self.buffer_of[step.output.0];
        let mut out = std::mem::take(&mut buffers[out_buffer]);
        let read = |v: Value| -> &[f32] {
            let len = Shape::Map(self.shapes[v.0]).len();
            match self.buffer_of[v.0] {
                INPUT_BUFFER => &input[..len],
                b => &buffers[b][..len],
            }
        };
        let y = &mut out[..out_len];
        let result = match &step.op {
            GraphOp::Layer(layer) if layer.in_place() => {
                if self.buffer_of[step.inputs[0].0] != out_buffer {
                    y.copy_from_slice(read(step.inputs[0]));
                }
                layer.run_in_place(y, workspace)
            }
            GraphOp::Layer(layer) => layer.run(read(step.inputs[0]), y, workspace, finite),
            GraphOp::Concat => {
                let [n, _, h, w] = out_shape;
                let per_image = out_len / n.max(1);
                let mut offset = 0;
                for &v in &step.inputs {
                    let part = self.shapes[v.0][1] * h * w;
                    let src = read(v);
                    for image in 0..n {
                        let start = image * per_image + offset;
                        copy_parallel(&src[image * part..(image + 1) * part], &mut y[start..start + part]);
                    }
                    offset += part;
                }
                Ok(())
            }
            GraphOp::Add => {
                copy_parallel(read(step.inputs[0]), y);
                for &v in &step.inputs[1..] {
                    y.par_chunks_mut(PARALLEL_ELEMENTS).zip(read(v).par_chunks(PARALLEL_ELEMENTS)).for_each(
                        |(y, x)| {
                            y.iter_mut().zip(x).for_each(|(a, b)| *a += b);
                        },
                    );
                }
                Ok(())
            }
            GraphOp::Upsample(factor) => {
                let [_, _, h, w] = self.shapes[step.inputs[0].0];
                upsample_into(read(step.inputs[0]), h, w, *factor, y);
                Ok(())
            }
            GraphOp::MaxPool(pool) => pool.pool_into(read(step.inputs[0]), self.shapes[step.inputs[0].0], y),
        };
        buffers[out_buffer] = out;
        result
    }
}

/// `dst = src`, in blocks on rayon's threads when there are enough values (concatenations
/// copy whole feature maps).
fn copy_parallel(src: &[f32], dst: &mut [f32]) {
    if dst.len() < PARALLEL_ELEMENTS {
        return dst.copy_from_slice(src);
    }
    dst.par_chunks_mut(PARALLEL_ELEMENTS)
        .zip(src.par_chunks(PARALLEL_ELEMENTS))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// Nearest upsampling of row-major planes of `h × w` by `factor` into `y`.
fn upsample_into(x: &[f32], h: usize, w: usize, factor: usize, y: &mut [f32]) {
    let plane = (h * w).max(1);
    for (src, dst) in x.chunks(plane).zip(y.chunks_mut(plane * factor * factor)) {
        for (i, row) in dst.chunks_mut(w * factor).enumerate() {
            let src_row = &src[(i / factor) * w..][..w];
            for (j, v) in row.iter_mut().enumerate() {
                *v = src_row[j / factor];
            }
        }
    }
}

/// Assigns every value a buffer by liveness: a value takes a buffer whose value has had its last
/// reader (the smallest such that fits, else the largest, which grows), and an in-place step's
/// output takes over its input's buffer when that was the input's last use. Returns each value's
/// buffer and each buffer's length.
fn assign_buffers(shapes: &[[usize; 4]], steps: &[GraphStep], outputs: &[Value]) -> (Vec<usize>, Vec<usize>) {
    let len = |v: Value| Shape::Map(shapes[v.0]).len();
    let mut last_use = vec![0usize; shapes.len()];
    for (i, step) in steps.iter().enumerate() {
        step.inputs.iter().for_each(|v| last_use[v.0] = i);
    }
    outputs.iter().for_each(|v| last_use[v.0] = usize::MAX);
    let mut buffer_of = vec![INPUT_BUFFER; shapes.len()];
    let (mut lens, mut free): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    for (i, step) in steps.iter().enumerate() {
        let needed = len(step.output);
        let first = step.inputs[0];
        let in_place = matches!(&step.op, GraphOp::Layer(s) if s.in_place());
        let buffer = if in_place && last_use[first.0] == i && buffer_of[first.0] != INPUT_BUFFER {
            buffer_of[first.0]
        } else {
            let fits = free.iter().enumerate().filter(|&(_, &b)| lens[b] >= needed).min_by_key(|&(_, &b)| lens[b]);
            let largest = free.iter().enumerate().max_by_key(|&(_, &b)| lens[b]);
            match fits.or(largest).map(|(k, _)| k) {
                Some(k) => free.swap_remove(k),
                None => {
                    lens.push(0);
                    lens.len() - 1
                }
            }
        };
        lens[buffer] = lens[buffer].max(needed);
        buffer_of[step.output.0] = buffer;
        for v in &step.inputs {
            let b = buffer_of[v.0];
            if last_use[v.0] == i && b != INPUT_BUFFER && b != buffer && !free.contains(&b) {
                free.push(b);
            }
        }
    }
    (buffer_of, lens)
}

/// Adds a graph's nodes to a plan, its input being `input`; returns its outputs' values.
fn graph_values<L: CompileNode>(
    graph: &Graph<L>,
    plan: &mut GraphPlanBuilder,
    input: Value,
    prefix: &str,
) -> Result<Vec<Value>> {
    let mut values: Vec<Value> = Vec::with_capacity(graph.nodes().len());
    for node in graph.nodes() {
        let sources: Vec<Value> = node
            .from
            .iter()
            .map(|s| match *s {
                Source::Input => input,
                Source::Node(j) => values[j],
            })
            .collect();
        let name = join(prefix, &node.name);
        let value = match node.op {
            Op::Layer(k) => graph.layers()[k].compile_node(plan, sources[0], &name)?,
            Op::Concat => plan.concat(&sources, &name)?,
            Op::Add => plan.add(&sources, &name)?,
            Op::Upsample(factor) => plan.upsample(sources[0], factor, &name)?,
            Op::MaxPool(pool) => plan.max_pool(sources[0], pool, &name)?,
        };
        values.push(value);
    }
    Ok(graph.outputs().iter().map(|&o| values[o]).collect())
}

impl<L: CompileNode> Graph<L> {
    /// Adds this graph's nodes to `plan` reading `input`, its weights' names under `prefix`;
    /// returns the values of its outputs.
    pub fn compile_values(&self, plan: &mut GraphPlanBuilder, input: Value, prefix: &str) -> Result<Vec<Value>> {
        graph_values(self, plan, input, prefix)
    }
}

/// A graph with one output is a node of a larger graph (SPPCSPC inside YOLOv7).
impl<L: CompileNode> CompileNode for Graph<L> {
    fn compile_node(&self, plan: &mut GraphPlanBuilder, input: Value, name: &str) -> Result<Value> {
        match graph_values(self, plan, input, name)?[..] {
            [one] => Ok(one),
            ref many => Err(Error::Wiring(format!("`{name}`: a graph node must have 1 output, found {}", many.len()))),
        }
    }
}

impl CompileNode for Conv2d {
    fn compile_node(&self, plan: &mut GraphPlanBuilder, input: Value, name: &str) -> Result<Value> {
        plan.layer(input, self, name)
    }
}
