//! The law every branch obeys against the main branch: kernels odd and inside the fused one,
//! groups dividing the channels, the same channels, stride, groups and (where kernels have taps)
//! dilation, window centres aligned; identity branches only where the block maps a position to
//! itself.

use super::{Checker, FusedGeometry, Pred, Summary, axes, pair_text, reach, two};
use crate::internals::ast::{Block, Branch, Pair};
use crate::internals::geo::{Geo, Op};
use proc_macro2::Span;

/// What every branch is checked against.
pub(super) struct Reference<'a> {
    main_index: usize,
    main: &'a Summary,
    main_name: &'a str,
    /// The fused kernel: declared, else the per-axis maximum when literal, else the main's.
    kernel: Pair,
    /// The main branch's padding: as written, or "same" for its kernel.
    pub(super) padding: Pair,
    /// The main branch's dilation.
    pub(super) dilation: Pair,
    /// Per axis, the dilation every kernel with more than one tap along it must share (that
    /// of the first such branch, the main one first), with that branch's index and name.
    axis_dilation: [Option<(usize, &'a Geo, &'a str)>; 2],
}

impl<'a> Reference<'a> {
    pub(super) fn new(block: &'a Block, summaries: &'a [Summary], main_index: usize) -> Option<Self> {
        let main = summaries.get(main_index)?;
        let kernel = match &block.kernel {
            Some((k, _)) => k.clone(),
            None => {
                let max = |axis: fn(&Pair) -> &Geo| {
                    summaries.iter().map(|s| axis(&s.kernel).value()).collect::<Option<Vec<_>>>()?.into_iter().max()
                };
                match (max(|p| &p.h), max(|p| &p.w)) {
                    (Some(h), Some(w)) => Pair { h: Geo::lit(h), w: Geo::lit(w) },
                    _ => main.kernel.clone(),
                }
            }
        };
        let dilation = main.dilation.clone();
        let padding = main.padding.clone().unwrap_or_else(|| Pair {
            h: Geo::bin(reach(&dilation.h, &main.kernel.h), Op::Div, Geo::lit(2)),
            w: Geo::bin(reach(&dilation.w, &main.kernel.w), Op::Div, Geo::lit(2)),
        });
        let order: Vec<usize> =
            std::iter::once(main_index).chain((0..summaries.len()).filter(|&i| i != main_index)).collect();
        let axis_dilation = [0, 1].map(|axis| {
            order.iter().find_map(|&i| {
                let s = &summaries[i];
                let (k, d) = if axis == 0 { (&s.kernel.h, &s.dilation.h) } else { (&s.kernel.w, &s.dilation.w) };
                (k.value() != Some(1)).then_some((i, d, block.branches[i].name.as_str()))
            })
        });
        let main_name = block.branches[main_index].name.as_str();
        Some(Reference { main_index, main, main_name, kernel, padding, dilation, axis_dilation })
    }
}

impl Reference<'_> {
    /// The fused convolution's geometry (see [`FusedGeometry`]).
    pub(super) fn fused(&self) -> FusedGeometry {
        let dilation_of = |axis: usize| self.axis_dilation[axis].map_or(Geo::lit(1), |(_, d, _)| d.clone());
        let dilation = Pair { h: dilation_of(0), w: dilation_of(1) };
        let widened = |p: &Geo, d: &Geo, k: &Geo, k_main: &Geo| {
            let grow = Geo::bin(
                Geo::bin(d.clone(), Op::Mul, Geo::bin(k.clone(), Op::Sub, k_main.clone())),
                Op::Div,
                Geo::lit(2),
            );
            Geo::bin(p.clone(), Op::Add, grow)
        };
        let padding = Pair {
            h: widened(&self.padding.h, &dilation.h, &self.kernel.h, &self.main.kernel.h),
            w: widened(&self.padding.w, &dilation.w, &self.kernel.w, &self.main.kernel.w),
        };
        let groups = self.main.groups.clone().unwrap_or(Geo::lit(1));
        FusedGeometry { kernel: self.kernel.clone(), dilation, padding, groups }
    }
}

