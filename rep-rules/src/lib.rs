//! # rep-rules
//!
//! Rules that `rep` applies in two places — in its macros, at compile time, on what the
//! declaration spells, and in its runtime, at run time, on what was built — kept here once,
//! dependency-free, so that the two cannot drift apart.
//!
//! * [`shortcut_merge`]: planned re-parameterization (YOLOv7, section 3.2).
//! * The geometry of fusion: a window's [`reach`] and [`centre_offset2`] (branches fuse when
//!   their window centres agree), the [`merged_groups`] of two stacked convolutions, and timm's
//!   [`make_divisible`] width rounding. `const fn`s, so that the macros' generated checks can
//!   evaluate them on static sizes.

#![warn(missing_docs)]

mod geometry;

pub use geometry::{centre_offset2, make_divisible, merged_groups, reach};

/// Where a graph node reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The graph's input.
    Input,
    /// The output of node `i`.
    Node(usize),
}

/// Planned re-parameterization: the merge node that makes an identity branch of `layer`
/// duplicate a shortcut, if any.
///
/// **The rule.** Let `layer` read source `s`. It sits on a shortcut path when some node `m`
/// that merges several sources (`is_merge[m]`: a concatenation or an addition of more than one
/// source) is reachable from `layer`'s output *and* from `s` along a path that does not pass
/// through `layer`. Then `s` reaches `m` twice — around the layer, and through its identity
/// branch — so the identity duplicates a shortcut that already exists; YOLOv7 measured that
/// this spoils the re-parameterized model's accuracy and uses RepConvN (no identity) there.
/// Returns the first such `m`.
///
/// `sources[i]` lists what node `i` reads; nodes read only earlier nodes.
///
/// ```
/// use rep_rules::{Source, shortcut_merge};
/// // a → rep → concat(rep, a): `a` reaches the concat around `rep`.
/// let sources = vec![vec![Source::Input], vec![Source::Node(0)], vec![Source::Node(1), Source::Node(0)]];
/// assert_eq!(shortcut_merge(&sources, &[false, false, true], 1), Some(2));
/// // A plain chain: no shortcut.
/// let chain = vec![vec![Source::Input], vec![Source::Node(0)], vec![Source::Node(1)]];
/// assert_eq!(shortcut_merge(&chain, &[false; 3], 1), None);
/// ```
pub fn shortcut_merge(sources: &[Vec<Source>], is_merge: &[bool], layer: usize) -> Option<usize> {
    let n = sources.len();
    let [input] = sources.get(layer)?.as_slice() else { return None };
    // consumers[0] read the input; consumers[j + 1] read node j.
    let mut consumers = vec![Vec::new(); n + 1];
    for (i, from) in sources.iter().enumerate() {
        for s in from {
            consumers[slot(*s)].push(i);
        }
    }
    let after = reachable(&consumers, layer + 1, None);
    let around = reachable(&consumers, slot(*input), Some(layer));
    (0..n).find(|&m| after[m] && around[m] && is_merge.get(m).copied().unwrap_or(false))
}

/// The consumer-list slot of a source: 0 for the input, `j + 1` for node `j`.
fn slot(source: Source) -> usize {
    match source {
        Source::Input => 0,
        Source::Node(j) => j + 1,
    }
}

/// Which nodes are reachable from `start` (a slot) by following consumers, never entering
/// `avoid`; `start` itself is not counted.
fn reachable(consumers: &[Vec<usize>], start: usize, avoid: Option<usize>) -> Vec<bool> {
    let mut seen = vec![false; consumers.len() - 1];
    let mut stack = vec![start];
    while let Some(s) = stack.pop() {
        for &next in &consumers[s] {
            if Some(next) != avoid && !seen[next] {
                seen[next] = true;
                stack.push(next + 1);
            }
        }
    }
    seen
}
