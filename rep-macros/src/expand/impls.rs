//! `Parameters`, `Costs` and `rep::Block` for a block.

use super::branch::op_access;
use crate::internals::ast::{Block, OpKind, PostOp};
use crate::internals::check::BlockGeometry;
use crate::internals::geo::{Geo, SymKind};
use proc_macro2::TokenStream;
use quote::quote;

/// Which `Parameters` method a visit implements.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// `visit(&self, prefix, f)`.
    Ref,
    /// `visit_mut(&mut self, prefix, f)`.
    Mut,
    /// `visit_counters(&self, prefix, f)`.
    Counters,
    /// `visit_counters_mut(&mut self, prefix, f)`.
    CountersMut,
    /// `visit_batch_norms(&mut self, f)`.
    BatchNorms,
}

impl Visit {
    /// The method, how `self` is borrowed, and whether the call takes a name.
    pub fn parts(self) -> (TokenStream, TokenStream, bool) {
        match self {
            Visit::Ref => (quote!(visit), quote!(&), true),
            Visit::Mut => (quote!(visit_mut), quote!(&mut), true),
            Visit::Counters => (quote!(visit_counters), quote!(&), true),
            Visit::CountersMut => (quote!(visit_counters_mut), quote!(&mut), true),
            Visit::BatchNorms => (quote!(visit_batch_norms), quote!(&mut), false),
        }
    }
}