/// The checks of one branch, each reported at its first op (or deferred, see [`Checker`]).
pub(super) struct BranchChecker<'c, 'a> {
    pub(super) checker: &'c mut Checker<'a>,
    pub(super) branch: &'c Branch,
    pub(super) index: usize,
    pub(super) span: Span,
}

impl BranchChecker<'_, '_> {
    fn require(&mut self, pred: Pred, message: String) {
        self.checker.require(pred, self.span, self.branch, self.index, message);
    }

    fn name(&self) -> &str {
        &self.branch.name
    }

    /// Every check of the branch summarized as `s`.
    pub(super) fn check(mut self, s: &Summary, r: &Reference<'_>) {
        self.kernel(s, r);
        self.groups_divide(s);
        if self.index == r.main_index {
            return;
        }
        if s.identity_like {
            return self.identity(s, r);
        }
        self.agreement(s, r);
        let dilation_differs = self.dilation(s, r);
        if dilation_differs {
            return; // one mistake, one error: the padding checks would repeat it
        }
        match &s.padding {
            None => self.default_padding(s, r),
            Some(p) => self.written_padding(s, p, r),
        }
    }

    /// Odd kernels (they have a centre), no larger than the fused kernel.
    fn kernel(&mut self, s: &Summary, r: &Reference<'_>) {
        let name = self.name().to_owned();
        for (axis, k, big) in axes(&s.kernel, &r.kernel) {
            self.require(
                Pred::Odd(k.clone()),
                format!("branch `{name}` has an even kernel{axis} ({k}); only odd kernels have a centre to align with the fused kernel"),
            );
            self.require(
                Pred::Le(k.clone(), big.clone()),
                format!("branch `{name}` has kernel{axis} {k}, larger than the fused kernel's {big}"),
            );
        }
    }

    /// The groups divide the channels (a sequence's convs were each checked in `summarize`).
    fn groups_divide(&mut self, s: &Summary) {
        let (Some(g), false) = (&s.groups, self.branch.sequence) else { return };
        let name = self.name().to_owned();
        for (what, channels) in [("input", &s.cin), ("output", &s.cout)] {
            self.require(
                Pred::Divides(g.clone(), channels.clone()),
                format!("branch `{name}` uses groups = {g}, which does not divide its {channels} {what} channels"),
            );
        }
    }

    /// An identity-like branch (identity, BN, scale on the input) needs the block to map each
    /// position to itself: C_in = C_out, stride 1, and the main window centred (2P = D·(K − 1)).
    fn identity(&mut self, s: &Summary, r: &Reference<'_>) {
        let (name, main, main_name) = (self.name().to_owned(), r.main, r.main_name);
        let message = format!(
            "identity branch `{name}` needs C_in == C_out and stride 1, but the block maps {} -> {} channels with stride {}; \
             drop the branch or make it conditional: #[rep(when = ...)] with an `Option<…>` type",
            main.cin,
            main.cout,
            pair_text(&main.stride)
        );
        self.require(Pred::Eq(main.cin.clone(), main.cout.clone()), message.clone());
        self.require(Pred::Eq(main.stride.h.clone(), Geo::lit(1)), message.clone());
        self.require(Pred::Eq(main.stride.w.clone(), Geo::lit(1)), message.clone());
        self.require(Pred::Eq(s.cout.clone(), main.cout.clone()), message);
        for (axis, p, d, k) in [
            ("height", &r.padding.h, &r.dilation.h, &main.kernel.h),
            ("width", &r.padding.w, &r.dilation.w, &main.kernel.w),
        ] {
            self.require(
                Pred::Eq(two(p), reach(d, k)),
                format!(
                    "identity branch `{name}` keeps every position in place, but branch `{main_name}` pads its {axis} by {p} \
                     for kernel {k} (dilation {d}), which shifts or resizes the output; it needs padding d*(k - 1)/2"
                ),
            );
        }
    }

