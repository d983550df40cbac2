//! Weight names: every parameter of a block must have its own key in a state dict (compared
//! as final keys, so names that only share a prefix, or `rename = ""` branches whose op names
//! differ, are fine), and no branch may take the struct field a post-sum op is stored in.

use super::ast::{Block, Branch, OpKind, PostOp};
use super::ctxt::Ctxt;
use proc_macro2::Span;

/// A field that takes the struct field a post op needs; two parameters with one final key.
pub fn check_names(cx: &Ctxt, block: &Block) {
    let mut clashes = 0;
    for branch in &block.branches {
        let post = block.post.iter().find(|p| match p {
            PostOp::Bn(..) => branch.field == "bn",
            PostOp::Se(..) => branch.field == "se",
            PostOp::Activation(..) => false,
        });
        if post.is_some() {
            clashes += 1;
            cx.error_at(
                branch.field.span(),
                format!(
                    "field `{0}` clashes with the post-sum `{0}`, which the block stores in a field of that name; \
                     call the branch something else (keeping its weight name with #[rep(rename = \"{0}\")] if needed)",
                    branch.field
                ),
            );
        }
    }
    if clashes == 0 {
        check_keys(cx, block); // one message per mistake: a clash above already names the field
    }
}

/// The weight keys an op stores, relative to its own name.
fn op_keys(kind: &OpKind) -> &'static [&'static str] {
    const BN: &[&str] = &["weight", "bias", "running_mean", "running_var"];
    match kind {
        OpKind::Conv(spec) if spec.bias => &["weight", "bias"],
        OpKind::Conv(_) | OpKind::Scale(..) => &["weight"],
        OpKind::ConvBn(..) => &["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
        OpKind::Bn(..) => BN,
        OpKind::ImplicitA(_) | OpKind::ImplicitM(_) => &["implicit"],
        OpKind::Filter { .. } | OpKind::Identity(_) => &[],
    }
}

fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}.{name}"),
    }
}

/// Every parameter the block stores, as `(final key, who stores it, where to point)`.
fn keys(block: &Block) -> Vec<(String, String, Span)> {
    let mut keys = Vec::new();
    for branch in &block.branches {
        for op in &branch.ops {
            let (owner, span) = owner(branch, op);
            let prefix = join(&branch.name, &op.name);
            keys.extend(op_keys(&op.kind).iter().map(|k| (join(&prefix, k), owner.clone(), span)));
        }
    }
    for post in &block.post {
        let (owner, prefix, names, span): (&str, &str, &[&str], Span) = match post {
            PostOp::Bn(_, span) => ("post-sum bn", "bn", &["weight", "bias", "running_mean", "running_var"], *span),
            PostOp::Se(_, span, _) => {
                ("post-sum se", "se", &["down.weight", "down.bias", "up.weight", "up.bias"], *span)
            }
            PostOp::Activation(_) => continue,
        };
        keys.extend(names.iter().map(|k| (join(prefix, k), owner.to_owned(), span)));
    }
    keys
}

/// Who stores an op's weights, and the token a clash points at: the branch's name (its field or
/// `rename`) for a single op, the op itself inside a sequence.
fn owner(branch: &Branch, op: &super::ast::Op) -> (String, Span) {
    if op.name.is_empty() {
        (format!("field `{}`", branch.field), branch.name_span)
    } else {
        (format!("op `{}` of field `{}`", op.name, branch.field), op.span)
    }
}

/// Every final weight key (`branch.op.weight`) is unique, or loading would be ambiguous.
fn check_keys(cx: &Ctxt, block: &Block) {
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut reported: Vec<String> = Vec::new();
    for (key, owner, span) in keys(block) {
        match seen.iter().find(|(k, _)| *k == key) {
            // One error per pair of owners, at the first key they share.
            Some((_, first)) if !reported.contains(&owner) => {
                cx.error_at(
                    span,
                    format!(
                        "weight key `{key}` is stored by {first} and by {owner}; give them different names \
                         (#[rep(rename = \"...\")] on a field, #[rep(names(...))] in a sequence)"
                    ),
                );
                reported.push(owner);
            }
            Some(_) => {}
            None => seen.push((key, owner)),
        }
    }
}
