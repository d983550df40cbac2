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

/// Refuses a layer with an identity branch on a shortcut path (the rule in this module's docs,
/// `rep_rules::shortcut_merge`, which the `#[rep::graph]` macro applies at compile time),
/// naming the layer, its source and the merge node both reach.
pub fn check_planned_reparameterization<L: GraphLayer>(graph: &Graph<L>) -> Result<()> {
    let nodes = graph.nodes();
    let sources: Vec<Vec<Source>> = nodes.iter().map(|n| n.from.clone()).collect();
    let is_merge: Vec<bool> = nodes.iter().map(|n| matches!(n.op, Op::Concat | Op::Add) && n.from.len() > 1).collect();
    for (l, node) in nodes.iter().enumerate() {
        let Op::Layer(k) = node.op else { continue };
        if !graph.layers()[k].has_identity_branch() {
            continue;
        }
        if let Some(m) = rep_rules::shortcut_merge(&sources, &is_merge, l) {
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
