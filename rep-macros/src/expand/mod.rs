//! Code generation, calling only `rep`'s runtime: for a block, the train-time struct,
//! `<Name>Fused` and their impls (`construct`: `new` and its checks; `branch`: forward and
//! fuse; `impls`: parameters, costs, `rep::Block`); for a model, `model`; for a graph, `graph`.

mod branch;
mod construct;
mod fused;
pub mod graph;
pub(crate) mod impls;
#[cfg(test)]
mod law;
pub mod model;
mod online;
mod train;

use branch::{forward, forward_online, is_online, squeeze};
use construct::{branch_type, constructor};
use impls::{Visit, block_trait, costs, visit};

use crate::internals::ast::{Block, PostOp};
use crate::internals::check::{BlockGeometry, Check};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// Everything generated for one block: the train-time struct and its impls, then the fused
/// struct and its impls ([`fused::fused`]).
pub fn block(block: &Block, geometry: &BlockGeometry, checks: &[Check]) -> TokenStream {
    let train = train(block, geometry, checks);
    let fused = fused::fused(block, geometry);
    quote!(#train #fused)
}

/// The train-time struct: one field per branch, the post-sum BN and SE, and its impls.
fn train(block: &Block, geometry: &BlockGeometry, checks: &[Check]) -> TokenStream {
    let declaration = train_struct(block);
    let methods = train_methods(block, geometry, checks);
    let impls = train_impls(block, geometry);
    quote!(#declaration #methods #impls)
}

/// The train-time struct's declaration.
fn train_struct(block: &Block) -> TokenStream {
    let item = &block.item;
    let (name, vis) = (&item.ident, &item.vis);
    let attrs = &crate::internals::attrs::without_derives(&item.attrs, &["Clone", "Debug"]);
    let generics = crate::internals::attrs::dim_generics(&item.generics);
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let dims = &block.dims;
    let phantom = (!dims.is_empty()).then(|| quote!(_dims: ::core::marker::PhantomData<fn() -> (#(#dims,)*)>,));
    let fields = block.branches.iter().map(|b| {
        let (field, attrs, ty) = (&b.field, &b.attrs, branch_type(b));
        let doc = format!("Branch `{}` (weights under `{}`).", b.field, b.name);
        quote!(#(#attrs)* #[doc = #doc] pub #field: #ty,)
    });
    let post_fields = block.post.iter().filter_map(|p| match p {
        PostOp::Bn(..) => {
            Some(quote!(#[doc = "BatchNorm after the sum (folded by `fuse`)."] pub bn: ::rep::layers::BatchNorm2d,))
        }
        PostOp::Se(.., when) => {
            let ty = se_type(when.is_some());
            Some(quote!(#[doc = "Squeeze-and-excitation after the sum."] pub se: #ty,))
        }
        PostOp::Activation(..) => None,
    });
    quote! {
        #(#attrs)*
        #[derive(Clone, Debug)]
        #vis struct #name #impl_generics #where_clause {
            #(#fields)*
            #(#post_fields)*
            /// Input and output channels, for `rep::Block`.
            _channels: (usize, usize),
            #phantom
        }
    }
}

/// The train-time struct's inherent methods: `new`, `squeeze`, and for an OREPA-style block the
/// structural forwards and `squeeze_backward`.
fn train_methods(block: &Block, geometry: &BlockGeometry, checks: &[Check]) -> TokenStream {
    let name = &block.item.ident;
    let generics = crate::internals::attrs::dim_generics(&block.item.generics);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let new_fn = constructor(block, geometry, checks);
    let squeeze = squeeze(block, geometry.main);
    let structural = is_online(block).then(|| {
        let doc = "The structural training forward (every branch, then the sum), for comparison with the online \
                   `forward_train`, which squeezes the branches into one kernel and runs one convolution.";
        let forward_train = forward(block, true);
        quote!(#[doc = #doc] pub fn forward_train_structural(&mut self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> { #forward_train })
    });
    let train_inherent = train::online_methods(block, geometry.main);
    quote! {
        #[allow(clippy::identity_op, clippy::erasing_op, clippy::modulo_one, clippy::eq_op, clippy::too_many_arguments)]
        impl #impl_generics #name #ty_generics #where_clause {
            #new_fn

            /// The branches summed into one convolution (in f64), before the post-sum ops:
            /// OREPA's block squeezing; `fuse` folds the post-sum BN into it.
            pub fn squeeze(&self) -> ::rep::Result<::rep::fusion::AffineConv> {
                #squeeze
                ::core::result::Result::Ok(__squeezed)
            }

            #structural
            #train_inherent
        }
    }
}

/// The train-time struct's trait impls: `Block`, `Layer`, `Parameters`, `Train`,
/// `Reparameterize` and `Costs`.
fn train_impls(block: &Block, geometry: &BlockGeometry) -> TokenStream {
    let name = &block.item.ident;
    let fused_name = format_ident!("{}Fused", name);
    let generics = crate::internals::attrs::dim_generics(&block.item.generics);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let fused_se_init = block.post.iter().any(|p| matches!(p, PostOp::Se(..))).then(|| quote!(se: self.se.clone(),));
    let block_impl = block_trait(block, geometry);
    let forward_eval = forward(block, false);
    let forward_train = if is_online(block) { forward_online(block) } else { forward(block, true) };
    let post_bn = block.post.iter().any(|p| matches!(p, PostOp::Bn(..))).then(|| quote!(.then_bn(&self.bn)?));
    let (parameters, costs) = (parameters(block), costs(block));
    let train_items = train::train_items(block);
    quote! {
        #block_impl

        impl #impl_generics ::rep::layers::Layer for #name #ty_generics #where_clause {
            fn forward(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                #forward_eval
            }

            fn forward_train(&mut self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                #forward_train
            }
        }

        impl #impl_generics ::rep::layers::Parameters for #name #ty_generics #where_clause {
            #parameters
        }

        #[allow(unused_variables, clippy::let_unit_value, clippy::unused_unit)]
        impl #impl_generics ::rep::train::Train for #name #ty_generics #where_clause {
            #train_items
        }

        impl #impl_generics ::rep::Reparameterize for #name #ty_generics #where_clause {
            type Fused = #fused_name;

            fn fuse(&self) -> ::rep::Result<#fused_name> {
                ::rep::io::check_finite(self)?;
                let __fused = self.squeeze()? #post_bn;
                ::core::result::Result::Ok(#fused_name { conv: __fused.to_conv2d(), #fused_se_init })
            }
        }

        impl #impl_generics ::rep::Costs for #name #ty_generics #where_clause {
            #costs
        }
    }
}

/// The methods of `Parameters` for the train-time struct: names, counters, BatchNorms.
fn parameters(block: &Block) -> TokenStream {
    let (visit_ref, visit_mut, visit_bns) =
        (visit(block, Visit::Ref), visit(block, Visit::Mut), visit(block, Visit::BatchNorms));
    let (visit_counters, visit_counters_mut) = (visit(block, Visit::Counters), visit(block, Visit::CountersMut));
    quote! {
        fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewD<'_, f32>)) {
            #visit_ref
        }

        fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewMutD<'_, f32>)) {
            #visit_mut
        }

        fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, u64)) {
            #visit_counters
        }

        fn visit_counters_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut u64)) {
            #visit_counters_mut
        }

        fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut ::rep::layers::BatchNorm2d)) {
            #visit_bns
        }
    }
}

/// `.with_names(…)` when the block names its SE's convolutions (nothing for `down` / `up`).
pub(super) fn se_names(block: &Block) -> TokenStream {
    match &block.se_names {
        Some((down, up)) => quote!(.with_names(#down, #up)),
        None => quote!(),
    }
}

/// The type of the SE field: optional when it has a `when` condition.
pub(super) fn se_type(optional: bool) -> TokenStream {
    if optional {
        quote!(::core::option::Option<::rep::layers::SqueezeExcite>)
    } else {
        quote!(::rep::layers::SqueezeExcite)
    }
}
