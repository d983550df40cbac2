//! The block IR and its parsing from the annotated struct: blocks, branches, ops, geometry.

use super::ctxt::Ctxt;
use super::geo::{Geo, SymKind, Symbols};
pub use super::ops::NON_LINEAR;
use super::ops::{check_bn_options, parse_op};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, GenericArgument, GenericParam, Ident, ItemStruct, Lit, LitFloat, PathArguments, Type};

/// A (height, width) pair of geometry expressions.
#[derive(Clone, Debug)]
pub struct Pair {
    pub h: Geo,
    pub w: Geo,
}

impl Pair {
    pub fn square(g: Geo) -> Pair {
        Pair { h: g.clone(), w: g }
    }

    pub fn lit(v: usize) -> Pair {
        Pair::square(Geo::lit(v))
    }
}

/// BatchNorm options; `None` keeps the runtime's defaults (1e-5, 0.1).
#[derive(Clone, Debug, Default)]
pub struct BnSpec {
    pub eps: Option<LitFloat>,
    pub momentum: Option<LitFloat>,
}

/// A convolution's geometry as written.
#[derive(Clone, Debug)]
pub struct ConvSpec {
    pub cin: Geo,
    pub cout: Geo,
    pub kernel: Pair,
    pub stride: Pair,
    /// `None`: chosen so the window centre lines up with the block's fused kernel.
    pub padding: Option<Pair>,
    pub dilation: Pair,
    pub groups: Geo,
    pub bias: bool,
    /// Start from the identity (`IdentityInit<true>`, 1×1 only).
    pub identity_init: bool,
    /// Stored as its difference from the identity, `W = I + Δ` (`IdentityBased<true>`, 1×1
    /// from C to C only): DBB's `IdentityBasedConv1x1`.
    pub identity_based: bool,
}

/// Which constant filters a [`OpKind::Filter`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bank {
    /// `AvgPool<C, K[, S]>`: `1/k²` everywhere (count_include_pad).
    Avg,
    /// `DctPrior<C, K[, S]>`: OREPA's frequency prior.
    Dct,
}

/// One linear operation inside a branch.
#[derive(Clone, Debug)]
pub enum OpKind {
    Conv(ConvSpec),
    ConvBn(ConvSpec, BnSpec),
    Bn(Geo, BnSpec),
    Scale(Geo, LitFloat),
    /// A fixed per-channel filter: average pooling or OREPA's DCT prior.
    Filter {
        bank: Bank,
        channels: Geo,
        kernel: Pair,
        stride: Pair,
        padding: Option<Pair>,
    },
    Identity(Geo),
    /// YOLOR's ImplicitA: adds a learned vector before the conv that follows.
    ImplicitA(Geo),
    /// YOLOR's ImplicitM: multiplies by a learned vector.
    ImplicitM(Geo),
}

#[derive(Clone, Debug)]
pub struct Op {
    pub kind: OpKind,
    pub span: Span,
    /// Weight name inside the branch (`"0"`, `"idconv1"`, …); empty for a single-op branch.
    pub name: String,
}

/// A field of the block: one branch.
pub struct Branch {
    pub field: Ident,
    /// The weight name (field name, or `rename`).
    pub name: String,
    pub name_span: Span,
    pub when: Option<Expr>,
    pub optional: bool,
    pub sequence: bool,
    pub ops: Vec<Op>,
    pub attrs: Vec<Attribute>,
    pub span: Span,
}

/// An operation after the sum of the branches.
pub enum PostOp {
    /// BatchNorm after the sum (OREPA): folded by `fuse`.
    Bn(BnSpec, Span),
    /// An activation: stays in the fused struct.
    Activation(TokenStream),
    /// Squeeze-and-excitation with `hidden` channels, present when the condition holds (always
    /// without one): stays in the fused struct.
    Se(Geo, Span, Option<Expr>),
}

/// The whole block.
pub struct Block {
    pub item: ItemStruct,
    pub symbols: Symbols,
    /// `Dim` type parameters in order: the arguments of `new`.
    pub dims: Vec<Ident>,
    pub branches: Vec<Branch>,
    pub post: Vec<PostOp>,
    pub fused_name: String,
    pub kernel: Option<(Pair, Span)>,
    /// The names of the SE's two convolutions (`se(names("reduce", "expand"))`), if not `down`/`up`.
    pub se_names: Option<(String, String)>,
}

impl Block {
    pub fn parse(cx: &Ctxt, args: TokenStream, item: ItemStruct) -> Option<Block> {
        let symbols = parse_generics(cx, &item);
        let dims = symbols.0.iter().filter(|(_, k)| *k == SymKind::Dim).map(|(i, _)| i.clone()).collect();
        let mut block = Block {
            item,
            symbols,
            dims,
            branches: Vec::new(),
            post: Vec::new(),
            fused_name: "reparam".to_owned(),
            kernel: None,
            se_names: None,
        };
        block.parse_args(cx, args);
        let fields = match &block.item.fields {
            syn::Fields::Named(named) => named.named.iter().cloned().collect::<Vec<_>>(),
            other => {
                cx.error_at(other.span(), "a rep block is a struct with named fields, one per branch");
                return None;
            }
        };
        if fields.is_empty() {
            cx.error_at(block.item.ident.span(), "a rep block needs at least one branch field");
        }
        for field in fields {
            if let Some(branch) = Branch::parse(cx, &block.symbols, field) {
                block.branches.push(branch);
            }
        }
        Some(block)
    }

