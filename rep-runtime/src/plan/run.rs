//! A compiled plan and the per-thread state it runs in.
//!
//! [`Plan`] is immutable (`Send + Sync`): the steps, their kernels and packed or transformed
//! weights. [`PlanState`] holds what one caller writes while running: two activation buffers and
//! the workspace. One plan serves any number of threads, each with its own state, so the weights
//! exist once (share the plan in an `Arc`).

use super::steps::Step;
use super::{Compile, KernelChoice, PlanBuilder, Shape};
use crate::error::{Error, Result};
use crate::kernels::{all_finite, zeroed};
use ndarray::{ArrayView4, ArrayViewD, IxDyn};
use std::time::{Duration, Instant};

/// A fused network compiled for one input shape: its steps, and the sizes of the buffers a
/// [`PlanState`] needs to run them.
#[derive(Debug)]
pub struct Plan {
    input: [usize; 4],
    steps: Vec<Step>,
    /// Floats of each of the two activation buffers.
    buffer_len: usize,
    /// Floats of the shared workspace.
    workspace_len: usize,
    /// Some step runs Winograd, so inputs are scanned for non-finite values.
    winograd: bool,
}

/// The buffers one caller runs a [`Plan`] in: two activation buffers (each step reads one and
/// writes the other) and the workspace (Winograd's transformed tiles, squeeze-excite scratch).
/// Made by [`Plan::state`]; the output of [`Plan::run`] borrows it until the next run.
#[derive(Debug)]
pub struct PlanState {
    buffers: [Vec<f32>; 2],
    workspace: Vec<f32>,
}

/// Where the value between two steps lives while a plan runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Input,
    Buffer(usize),
}

/// The time one step took, from [`Plan::profile`].
#[derive(Clone, Debug)]
pub struct StepTime {
    /// The step's name (its weight prefix).
    pub name: String,
    /// What runs: `"winograd"`, `"winograd4"`, `"im2col"`, `"channel-lanes"`, `"depthwise"`,
    /// `"pointwise"`, `"activation"`, ….
    pub kernel: &'static str,
    /// Multiply-adds of the step.
    pub macs: u64,
    /// Median time over the profiled runs.
    pub time: Duration,
}

impl Plan {
    /// Plans `model` for inputs of shape `[N, C, H, W]`, choosing kernels automatically.
    pub fn new<M: Compile + ?Sized>(model: &M, input: [usize; 4]) -> Result<Plan> {
        Plan::with_kernels(model, input, KernelChoice::Auto)
    }

    /// As [`Plan::new`], with the convolution kernels chosen by `choice`.
    pub fn with_kernels<M: Compile + ?Sized>(model: &M, input: [usize; 4], choice: KernelChoice) -> Result<Plan> {
        Shape::Map(input).checked_len()?;
        let mut builder = PlanBuilder::new(Shape::Map(input), choice);
        model.compile(&mut builder, "")?;
        let buffer_len = builder.steps.iter().map(|s| s.output.len()).fold(Shape::Map(input).len(), usize::max);
        let workspace = builder.steps.iter().map(Step::workspace_len).collect::<Result<Vec<_>>>()?;
        let workspace_len = workspace.into_iter().max().unwrap_or(0);
        let winograd = builder.steps.iter().any(Step::is_winograd);
        Ok(Plan { input, steps: builder.steps, buffer_len, workspace_len, winograd })
    }

    /// A fresh state to run this plan in, allocated fallibly (an error, not an abort, when the
    /// memory cannot be had). One run on zeros touches every buffer and grows the calling
    /// thread's kernel scratch, so that the first real call is a steady-state one.
    pub fn state(&self) -> Result<PlanState> {
        let buffers = [zeroed(self.buffer_len, "plan buffer")?, zeroed(self.buffer_len, "plan buffer")?];
        let mut state = PlanState { buffers, workspace: zeroed(self.workspace_len, "plan workspace")? };
        self.run(&mut state, ndarray::Array4::zeros(self.input).view())?;
        Ok(state)
    }

    /// The input shape the plan was made for.
    pub fn input_shape(&self) -> [usize; 4] {
        self.input
    }

    /// The shape of what [`Plan::run`] returns.
    pub fn output_shape(&self) -> Shape {
        self.steps.last().map_or(Shape::Map(self.input), |s| s.output)
    }

    /// Bytes of weights the plan holds (packed and transformed copies included): what every
    /// thread shares.
    pub fn weight_bytes(&self) -> usize {
        self.steps.iter().map(Step::weight_floats).sum::<usize>() * size_of::<f32>()
    }

    /// Bytes of one [`PlanState`] of this plan: what each thread needs of its own.
    pub fn state_bytes(&self) -> usize {
        (2 * self.buffer_len + self.workspace_len) * size_of::<f32>()
    }

