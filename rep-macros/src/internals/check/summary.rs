//! Each branch as the one convolution it folds into, checking on the way that its ops chain,
//! fold (one spatial op, or stacked unpadded ones) and have sizes of at least 1.

use super::{Checker, Pred, Summary};
use crate::internals::ast::{Branch, OpKind, Pair};
use crate::internals::geo::{Geo, Op};

/// Summarizes each branch, checking that its ops chain; `None` when a branch is unusable.
pub(super) fn summarize(checker: &mut Checker<'_>, branch: &Branch, index: usize) -> Option<Summary> {
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
    op: &crate::internals::ast::Op,
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
