//! The model IR: fields that are blocks, stages (`Vec` of a block, repeated), global pooling and
//! a linear head, in forward order; parsed and checked for the order of 4-D and 2-D layers.

use super::ctxt::Ctxt;
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, GenericArgument, Ident, ItemStruct, Lit, PathArguments, Type};

/// A size argument of a block or layer: a literal (static) or an expression (run time).
pub enum Size {
    Lit(usize, Span),
    Expr(Expr),
}

impl Size {
    pub(crate) fn parse(arg: &GenericArgument) -> syn::Result<Size> {
        match arg {
            GenericArgument::Const(Expr::Lit(syn::ExprLit { lit: Lit::Int(int), .. })) => {
                Ok(Size::Lit(int.base10_parse()?, int.span()))
            }
            GenericArgument::Const(Expr::Block(block)) if block.block.stmts.len() == 1 => match &block.block.stmts[0] {
                syn::Stmt::Expr(expr, None) => Ok(Size::Expr(expr.clone())),
                other => Err(syn::Error::new(other.span(), "expected a size expression")),
            },
            GenericArgument::Const(expr) => Ok(Size::Expr(expr.clone())),
            GenericArgument::Type(Type::Path(p)) if p.path.get_ident().is_some() => {
                Ok(Size::Expr(syn::parse2(p.to_token_stream())?))
            }
            other => Err(syn::Error::new(
                other.span(),
                "a size is an integer literal, a parameter of `new`, or an expression in braces: `{width * 2}`",
            )),
        }
    }

