//! Geometry checks. Literal geometry is decided here and reported with a span; geometry that
//! depends on generic parameters becomes a [`Check`] that expansion turns into an inline
//! `const` assertion (for `Const`/const-generic sizes) and a run-time error (for `usize` sizes).

use super::ast::{Block, Branch, OpKind, Pair, PostOp};
use super::ctxt::Ctxt;
use super::geo::{Geo, Op};
use proc_macro2::Span;

/// A predicate over geometry.
#[derive(Clone, Debug)]
pub enum Pred {
    /// Both sides are equal.
    Eq(Geo, Geo),
    /// The left side is at most the right side.
    Le(Geo, Geo),
    /// The value is odd.
    Odd(Geo),
    /// The first divides the second.
    Divides(Geo, Geo),
}

/// A check left for compile-time evaluation at monomorphization and for run time.
#[derive(Clone, Debug)]
pub struct Check {
    pub pred: Pred,
    pub message: String,
    /// Only checked when this (optional) branch exists.
    pub branch: Option<usize>,
}

impl Pred {
    /// `Some(result)` when decidable now.
    fn decide(&self) -> Option<bool> {
        match self {
            Pred::Eq(a, b) if a.same_as(b) => Some(true),
            Pred::Le(a, b) if a.same_as(b) => Some(true),
            Pred::Eq(a, b) => Some(a.value()? == b.value()?),
            Pred::Le(a, b) => Some(a.value()? <= b.value()?),
            Pred::Odd(a) => Some(a.value()? % 2 == 1),
            Pred::Divides(g, _) if g.value() == Some(1) => Some(true),
            Pred::Divides(g, c) => {
                let (g, c) = (g.value()?, c.value()?);
                Some(g != 0 && c % g == 0)
            }
        }
    }
}

/// What one branch computes, as a single convolution would describe it.
#[derive(Clone, Debug)]
pub struct Summary {
    pub cin: Geo,
    pub cout: Geo,
    pub kernel: Pair,
    pub stride: Pair,
    pub dilation: Pair,
    /// Padding written by the user on the branch's spatial op.
    pub padding: Option<Pair>,
    /// `None` when the branch has no conv and takes the block's groups (identity, avg-pool).
    pub groups: Option<Geo>,
    /// The branch has no conv and no pool: identity, BN or scale on the block input.
    pub identity_like: bool,
}

/// The geometry every branch has to agree on, fixed by the main branch.
pub struct BlockGeometry {
    pub summaries: Vec<Summary>,
    /// Index of the main branch (see `main_branch`).
    pub main: usize,
    pub main_padding: Pair,
    pub main_dilation: Pair,
}

struct Checker<'a> {
    cx: &'a Ctxt,
    deferred: Vec<Check>,
}

impl Checker<'_> {
    fn require(&mut self, pred: Pred, span: Span, branch: &Branch, index: usize, message: String) {
        match pred.decide() {
            Some(true) => {}
            Some(false) if branch.when.is_none() => self.cx.error_at(span, message),
            _ => self.deferred.push(Check { pred, message, branch: branch.optional.then_some(index) }),
        }
    }
}

fn two(g: &Geo) -> Geo {
    Geo::bin(Geo::lit(2), Op::Mul, g.clone())
}

/// `d·(k − 1)`: the dilated kernel's extent minus one.
fn reach(d: &Geo, k: &Geo) -> Geo {
    Geo::bin(d.clone(), Op::Mul, Geo::bin(k.clone(), Op::Sub, Geo::lit(1)))
}

/// The axes to check: one unnamed axis when both pairs are square, else height and width.
fn axes<'p>(a: &'p Pair, b: &'p Pair) -> Vec<(&'static str, &'p Geo, &'p Geo)> {
    if a.h.same_as(&a.w) && b.h.same_as(&b.w) {
        vec![("", &a.h, &b.h)]
    } else {
        vec![(" height", &a.h, &b.h), (" width", &a.w, &b.w)]
    }
}

