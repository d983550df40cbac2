//! Each branch as the one convolution it folds into, checking on the way that its ops chain,
//! fold (one spatial op, or stacked unpadded ones) and have sizes of at least 1.

use super::{Checker, Pred, Summary};
use crate::internals::ast::{self, Branch, OpKind, Pair};
use crate::internals::geo::{Geo, Op};

/// One op as the convolution it is (BN, scale, identity and implicit vectors are 1×1).
struct OpGeometry<'a> {
    cin: &'a Geo,
    cout: &'a Geo,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
    padding: Option<Pair>,
    /// `None` for ops without a conv (they take the block's groups).
    groups: Option<&'a Geo>,
}

impl<'a> OpGeometry<'a> {
    fn of(kind: &'a OpKind) -> Self {
        let one = Pair::lit(1);
        match kind {
            OpKind::Conv(c) | OpKind::ConvBn(c, _) => OpGeometry {
                cin: &c.cin,
                cout: &c.cout,
                kernel: c.kernel.clone(),
                stride: c.stride.clone(),
                dilation: c.dilation.clone(),
                padding: c.padding.clone(),
                groups: Some(&c.groups),
            },
            OpKind::Bn(ch, _)
            | OpKind::Scale(ch, _)
            | OpKind::Identity(ch)
            | OpKind::ImplicitA(ch)
            | OpKind::ImplicitM(ch) => OpGeometry {
                cin: ch,
                cout: ch,
                kernel: one.clone(),
                stride: one.clone(),
                dilation: one,
                padding: None,
                groups: None,
            },
            OpKind::Filter { channels, kernel, stride, padding, .. } => OpGeometry {
                cin: channels,
                cout: channels,
                kernel: kernel.clone(),
                stride: stride.clone(),
                dilation: one,
                padding: padding.clone(),
                groups: None,
            },
        }
    }

    /// A kernel, stride or padding other than 1×1 / 1 / 0.
    fn is_spatial(&self) -> bool {
        [&self.kernel.h, &self.kernel.w, &self.stride.h, &self.stride.w].iter().any(|g| g.value() != Some(1))
            || self.padding.as_ref().is_some_and(|p| [&p.h, &p.w].iter().any(|g| g.value() != Some(0)))
    }
}

/// The groups of a sequence's convs merged as the runtime merges them: a depthwise conv
/// (groups = its input channels) nests inside any grouping; literal counts merge by
/// [`rep_rules::merged_groups`]; symbolic counts that differ make the merged conv dense (1 group).
#[derive(Default)]
struct MergedGroups {
    groups: Option<(Geo, bool)>,
    dense: bool,
}

impl MergedGroups {
    fn add(&mut self, g: &Geo, cin: &Geo) {
        let depthwise = g.same_as(cin);
        self.groups = Some(match self.groups.take() {
            None => (g.clone(), depthwise),
            Some((prev, was_depthwise)) if prev.same_as(g) => (prev, was_depthwise && depthwise),
            Some((prev, was_depthwise)) if depthwise => (prev, was_depthwise),
            Some((_, true)) => (g.clone(), false),
            Some((prev, _)) => match (prev.value(), g.value()) {
                (Some(a), Some(b)) => (Geo::lit(rep_rules::merged_groups(a, b)), false),
                _ => {
                    self.dense = true;
                    (prev, false)
                }
            },
        });
    }

    fn result(self) -> Option<Geo> {
        if self.dense { Some(Geo::lit(1)) } else { self.groups.map(|(g, _)| g) }
    }
}