    /// The `usize` value.
    pub fn runtime(&self) -> TokenStream {
        match self {
            Size::Lit(v, _) => quote!(#v),
            Size::Expr(e) => quote!(((#e) as usize)),
        }
    }

    /// `Const<N>` for a literal, `usize` otherwise.
    pub fn dim_type(&self) -> TokenStream {
        match self {
            Size::Lit(v, span) => quote_spanned!(*span=> ::rep::Const<#v>),
            Size::Expr(e) => quote_spanned!(e.span()=> usize),
        }
    }

    /// The argument of `new`: `Const::<N>` or the `usize` value.
    pub fn dim_value(&self) -> TokenStream {
        match self {
            Size::Lit(v, _) => quote!(::rep::Const::<#v>),
            Size::Expr(_) => self.runtime(),
        }
    }

    /// The compile-time value, when literal.
    pub fn statik(&self) -> TokenStream {
        match self {
            Size::Lit(v, _) => quote!(::core::option::Option::Some(#v)),
            Size::Expr(_) => quote!(::core::option::Option::None),
        }
    }
}

/// What a model field is.
pub enum Kind {
    /// One block; `path` is the block type without arguments.
    Block { path: syn::Path, sizes: Vec<Size> },
    /// `repeat` blocks with `sizes` (which may use the block's position, named `index`);
    /// each after the first chained to the one before by `Block::STAGE`.
    Stage { path: syn::Path, sizes: Vec<Size>, repeat: Expr, index: Option<Ident> },
    /// `[N, C, H, W] → [N, C]`.
    Pool,
    /// `[N, in] → [N, out]`.
    Linear { input: Size, output: Size },
}

pub struct Field {
    pub ident: Ident,
    pub name: String,
    pub name_span: Span,
    pub kind: Kind,
    pub span: Span,
    pub attrs: Vec<syn::Attribute>,
}

pub struct Model {
    pub item: ItemStruct,
    /// Arguments of `new`, written as in a function signature.
    pub params: Vec<syn::FnArg>,
    pub fields: Vec<Field>,
}

impl Field {
    /// The block type with its sizes as `Const<N>` / `usize`, as the user's tokens spell it
    /// (so that a mistake in it is reported at the field).
    fn spelled_block_type(&self) -> Option<TokenStream> {
        match &self.kind {
            Kind::Block { path, sizes } => {
                let dims = sizes.iter().map(Size::dim_type);
                Some(quote!(#path<#(#dims),*>))
            }
            Kind::Stage { path, sizes, .. } => {
                let dims = sizes.iter().map(|s| match s {
                    Size::Lit(_, span) => quote_spanned!(*span=> usize),
                    Size::Expr(e) => quote_spanned!(e.span()=> usize),
                });
                Some(quote!(#path<#(#dims),*>))
            }
            _ => None,
        }
    }

    /// The name of the alias [`Field::block_alias`] defines.
    pub fn block_type(&self, model: &Ident) -> Option<Ident> {
        self.spelled_block_type().map(|_| format_ident!("__rep_{}_{}", model, self.ident))
    }

    /// `type __rep_Model_field = Block<sizes…>;`: every use of a field's block type goes through
    /// this one alias, so that a misspelled block, a missing size or a block that cannot be a
    /// model field is one error at the field's type, not one per generated use.
    pub fn block_alias(&self, model: &Ident, vis: &syn::Visibility) -> Option<TokenStream> {
        let (alias, ty) = (self.block_type(model)?, self.spelled_block_type()?);
        Some(quote! {
            #[doc(hidden)]
            #[allow(non_camel_case_types)]
            #vis type #alias = #ty;
        })
    }
}

impl Model {
    pub fn parse(cx: &Ctxt, args: TokenStream, item: ItemStruct) -> Model {
        let mut params = Vec::new();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("new") {
                params = super::attrs::new_params(&meta)?;
                Ok(())
            } else {
                Err(meta.error("unknown model argument; expected new(name: Type, …)"))
            }
        });
        if let Err(e) = parser.parse2(args) {
            cx.syn_error(e);
        }
        if !item.generics.params.is_empty() {
            cx.error_at(
                item.generics.span(),
                "a rep model takes its sizes as arguments of `new` (`#[rep::model(new(width: usize))]`), not generics",
            );
        }
        let mut fields = Vec::new();
        match &item.fields {
            syn::Fields::Named(named) => {
                for field in &named.named {
                    if let Some(f) = parse_field(cx, field) {
                        fields.push(f);
                    }
                }
            }
            other => cx.error_at(other.span(), "a rep model is a struct with named fields, in forward order"),
        }
        let model = Model { item, params, fields };
        model.check(cx);
        model
    }

    /// Layers must go 4-D blocks → pool → linear; names must be unique.
    fn check(&self, cx: &Ctxt) {
        let mut flat = false;
        let mut names: Vec<&str> = Vec::new();
        for f in &self.fields {
            if names.contains(&f.name.as_str()) {
                cx.error_at(
                    f.name_span,
                    format!("weight name `{}` is used twice; rename one with #[rep(rename = \"...\")]", f.name),
                );
            }
            names.push(&f.name);
            match (&f.kind, flat) {
                (Kind::Block { .. } | Kind::Stage { .. }, true) => cx.error_at(
                    f.span,
                    format!("block `{}` comes after the global pool; blocks take [N, C, H, W] inputs", f.ident),
                ),
                (Kind::Pool, true) => cx.error_at(f.span, "the input is already pooled"),
                (Kind::Linear { .. }, false) => cx.error_at(
                    f.span,
                    format!("`{}` is a Linear layer on [N, C, H, W]; put a `GlobalAvgPool` field before it", f.ident),
                ),
                (Kind::Pool, false) => flat = true,
                _ => {}
            }
        }
        if self.fields.is_empty() {
            cx.error_at(self.item.ident.span(), "a rep model needs at least one field");
        }
    }

    /// True when the output is `[N, features]`.
    pub fn flat_output(&self) -> bool {
        self.fields.iter().any(|f| matches!(f.kind, Kind::Pool))
    }
}

fn parse_field(cx: &Ctxt, field: &syn::Field) -> Option<Field> {
    let ident = field.ident.clone()?;
    let mut rename = None;
    let mut repeat: Option<Expr> = None;
    let mut index: Option<Ident> = None;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("rep")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                let name: syn::LitStr = meta.value()?.parse()?;
                rename = Some((name.value(), name.span()));
            } else if meta.path.is_ident("repeat") {
                repeat = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("index") {
                index = Some(meta.value()?.parse()?);
            } else {
                return Err(
                    meta.error("unknown field argument; expected rename = \"name\", repeat = COUNT or index = NAME")
                );
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    let (name, name_span) = rename.unwrap_or((ident.to_string(), ident.span()));
    let attrs = field.attrs.iter().filter(|a| !a.path().is_ident("rep")).cloned().collect();
    let kind = match parse_kind(&field.ty, repeat.clone(), index) {
        Ok(kind) => kind,
        Err(e) => {
            cx.syn_error(e);
            return None;
        }
    };
    if repeat.is_some() && !matches!(kind, Kind::Stage { .. }) {
        cx.error_at(field.ty.span(), "`repeat` needs a `Vec<Block<…>>` field");
    }
    Some(Field { ident, name, name_span, kind, span: field.ty.span(), attrs })
}

pub(crate) fn type_args(path: &syn::TypePath) -> syn::Result<(syn::Path, Vec<&GenericArgument>)> {
    let mut bare = path.path.clone();
    let last = bare.segments.last_mut().expect("non-empty path");
    let args = match &path.path.segments.last().expect("non-empty").arguments {
        PathArguments::AngleBracketed(a) => a.args.iter().collect(),
        PathArguments::None => Vec::new(),
        other => return Err(syn::Error::new(other.span(), "expected `Block<sizes…>`")),
    };
    last.arguments = PathArguments::None;
    Ok((bare, args))
}

fn parse_kind(ty: &Type, repeat: Option<Expr>, index: Option<Ident>) -> syn::Result<Kind> {
    let Type::Path(path) = ty else {
        return Err(syn::Error::new(
            ty.span(),
            "a model field is a block, `Vec<Block<…>>`, `GlobalAvgPool` or `Linear<IN, OUT>`",
        ));
    };
    let (bare, args) = type_args(path)?;
    let last = bare.segments.last().expect("non-empty").ident.to_string();
    let sizes = |args: &[&GenericArgument]| args.iter().map(|a| Size::parse(a)).collect::<syn::Result<Vec<_>>>();
    match last.as_str() {
        "Vec" => {
            let Some(GenericArgument::Type(Type::Path(inner))) = args.first() else {
                return Err(syn::Error::new(ty.span(), "expected `Vec<Block<sizes…>>`"));
            };
            let Some(repeat) = repeat else {
                return Err(syn::Error::new(ty.span(), "a `Vec` stage needs #[rep(repeat = COUNT)]"));
            };
            let (path, inner_args) = type_args(inner)?;
            Ok(Kind::Stage { path, sizes: sizes(&inner_args)?, repeat, index })
        }
        "GlobalAvgPool" => Ok(Kind::Pool),
        name if super::ast::NON_LINEAR.contains(&name) => Err(syn::Error::new(
            ty.span(),
            format!(
                "`{name}` is not a model field: activations run inside blocks, after the sum of the branches \
                 (`#[rep::block(post(relu))]`)"
            ),
        )),
        "Linear" => match sizes(&args)?.as_mut_slice() {
            [input, output] => Ok(Kind::Linear {
                input: std::mem::replace(input, Size::Lit(0, Span::call_site())),
                output: std::mem::replace(output, Size::Lit(0, Span::call_site())),
            }),
            _ => Err(syn::Error::new(ty.span(), "`Linear` takes <IN, OUT>")),
        },
        _ => Ok(Kind::Block { path: bare, sizes: sizes(&args)? }),
    }
}
