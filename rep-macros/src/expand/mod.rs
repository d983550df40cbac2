//! Code generation, calling only `rep`'s runtime: for a block, the train-time struct,
//! `<Name>Fused` and their impls (`construct`: `new` and its checks; `branch`: forward and
//! fuse; `impls`: parameters, costs, `rep::Block`); for a model, `model`.

mod branch;
mod construct;
pub(crate) mod impls;
#[cfg(test)]
mod law;
pub mod model;

use branch::{forward, forward_online, is_online, post_ops_of, squeeze};
use construct::{branch_type, constructor};
use impls::{Visit, block_trait, costs, visit};

use crate::internals::ast::{Block, PostOp};
use crate::internals::check::{BlockGeometry, Check};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// Everything generated for one block.
pub fn block(block: &Block, geometry: &BlockGeometry, checks: &[Check]) -> TokenStream {
    let item = &block.item;
    let (name, vis) = (&item.ident, &item.vis);
    let fused_name = format_ident!("{}Fused", name);
    let attrs = &crate::internals::attrs::without_derives(&item.attrs, &["Clone", "Debug"]);
    let mut generics = item.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(syn::parse_quote!(::rep::Dim));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
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
    let fused_se = block.post.iter().find_map(|p| match p {
        PostOp::Se(.., when) => Some(se_type(when.is_some())),
        _ => None,
    });
    let fused_se_field =
        fused_se.clone().map(|ty| quote!(#[doc = "Squeeze-and-excitation, as in the train-time block."] pub se: #ty,));
    let fused_se = fused_se.is_some();

    let new_fn = constructor(block, geometry, checks);
    let block_impl = block_trait(block, geometry);
    let (forward_eval, forward_train) = (forward(block, false), forward(block, true));
    let squeeze = squeeze(block, geometry.main);
    let post_bn = block.post.iter().any(|p| matches!(p, PostOp::Bn(..))).then(|| quote!(.then_bn(&self.bn)?));
    let online = is_online(block);
    let (forward_train, structural) = if online {
        let doc = "The structural training forward (every branch, then the sum), for comparison with the online \
                   `forward_train`, which squeezes the branches into one kernel and runs one convolution.";
        (
            forward_online(block),
            Some(
                quote!(#[doc = #doc] pub fn forward_train_structural(&mut self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> { #forward_train }),
            ),
        )
    } else {
        (forward_train, None)
    };
    let (visit_ref, visit_mut, visit_bns) =
        (visit(block, Visit::Ref), visit(block, Visit::Mut), visit(block, Visit::BatchNorms));
    let (visit_counters, visit_counters_mut) = (visit(block, Visit::Counters), visit(block, Visit::CountersMut));
    let costs = costs(block);
    // The first activation after the conv runs inside the conv kernel (the BN is folded away).
    let folded = block.post.iter().filter(|p| !matches!(p, PostOp::Bn(..))).collect::<Vec<_>>();
    let (conv_activation, after_conv) = match folded.first() {
        Some(PostOp::Activation(variant)) => (quote!(::rep::layers::Activation::#variant), &folded[1..]),
        _ => (quote!(::rep::layers::Activation::Identity), &folded[..]),
    };
    let fused_post = post_ops_of(after_conv, quote!(__y), false, true);
    let planned_post = after_conv.iter().map(|p| match p {
        PostOp::Bn(..) => quote!(),
        PostOp::Activation(variant) => quote!(__plan.activation(::rep::layers::Activation::#variant, __name)?;),
        PostOp::Se(..) => quote!(::rep::plan::Compile::compile(&self.se, __plan, &::rep::layers::join(__name, "se"))?;),
    });
    let fused_weight = &block.fused_name;
    let fused_doc =
        format!("The inference form of [`{name}`]: one convolution (`{fused_weight}`) and the post-sum ops.");
    let fused_se_visit =
        fused_se.then(|| quote!(::rep::layers::Parameters::visit(&self.se, &::rep::layers::join(prefix, "se"), f);));
    let fused_se_visit_mut = fused_se
        .then(|| quote!(::rep::layers::Parameters::visit_mut(&mut self.se, &::rep::layers::join(prefix, "se"), f);));
    let fused_se_params = fused_se.then(|| quote!(+ ::rep::Costs::parameter_count(&self.se)));
    let fused_se_macs =
        fused_se.then(|| quote!(__macs = ::rep::add_macs(__macs, ::rep::Costs::macs(&self.se, __out)?.0)?;));
    let fused_se_init = fused_se.then(|| quote!(se: self.se.clone(),));

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

        #block_impl

        #[allow(clippy::identity_op, clippy::erasing_op, clippy::modulo_one, clippy::eq_op)]
        impl #impl_generics #name #ty_generics #where_clause {
            #new_fn

            /// The branches summed into one convolution (in f64), before the post-sum ops:
            /// OREPA's block squeezing; `fuse` folds the post-sum BN into it.
            pub fn squeeze(&self) -> ::rep::Result<::rep::fusion::AffineConv> {
                #squeeze
                ::core::result::Result::Ok(__squeezed)
            }

            #structural
        }

        impl #impl_generics ::rep::layers::Layer for #name #ty_generics #where_clause {
            fn forward(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                #forward_eval
            }

            fn forward_train(&mut self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                #forward_train
            }
        }

        impl #impl_generics ::rep::layers::Parameters for #name #ty_generics #where_clause {
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

        #[doc = #fused_doc]
        #[derive(Clone, Debug, PartialEq)]
        #vis struct #fused_name {
            #[doc = "The fused convolution, with bias."]
            pub conv: ::rep::layers::Conv2d,
            #fused_se_field
        }

        impl ::rep::layers::Layer for #fused_name {
            fn forward(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                #[allow(unused_mut)]
                let mut __y = self.conv.forward_then(x, #conv_activation)?;
                #fused_post
                ::core::result::Result::Ok(__y)
            }
        }

        impl ::rep::layers::Parameters for #fused_name {
            fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewD<'_, f32>)) {
                ::rep::layers::Parameters::visit(&self.conv, &::rep::layers::join(prefix, #fused_weight), f);
                #fused_se_visit
            }

            fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewMutD<'_, f32>)) {
                ::rep::layers::Parameters::visit_mut(&mut self.conv, &::rep::layers::join(prefix, #fused_weight), f);
                #fused_se_visit_mut
            }
        }

        impl ::rep::plan::Compile for #fused_name {
            fn compile(&self, __plan: &mut ::rep::plan::PlanBuilder, __name: &str) -> ::rep::Result<()> {
                __plan.conv(&self.conv, #conv_activation, &::rep::layers::join(__name, #fused_weight))?;
                #(#planned_post)*
                ::core::result::Result::Ok(())
            }
        }

        impl ::rep::Costs for #fused_name {
            fn parameter_count(&self) -> usize {
                ::rep::Costs::parameter_count(&self.conv) #fused_se_params
            }

            fn macs(&self, input: ::rep::Hw) -> ::rep::Result<(u64, ::rep::Hw)> {
                let (mut __macs, __out) = ::rep::Costs::macs(&self.conv, input)?;
                #fused_se_macs
                ::core::result::Result::Ok((__macs, __out))
            }
        }
    }
}

/// The type of the SE field: optional when it has a `when` condition.
fn se_type(optional: bool) -> TokenStream {
    if optional {
        quote!(::core::option::Option<::rep::layers::SqueezeExcite>)
    } else {
        quote!(::rep::layers::SqueezeExcite)
    }
}
