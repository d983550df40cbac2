//! The layer enums of a graph: `<Graph>Layer` (train-time), `<Graph>LayerFused` and
//! `<Graph>LayerCache`, one variant per layer field, whose trait impls delegate each call to
//! the variant's layer.

use super::{alias, compile_node_impl};
use crate::internals::graph::{Graph, Node, NodeKind};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// The names of the three layer enums of a graph: train-time, fused and cache.
pub(super) struct LayerEnums {
    pub(super) layer: syn::Ident,
    pub(super) fused: syn::Ident,
    pub(super) cache: syn::Ident,
}

impl LayerEnums {
    pub(super) fn of(g: &Graph) -> Self {
        let name = &g.item.ident;
        LayerEnums {
            layer: format_ident!("{}Layer", name),
            fused: format_ident!("{}LayerFused", name),
            cache: format_ident!("{}LayerCache", name),
        }
    }
}

/// The layer enums (train-time, fused, cache) and their delegating impls.
pub(super) fn layer_enums(g: &Graph, layers: &[&Node]) -> TokenStream {
    let name = &g.item.ident;
    let vis = &g.item.vis;
    let LayerEnums { layer, fused, cache } = LayerEnums::of(g);
    let variants: Vec<&syn::Ident> = layers.iter().map(|n| &n.ident).collect();
    let types: Vec<syn::Ident> = layers.iter().map(|n| alias(g, n)).collect();
    let doc = format!("The layers of [`{name}`], one variant per layer field.");
    let fused_doc = format!("The fused layers of [`{name}Fused`].");
    let inference = layer_inference_impls(g, layers);
    let training = layer_training_impls(g, &variants);
    quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types, clippy::large_enum_variant)]
        #[derive(Clone, Debug)]
        #vis enum #layer { #(#[doc = "A layer field."] #variants(#types),)* }

        #[doc = #fused_doc]
        #[allow(non_camel_case_types, clippy::large_enum_variant)]
        #[derive(Clone, Debug)]
        #vis enum #fused { #(#[doc = "A fused layer field."] #variants(<#types as ::rep::Reparameterize>::Fused),)* }

        #[doc(hidden)]
        #[allow(non_camel_case_types, clippy::large_enum_variant)]
        #vis enum #cache { #(#variants(<#types as ::rep::train::Train>::Cache),)* }

        #inference
        #training
    }
}