/// Summarizes each branch, checking that its ops chain; `None` when a branch is unusable.
pub(super) fn summarize(checker: &mut Checker<'_>, branch: &Branch, index: usize) -> Option<Summary> {
    let mut summary: Option<Summary> = None;
    // The previous spatial op: its kernel, and whether an unpadded k×k may follow it (it is unpadded, stride 1).
    let mut spatial_seen: Option<(Pair, bool)> = None;
    let mut groups = MergedGroups::default();
    for (i, op) in branch.ops.iter().enumerate() {
        check_implicit_a(checker, branch, i);
        let o = OpGeometry::of(&op.kind);
        check_op_sizes(checker, branch, index, op, &o);
        if let Some(g) = o.groups {
            groups.add(g, o.cin);
        }
        let is_conv = matches!(op.kind, OpKind::Conv(_) | OpKind::ConvBn(..) | OpKind::Filter { .. });
        let spatial = o.is_spatial();
        match &mut summary {
            None => {
                summary = Some(Summary {
                    cin: o.cin.clone(),
                    cout: o.cout.clone(),
                    kernel: o.kernel.clone(),
                    stride: o.stride.clone(),
                    dilation: o.dilation.clone(),
                    padding: o.padding.clone(),
                    groups: None,
                    identity_like: !is_conv,
                });
            }
            Some(s) => {
                let message = format!(
                    "ops of branch `{}` do not chain: the op before outputs {} channels but this one takes {}",
                    branch.name, s.cout, o.cin
                );
                let chained = Pred::Eq(s.cout.clone(), o.cin.clone());
                let broken = chained.decide() == Some(false);
                checker.require(chained, op.span, branch, index, message);
                if !broken {
                    // After a reported break, keep the last good width so one mistake is one error.
                    s.cout = o.cout.clone();
                }
                s.identity_like &= !is_conv;
                if spatial {
                    (s.kernel, s.stride, s.dilation, s.padding) =
                        (o.kernel.clone(), o.stride.clone(), o.dilation.clone(), o.padding.clone());
                }
            }
        }
        if spatial {
            let stacked = stack_spatial(checker, branch, op, &o, spatial_seen.take())?;
            if let Some(s) = summary.as_mut() {
                s.kernel = stacked.0.clone();
            }
            spatial_seen = Some(stacked);
        }
    }
    let mut summary = summary?;
    summary.groups = groups.result();
    Some(summary)
}

/// An ImplicitA folds into the bias of the conv right after it, which must not pad.
fn check_implicit_a(checker: &Checker<'_>, branch: &Branch, i: usize) {
    let (cx, op) = (checker.cx, &branch.ops[i]);
    if !matches!(op.kind, OpKind::ImplicitA(_)) {
        return;
    }
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

/// Sizes of at least 1, and inside a sequence each conv's groups dividing its channels (a
/// single-op branch is checked with the block's groups).
fn check_op_sizes(checker: &mut Checker<'_>, branch: &Branch, index: usize, op: &ast::Op, o: &OpGeometry<'_>) {
    let positive = [
        ("channels", [("input channels", o.cin), ("output channels", o.cout)]),
        ("kernel", [("kernel height", &o.kernel.h), ("kernel width", &o.kernel.w)]),
        ("stride", [("stride height", &o.stride.h), ("stride width", &o.stride.w)]),
        ("dilation", [("dilation height", &o.dilation.h), ("dilation width", &o.dilation.w)]),
    ];
    for (both, sizes) in positive {
        require_positive(checker, branch, index, op, both, sizes);
    }
    if let (Some(g), true) = (o.groups, branch.sequence) {
        for (what, channels) in [("input", o.cin), ("output", o.cout)] {
            let message =
                format!("groups = {g} of branch `{}` does not divide its {what} channels ({channels})", branch.name);
            checker.require(Pred::Divides(g.clone(), channels.clone()), op.span, branch, index, message);
        }
    }
}

/// A spatial op after `previous` (the kernel so far, and whether an unpadded k×k may follow):
/// stacked unpadded kernels (OREPA's linear deep stem) make one `k₁ + k₂ − 1` kernel; any other
/// second spatial op cannot fold, which is reported (`None`).
fn stack_spatial(
    checker: &Checker<'_>,
    branch: &Branch,
    op: &ast::Op,
    o: &OpGeometry<'_>,
    previous: Option<(Pair, bool)>,
) -> Option<(Pair, bool)> {
    let unpadded = o.padding.as_ref().is_some_and(|p| p.h.value() == Some(0) && p.w.value() == Some(0));
    let stride_one = o.stride.h.value() == Some(1) && o.stride.w.value() == Some(1);
    let Some((previous, stackable)) = previous else {
        return Some((o.kernel.clone(), stride_one && unpadded));
    };
    if !(stackable && unpadded) {
        checker.cx.error_at(
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
    let grown = |a: &Geo, b: &Geo| Geo::bin(Geo::bin(a.clone(), Op::Add, b.clone()), Op::Sub, Geo::lit(1));
    Some((Pair { h: grown(&previous.h, &o.kernel.h), w: grown(&previous.w, &o.kernel.w) }, stride_one && unpadded))
}

/// Each size must be at least 1 (a zero channel count, kernel, stride or dilation); a pair whose
/// two sides are one expression is checked once, under the name `both`.
fn require_positive(
    checker: &mut Checker<'_>,
    branch: &Branch,
    index: usize,
    op: &ast::Op,
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
