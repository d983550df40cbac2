//! Geometry checks. Literal geometry is decided here and reported with a span; geometry that
//! depends on generic parameters becomes a [`Check`] that expansion turns into an inline
//! `const` assertion (for `Const`/const-generic sizes) and a run-time error (for `usize` sizes).

mod branch;
mod summary;

use super::ast::{Block, Branch, Pair, PostOp};
use super::ctxt::Ctxt;
use super::geo::{Geo, Op};
use branch::{BranchChecker, Reference};
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
    /// Where the check's const assertion is reported: the offending op or argument.
    pub span: Span,
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

/// The geometry of the fused convolution, as the runtime's `sum_branches` makes it: the fused
/// kernel, per axis the dilation of the kernels with taps there (1 when none has), the main
/// branch's padding widened to the fused kernel (`P + d·(K − k_main)/2`), the main's groups.
#[derive(Clone, Debug)]
pub struct FusedGeometry {
    pub kernel: Pair,
    pub dilation: Pair,
    pub padding: Pair,
    pub groups: Geo,
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
    /// The fused convolution's kernel, dilation, padding and groups (what `…Fused::new` builds).
    pub fused: FusedGeometry,
}

pub(super) struct Checker<'a> {
    cx: &'a Ctxt,
    deferred: Vec<Check>,
}

impl Checker<'_> {
    /// A check of branch `index`: decided now when it can be and the branch always exists,
    /// else left for a const assertion / run time (only when an optional branch exists).
    pub(super) fn require(&mut self, pred: Pred, span: Span, branch: &Branch, index: usize, message: String) {
        self.require_in(pred, span, message, branch.when.is_some(), branch.optional.then_some(index));
    }

    /// A check that holds unless it sits under a `when` condition (`conditional`); deferred
    /// checks apply only when `branch` (if any) exists.
    fn require_in(&mut self, pred: Pred, span: Span, message: String, conditional: bool, branch: Option<usize>) {
        match pred.decide() {
            Some(true) => {}
            Some(false) if !conditional => self.cx.error_at(span, message),
            _ => self.deferred.push(Check { pred, message, branch, span }),
        }
    }
}

pub(super) fn two(g: &Geo) -> Geo {
    Geo::bin(Geo::lit(2), Op::Mul, g.clone())
}

/// `d·(k − 1)`: the dilated kernel's extent minus one ([`rep_rules::reach`], evaluated by the
/// macro on literal sizes and by the generated code on the others).
pub(crate) fn reach(d: &Geo, k: &Geo) -> Geo {
    Geo::bin(d.clone(), Op::Reach, k.clone())
}

/// The axes to check: one unnamed axis when both pairs are square, else height and width.
pub(super) fn axes<'p>(a: &'p Pair, b: &'p Pair) -> Vec<(&'static str, &'p Geo, &'p Geo)> {
    if a.h.same_as(&a.w) && b.h.same_as(&b.w) {
        vec![("", &a.h, &b.h)]
    } else {
        vec![(" height", &a.h, &b.h), (" width", &a.w, &b.w)]
    }
}

pub(super) fn pair_text(p: &Pair) -> String {
    if p.h.same_as(&p.w) { p.h.to_string() } else { format!("{}x{}", p.h, p.w) }
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
    let summaries: Vec<Summary> = block
        .branches
        .iter()
        .enumerate()
        .map(|(i, b)| summary::summarize(&mut checker, b, i))
        .collect::<Option<_>>()?;
    let main_index = main_branch(block, &summaries);
    let reference = Reference::new(block, &summaries, main_index)?;
    for (index, (branch, s)) in block.branches.iter().zip(&summaries).enumerate() {
        let span = branch.ops.first().map_or(branch.span, |op| op.span);
        BranchChecker { checker: &mut checker, branch, index, span }.check(s, &reference);
    }
    check_se(&mut checker, block);
    let (main_padding, main_dilation) = (reference.padding.clone(), reference.dilation.clone());
    let fused = reference.fused();
    Some((BlockGeometry { summaries, main: main_index, main_padding, main_dilation, fused }, checker.deferred))
}

/// A squeeze-excite that always exists needs at least one hidden channel.
fn check_se(checker: &mut Checker<'_>, block: &Block) {
    for post in &block.post {
        if let PostOp::Se(hidden, span, None) = post {
            let message = format!("`se` has hidden = {hidden} channels; it needs at least 1");
            checker.require_in(Pred::Le(Geo::lit(1), hidden.clone()), *span, message, false, None);
        }
    }
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
