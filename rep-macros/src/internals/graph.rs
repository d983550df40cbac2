//! The graph IR: fields that are layers (blocks with their sizes, or nested graphs with the
//! arguments of their `new`) or graph ops (`Concat`, `Add`,
//! `Upsample<F>`, `MaxPool<K, S[, P]>`), in node order, each reading earlier nodes through
//! `#[rep(from = …)]`; parsed, then checked for the wiring: sources in range, one source for a
//! layer, pool or upsampling, unique names, and which layers sit on a shortcut path (planned
//! re-parameterization: their identity branch is refused at compile time when the type decides
//! it).

use super::ctxt::Ctxt;
use super::model::{Size, type_args};
use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, Ident, ItemStruct, Lit, Type, UnOp};

/// Where a node reads from, as written.
#[derive(Clone, Copy)]
pub enum From {
    /// `input`: the graph's input.
    Input,
    /// `-k`: the k-th node back (`-1` the previous one, the input for the first node).
    Back(usize),
    /// `i`: node `i`.
    Node(usize),
}

/// A resolved source (the type `rep_rules::shortcut_merge` reads).
pub use rep_rules::Source;

/// What a node computes.
pub enum NodeKind {
    /// A block with its sizes, or (`nested`, marked `#[rep(graph)]`) another `#[rep::graph]`
    /// with the arguments of its `new`.
    Layer {
        path: syn::Path,
        sizes: Vec<Size>,
        nested: bool,
    },
    Concat,
    Add,
    Upsample(Size),
    /// Kernel, stride, padding (boxed: three sizes make it the largest kind).
    MaxPool(Box<[Size; 3]>),
}

pub struct Node {
    pub ident: Ident,
    pub name: String,
    pub name_span: Span,
    pub kind: NodeKind,
    /// Sources as written, with their spans.
    pub from: Vec<(From, Span)>,
    /// Resolved by [`Graph::check`].
    pub sources: Vec<Source>,
    /// The type's span (errors about the node point there).
    pub span: Span,
    /// The `from` attribute's span, or the type's.
    pub from_span: Span,
    /// True when the layer's input also reaches, around it, a merge its output reaches.
    pub on_shortcut: Option<String>,
}

pub struct Graph {
    pub item: ItemStruct,
    /// Arguments of `new`, as in a function signature.
    pub params: Vec<syn::FnArg>,
    pub nodes: Vec<Node>,
    /// `outputs(a, b, …)` as written (the last node when empty).
    pub output_names: Vec<Ident>,
    /// The output nodes, resolved.
    pub outputs: Vec<usize>,
    /// `layers = Enum`: the layer type the runtime graph holds, instead of a generated enum;
    /// every layer converts into it with `From` (its fused form into `Enum`'s fused type).
    pub layers: Option<syn::Path>,
}