    /// The planned steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Runs the network on `x`, which must have the planned shape, in `state` (made by this
    /// plan's [`Plan::state`]). Allocates nothing; the result borrows `state` until its next use.
    /// The pool's other threads stay awake through it (polling for its parallel jobs instead of
    /// sleeping between them).
    pub fn run<'s>(&self, state: &'s mut PlanState, x: ArrayView4<'_, f32>) -> Result<ArrayViewD<'s, f32>> {
        super::awake::with_pool_awake(|| self.run_timed(state, x, |_, _| {}))
    }

    /// Runs the network `runs` times on `x` and returns each step's median time.
    pub fn profile(&self, state: &mut PlanState, x: ArrayView4<'_, f32>, runs: usize) -> Result<Vec<StepTime>> {
        let mut times = vec![Vec::with_capacity(runs.min(1 << 16)); self.steps.len()];
        super::awake::with_pool_awake(|| {
            (0..runs.max(1)).try_for_each(|_| self.run_timed(state, x, |i, t| times[i].push(t)).map(drop))
        })?;
        Ok(self
            .steps
            .iter()
            .zip(times)
            .map(|(step, mut t)| {
                t.sort();
                StepTime {
                    name: step.name.clone(),
                    kernel: step.kernel_name(),
                    macs: step.macs(),
                    time: t[t.len() / 2],
                }
            })
            .collect())
    }

    /// Checks that `state` is large enough for this plan (it may come from another plan).
    fn check_state(&self, state: &PlanState) -> Result<()> {
        let found = [state.buffers[0].len().min(state.buffers[1].len()), state.workspace.len()];
        if found[0] < self.buffer_len || found[1] < self.workspace_len {
            return Err(Error::shape(
                "plan state [buffer, workspace] (made by another plan?)",
                &[self.buffer_len, self.workspace_len],
                &found,
            ));
        }
        Ok(())
    }

    fn run_timed<'s>(
        &self,
        state: &'s mut PlanState,
        x: ArrayView4<'_, f32>,
        mut record: impl FnMut(usize, Duration),
    ) -> Result<ArrayViewD<'s, f32>> {
        if x.shape() != self.input {
            return Err(Error::shape("plan input", &self.input, x.shape()));
        }
        self.check_state(state)?;
        let PlanState { buffers, workspace } = state;
        // Winograd mixes the values of a tile: with a NaN or ±∞ in the input, its layers take
        // the direct kernel so that non-finite values land where PyTorch puts them.
        let finite = !self.winograd
            || match x.as_slice() {
                Some(values) => all_finite(values),
                None => x.iter().all(|v| v.is_finite()),
            };
        let mut current = Slot::Input;
        if x.as_slice().is_none() {
            // Not row-major: copy into a buffer (no allocation) and read from there.
            let mut view = ndarray::ArrayViewMut4::from_shape(x.raw_dim(), &mut buffers[0][..x.len()]).expect("sized");
            view.assign(&x);
            current = Slot::Buffer(0);
        }
        let [first, second] = buffers;
        for (i, step) in self.steps.iter().enumerate() {
            let start = Instant::now();
            let (in_len, out_len) = (step.input.len(), step.output.len());
            if step.in_place() {
                let data = match current {
                    Slot::Input => {
                        first[..in_len].copy_from_slice(x.as_slice().expect("row-major input"));
                        current = Slot::Buffer(0);
                        &mut first[..in_len]
                    }
                    Slot::Buffer(0) => &mut first[..in_len],
                    Slot::Buffer(_) => &mut second[..in_len],
                };
                step.run_in_place(data, workspace)?;
            } else {
                let (src, dst, next): (&[f32], &mut [f32], usize) = match current {
                    Slot::Input => (x.as_slice().expect("row-major input"), &mut first[..out_len], 0),
                    Slot::Buffer(0) => (&first[..in_len], &mut second[..out_len], 1),
                    Slot::Buffer(_) => (&second[..in_len], &mut first[..out_len], 0),
                };
                step.run(src, dst, workspace, finite)?;
                current = Slot::Buffer(next);
            }
            record(i, start.elapsed());
        }
        if current == Slot::Input {
            // No steps: the output is the input.
            first[..x.len()].copy_from_slice(x.as_slice().expect("row-major input"));
            current = Slot::Buffer(0);
        }
        let shape = self.output_shape();
        let data: &'s [f32] = match current {
            Slot::Input | Slot::Buffer(0) => &first[..shape.len()],
            Slot::Buffer(_) => &second[..shape.len()],
        };
        Ok(ArrayViewD::from_shape(IxDyn(shape.dims()), data).expect("sized by the plan"))
    }
}