pub(super) fn visit(block: &Block, mode: Visit) -> TokenStream {
    let (method, borrow, named) = mode.parts();
    let join = quote!(::rep::layers::join);
    let call = |layer: TokenStream, path: TokenStream| {
        if named {
            quote!(::rep::layers::Parameters::#method(#borrow #layer, #path, f);)
        } else {
            quote!(::rep::layers::Parameters::#method(#borrow #layer, f);)
        }
    };
    let branches = block.branches.iter().map(|b| {
        let (field, name) = (&b.field, &b.name);
        let base = quote!(__b);
        let ops =
            b.ops.iter().enumerate().filter(|(_, op)| !matches!(op.kind, OpKind::Filter { .. } | OpKind::Identity(_)));
        let calls = ops.map(|(i, op)| {
            let layer = op_access(b, i, &base);
            let path = if b.sequence {
                let op_name = &op.name;
                quote!(&#join(&#join(prefix, #name), #op_name))
            } else {
                quote!(&#join(prefix, #name))
            };
            call(layer, path)
        });
        let calls: Vec<_> = calls.collect();
        if b.optional {
            quote!(if let ::core::option::Option::Some(__b) = #borrow self.#field { #(#calls)* })
        } else {
            quote!({ let __b = #borrow self.#field; #(#calls)* })
        }
    });
    let post = block.post.iter().filter_map(|p| match p {
        PostOp::Bn(..) => Some(call(quote!(self.bn), quote!(&#join(prefix, "bn")))),
        PostOp::Se(..) => Some(call(quote!(self.se), quote!(&#join(prefix, "se")))),
        PostOp::Activation(..) => None,
    });
    quote!(#(#branches)* #(#post)*)
}

pub(super) fn costs(block: &Block) -> TokenStream {
    let params = block.branches.iter().map(|b| {
        let field = &b.field;
        let terms = b.ops.iter().enumerate().filter(|(_, op)| !matches!(op.kind, OpKind::Identity(_))).map(|(i, _)| {
            let layer = op_access(b, i, &quote!(__b));
            quote!(__n += ::rep::Costs::parameter_count(&#layer);)
        });
        let terms: Vec<_> = terms.collect();
        if b.optional {
            quote!(if let ::core::option::Option::Some(__b) = &self.#field { #(#terms)* })
        } else {
            quote!({ let __b = &self.#field; #(#terms)* })
        }
    });
    let macs = block.branches.iter().enumerate().map(|(index, b)| {
        let field = &b.field;
        let steps = b.ops.iter().enumerate().filter(|(_, op)| !matches!(op.kind, OpKind::Identity(_))).map(|(i, _)| {
            let layer = op_access(b, i, &quote!(__b));
            quote!(let (__m, __next) = ::rep::Costs::macs(&#layer, __hw)?; __total = ::rep::add_macs(__total, __m)?; __hw = __next;)
        });
        let steps: Vec<_> = steps.collect();
        let keep = (index == 0).then(|| quote!(__out = __hw;));
        let body = quote!(#[allow(unused_mut)] let mut __hw = input; #(#steps)* #keep);
        if b.optional {
            quote!(if let ::core::option::Option::Some(__b) = &self.#field { #body })
        } else {
            quote!({ let __b = &self.#field; #body })
        }
    });
    let post_params = block.post.iter().filter_map(|p| match p {
        PostOp::Bn(..) => Some(quote!(__n += ::rep::Costs::parameter_count(&self.bn);)),
        PostOp::Se(..) => Some(quote!(__n += ::rep::Costs::parameter_count(&self.se);)),
        PostOp::Activation(..) => None,
    });
    let post_macs = block
        .post
        .iter()
        .any(|p| matches!(p, PostOp::Se(..)))
        .then(|| quote!(__total = ::rep::add_macs(__total, ::rep::Costs::macs(&self.se, __out)?.0)?;));
    quote! {
        fn parameter_count(&self) -> usize {
            let mut __n = 0usize;
            #(#params)*
            #(#post_params)*
            __n
        }

        fn macs(&self, input: ::rep::Hw) -> ::rep::Result<(u64, ::rep::Hw)> {
            let (mut __total, mut __out) = (0u64, input);
            #(#macs)*
            #post_macs
            ::core::result::Result::Ok((__total, __out))
        }
    }
}

/// `impl rep::Block`: static channels, construction from sizes, and the next block of a stage.
pub(super) fn block_trait(block: &Block, g: &BlockGeometry) -> TokenStream {
    let name = &block.item.ident;
    let generics = crate::internals::attrs::dim_generics(&block.item.generics);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let main = &g.summaries[g.main];
    let fused_name = quote::format_ident!("{}Fused", name);
    let turbofish = ty_generics.as_turbofish();
    let (cin, cout) = (main.cin.statik(), main.cout.statik());
    let count = block.dims.len();
    let dims: Vec<_> =
        block.dims.iter().enumerate().map(|(i, d)| quote!(<#d as ::rep::Dim>::from_size(sizes[#i])?)).collect();
    let position = |geo: &Geo| match geo {
        Geo::Sym(ident, SymKind::Dim) => block.dims.iter().position(|d| d == ident),
        _ => None,
    };
    let role = |geo: &Geo| match position(geo) {
        Some(i) => quote!(::core::option::Option::Some(#i)),
        None => quote!(::core::option::Option::None),
    };
    let (input, output, stride) = (role(&main.cin), role(&main.cout), role(&main.stride.h));
    let static_stride = main.stride.h.statik();
    let mismatch = format!("`{name}` takes {count} sizes, found {{}}");
    let (identity_const, identity_now) = identity_branch(block);
    quote! {
        impl #impl_generics ::rep::Block for #name #ty_generics #where_clause {
            const IN: ::core::option::Option<usize> = #cin;
            const OUT: ::core::option::Option<usize> = #cout;

            fn from_sizes<R: ::rep::rand::Rng>(sizes: &[usize], rng: &mut R) -> ::rep::Result<Self> {
                if sizes.len() != #count {
                    return ::core::result::Result::Err(::rep::Error::Geometry(::std::format!(#mismatch, sizes.len())));
                }
                Self::new(#(#dims,)* rng)
            }

            fn fused_from_sizes(sizes: &[usize]) -> ::rep::Result<<Self as ::rep::Reparameterize>::Fused> {
                if sizes.len() != #count {
                    return ::core::result::Result::Err(::rep::Error::Geometry(::std::format!(#mismatch, sizes.len())));
                }
                #fused_name::new #turbofish (#(#dims,)*)
            }

            const STAGE: ::rep::StageRoles = ::rep::StageRoles { input: #input, output: #output, stride: #stride };

            const STRIDE: ::core::option::Option<usize> = #static_stride;

            fn in_channels(&self) -> usize {
                self._channels.0
            }

            fn out_channels(&self) -> usize {
                self._channels.1
            }

            #[allow(non_snake_case, unused_variables, irrefutable_let_patterns)]
            const IDENTITY_BRANCH: ::core::option::Option<bool> = #identity_const;

            fn has_identity_branch(&self) -> bool {
                #identity_now
            }
        }
    }
}

/// `IDENTITY_BRANCH` (decided at compile time when the sizes are static) and the body of
/// `has_identity_branch`: a branch that is one `Identity` or `Bn` op is an identity branch,
/// present always, or when its `when` condition holds.
fn identity_branch(block: &Block) -> (TokenStream, TokenStream) {
    let identities: Vec<_> = block
        .branches
        .iter()
        .filter(|b| matches!(b.ops.as_slice(), [op] if matches!(op.kind, OpKind::Identity(_) | OpKind::Bn(..))))
        .collect();
    let now = identities.iter().map(|b| {
        let field = &b.field;
        if b.optional { quote!(self.#field.is_some()) } else { quote!(true) }
    });
    let now = quote!(false #(|| #now)*);
    if identities.is_empty() {
        return (quote!(::core::option::Option::Some(false)), now);
    }
    if identities.iter().any(|b| b.when.is_none()) {
        return (quote!(::core::option::Option::Some(true)), now);
    }
    let conditions = identities.iter().filter_map(|b| b.when.as_ref()).map(|when| {
        let cond = super::construct::runtime_condition(block, quote!(#when));
        quote!((#cond))
    });
    let dims = &block.dims;
    let locals: Vec<_> = dims.iter().map(Geo::dim_local).collect();
    let decided = quote! {
        if let (#(::core::option::Option::Some(#locals),)*) = (#(<#dims as ::rep::Dim>::STATIC,)*) {
            ::core::option::Option::Some(false #(|| #conditions)*)
        } else {
            ::core::option::Option::None
        }
    };
    (decided, now)
}