impl Graph {
    pub fn parse(cx: &Ctxt, args: proc_macro2::TokenStream, item: ItemStruct) -> Graph {
        let (mut params, mut output_names, mut layers) = (Vec::new(), Vec::new(), None);
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("new") {
                params = super::attrs::new_params(&meta)?;
                Ok(())
            } else if meta.path.is_ident("outputs") {
                let content;
                syn::parenthesized!(content in meta.input);
                output_names = content.parse_terminated(Ident::parse_any, syn::Token![,])?.into_iter().collect();
                Ok(())
            } else if meta.path.is_ident("layers") {
                layers = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta
                    .error("unknown graph argument; expected new(name: Type, …), outputs(node, …) or layers = Type"))
            }
        });
        if let Err(e) = parser.parse2(args) {
            cx.syn_error(e);
        }
        if !item.generics.params.is_empty() {
            cx.error_at(item.generics.span(), "a rep graph takes its sizes as arguments of `new`, not generics");
        }
        let mut nodes = Vec::new();
        match &item.fields {
            syn::Fields::Named(named) => nodes.extend(named.named.iter().filter_map(|f| parse_node(cx, f))),
            other => cx.error_at(other.span(), "a rep graph is a struct with named fields, one node each, in order"),
        }
        if nodes.is_empty() && matches!(item.fields, syn::Fields::Named(_)) {
            cx.error_at(item.ident.span(), "a rep graph needs at least one node");
        }
        let mut graph = Graph { item, params, nodes, output_names, outputs: Vec::new(), layers };
        graph.check(cx);
        graph.resolve_outputs(cx);
        graph
    }

    /// Resolves sources (in range, the right number of them), checks names, and marks the
    /// layers that sit on a shortcut path.
    fn check(&mut self, cx: &Ctxt) {
        let mut names: Vec<String> = Vec::new();
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if names.contains(&node.name) {
                cx.error_at(node.name_span, format!("weight name `{}` is used twice; rename one", node.name));
            }
            names.push(node.name.clone());
            let mut sources = Vec::new();
            for &(from, span) in &node.from {
                match (from, i) {
                    (From::Input, _) | (From::Back(1), 0) => sources.push(Source::Input),
                    (From::Back(k), i) if k >= 1 && k <= i => sources.push(Source::Node(i - k)),
                    (From::Node(j), i) if j < i => sources.push(Source::Node(j)),
                    (From::Back(k), i) => cx.error_at(
                        span,
                        format!("source -{k} of `{}` is out of range: {i} node(s) come before it", node.ident),
                    ),
                    (From::Node(j), i) => cx.error_at(
                        span,
                        format!(
                            "source {j} of `{}` is not an earlier node: it is node {i} (nodes count from 0)",
                            node.ident
                        ),
                    ),
                }
            }
            let single = matches!(node.kind, NodeKind::Layer { .. } | NodeKind::Upsample(_) | NodeKind::MaxPool(..));
            if single && node.from.len() != 1 {
                cx.error_at(node.from_span, format!("`{}` reads one source, found {}", node.ident, node.from.len()));
            }
            self.nodes[i].sources = sources;
        }
        if cx.is_clean() {
            self.mark_shortcuts();
        }
    }

    /// The output nodes: those `outputs(…)` names, or the last node.
    fn resolve_outputs(&mut self, cx: &Ctxt) {
        if self.output_names.is_empty() {
            self.outputs = self.nodes.len().checked_sub(1).into_iter().collect();
            return;
        }
        for name in &self.output_names {
            match self.nodes.iter().position(|n| n.ident == *name) {
                Some(i) if self.outputs.contains(&i) => {
                    cx.error_at(name.span(), format!("output `{name}` is named twice"))
                }
                Some(i) => self.outputs.push(i),
                None => cx.error_at(name.span(), format!("no node `{name}` to output")),
            }
        }
    }

    /// For each layer: the merge node that makes an identity branch of it duplicate a shortcut
    /// (`rep_rules::shortcut_merge`, the rule the runtime applies too).
    fn mark_shortcuts(&mut self) {
        let sources: Vec<Vec<Source>> = self.nodes.iter().map(|n| n.sources.clone()).collect();
        let is_merge: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| matches!(n.kind, NodeKind::Concat | NodeKind::Add) && n.sources.len() > 1)
            .collect();
        for l in 0..self.nodes.len() {
            if matches!(self.nodes[l].kind, NodeKind::Layer { .. }) {
                let merge = rep_rules::shortcut_merge(&sources, &is_merge, l);
                self.nodes[l].on_shortcut = merge.map(|m| self.nodes[m].ident.to_string());
            }
        }
    }
}

fn parse_node(cx: &Ctxt, field: &syn::Field) -> Option<Node> {
    let ident = field.ident.clone()?;
    let mut rename = None;
    let mut from = None;
    let mut nested = None;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("rep")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                let name: syn::LitStr = meta.value()?.parse()?;
                rename = Some((name.value(), name.span()));
            } else if meta.path.is_ident("from") {
                let expr: Expr = meta.value()?.parse()?;
                from = Some((parse_from(&expr)?, expr.span()));
            } else if meta.path.is_ident("graph") {
                nested = Some(meta.path.span());
            } else {
                return Err(meta.error(
                    "unknown node argument; expected from = SOURCES, rename = \"name\" or graph (a nested graph)",
                ));
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    let (name, name_span) = rename.unwrap_or((ident.to_string(), ident.span()));
    let kind = match (parse_kind(&field.ty), nested) {
        (Ok(NodeKind::Layer { path, sizes, .. }), Some(_)) => NodeKind::Layer { path, sizes, nested: true },
        (Ok(_), Some(span)) => {
            cx.error_at(span, "`graph` marks a node whose type is another `#[rep::graph]`, not a graph op");
            return None;
        }
        (Ok(kind), None) => kind,
        (Err(e), _) => {
            cx.syn_error(e);
            return None;
        }
    };
    let (from, from_span) = from.unwrap_or_else(|| (vec![(From::Back(1), field.ty.span())], field.ty.span()));
    let span = field.ty.span();
    Some(Node { ident, name, name_span, kind, from, sources: Vec::new(), span, from_span, on_shortcut: None })
}

