//! What is emitted next to the errors when a block does not check: the struct and its fused
//! twin with stub impls, so that one mistake does not cascade into errors at every use.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::ItemStruct;

pub fn block(item: &ItemStruct, errors: TokenStream) -> TokenStream {
    let (name, vis, attrs) = (&item.ident, &item.vis, &item.attrs);
    let fused = format_ident!("{}Fused", name);
    let mut generics = item.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(syn::parse_quote!(::rep::Dim));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let types: Vec<_> = generics.type_params().map(|p| &p.ident).collect();
    // Every type and lifetime parameter must be used (const parameters need not be): a
    // mistake in the parameters themselves must not add an "unused parameter" error.
    let lifetimes: Vec<_> = generics.lifetimes().map(|l| &l.lifetime).collect();
    let args = types.iter().map(|t| {
        let arg = format_ident!("{}", t.to_string().to_lowercase());
        quote!(#arg: #t)
    });
    quote! {
        #errors
        #(#attrs)*
        #vis struct #name #impl_generics #where_clause {
            _dims: ::core::marker::PhantomData<fn() -> (#(#types,)* #(&#lifetimes (),)*)>,
        }
        #vis struct #fused;
        impl #impl_generics #name #ty_generics #where_clause {
            #[allow(unused_variables)]
            pub fn new(#(#args,)* rng: &mut impl ::rep::rand::Rng) -> ::rep::Result<Self> {
                ::core::unimplemented!("the block did not compile")
            }
        }
        impl #impl_generics ::rep::layers::Layer for #name #ty_generics #where_clause {
            fn forward(&self, _: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                ::core::unimplemented!("the block did not compile")
            }
        }
        impl #impl_generics ::rep::layers::Parameters for #name #ty_generics #where_clause {
            fn visit(&self, _: &str, _: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewD<'_, f32>)) {}
            fn visit_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewMutD<'_, f32>)) {}
        }
        impl ::rep::layers::Layer for #fused {
            fn forward(&self, _: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                ::core::unimplemented!("the block did not compile")
            }
        }
        impl #impl_generics ::rep::Reparameterize for #name #ty_generics #where_clause {
            type Fused = #fused;
            fn fuse(&self) -> ::rep::Result<#fused> {
                ::core::unimplemented!("the block did not compile")
            }
        }
    }
}

/// The model struct with no fields and a `new` (with the declared arguments) that cannot be
/// reached, next to the errors.
pub fn model(item: &ItemStruct, params: &[syn::FnArg], errors: TokenStream) -> TokenStream {
    let (name, vis, attrs) = (&item.ident, &item.vis, &item.attrs);
    quote! {
        #errors
        #(#attrs)*
        #vis struct #name {}
        impl #name {
            #[allow(unused_variables)]
            pub fn new(#(#params,)* rng: &mut impl ::rep::rand::Rng) -> ::rep::Result<Self> {
                ::core::unimplemented!("the model did not compile")
            }
        }
    }
}