fn pair_text(p: &Pair) -> String {
    if p.h.same_as(&p.w) { p.h.to_string() } else { format!("{}x{}", p.h, p.w) }
}

/// Summarizes each branch, checking that its ops chain; `None` when a branch is unusable.
fn summarize(checker: &mut Checker<'_>, branch: &Branch, index: usize) -> Option<Summary> {
    let cx = checker.cx;
    let mut summary: Option<Summary> = None;
    // The previous spatial op: its kernel, and whether an unpadded k×k may follow it (it is unpadded, stride 1).
    let mut spatial_seen: Option<(Pair, bool)> = None;
    let mut conv_groups: Option<(Geo, bool)> = None;
    let mut mixed_groups = false;
    for (i, op) in branch.ops.iter().enumerate() {
        if matches!(op.kind, OpKind::ImplicitA(_)) {
            match branch.ops.get(i + 1).map(|next| &next.kind) {
                Some(OpKind::Conv(c) | OpKind::ConvBn(c, _)) => {
                    let unpadded = |p: &Pair| p.h.value() == Some(0) && p.w.value() == Some(0);
                    let pads = match &c.padding {
                        Some(p) => !unpadded(p),
                        None => c.kernel.h.value() != Some(1) || c.kernel.w.value() != Some(1),
                    };
                    if pads {
                        cx.error_at(
                            branch.ops[i + 1].span,
                            "the conv after an ImplicitA must not pad: padded positions would miss the added vector, \
                             so the fold would be wrong on the border",
                        );
                    }
                }
                _ => cx.error_at(op.span, "ImplicitA must come right before a conv: it folds into that conv's bias"),
            }
        }
        let one = Pair::lit(1);
        let (cin, cout, kernel, stride, dilation, padding, groups) = match &op.kind {
            OpKind::Conv(c) | OpKind::ConvBn(c, _) => (
                &c.cin,
                &c.cout,
                c.kernel.clone(),
                c.stride.clone(),
                c.dilation.clone(),
                c.padding.clone(),
                Some(&c.groups),
            ),
            OpKind::Bn(ch, _)
            | OpKind::Scale(ch, _)
            | OpKind::Identity(ch)
            | OpKind::ImplicitA(ch)
            | OpKind::ImplicitM(ch) => (ch, ch, one.clone(), one.clone(), one.clone(), None, None),
            OpKind::Filter { channels, kernel, stride, padding, .. } => {
                (channels, channels, kernel.clone(), stride.clone(), one.clone(), padding.clone(), None)
            }
        };
        let positive = [
            ("channels", [("input channels", cin), ("output channels", cout)]),
            ("kernel", [("kernel height", &kernel.h), ("kernel width", &kernel.w)]),
            ("stride", [("stride height", &stride.h), ("stride width", &stride.w)]),
            ("dilation", [("dilation height", &dilation.h), ("dilation width", &dilation.w)]),
        ];
        for (both, sizes) in positive {
            require_positive(checker, branch, index, op, both, sizes);
        }
        if let (Some(g), true) = (groups, branch.sequence) {
            // Inside a sequence each conv's own groups must divide its channels (a single-op
            // branch is checked with the block's groups below).
            for (what, channels) in [("input", cin), ("output", cout)] {
                let message = format!(
                    "groups = {g} of branch `{}` does not divide its {what} channels ({channels})",
                    branch.name
                );
                checker.require(Pred::Divides(g.clone(), channels.clone()), op.span, branch, index, message);
            }
        }
        let is_spatial = [&kernel.h, &kernel.w, &stride.h, &stride.w].iter().any(|g| g.value() != Some(1))
            || padding.as_ref().is_some_and(|p| [&p.h, &p.w].iter().any(|g| g.value() != Some(0)));
        if let Some(g) = groups {
            // A depthwise conv (groups = its input channels) nests inside any grouping, so the
            // merged conv keeps the other stage's groups; literal counts merge as the runtime
            // does (nested → the smaller); anything else makes the merged conv dense.
            let depthwise = g.same_as(cin);
            conv_groups = Some(match conv_groups.take() {
                None => (g.clone(), depthwise),
                Some((prev, was_depthwise)) if prev.same_as(g) => (prev, was_depthwise && depthwise),
                Some((prev, was_depthwise)) if depthwise => (prev, was_depthwise),
                Some((_, true)) => (g.clone(), false),
                Some((prev, _)) => match (prev.value(), g.value()) {
                    (Some(a), Some(b)) if a % b == 0 || b % a == 0 => (Geo::lit(a.min(b)), false),
                    _ => {
                        mixed_groups = true;
                        (prev, false)
                    }
                },
            });
        }
        match &mut summary {
            None => {
                summary = Some(Summary {
                    cin: cin.clone(),
                    cout: cout.clone(),
                    kernel: kernel.clone(),
                    stride: stride.clone(),
                    dilation,
                    padding: padding.clone(),
                    groups: None,
                    identity_like: !matches!(op.kind, OpKind::Conv(_) | OpKind::ConvBn(..) | OpKind::Filter { .. }),
                });
            }
            Some(s) => {
                let message = format!(
                    "ops of branch `{}` do not chain: the op before outputs {} channels but this one takes {}",
                    branch.name, s.cout, cin
                );
                let chained = Pred::Eq(s.cout.clone(), cin.clone());
                let broken = chained.decide() == Some(false);
                checker.require(chained, op.span, branch, index, message);
                if !broken {
                    // After a reported break, keep the last good width so one mistake is one error.
                    s.cout = cout.clone();
                }
                s.identity_like &= !matches!(op.kind, OpKind::Conv(_) | OpKind::ConvBn(..) | OpKind::Filter { .. });
                if is_spatial {
                    s.kernel = kernel.clone();
                    s.stride = stride.clone();
                    s.dilation = dilation;
                    s.padding = padding.clone();
                }
            }
        }
        if is_spatial {
            let unpadded = padding.as_ref().is_some_and(|p| p.h.value() == Some(0) && p.w.value() == Some(0));
            let stride_one = stride.h.value() == Some(1) && stride.w.value() == Some(1);
            if let Some((previous, stackable)) = spatial_seen.take() {
                if !(stackable && unpadded) {
                    cx.error_at(
                        op.span,
                        format!(
                            "branch `{}` has two spatial ops (kernel, stride or padding other than 1x1/1/0); a sequence folds into \
                             one conv only when every op but one is a 1x1 with stride 1 and no padding, or when stacked k×k \
                             convs are all unpadded (`Padding<0>`) and all but the last have stride 1",
                            branch.name
                        ),
                    );
                    return None;
                }
                // Stacked unpadded kernels (OREPA's linear deep stem) make one (k₁ + k₂ − 1) kernel.
                let grown = |a: &Geo, b: &Geo| Geo::bin(Geo::bin(a.clone(), Op::Add, b.clone()), Op::Sub, Geo::lit(1));
                let stacked = Pair { h: grown(&previous.h, &kernel.h), w: grown(&previous.w, &kernel.w) };
                if let Some(s) = summary.as_mut() {
                    s.kernel = stacked.clone();
                }
                spatial_seen = Some((stacked, stride_one && unpadded));
            } else {
                spatial_seen = Some((kernel.clone(), stride_one && unpadded));
            }
        }
    }
    let mut summary = summary?;
    summary.groups = if mixed_groups { Some(Geo::lit(1)) } else { conv_groups.map(|(g, _)| g) };
    Some(summary)
}