    /// The same output and input channels, stride and groups as the main branch.
    fn agreement(&mut self, s: &Summary, r: &Reference<'_>) {
        let (name, main, main_name) = (self.name().to_owned(), r.main, r.main_name);
        self.require(
            Pred::Eq(s.cout.clone(), main.cout.clone()),
            format!("branch `{name}` outputs {} channels but branch `{main_name}` outputs {}; every branch must produce the block's output", s.cout, main.cout),
        );
        self.require(
            Pred::Eq(s.cin.clone(), main.cin.clone()),
            format!("branch `{name}` takes {} input channels but branch `{main_name}` takes {}", s.cin, main.cin),
        );
        for (a, b) in [(&s.stride.h, &main.stride.h), (&s.stride.w, &main.stride.w)] {
            self.require(
                Pred::Eq(a.clone(), b.clone()),
                format!(
                    "branch `{name}` has stride {} but branch `{main_name}` has stride {}; all branches must share the stride",
                    pair_text(&s.stride),
                    pair_text(&main.stride)
                ),
            );
        }
        if let (Some(g), Some(main_g)) = (&s.groups, &main.groups) {
            self.require(
                Pred::Eq(g.clone(), main_g.clone()),
                format!("branch `{name}` uses groups = {g} but branch `{main_name}` uses groups = {main_g}; the fused conv has one group count"),
            );
        }
    }

    /// Tap spacing agrees along every axis where the kernel has more than one tap; true when
    /// it is known to differ.
    fn dilation(&mut self, s: &Summary, r: &Reference<'_>) -> bool {
        let name = self.name().to_owned();
        for (axis, (k, d)) in [(&s.kernel.h, &s.dilation.h), (&s.kernel.w, &s.dilation.w)].into_iter().enumerate() {
            let Some((reference, md, reference_name)) = r.axis_dilation[axis] else { continue };
            if k.value() == Some(1) || reference == self.index {
                continue;
            }
            let pred = Pred::Eq(d.clone(), md.clone());
            let differs = pred.decide() == Some(false);
            self.require(
                pred,
                format!(
                    "branch `{name}` has dilation {d} but branch `{reference_name}` has {md}; \
                     kernels with different tap spacing do not add into one kernel"
                ),
            );
            if differs {
                return true;
            }
        }
        false
    }

    /// Without written padding the branch is centred on the main window: its padding
    /// p_main − d·(k_main − k)/2 must not be negative.
    fn default_padding(&mut self, s: &Summary, r: &Reference<'_>) {
        let (name, main, main_name) = (self.name().to_owned(), r.main, r.main_name);
        let square = [&s.dilation, &s.kernel, &r.padding, &r.dilation, &main.kernel].iter().all(|q| q.h.same_as(&q.w));
        let all = [
            (&s.dilation.h, &s.kernel.h, &r.padding.h, &r.dilation.h, &main.kernel.h, " along the height"),
            (&s.dilation.w, &s.kernel.w, &r.padding.w, &r.dilation.w, &main.kernel.w, " along the width"),
        ];
        for &(d, k, mp, md, mk, axis) in if square { &all[..1] } else { &all[..] } {
            let axis = if square { "" } else { axis };
            let available = Geo::bin(two(mp), Op::Add, reach(d, k));
            self.require(
                Pred::Le(reach(md, mk), available),
                format!(
                    "branch `{name}` cannot be centred on branch `{main_name}`'s window{axis}: it would need \
                     negative padding (p_main - d*(k_main - k)/2 < 0); give the main branch more padding"
                ),
            );
        }
    }

    /// Written padding must centre the window: 2p − d·(k − 1) equals the main branch's
    /// 2P − D·(K − 1) (compared without subtraction).
    fn written_padding(&mut self, s: &Summary, p: &Pair, r: &Reference<'_>) {
        let (name, main, main_name) = (self.name().to_owned(), r.main, r.main_name);
        let square =
            [p, &s.dilation, &s.kernel, &r.padding, &r.dilation, &main.kernel].iter().all(|q| q.h.same_as(&q.w));
        let all = [
            (&p.h, &s.dilation.h, &s.kernel.h, &r.padding.h, &r.dilation.h, &main.kernel.h, " height"),
            (&p.w, &s.dilation.w, &s.kernel.w, &r.padding.w, &r.dilation.w, &main.kernel.w, " width"),
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
            self.require(
                Pred::Eq(lhs, rhs),
                format!(
                    "branch `{name}` pads{axis} by {p}, so its window centre does not line up with branch `{main_name}`'s; \
                     it needs {expected}"
                ),
            );
        }
    }
}
