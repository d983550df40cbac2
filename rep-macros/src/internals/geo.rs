//! Geometry expressions: integer literals, generic parameters, `+ − · /` and the rounding real
//! models use (`max(a, b)`, `div_ceil(a, b)`, timm's `make_divisible(v, d)`), each renderable as
//! a run-time `usize` and as a compile-time `Option<usize>` (`None` when not static).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use std::fmt;
use syn::spanned::Spanned;
use syn::{BinOp, Expr, GenericArgument, Ident, Lit, Type};

/// How a generic parameter carries its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymKind {
    /// `const N: usize`: always static.
    Const,
    /// `N: Dim`: `Const<K>` (static) or `usize` (run time), passed to `new`.
    Dim,
}

/// The generic parameters a block's geometry may name.
#[derive(Default)]
pub struct Symbols(pub Vec<(Ident, SymKind)>);

impl Symbols {
    fn kind(&self, ident: &Ident) -> Option<SymKind> {
        self.0.iter().find(|(i, _)| i == ident).map(|(_, k)| *k)
    }
}

/// An arithmetic operator of a geometry expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    /// `max(a, b)`.
    Max,
    /// `div_ceil(a, b)`: `⌈a / b⌉`.
    DivCeil,
    /// `make_divisible(a, b)`: timm's width rounding ([`rep_rules::make_divisible`]).
    MakeDivisible,
    /// `reach(d, k)`: how far a kernel `k` with dilation `d` reaches ([`rep_rules::reach`]);
    /// built by the checks, not written by users.
    Reach,
}

impl Op {
    /// The function an op is written as, for those written `f(a, b)`.
    fn function(self) -> Option<&'static str> {
        match self {
            Op::Max => Some("max"),
            Op::DivCeil => Some("div_ceil"),
            Op::MakeDivisible => Some("make_divisible"),
            Op::Reach => Some("reach"),
            _ => None,
        }
    }

    /// `a op b` with the generated code's semantics (`−` saturates, division by 0 is 0).
    pub fn apply(self, a: usize, b: usize) -> Option<usize> {
        match self {
            Op::Add => a.checked_add(b),
            Op::Sub => a.checked_sub(b),
            Op::Mul => a.checked_mul(b),
            Op::Div => a.checked_div(b),
            Op::Max => Some(a.max(b)),
            Op::DivCeil => a.checked_div(b).map(|_| a.div_ceil(b)),
            Op::MakeDivisible => Some(rep_rules::make_divisible(a, b)),
            Op::Reach => Some(rep_rules::reach(a, b)),
        }
    }
}

/// A geometry expression.
#[derive(Clone, Debug)]
pub enum Geo {
    Lit(usize),
    Sym(Ident, SymKind),
    Bin(Box<Geo>, Op, Box<Geo>),
}

const HOW: &str = "geometry is an integer literal, a generic parameter (`N: Dim` or `const N: usize`), + - * / of \
                   those, or max(a, b), div_ceil(a, b), make_divisible(a, b)";

impl Geo {
    pub fn lit(v: usize) -> Geo {
        Geo::Lit(v)
    }

    /// `a op b`, folded when both are literals.
    pub fn bin(a: Geo, op: Op, b: Geo) -> Geo {
        let folded = Geo::Bin(Box::new(a), op, Box::new(b));
        match folded.value() {
            Some(v) => Geo::Lit(v),
            None => folded,
        }
    }

    pub fn from_expr(expr: &Expr, syms: &Symbols) -> syn::Result<Geo> {
        match expr {
            Expr::Lit(lit) => match &lit.lit {
                Lit::Int(int) if int.suffix().is_empty() || int.suffix() == "usize" => {
                    Ok(Geo::Lit(int.base10_parse()?))
                }
                _ => Err(syn::Error::new(lit.span(), format!("expected an integer; {HOW}"))),
            },
            Expr::Path(path) => match path.path.get_ident() {
                Some(ident) => Geo::symbol(ident, syms),
                None => Err(syn::Error::new(path.span(), HOW)),
            },
            Expr::Paren(inner) => Geo::from_expr(&inner.expr, syms),
            Expr::Group(inner) => Geo::from_expr(&inner.expr, syms),
            Expr::Block(block) if block.block.stmts.len() == 1 => match &block.block.stmts[0] {
                syn::Stmt::Expr(inner, None) => Geo::from_expr(inner, syms),
                other => Err(syn::Error::new(other.span(), HOW)),
            },
            Expr::Binary(bin) => {
                let op = match bin.op {
                    BinOp::Add(_) => Op::Add,
                    BinOp::Sub(_) => Op::Sub,
                    BinOp::Mul(_) => Op::Mul,
                    BinOp::Div(_) => Op::Div,
                    _ => return Err(syn::Error::new(bin.op.span(), HOW)),
                };
                Ok(Geo::bin(Geo::from_expr(&bin.left, syms)?, op, Geo::from_expr(&bin.right, syms)?))
            }
            Expr::Call(call) => {
                let name = match &*call.func {
                    Expr::Path(path) => path.path.get_ident().map(Ident::to_string),
                    _ => None,
                };
                let op =
                    [Op::Max, Op::DivCeil, Op::MakeDivisible].into_iter().find(|op| op.function() == name.as_deref());
                match (op, call.args.len()) {
                    (Some(op), 2) => {
                        Ok(Geo::bin(Geo::from_expr(&call.args[0], syms)?, op, Geo::from_expr(&call.args[1], syms)?))
                    }
                    (Some(op), n) => Err(syn::Error::new(
                        call.span(),
                        format!("`{}` takes two arguments, found {n}", op.function().expect("a function")),
                    )),
                    (None, _) => Err(syn::Error::new(call.func.span(), HOW)),
                }
            }
            other => Err(syn::Error::new(other.span(), HOW)),
        }
    }