/// Each size must be at least 1 (a zero channel count, kernel, stride or dilation); a pair whose
/// two sides are one expression is checked once, under the name `both`.
fn require_positive(
    checker: &mut Checker<'_>,
    branch: &Branch,
    index: usize,
    op: &super::ast::Op,
    both: &str,
    [(first_name, first), (second_name, second)]: [(&str, &Geo); 2],
) {
    let sizes =
        if second.same_as(first) { vec![(both, first)] } else { vec![(first_name, first), (second_name, second)] };
    for (what, size) in sizes {
        let value = match size.value() {
            Some(v) => format!(", found {v}"),
            None => format!(" ({size} is 0 here)"),
        };
        let message = format!("{what} of branch `{}` must be at least 1{value}", branch.name);
        checker.require(Pred::Le(Geo::lit(1), size.clone()), op.span, branch, index, message);
    }
}

/// The branch the others are checked against (and whose padding anchors the window centres):
/// the first that always exists and holds a conv, else the first that always exists. Since the
/// branches are summed, declaration order must not matter: an optional identity or a bare BN
/// declared first is no reference for channels, groups or padding.
fn main_branch(block: &Block, summaries: &[Summary]) -> usize {
    let always = |i: &usize| !block.branches[*i].optional;
    (0..summaries.len())
        .filter(always)
        .find(|&i| summaries[i].groups.is_some() && !summaries[i].identity_like)
        .or_else(|| (0..summaries.len()).find(always))
        .unwrap_or(0)
}

