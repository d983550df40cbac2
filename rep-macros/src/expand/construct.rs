//! `new`: building every op with its geometry, and the checks left for compile time and run time.

use crate::internals::ast::{Bank, Block, BnSpec, Branch, ConvSpec, Op, OpKind, Pair, PostOp};
use crate::internals::check::{BlockGeometry, Check, Pred};
use crate::internals::geo::{Geo, Op as GeoOp, SymKind};
use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};

/// The runtime type of one op.
pub(super) fn op_type(op: &Op) -> TokenStream {
    match &op.kind {
        OpKind::Conv(spec) if spec.identity_based => quote!(::rep::layers::IdentityBasedConv),
        OpKind::Conv(_) => quote!(::rep::layers::Conv2d),
        OpKind::ConvBn(..) => quote!(::rep::layers::ConvBn),
        OpKind::Bn(..) => quote!(::rep::layers::BatchNorm2d),
        OpKind::Scale(..) => quote!(::rep::layers::Scale),
        OpKind::ImplicitA(_) => quote!(::rep::layers::ImplicitA),
        OpKind::ImplicitM(_) => quote!(::rep::layers::ImplicitM),
        OpKind::Filter { bank: Bank::Avg, .. } => quote!(::rep::layers::AvgPool2d),
        OpKind::Filter { bank: Bank::Dct, .. } => quote!(::rep::layers::FilterBank),
        OpKind::Identity(_) => quote!(()),
    }
}