/// The layer enums' `Layer`, `Parameters`, `Costs`, `GraphLayer` and `CompileNode` impls, each
/// arm delegating to the variant's layer: a fused block's conv and chain plan, or a nested
/// graph's own channels and graph plan.
fn layer_inference_impls(g: &Graph, layers: &[&Node]) -> TokenStream {
    let LayerEnums { layer, fused, .. } = LayerEnums::of(g);
    let variants: Vec<&syn::Ident> = layers.iter().map(|n| &n.ident).collect();
    let each = |body: TokenStream| quote!(#(Self::#variants(l) => #body,)*);
    // Per variant: a nested graph's fused form is a graph, not a block with a conv.
    let each_fused = |block: TokenStream, graph: TokenStream| {
        let arms = layers.iter().map(|n| {
            let (variant, nested) = (&n.ident, matches!(n.kind, NodeKind::Layer { nested: true, .. }));
            let body = if nested { &graph } else { &block };
            quote!(Self::#variant(l) => #body,)
        });
        quote!(#(#arms)*)
    };
    let visit = parameters(&each);
    let forward = each(quote!(::rep::layers::Layer::forward(l, x)));
    let forward_train = each(quote!(::rep::layers::Layer::forward_train(l, x)));
    let count = each(quote!(::rep::Costs::parameter_count(l)));
    let macs = each(quote!(::rep::Costs::macs(l, input)));
    let train_in = each(quote!(::rep::Block::in_channels(l)));
    let train_out = each(quote!(::rep::Block::out_channels(l)));
    let identity = each(quote!(::rep::Block::has_identity_branch(l)));
    let fused_in = each_fused(quote!(l.conv.geometry().in_channels), quote!(::rep::graph::GraphLayer::in_channels(l)));
    let fused_out =
        each_fused(quote!(l.conv.geometry().out_channels), quote!(::rep::graph::GraphLayer::out_channels(l)));
    let compile = each_fused(
        quote!(plan.layer(input, l, name)),
        quote!(::rep::plan::CompileNode::compile_node(l, plan, input, name)),
    );
    let compile = compile_node_impl(&fused, quote!(match self { #compile }));
    quote! {
        impl ::rep::layers::Layer for #layer {
            fn forward(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                match self { #forward }
            }
            fn forward_train(&mut self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                match self { #forward_train }
            }
        }
        impl ::rep::layers::Layer for #fused {
            fn forward(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                match self { #forward }
            }
        }
        impl ::rep::layers::Parameters for #layer { #visit }
        impl ::rep::layers::Parameters for #fused { #visit }
        impl ::rep::Costs for #layer {
            fn parameter_count(&self) -> usize { match self { #count } }
            fn macs(&self, input: ::rep::Hw) -> ::rep::Result<(u64, ::rep::Hw)> { match self { #macs } }
        }
        impl ::rep::Costs for #fused {
            fn parameter_count(&self) -> usize { match self { #count } }
            fn macs(&self, input: ::rep::Hw) -> ::rep::Result<(u64, ::rep::Hw)> { match self { #macs } }
        }
        impl ::rep::graph::GraphLayer for #layer {
            fn in_channels(&self) -> usize { match self { #train_in } }
            fn out_channels(&self) -> usize { match self { #train_out } }
            fn has_identity_branch(&self) -> bool { match self { #identity } }
        }
        impl ::rep::graph::GraphLayer for #fused {
            fn in_channels(&self) -> usize { match self { #fused_in } }
            fn out_channels(&self) -> usize { match self { #fused_out } }
        }
        #compile
    }
}

/// The train-time layer enum's `Reparameterize` and `Train` impls, each arm delegating to the
/// variant's block.
fn layer_training_impls(g: &Graph, variants: &[&syn::Ident]) -> TokenStream {
    let LayerEnums { layer, fused, cache } = LayerEnums::of(g);
    let freeze = quote!(#(Self::#variants(l) => ::rep::train::Train::freeze_batch_norm(l, frozen),)*);
    quote! {
        impl ::rep::Reparameterize for #layer {
            type Fused = #fused;
            fn fuse(&self) -> ::rep::Result<#fused> {
                ::core::result::Result::Ok(match self {
                    #(Self::#variants(l) => #fused::#variants(::rep::Reparameterize::fuse(l)?),)*
                })
            }
        }
        impl ::rep::train::Train for #layer {
            type Cache = #cache;
            fn forward_cached(
                &mut self,
                x: &::rep::ndarray::Array4<f32>,
            ) -> ::rep::Result<(::rep::ndarray::Array4<f32>, #cache)> {
                ::core::result::Result::Ok(match self {
                    #(Self::#variants(l) => {
                        let (y, c) = ::rep::train::Train::forward_cached(l, x)?;
                        (y, #cache::#variants(c))
                    })*
                })
            }
            fn backward(
                &self,
                cache: #cache,
                dy: &::rep::ndarray::Array4<f32>,
                prefix: &str,
                grads: &mut ::rep::train::Gradients,
            ) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                match (self, cache) {
                    #((Self::#variants(l), #cache::#variants(c)) => ::rep::train::Train::backward(l, c, dy, prefix, grads),)*
                    #[allow(unreachable_patterns)]
                    _ => ::core::result::Result::Err(::rep::Error::Wiring(::std::format!("`{prefix}`: a cache of another layer"))),
                }
            }
            fn freeze_batch_norm(&mut self, frozen: bool) {
                match self { #freeze }
            }
        }
    }
}

/// The five `Parameters` methods, delegating to the variant.
fn parameters(each: &dyn Fn(TokenStream) -> TokenStream) -> TokenStream {
    let visit = each(quote!(::rep::layers::Parameters::visit(l, prefix, f)));
    let visit_mut = each(quote!(::rep::layers::Parameters::visit_mut(l, prefix, f)));
    let counters = each(quote!(::rep::layers::Parameters::visit_counters(l, prefix, f)));
    let counters_mut = each(quote!(::rep::layers::Parameters::visit_counters_mut(l, prefix, f)));
    let bns = each(quote!(::rep::layers::Parameters::visit_batch_norms(l, f)));
    quote! {
        fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewD<'_, f32>)) { match self { #visit } }
        fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewMutD<'_, f32>)) {
            match self { #visit_mut }
        }
        fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, u64)) { match self { #counters } }
        fn visit_counters_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut u64)) { match self { #counters_mut } }
        fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut ::rep::layers::BatchNorm2d)) { match self { #bns } }
    }
}