/// Checks the whole block; returns its geometry and the checks left for later.
pub fn check(cx: &Ctxt, block: &Block) -> Option<(BlockGeometry, Vec<Check>)> {
    super::names::check_names(cx, block);
    check_post(cx, block);
    let mut checker = Checker { cx, deferred: Vec::new() };
    let summaries: Vec<Summary> =
        block.branches.iter().enumerate().map(|(i, b)| summarize(&mut checker, b, i)).collect::<Option<_>>()?;
    let main_index = main_branch(block, &summaries);
    let main = summaries.get(main_index)?.clone();
    let main_branch = &block.branches[main_index];

    // The fused kernel: declared, else the per-axis maximum when literal, else the main branch's.
    let kernel = match &block.kernel {
        Some((k, _)) => k.clone(),
        None => {
            let max = |axis: fn(&Pair) -> &Geo| {
                summaries
                    .iter()
                    .map(|s| axis(&s.kernel).value())
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.into_iter().max())
            };
            match (max(|p| &p.h), max(|p| &p.w)) {
                (Some(Some(h)), Some(Some(w))) => Pair { h: Geo::lit(h), w: Geo::lit(w) },
                _ => main.kernel.clone(),
            }
        }
    };
    let main_dilation = main.dilation.clone();
    // Main padding: as written, or "same" for the fused kernel.
    let main_padding = main.padding.clone().unwrap_or_else(|| Pair {
        h: Geo::bin(reach(&main_dilation.h, &main.kernel.h), Op::Div, Geo::lit(2)),
        w: Geo::bin(reach(&main_dilation.w, &main.kernel.w), Op::Div, Geo::lit(2)),
    });

    // Per axis, the dilation every kernel with more than one tap along it must share: that of
    // the first such branch, the main one first.
    let order = std::iter::once(main_index).chain((0..summaries.len()).filter(|&i| i != main_index));
    let order: Vec<usize> = order.collect();
    let axis_dilation = [0, 1].map(|axis| {
        order.iter().find_map(|&i| {
            let s = &summaries[i];
            let (k, d) = if axis == 0 { (&s.kernel.h, &s.dilation.h) } else { (&s.kernel.w, &s.dilation.w) };
            (k.value() != Some(1)).then_some((i, d, block.branches[i].name.as_str()))
        })
    });
    for (index, (branch, s)) in block.branches.iter().zip(&summaries).enumerate() {
        let span = branch.ops.first().map_or(branch.span, |op| op.span);
        let name = &branch.name;
        for (axis, k, big) in axes(&s.kernel, &kernel) {
            checker.require(
                Pred::Odd(k.clone()),
                span,
                branch,
                index,
                format!("branch `{name}` has an even kernel{axis} ({k}); only odd kernels have a centre to align with the fused kernel"),
            );
            checker.require(
                Pred::Le(k.clone(), big.clone()),
                span,
                branch,
                index,
                format!("branch `{name}` has kernel{axis} {k}, larger than the fused kernel's {big}"),
            );
        }
        // A sequence's convs were each checked against their own channels in `summarize`.
        if let (Some(g), false) = (&s.groups, branch.sequence) {
            for (what, channels) in [("input", &s.cin), ("output", &s.cout)] {
                checker.require(
                    Pred::Divides(g.clone(), channels.clone()),
                    span,
                    branch,
                    index,
                    format!("branch `{name}` uses groups = {g}, which does not divide its {channels} {what} channels"),
                );
            }
        }
        if index == main_index {
            continue;
        }
        let main_name = &main_branch.name;
        if s.identity_like {
            let message = format!(
                "identity branch `{name}` needs C_in == C_out and stride 1, but the block maps {} -> {} channels with stride {}; \
                 drop the branch or make it conditional: #[rep(when = ...)] with an `Option<…>` type",
                main.cin,
                main.cout,
                pair_text(&main.stride)
            );
            checker.require(Pred::Eq(main.cin.clone(), main.cout.clone()), span, branch, index, message.clone());
            checker.require(Pred::Eq(main.stride.h.clone(), Geo::lit(1)), span, branch, index, message.clone());
            checker.require(Pred::Eq(main.stride.w.clone(), Geo::lit(1)), span, branch, index, message.clone());
            checker.require(Pred::Eq(s.cout.clone(), main.cout.clone()), span, branch, index, message);
            // An identity keeps every position where it is: the main branch's window must be
            // centred on the output position (2P = D·(K − 1)), or the sum would not line up.
            for (axis, p, d, k) in [
                ("height", &main_padding.h, &main_dilation.h, &main.kernel.h),
                ("width", &main_padding.w, &main_dilation.w, &main.kernel.w),
            ] {
                checker.require(
                    Pred::Eq(two(p), reach(d, k)),
                    span,
                    branch,
                    index,
                    format!(
                        "identity branch `{name}` keeps every position in place, but branch `{main_name}` pads its {axis} by {p} \
                         for kernel {k} (dilation {d}), which shifts or resizes the output; it needs padding d*(k - 1)/2"
                    ),
                );
            }
            continue;
        }
        checker.require(
            Pred::Eq(s.cout.clone(), main.cout.clone()),
            span,
            branch,
            index,
            format!("branch `{name}` outputs {} channels but branch `{main_name}` outputs {}; every branch must produce the block's output", s.cout, main.cout),
        );
        checker.require(
            Pred::Eq(s.cin.clone(), main.cin.clone()),
            span,
            branch,
            index,
            format!("branch `{name}` takes {} input channels but branch `{main_name}` takes {}", s.cin, main.cin),
        );
        for (a, b) in [(&s.stride.h, &main.stride.h), (&s.stride.w, &main.stride.w)] {
            checker.require(
                Pred::Eq(a.clone(), b.clone()),
                span,
                branch,
                index,
                format!(
                    "branch `{name}` has stride {} but branch `{main_name}` has stride {}; all branches must share the stride",
                    pair_text(&s.stride),
                    pair_text(&main.stride)
                ),
            );
        }
        if let (Some(g), Some(main_g)) = (&s.groups, &main.groups) {
            checker.require(
                Pred::Eq(g.clone(), main_g.clone()),
                span,
                branch,
                index,
                format!("branch `{name}` uses groups = {g} but branch `{main_name}` uses groups = {main_g}; the fused conv has one group count"),
            );
        }
        let mut dilation_differs = false;
        for (axis, (k, d)) in [(&s.kernel.h, &s.dilation.h), (&s.kernel.w, &s.dilation.w)].into_iter().enumerate() {
            // Tap spacing matters only along an axis where both kernels have more than one tap.
            let Some((reference, md, reference_name)) = axis_dilation[axis] else { continue };
            if k.value() == Some(1) || reference == index || dilation_differs {
                continue;
            }
            let pred = Pred::Eq(d.clone(), md.clone());
            dilation_differs = pred.decide() == Some(false);
            checker.require(
                pred,
                span,
                branch,
                index,
                format!(
                    "branch `{name}` has dilation {d} but branch `{reference_name}` has {md}; \
                     kernels with different tap spacing do not add into one kernel"
                ),
            );
        }
        if s.padding.is_none() && !dilation_differs {
            // The default padding p_main − d·(k_main − k)/2 must not be negative.
            let square =
                [&s.dilation, &s.kernel, &main_padding, &main_dilation, &main.kernel].iter().all(|q| q.h.same_as(&q.w));
            let all = [
                (&s.dilation.h, &s.kernel.h, &main_padding.h, &main_dilation.h, &main.kernel.h, " along the height"),
                (&s.dilation.w, &s.kernel.w, &main_padding.w, &main_dilation.w, &main.kernel.w, " along the width"),
            ];
            for &(d, k, mp, md, mk, axis) in if square { &all[..1] } else { &all[..] } {
                let axis = if square { "" } else { axis };
                let available = Geo::bin(two(mp), Op::Add, reach(d, k));
                checker.require(
                    Pred::Le(reach(md, mk), available),
                    span,
                    branch,
                    index,
                    format!(
                        "branch `{name}` cannot be centred on branch `{main_name}`'s window{axis}: it would need \
                         negative padding (p_main - d*(k_main - k)/2 < 0); give the main branch more padding"
                    ),
                );
            }
        }
        if let Some(p) = s.padding.as_ref().filter(|_| !dilation_differs) {
            // 2p − d·(k − 1) must equal the main branch's 2P − D·(K − 1); written without subtraction.
            let square = [p, &s.dilation, &s.kernel, &main_padding, &main_dilation, &main.kernel]
                .iter()
                .all(|q| q.h.same_as(&q.w));
            let all = [
                (&p.h, &s.dilation.h, &s.kernel.h, &main_padding.h, &main_dilation.h, &main.kernel.h, " height"),
                (&p.w, &s.dilation.w, &s.kernel.w, &main_padding.w, &main_dilation.w, &main.kernel.w, " width"),
            ];
            for &(p, d, k, mp, md, mk, axis) in if square { &all[..1] } else { &all[..] } {
                let axis = if square { "" } else { axis };
                let lhs = Geo::bin(two(p), Op::Add, reach(md, mk));
                let rhs = Geo::bin(two(mp), Op::Add, reach(d, k));
                let expected = Geo::bin(Geo::bin(rhs.clone(), Op::Sub, reach(md, mk)), Op::Div, Geo::lit(2));
                let expected = match expected.value() {
                    Some(v) => format!("padding {v} (p_main - d*(k_main - k)/2)"),
                    None => "padding p_main - d*(k_main - k)/2".to_owned(),
                };
                checker.require(
                    Pred::Eq(lhs, rhs),
                    span,
                    branch,
                    index,
                    format!(
                        "branch `{name}` pads{axis} by {p}, so its window centre does not line up with branch `{main_name}`'s; \
                         it needs {expected}"
                    ),
                );
            }
        }
    }
    for post in &block.post {
        if let PostOp::Se(hidden, span, None) = post {
            let pred = Pred::Le(Geo::lit(1), hidden.clone());
            let message = format!("`se` has hidden = {hidden} channels; it needs at least 1");
            match pred.decide() {
                Some(true) => {}
                Some(false) => cx.error_at(*span, message),
                None => checker.deferred.push(Check { pred, message, branch: None }),
            }
        }
    }
    Some((BlockGeometry { summaries, main: main_index, main_padding, main_dilation }, checker.deferred))
}

/// A post-sum BN folds only when nothing non-linear precedes it.
fn check_post(cx: &Ctxt, block: &Block) {
    let mut non_linear_before = false;
    for op in &block.post {
        match op {
            PostOp::Bn(_, span) if non_linear_before => cx.error_at(
                *span,
                "a post-sum `bn` must come before activations and `se`: after a non-linear op it cannot fold into the conv",
            ),
            PostOp::Bn(..) => {}
            PostOp::Activation(..) | PostOp::Se(..) => non_linear_before = true,
        }
    }
}