/// `-1`, `3`, `input` or a tuple of those.
fn parse_from(expr: &Expr) -> syn::Result<Vec<(From, Span)>> {
    let one = |e: &Expr| -> syn::Result<(From, Span)> {
        let int = |lit: &syn::ExprLit| match &lit.lit {
            Lit::Int(i) => i.base10_parse::<usize>(),
            other => Err(syn::Error::new(other.span(), "a source is an integer, `-k` or `input`")),
        };
        match e {
            Expr::Path(p) if p.path.is_ident("input") => Ok((From::Input, e.span())),
            Expr::Lit(lit) => Ok((From::Node(int(lit)?), e.span())),
            Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => match &*u.expr {
                Expr::Lit(lit) => match int(lit)? {
                    0 => Err(syn::Error::new(e.span(), "source -0 is the node itself; use -1 for the previous node")),
                    k => Ok((From::Back(k), e.span())),
                },
                other => Err(syn::Error::new(other.span(), "a source is an integer, `-k` or `input`")),
            },
            other => Err(syn::Error::new(other.span(), "a source is an integer, `-k` or `input`")),
        }
    };
    match expr {
        Expr::Tuple(t) => t.elems.iter().map(one).collect(),
        Expr::Paren(p) => Ok(vec![one(&p.expr)?]),
        e => Ok(vec![one(e)?]),
    }
}

fn parse_kind(ty: &Type) -> syn::Result<NodeKind> {
    let Type::Path(path) = ty else {
        return Err(syn::Error::new(
            ty.span(),
            "a graph node is a block, `Concat`, `Add`, `Upsample<F>` or `MaxPool<K, S[, P]>`",
        ));
    };
    let (bare, args) = type_args(path)?;
    let last = bare.segments.last().expect("non-empty").ident.to_string();
    let mut sizes = args.iter().map(|a| Size::parse(a)).collect::<syn::Result<Vec<_>>>()?;
    let zero = || Size::Lit(0, Span::call_site());
    match (last.as_str(), sizes.len()) {
        ("Concat", 0) => Ok(NodeKind::Concat),
        ("Add", 0) => Ok(NodeKind::Add),
        ("Upsample", 1) => Ok(NodeKind::Upsample(sizes.remove(0))),
        ("MaxPool", 2) => {
            let (k, s) = (sizes.remove(0), sizes.remove(0));
            Ok(NodeKind::MaxPool(Box::new([k, s, zero()])))
        }
        ("MaxPool", 3) => {
            let (k, s, p) = (sizes.remove(0), sizes.remove(0), sizes.remove(0));
            Ok(NodeKind::MaxPool(Box::new([k, s, p])))
        }
        ("Concat" | "Add", _) => Err(syn::Error::new(ty.span(), format!("`{last}` takes no sizes"))),
        ("Upsample", _) => Err(syn::Error::new(ty.span(), "`Upsample` takes its factor: `Upsample<2>`")),
        ("MaxPool", _) => Err(syn::Error::new(ty.span(), "`MaxPool` takes <KERNEL, STRIDE[, PADDING]>")),
        (name, _) if super::ops::NON_LINEAR.contains(&name) => Err(syn::Error::new(
            ty.span(),
            format!("`{name}` is not a graph node: activations run inside blocks (`#[rep::block(post(silu))]`)"),
        )),
        _ => Ok(NodeKind::Layer { path: bare, sizes, nested: false }),
    }
}