    fn parse_args(&mut self, cx: &Ctxt, args: TokenStream) {
        let parser = syn::meta::parser(|meta| {
            let key = meta.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
            match key.as_str() {
                "post" => meta.parse_nested_meta(|op| {
                    let post = self.parse_post_op(&op)?;
                    self.post.push(post);
                    Ok(())
                }),
                "fused" => {
                    let name: syn::LitStr = meta.value()?.parse()?;
                    self.fused_name = name.value();
                    Ok(())
                }
                "kernel" => {
                    let expr: Expr = meta.value()?.parse()?;
                    self.kernel = Some((parse_pair_expr(&expr, &self.symbols)?, expr.span()));
                    Ok(())
                }
                _ => Err(meta.error("unknown block argument; expected post(...), kernel = K or fused = \"name\"")),
            }
        });
        if let Err(e) = parser.parse2(args) {
            cx.syn_error(e);
        }
    }

    /// One op of `post(...)`.
    fn parse_post_op(&mut self, op: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<PostOp> {
        let name = op.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        let span = op.path.span();
        let activation = PostOp::Activation;
        Ok(match name.as_str() {
            "bn" => {
                let mut spec = BnSpec::default();
                if op.input.peek(syn::token::Paren) {
                    op.parse_nested_meta(|m| parse_bn_option(&mut spec, m))?;
                }
                check_bn_options(spec.eps.as_ref(), spec.momentum.as_ref())?;
                PostOp::Bn(spec, span)
            }
            "relu" => activation(quote!(Relu)),
            "silu" => activation(quote!(Silu)),
            "sigmoid" => activation(quote!(Sigmoid)),
            "identity" => activation(quote!(Identity)),
            "leaky_relu" => {
                let content;
                syn::parenthesized!(content in op.input);
                let slope: LitFloat = content.parse()?;
                activation(quote!(LeakyRelu(#slope)))
            }
            "se" => self.parse_se(op, span)?,
            _ => {
                return Err(op.error(
                    "unknown post-sum op; expected bn, relu, silu, sigmoid, identity, leaky_relu(SLOPE) or se(hidden = C)",
                ));
            }
        })
    }

    /// `se(hidden = H[, when = COND][, names("reduce", "expand")])`.
    fn parse_se(&mut self, op: &syn::meta::ParseNestedMeta<'_>, span: Span) -> syn::Result<PostOp> {
        let (mut hidden, mut when, mut se_names) = (None, None, None);
        op.parse_nested_meta(|m| {
            if m.path.is_ident("hidden") {
                let expr: Expr = m.value()?.parse()?;
                hidden = Some(Geo::from_expr(&expr, &self.symbols)?);
                Ok(())
            } else if m.path.is_ident("when") {
                when = Some(m.value()?.parse()?);
                Ok(())
            } else if m.path.is_ident("names") {
                let content;
                syn::parenthesized!(content in m.input);
                let names = content.parse_terminated(<syn::LitStr as syn::parse::Parse>::parse, syn::Token![,])?;
                match names.iter().map(syn::LitStr::value).collect::<Vec<_>>()[..] {
                    [ref down, ref up] => {
                        se_names = Some((down.clone(), up.clone()));
                        Ok(())
                    }
                    _ => Err(m.error("`names` of `se` takes two names: the reducing and the expanding conv")),
                }
            } else {
                Err(m.error(
                    "unknown argument of `se`; expected `hidden = CHANNELS`, `when = CONDITION` or `names(\"reduce\", \"expand\")`",
                ))
            }
        })?;
        if se_names.is_some() {
            self.se_names = se_names;
        }
        match hidden {
            Some(h) => Ok(PostOp::Se(h, span, when)),
            None => Err(op.error("`se` needs `hidden = CHANNELS`")),
        }
    }
}

fn parse_bn_option(spec: &mut BnSpec, meta: syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.path.is_ident("eps") {
        spec.eps = Some(meta.value()?.parse()?);
    } else if meta.path.is_ident("momentum") {
        spec.momentum = Some(meta.value()?.parse()?);
    } else {
        return Err(meta.error("unknown BatchNorm argument; expected eps or momentum"));
    }
    Ok(())
}

fn parse_generics(cx: &Ctxt, item: &ItemStruct) -> Symbols {
    let mut symbols = Symbols::default();
    for param in &item.generics.params {
        match param {
            GenericParam::Type(tp) => symbols.0.push((tp.ident.clone(), SymKind::Dim)),
            GenericParam::Const(cp) => {
                if !matches!(&cp.ty, Type::Path(p) if p.path.is_ident("usize")) {
                    cx.error_at(cp.ty.span(), "const generic dimensions must be `usize`");
                }
                symbols.0.push((cp.ident.clone(), SymKind::Const));
            }
            GenericParam::Lifetime(lt) => {
                cx.error_at(lt.span(), "a rep block holds its weights; it takes no lifetime parameters")
            }
        }
    }
    symbols
}

/// `K` (square) or `KHxKW` written as one literal (`1x3`).
pub(super) fn parse_pair_expr(expr: &Expr, syms: &Symbols) -> syn::Result<Pair> {
    if let Expr::Lit(syn::ExprLit { lit: Lit::Int(int), .. }) = expr {
        // `1x3` lexes as the integer 1 with suffix `x3`; `0x2` lexes as a hexadecimal literal.
        let text = int.to_string();
        let split = match text.strip_prefix("0x") {
            Some(w) => Some(("0".to_owned(), w.to_owned())),
            None => int.suffix().strip_prefix('x').map(|w| (int.base10_digits().to_owned(), w.to_owned())),
        };
        if let Some((h, w)) = split {
            let bad = || syn::Error::new(int.span(), "expected `HxW` with decimal sizes, e.g. `1x3`");
            let h: usize = h.parse().map_err(|_| bad())?;
            let w: usize = w.parse().map_err(|_| bad())?;
            return Ok(Pair { h: Geo::lit(h), w: Geo::lit(w) });
        }
    }
    Ok(Pair::square(Geo::from_expr(expr, syms)?))
}

pub(super) fn parse_pair_arg(arg: &GenericArgument, syms: &Symbols) -> syn::Result<Pair> {
    match arg {
        GenericArgument::Const(expr) => parse_pair_expr(expr, syms),
        other => Ok(Pair::square(Geo::from_generic_arg(other, syms)?)),
    }
}

/// Field attributes: `#[rep(rename = "…", when = EXPR, names("a", "b"))]`.
#[derive(Default)]
struct FieldAttrs {
    rename: Option<(String, Span)>,
    when: Option<Expr>,
    names: Option<(Vec<String>, Span)>,
}

fn parse_field_attrs(cx: &Ctxt, attrs: &[Attribute]) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("rep")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                let name: syn::LitStr = meta.value()?.parse()?;
                out.rename = Some((name.value(), name.span()));
            } else if meta.path.is_ident("when") {
                out.when = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("names") {
                let content;
                syn::parenthesized!(content in meta.input);
                let names = content.parse_terminated(|s| s.parse::<syn::LitStr>(), syn::Token![,])?;
                out.names = Some((names.iter().map(|n| n.value()).collect(), meta.path.span()));
            } else {
                return Err(meta
                    .error("unknown field argument; expected rename = \"name\", when = CONDITION or names(\"a\", …)"));
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    out
}

impl Branch {
    fn parse(cx: &Ctxt, syms: &Symbols, field: syn::Field) -> Option<Branch> {
        let ident = field.ident.clone()?;
        let attrs = parse_field_attrs(cx, &field.attrs);
        let (name, name_span) = attrs.rename.clone().unwrap_or((ident.to_string(), ident.span()));
        let mut ty = &field.ty;
        let mut optional = false;
        if let Some(inner) = option_inner(ty) {
            optional = true;
            ty = inner;
        }
        match (&attrs.when, optional) {
            (Some(when), false) => cx.error_at(when.span(), "a branch with `when` must have type `Option<…>`"),
            (None, true) => cx
                .error_at(field.ty.span(), "an `Option` branch needs `#[rep(when = CONDITION)]` saying when it exists"),
            _ => {}
        }
        let (elements, sequence): (Vec<&Type>, bool) = match ty {
            Type::Tuple(tuple) => (tuple.elems.iter().collect(), true),
            other => (vec![other], false),
        };
        if sequence && elements.is_empty() {
            cx.error_at(ty.span(), "an empty tuple is not a branch; list its ops, e.g. `(Conv<C, M, 1>, Bn<M>)`");
        }
        let names: Vec<String> = match &attrs.names {
            Some((names, span)) => {
                if names.len() != elements.len() {
                    cx.error_at(*span, format!("`names` lists {} names for {} ops", names.len(), elements.len()));
                }
                names.clone()
            }
            None if sequence => (0..elements.len()).map(|i| i.to_string()).collect(),
            None => vec![String::new()],
        };
        let mut ops = Vec::new();
        for (i, element) in elements.iter().enumerate() {
            match parse_op(syms, element) {
                Ok(kind) => {
                    ops.push(Op { kind, span: element.span(), name: names.get(i).cloned().unwrap_or_default() })
                }
                Err(e) => cx.syn_error(e),
            }
        }
        let attrs_kept = field.attrs.iter().filter(|a| !a.path().is_ident("rep")).cloned().collect();
        Some(Branch {
            span: field.span(),
            field: ident,
            name,
            name_span,
            when: attrs.when,
            optional,
            sequence,
            ops,
            attrs: attrs_kept,
        })
    }
}

fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    match &last.arguments {
        PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            GenericArgument::Type(inner) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}
