//! Weight names: every parameter of a block must have its own key in a state dict, and no
//! branch may take the struct field a post-sum op is stored in.

use super::ast::{Block, OpKind, PostOp};
use super::ctxt::Ctxt;

/// Two fields (or a field and a post op) with the same weight name; a field that takes the
/// struct field a post op needs; two ops whose final weight keys coincide.
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
    let errors_before = cx.error_count();
    if clashes > 0 {
        return; // one message per mistake: the clash above already names the field
    }
    check_branch_names(cx, block);
    if cx.error_count() == errors_before {
        check_keys(cx, block);
    }
}

/// Two fields (or a field and a post op) with the same weight name.
fn check_branch_names(cx: &Ctxt, block: &Block) {
    let mut seen: Vec<(String, String)> = Vec::new();
    let post_names = block.post.iter().filter_map(|p| match p {
        PostOp::Bn(_, span) => Some(("bn".to_owned(), "post-sum bn".to_owned(), *span)),
        PostOp::Se(_, span, _) => Some(("se".to_owned(), "post-sum se".to_owned(), *span)),
        PostOp::Activation(_) => None,
    });
    let fields = block.branches.iter().map(|b| (b.name.clone(), format!("field `{}`", b.field), b.name_span));
    for (name, owner, span) in fields.chain(post_names) {
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            cx.error_at(
                span,
                format!(
                    "weight name `{name}` is used by {first} and by {owner}; rename one with #[rep(rename = \"...\")]"
                ),
            );
        } else {
            seen.push((name, owner));
        }
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

/// Every final weight key (`branch.op.weight`) is unique, or loading would be ambiguous.
fn check_keys(cx: &Ctxt, block: &Block) {
    let mut seen: Vec<(String, String)> = Vec::new();
    for branch in &block.branches {
        for op in &branch.ops {
            let owner = if op.name.is_empty() {
                format!("field `{}`", branch.field)
            } else {
                format!("op `{}` of field `{}`", op.name, branch.field)
            };
            let prefix = join(&branch.name, &op.name);
            for key in op_keys(&op.kind).iter().map(|k| join(&prefix, k)) {
                if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                    cx.error_at(
                        op.span,
                        format!("weight key `{key}` is stored by {first} and by {owner}; give them different names"),
                    );
                    break;
                }
                seen.push((key, owner.clone()));
            }
        }
    }
}