pub(super) fn branch_type(b: &Branch) -> TokenStream {
    let ops = b.ops.iter().map(op_type);
    let inner = if b.sequence { quote!((#(#ops,)*)) } else { quote!(#(#ops)*) };
    if b.optional { quote!(::core::option::Option<#inner>) } else { inner }
}

pub(super) fn hw(p: &Pair) -> TokenStream {
    let (h, w) = (p.h.runtime(), p.w.runtime());
    quote!(::rep::Hw::new(#h, #w))
}

/// Padding for a branch's spatial op so that its window centre lines up with the main branch:
/// `(2·P + d·(k − 1) − D·(K − 1)) / 2` per axis.
pub(super) fn aligned_padding(g: &BlockGeometry, main_kernel: &Pair, kernel: &Pair, dilation: &Pair) -> Pair {
    let axis = |p: &Geo, d: &Geo, k: &Geo, md: &Geo, mk: &Geo| {
        let reach = crate::internals::check::reach;
        let twice = Geo::bin(Geo::lit(2), GeoOp::Mul, p.clone());
        let num = Geo::bin(Geo::bin(twice, GeoOp::Add, reach(d, k)), GeoOp::Sub, reach(md, mk));
        Geo::bin(num, GeoOp::Div, Geo::lit(2))
    };
    Pair {
        h: axis(&g.main_padding.h, &dilation.h, &kernel.h, &g.main_dilation.h, &main_kernel.h),
        w: axis(&g.main_padding.w, &dilation.w, &kernel.w, &g.main_dilation.w, &main_kernel.w),
    }
}

pub(super) fn is_spatial(kernel: &Pair, stride: &Pair, padding: &Option<Pair>) -> bool {
    [&kernel.h, &kernel.w, &stride.h, &stride.w].iter().any(|g| g.value() != Some(1))
        || padding.as_ref().is_some_and(|p| [&p.h, &p.w].iter().any(|g| g.value() != Some(0)))
}

pub(super) fn bn_options(bn: &BnSpec) -> TokenStream {
    match (&bn.eps, &bn.momentum) {
        (None, None) => quote!(),
        (eps, momentum) => {
            let eps = eps.as_ref().map_or(quote!(1e-5), |e| quote!(#e));
            let momentum = momentum.as_ref().map_or(quote!(0.1), |m| quote!(#m));
            quote!(.with_eps_momentum(#eps, #momentum))
        }
    }
}

pub(super) fn conv_geometry(spec: &ConvSpec, padding: &Pair) -> TokenStream {
    let (cin, cout, groups) = (spec.cin.runtime(), spec.cout.runtime(), spec.groups.runtime());
    let (k, s, p, d) = (hw(&spec.kernel), hw(&spec.stride), hw(padding), hw(&spec.dilation));
    quote!(::rep::ConvGeometry::new(#cin, #cout, #k).stride(#s).padding(#p).dilation(#d).groups(#groups))
}

/// Whether op `index` of a branch carries the branch's padding: its spatial op, or, in a
/// branch without one, its first conv or filter (a lone 1×1 is padded like any kernel when the
/// main branch pads).
pub(super) fn carries_padding(ops: &[Op], index: usize) -> bool {
    let geometry = |op: &Op| match &op.kind {
        OpKind::Conv(c) | OpKind::ConvBn(c, _) => Some((c.kernel.clone(), c.stride.clone(), c.padding.clone())),
        OpKind::Filter { kernel, stride, padding, .. } => Some((kernel.clone(), stride.clone(), padding.clone())),
        _ => None,
    };
    let spatial = |op: &Op| geometry(op).is_some_and(|(k, s, p)| is_spatial(&k, &s, &p));
    match ops.iter().position(spatial) {
        Some(first) => first == index || spatial(&ops[index]),
        None => ops.iter().position(|op| geometry(op).is_some()) == Some(index),
    }
}

/// The expression building one op; `padded` when it carries its branch's padding.
pub(super) fn construct_op(op: &Op, g: &BlockGeometry, main_kernel: &Pair, padded: bool) -> TokenStream {
    let padding_of = |kernel: &Pair, _: &Pair, dilation: &Pair, padding: &Option<Pair>| match padding {
        Some(p) => p.clone(),
        None if padded => aligned_padding(g, main_kernel, kernel, dilation),
        None => Pair::lit(0),
    };
    match &op.kind {
        OpKind::Conv(spec) if spec.identity_based => {
            let geometry = conv_geometry(spec, &padding_of(&spec.kernel, &spec.stride, &spec.dilation, &spec.padding));
            quote!(::rep::layers::IdentityBasedConv::new(#geometry)?)
        }
        OpKind::Conv(spec) => {
            let geometry = conv_geometry(spec, &padding_of(&spec.kernel, &spec.stride, &spec.dilation, &spec.padding));
            let conv = if spec.bias {
                quote!(::rep::layers::Conv2d::new_with_bias(#geometry, rng)?)
            } else {
                quote!(::rep::layers::Conv2d::new(#geometry, rng)?)
            };
            if spec.identity_init { quote!({ let mut __conv = #conv; __conv.init_identity(); __conv }) } else { conv }
        }
        OpKind::ConvBn(spec, bn) => {
            let geometry = conv_geometry(spec, &padding_of(&spec.kernel, &spec.stride, &spec.dilation, &spec.padding));
            let options = bn_options(bn);
            let identity = spec.identity_init.then(|| quote!(__layer.conv.init_identity();));
            if options.is_empty() && identity.is_none() {
                quote!(::rep::layers::ConvBn::new(#geometry, rng)?)
            } else {
                quote!({
                    let mut __layer = ::rep::layers::ConvBn::new(#geometry, rng)?;
                    __layer.bn = __layer.bn #options;
                    #identity
                    __layer
                })
            }
        }
        OpKind::Bn(channels, bn) => {
            let (c, options) = (channels.runtime(), bn_options(bn));
            quote!(::rep::layers::BatchNorm2d::new(#c) #options)
        }
        OpKind::Scale(channels, init) => {
            let c = channels.runtime();
            quote!(::rep::layers::Scale::new(#c, #init))
        }
        OpKind::Filter { bank, channels, kernel, stride, padding } => {
            let p = padding_of(kernel, stride, &Pair::lit(1), padding);
            let (k, s, p) = (hw(kernel), hw(stride), hw(&p));
            match bank {
                Bank::Avg => quote!(::rep::layers::AvgPool2d::new(#k, #s, #p)),
                Bank::Dct => {
                    let (c, k) = (channels.runtime(), kernel.h.runtime());
                    quote!(::rep::layers::FilterBank::dct(#c, #k, #s, #p)?)
                }
            }
        }
        OpKind::Identity(_) => quote!(()),
        OpKind::ImplicitA(channels) => {
            let c = channels.runtime();
            quote!(::rep::layers::ImplicitA::new(#c))
        }
        OpKind::ImplicitM(channels) => {
            let c = channels.runtime();
            quote!(::rep::layers::ImplicitM::new(#c))
        }
    }
}

/// Replaces `Dim` parameters in a `when` condition by their run-time sizes.
pub(super) fn runtime_condition(block: &Block, tokens: TokenStream) -> TokenStream {
    tokens
        .into_iter()
        .map(|tt| match tt {
            TokenTree::Ident(ident) if block.symbols.0.iter().any(|(i, k)| *i == ident && *k == SymKind::Dim) => {
                TokenTree::Ident(Geo::dim_local(&ident))
            }
            TokenTree::Group(group) => {
                let mut new = proc_macro2::Group::new(group.delimiter(), runtime_condition(block, group.stream()));
                new.set_span(group.span());
                TokenTree::Group(new)
            }
            other => other,
        })
        .collect()
}

pub(super) fn runtime_check(check: &Check) -> TokenStream {
    let cond = match &check.pred {
        Pred::Eq(a, b) => {
            let (a, b) = (a.runtime(), b.runtime());
            quote!(#a == #b)
        }
        Pred::Le(a, b) => {
            let (a, b) = (a.runtime(), b.runtime());
            quote!(#a <= #b)
        }
        Pred::Odd(a) => {
            let a = a.runtime();
            quote!(#a % 2 == 1)
        }
        Pred::Divides(g, c) => {
            let (g, c) = (g.runtime(), c.runtime());
            quote!(#g != 0 && #c % #g == 0)
        }
    };
    let message = &check.message;
    quote! {
        if !(#cond) {
            return ::core::result::Result::Err(::rep::Error::Geometry(::std::string::String::from(#message)));
        }
    }
}

pub(super) fn static_assert(check: &Check) -> TokenStream {
    let fails = match &check.pred {
        Pred::Eq(a, b) => {
            let (a, b) = (a.statik(), b.statik());
            quote!(::rep::dim::differ(#a, #b))
        }
        Pred::Le(a, b) => {
            let (a, b) = (a.statik(), b.statik());
            quote!(::rep::dim::exceeds(#a, #b))
        }
        Pred::Odd(a) => {
            let a = a.statik();
            quote!(::rep::dim::is_even(#a))
        }
        Pred::Divides(g, c) => {
            let (g, c) = (g.statik(), c.statik());
            quote!(::rep::dim::not_divisible(#c, #g))
        }
    };
    let message = &check.message;
    // Spanned at the offending op: a failing assertion is reported there, not at the attribute.
    quote_spanned!(check.span=> ::core::assert!(!#fails, #message);)
}

/// The checks of optional branches as const assertions, for when every size is known at compile
/// time: the `when` condition is then decided too, and a branch that exists only under it is
/// checked only then.
fn conditional_static_asserts(block: &Block, checks: &[Check]) -> TokenStream {
    let dims = &block.dims;
    let locals: Vec<Ident> = dims.iter().map(Geo::dim_local).collect();
    let branches = block.branches.iter().enumerate().filter_map(|(index, b)| {
        let when = b.when.as_ref()?;
        let asserts: Vec<TokenStream> = checks.iter().filter(|c| c.branch == Some(index)).map(static_assert).collect();
        if asserts.is_empty() {
            return None;
        }
        let cond = runtime_condition(block, quote!(#when));
        Some(quote! {
            #[allow(non_snake_case, unused_variables)]
            let _ = if let (#(::core::option::Option::Some(#locals),)*) = (#(<#dims as ::rep::Dim>::STATIC,)*) {
                if #cond { #(#asserts)* }
            };
        })
    });
    quote!(#(#branches)*)
}

pub(super) fn arg_name(dim: &Ident) -> Ident {
    format_ident!("{}", dim.to_string().to_lowercase())
}

pub(super) fn constructor(block: &Block, g: &BlockGeometry, checks: &[Check]) -> TokenStream {
    let main_kernel = &g.summaries[g.main].kernel;
    let args = block.dims.iter().map(|d| {
        let arg = arg_name(d);
        quote!(#arg: #d)
    });
    let locals = block.dims.iter().map(|d| {
        let (arg, local) = (arg_name(d), Geo::dim_local(d));
        quote!(#[allow(non_snake_case)] let #local: usize = ::rep::Dim::size(#arg);)
    });
    let always: Vec<&Check> = checks.iter().filter(|c| c.branch.is_none()).collect();
    let statics = always.iter().map(|c| static_assert(c));
    let conditional_statics = conditional_static_asserts(block, checks);
    let runtime = always.iter().map(|c| runtime_check(c));
    let inits = block.branches.iter().enumerate().map(|(index, b)| {
        let field = &b.field;
        let ops: Vec<TokenStream> =
            b.ops.iter().enumerate().map(|(i, op)| construct_op(op, g, main_kernel, carries_padding(&b.ops, i))).collect();
        let value = if b.sequence { quote!((#(#ops,)*)) } else { quote!(#(#ops)*) };
        match &b.when {
            Some(when) => {
                let cond = runtime_condition(block, quote!(#when));
                let own = checks.iter().filter(|c| c.branch == Some(index)).map(runtime_check);
                quote!(let #field = if #cond { #(#own)* ::core::option::Option::Some(#value) } else { ::core::option::Option::None };)
            }
            None => quote!(let #field = #value;),
        }
    });
    let names = block.branches.iter().map(|b| &b.field);
    let (cin, cout) = (g.summaries[g.main].cin.runtime(), g.summaries[g.main].cout.runtime());
    let post = block.post.iter().filter_map(|p| match p {
        PostOp::Bn(bn, _) => {
            let options = bn_options(bn);
            Some(quote!(bn: ::rep::layers::BatchNorm2d::new(#cout) #options,))
        }
        PostOp::Se(hidden, _, when) => {
            let hidden = hidden.runtime();
            let names = super::se_names(block);
            let se = quote!(::rep::layers::SqueezeExcite::new(#cout, #hidden, rng)? #names);
            Some(match when {
                Some(when) => {
                    let cond = runtime_condition(block, quote!(#when));
                    quote!(se: if #cond { ::core::option::Option::Some(#se) } else { ::core::option::Option::None },)
                }
                None => quote!(se: #se,),
            })
        }
        PostOp::Activation(..) => None,
    });
    let phantom = (!block.dims.is_empty()).then(|| quote!(_dims: ::core::marker::PhantomData,));
    let signature_doc = if block.dims.is_empty() {
        "Builds the block with PyTorch's default initialization (Kaiming-uniform convs, BN in its initial state)."
            .to_owned()
    } else {
        let names: Vec<String> = block.dims.iter().map(|d| format!("`{}`", arg_name(d))).collect();
        format!(
            "Builds the block with PyTorch's default initialization. {} give the sizes: `rep::Const::<N>` checks \
             the geometry at compile time, `usize` checks it here and returns an error.",
            names.join(", ")
        )
    };
    quote! {
        #[doc = #signature_doc]
        pub fn new(#(#args,)* rng: &mut impl ::rep::rand::Rng) -> ::rep::Result<Self> {
            const { #(#statics)* #conditional_statics }
            #(#locals)*
            #(#runtime)*
            #(#inits)*
            ::core::result::Result::Ok(Self { #(#names,)* #(#post)* _channels: (#cin, #cout), #phantom })
        }
    }
}
