//! What is emitted next to the errors when a block or model does not check: the structs with
//! every impl the success path generates, as stand-ins whose bodies are never reached, so that
//! one mistake is one error — in the block and wherever it is used (a model's fields included).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::ItemStruct;

/// `Parameters` (visiting nothing) and `Costs` stand-ins for `ty`, under `generics`
/// (`impl` generics and where clause, empty for a plain type).
fn parameters_and_costs(
    ty: &TokenStream,
    generics: (&TokenStream, &TokenStream),
    unreachable: &TokenStream,
) -> TokenStream {
    let (i, w) = generics;
    quote! {
        impl #i ::rep::layers::Parameters for #ty #w {
            fn visit(&self, _: &str, _: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewD<'_, f32>)) {}
            fn visit_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewMutD<'_, f32>)) {}
        }
        impl #i ::rep::Costs for #ty #w {
            fn parameter_count(&self) -> usize { 0 }
            fn macs(&self, _: ::rep::Hw) -> ::rep::Result<(u64, ::rep::Hw)> { #unreachable }
        }
    }
}

pub fn block(item: &ItemStruct, errors: TokenStream) -> TokenStream {
    let (name, vis) = (&item.ident, &item.vis);
    let attrs = crate::internals::attrs::without_derives(&item.attrs, &["Clone", "Debug"]);
    let fused = format_ident!("{}Fused", name);
    let generics = crate::internals::attrs::dim_generics(&item.generics);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let types: Vec<_> = generics.type_params().map(|p| &p.ident).collect();
    // Every type and lifetime parameter must be used (const parameters need not be): a
    // mistake in the parameters themselves must not add an "unused parameter" error.
    let lifetimes: Vec<_> = generics.lifetimes().map(|l| &l.lifetime).collect();
    let args = types.iter().map(|t| {
        let arg = format_ident!("{}", t.to_string().to_lowercase());
        quote!(#arg: #t)
    });
    let unreachable = quote!(::core::unimplemented!("the block did not compile"));
    let array = quote!(::rep::ndarray::Array4<f32>);
    let stand_in_layer = |ty: TokenStream, generics: bool| {
        let (i, w) = if generics { (quote!(#impl_generics), quote!(#where_clause)) } else { (quote!(), quote!()) };
        let rest = parameters_and_costs(&ty, (&i, &w), &unreachable);
        quote! {
            impl #i ::rep::layers::Layer for #ty #w {
                fn forward(&self, _: &#array) -> ::rep::Result<#array> { #unreachable }
            }
            #rest
        }
    };
    let train_impls = stand_in_layer(quote!(#name #ty_generics), true);
    let fused_impls = stand_in_layer(quote!(#fused), false);
    let fused_params = generics.params.iter();
    let fused_args = types.iter().map(|t| {
        let arg = format_ident!("{}", t.to_string().to_lowercase());
        quote!(#arg: #t)
    });
    quote! {
        #errors
        #(#attrs)*
        #[derive(Clone, Debug)]
        #vis struct #name #impl_generics #where_clause {
            _dims: ::core::marker::PhantomData<fn() -> (#(#types,)* #(&#lifetimes (),)*)>,
        }
        #[derive(Clone, Debug)]
        #vis struct #fused;
        impl #fused {
            #[allow(unused_variables)]
            pub fn new<#(#fused_params),*>(#(#fused_args),*) -> ::rep::Result<Self> { #unreachable }
        }
        impl #impl_generics #name #ty_generics #where_clause {
            #[allow(unused_variables, clippy::too_many_arguments)]
            pub fn new(#(#args,)* rng: &mut impl ::rep::rand::Rng) -> ::rep::Result<Self> { #unreachable }
        }
        #train_impls
        #fused_impls
        impl #impl_generics ::rep::Reparameterize for #name #ty_generics #where_clause {
            type Fused = #fused;
            fn fuse(&self) -> ::rep::Result<#fused> { #unreachable }
        }
        impl #impl_generics ::rep::Block for #name #ty_generics #where_clause {
            const IN: ::core::option::Option<usize> = ::core::option::Option::None;
            const OUT: ::core::option::Option<usize> = ::core::option::Option::None;
            const STAGE: ::rep::StageRoles = ::rep::StageRoles { input: None, output: None, stride: None };
            const STRIDE: ::core::option::Option<usize> = ::core::option::Option::None;
            fn from_sizes<R: ::rep::rand::Rng>(_: &[usize], _: &mut R) -> ::rep::Result<Self> { #unreachable }
            fn fused_from_sizes(_: &[usize]) -> ::rep::Result<#fused> { #unreachable }
            fn in_channels(&self) -> usize { #unreachable }
            fn out_channels(&self) -> usize { #unreachable }
        }
        impl ::rep::plan::Compile for #fused {
            fn compile(&self, _: &mut ::rep::plan::PlanBuilder, _: &str) -> ::rep::Result<()> { #unreachable }
        }
        impl #impl_generics ::rep::train::Train for #name #ty_generics #where_clause {
            type Cache = ();
            fn forward_cached(&mut self, _: &#array) -> ::rep::Result<(#array, ())> { #unreachable }
            fn backward(&self, _: (), _: &#array, _: &str, _: &mut ::rep::train::Gradients) -> ::rep::Result<#array> {
                #unreachable
            }
        }
    }
}

/// The model and its fused twin with no fields, and every method and impl the success path
/// generates (bodies never reached), next to the errors.
pub fn model(model: &crate::internals::model::Model, errors: TokenStream) -> TokenStream {
    let item = &model.item;
    let (name, vis, params) = (&item.ident, &item.vis, &model.params);
    let attrs = crate::internals::attrs::without_derives(&item.attrs, &["Clone", "Debug"]);
    let fused = format_ident!("{}Fused", name);
    let unreachable = quote!(::core::unimplemented!("the model did not compile"));
    let output =
        if model.flat_output() { quote!(::rep::ndarray::Array2<f32>) } else { quote!(::rep::ndarray::Array4<f32>) };
    let input = quote!(&::rep::ndarray::Array4<f32>);
    let none = quote!();
    let common = |ty: &syn::Ident| parameters_and_costs(&quote!(#ty), (&none, &none), &unreachable);
    let (train_impls, fused_impls) = (common(name), common(&fused));
    let structs = stand_in_structs(&quote!(#(#attrs)*), vis, name, params, &unreachable);
    quote! {
        #errors
        #structs
        impl #name {
            pub fn forward(&self, _: #input) -> ::rep::Result<#output> { #unreachable }
            pub fn forward_train(&mut self, _: #input) -> ::rep::Result<#output> { #unreachable }
        }
        impl #fused {
            pub fn forward(&self, _: #input) -> ::rep::Result<#output> { #unreachable }
        }
        #train_impls
        #fused_impls
        impl ::rep::Reparameterize for #name {
            type Fused = #fused;
            fn fuse(&self) -> ::rep::Result<#fused> { #unreachable }
        }
        impl ::rep::plan::Compile for #fused {
            fn compile(&self, _: &mut ::rep::plan::PlanBuilder, _: &str) -> ::rep::Result<()> { #unreachable }
        }
        impl ::rep::train::Network for #name {
            type Output = #output;
            type Cache = ();
            fn freeze_batch_norm(&mut self, _: bool) { #unreachable }
            fn forward_cached(&mut self, _: #input) -> ::rep::Result<(#output, ())> { #unreachable }
            fn backward(&self, _: (), _: &#output, _: &mut ::rep::train::Gradients) -> ::rep::Result<()> { #unreachable }
        }
    }
}

/// Stand-ins for a graph that did not compile: the struct, its fused twin and their `new`, so
/// that uses of them add no errors of their own.
pub fn graph(graph: &crate::internals::graph::Graph, errors: TokenStream) -> TokenStream {
    let item = &graph.item;
    let attrs = item.attrs.iter().filter(|a| !a.path().is_ident("rep"));
    let unreachable = quote!(::core::unimplemented!("the graph did not compile"));
    let structs = stand_in_structs(&quote!(#(#attrs)*), &item.vis, &item.ident, &graph.params, &unreachable);
    quote! {
        #errors
        #structs
    }
}

/// A model's or graph's struct and its fused twin with no fields (`attrs` on the first), each
/// with the `new` the success path generates (train-time: sizes and an RNG; fused: sizes).
fn stand_in_structs(
    attrs: &TokenStream,
    vis: &syn::Visibility,
    name: &syn::Ident,
    params: &[syn::FnArg],
    unreachable: &TokenStream,
) -> TokenStream {
    let fused = format_ident!("{}Fused", name);
    quote! {
        #attrs
        #[derive(Clone, Debug)]
        #vis struct #name {}
        #[derive(Clone, Debug)]
        #vis struct #fused {}
        impl #name {
            #[allow(unused_variables)]
            pub fn new(#(#params,)* rng: &mut impl ::rep::rand::Rng) -> ::rep::Result<Self> { #unreachable }
        }
        impl #fused {
            #[allow(unused_variables)]
            pub fn new(#(#params,)*) -> ::rep::Result<Self> { #unreachable }
        }
    }
}
