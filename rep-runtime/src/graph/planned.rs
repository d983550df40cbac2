//! Planned re-parameterization (YOLOv7, section 3.2): where a re-parameterized convolution may
//! keep its identity branch.
//!
//! **The rule.** Let `L` be a layer with an identity branch (`y = f(x) + BN(x)`) reading source
//! `s`. `L` is refused when some concatenation or addition node `M` is reachable from `L`'s
//! output *and* reachable from `s` along a path that does not pass through `L`. Then `x` reaches
//! `M` twice — once through the other path, once through `L`'s identity — so the identity
//! duplicates a shortcut that already exists, and YOLOv7 measured that this spoils the
//! re-parameterized model's accuracy. Use RepConvN (RepConv without the identity) there.

use super::{Graph, GraphLayer, Op, Source};
use crate::error::{Error, Result};

/// Refuses a layer with an identity branch on a shortcut path (the rule in this module's docs),
/// naming the layer, its source and the merge node both reach.
pub fn check_planned_reparameterization<L: GraphLayer>(graph: &Graph<L>) -> Result<()> {
    let nodes = graph.nodes();
    // consumers[0] reads the input; consumers[j + 1] read node j.
    let mut consumers = vec![Vec::new(); nodes.len() + 1];
    for (i, node) in nodes.iter().enumerate() {
        for source in &node.from {
            consumers[slot(*source)].push(i);
        }
    }
    for (l, node) in nodes.iter().enumerate() {
        let Op::Layer(k) = node.op else { continue };
        if !graph.layers()[k].has_identity_branch() {
            continue;
        }
        let after_output = reachable(&consumers, l + 1, None);
        let around = reachable(&consumers, slot(node.from[0]), Some(l));
        let merge = (0..nodes.len()).find(|&m| {
            after_output[m] && around[m] && matches!(nodes[m].op, Op::Concat | Op::Add) && nodes[m].from.len() > 1
        });
        if let Some(m) = merge {
            let source = match node.from[0] {
                Source::Input => "the graph's input".to_owned(),
                Source::Node(j) => format!("node {j} `{}`", nodes[j].name),
            };
            let kind = if nodes[m].op == Op::Add { "addition" } else { "concatenation" };
            return Err(Error::Wiring(format!(
                "node {l} `{}` has an identity branch on a shortcut path: its input ({source}) also reaches \
                 {kind} node {m} `{}`, which its output reaches, so the identity duplicates that shortcut; \
                 use a block without the identity branch there (RepConvN), as YOLOv7's planned \
                 re-parameterization prescribes",
                node.name, nodes[m].name
            )));
        }
    }
    Ok(())
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
    while let Some(slot) = stack.pop() {
        for &next in &consumers[slot] {
            if Some(next) != avoid && !seen[next] {
                seen[next] = true;
                stack.push(next + 1);
            }
        }
    }
    seen
}