    pub fn from_type(ty: &Type, syms: &Symbols) -> syn::Result<Geo> {
        match ty {
            Type::Path(path) if path.qself.is_none() => match path.path.get_ident() {
                Some(ident) => Geo::symbol(ident, syms),
                None => Err(syn::Error::new(path.span(), HOW)),
            },
            Type::Paren(inner) => Geo::from_type(&inner.elem, syms),
            Type::Group(inner) => Geo::from_type(&inner.elem, syms),
            other => Err(syn::Error::new(other.span(), HOW)),
        }
    }

    pub fn from_generic_arg(arg: &GenericArgument, syms: &Symbols) -> syn::Result<Geo> {
        match arg {
            GenericArgument::Type(ty) => Geo::from_type(ty, syms),
            GenericArgument::Const(expr) => Geo::from_expr(expr, syms),
            other => Err(syn::Error::new(other.span(), HOW)),
        }
    }

    fn symbol(ident: &Ident, syms: &Symbols) -> syn::Result<Geo> {
        match syms.kind(ident) {
            Some(kind) => Ok(Geo::Sym(ident.clone(), kind)),
            None => Err(syn::Error::new(
                ident.span(),
                format!(
                    "unknown dimension `{ident}`: declare it as a generic parameter of the block (`{ident}: rep::Dim` or `const {ident}: usize`)"
                ),
            )),
        }
    }

    /// The value when the expression is made of literals only.
    pub fn value(&self) -> Option<usize> {
        match self {
            Geo::Lit(v) => Some(*v),
            Geo::Sym(..) => None,
            Geo::Bin(a, op, b) => op.apply(a.value()?, b.value()?),
        }
    }

    /// True when both sides are the same expression, written the same way.
    pub fn same_as(&self, other: &Geo) -> bool {
        self.to_string() == other.to_string()
    }

    /// The name of the local `usize` holding a `Dim` parameter's size inside generated code.
    pub fn dim_local(ident: &Ident) -> Ident {
        format_ident!("__rep_dim_{}", ident)
    }

    /// The run-time value, a `usize` expression (never panics: `−` saturates, `/ 0` is 0).
    pub fn runtime(&self) -> TokenStream {
        match self {
            Geo::Lit(v) => quote!(#v),
            Geo::Sym(ident, SymKind::Const) => quote!(#ident),
            Geo::Sym(ident, SymKind::Dim) => {
                let local = Geo::dim_local(ident);
                quote!(#local)
            }
            Geo::Bin(a, op, b) => {
                let (a, b) = (a.runtime(), b.runtime());
                match op {
                    Op::Add => quote!((#a + #b)),
                    Op::Sub => quote!((#a).saturating_sub(#b)),
                    Op::Mul => quote!((#a * #b)),
                    Op::Div => quote!((#a).checked_div(#b).unwrap_or(0)),
                    Op::Max => quote!(::core::cmp::max(#a, #b)),
                    Op::DivCeil => quote!(::rep::dim::div_ceil(#a, #b)),
                    Op::MakeDivisible => quote!(::rep::dim::make_divisible(#a, #b)),
                    Op::Reach => quote!(::rep::dim::reach(#a, #b)),
                }
            }
        }
    }

    /// The compile-time value, an `Option<usize>` constant expression.
    pub fn statik(&self) -> TokenStream {
        match self {
            Geo::Lit(v) => quote!(::core::option::Option::Some(#v)),
            Geo::Sym(ident, SymKind::Const) => quote!(::core::option::Option::Some(#ident)),
            Geo::Sym(ident, SymKind::Dim) => quote!(<#ident as ::rep::Dim>::STATIC),
            Geo::Bin(a, op, b) => {
                let (a, b) = (a.statik(), b.statik());
                let f = match op {
                    Op::Add => quote!(add),
                    Op::Sub => quote!(sub),
                    Op::Mul => quote!(mul),
                    Op::Div => quote!(div),
                    Op::Max => quote!(option_max),
                    Op::DivCeil => quote!(option_div_ceil),
                    Op::MakeDivisible => quote!(option_make_divisible),
                    Op::Reach => quote!(option_reach),
                };
                quote!(::rep::dim::#f(#a, #b))
            }
        }
    }
}

impl fmt::Display for Geo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Geo::Lit(v) => write!(f, "{v}"),
            Geo::Sym(ident, _) => write!(f, "{ident}"),
            Geo::Bin(a, op, b) if op.function().is_some() => {
                write!(f, "{}({a}, {b})", op.function().expect("a function"))
            }
            Geo::Bin(a, op, b) => {
                let op = match op {
                    Op::Add => "+",
                    Op::Sub => "-",
                    Op::Mul => "*",
                    _ => "/",
                };
                let side = |g: &Geo| match g {
                    Geo::Bin(..) => format!("({g})"),
                    _ => g.to_string(),
                };
                write!(f, "{} {op} {}", side(a), side(b))
            }
        }
    }
}
