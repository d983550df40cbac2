//! Code generation for `#[rep::model]`: the network, `<Name>Fused`, and their impls.

use super::impls::Visit;
use crate::internals::model::{Field, Kind, Model};
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};

pub fn model(model: &Model) -> TokenStream {
    let item = &model.item;
    let (name, vis) = (&item.ident, &item.vis);
    let attrs = &crate::internals::attrs::without_derives(&item.attrs, &["Clone", "Debug"]);
    let fused_name = format_ident!("{}Fused", name);
    let aliases = model.fields.iter().filter_map(|f| f.block_alias(name, vis));
    let train_fields = model.fields.iter().map(|f| field_decl(name, f, false));
    let fused_fields = model.fields.iter().map(|f| field_decl(name, f, true));
    let fused_doc = format!("The inference form of [`{name}`]: every block fused into one convolution.");
    let methods = methods(model);
    let traits = trait_impls(model);
    let network = super::train::network(model);
    quote! {
        #(#aliases)*

        #(#attrs)*
        #[derive(Clone, Debug)]
        #vis struct #name {
            #(#train_fields)*
        }

        #[doc = #fused_doc]
        #[derive(Clone, Debug)]
        #vis struct #fused_name {
            #(#fused_fields)*
        }

        #methods
        #traits
        #network
    }
}

/// The shape of the network's output: `[N, classes]` after a pool, else `[N, C, H, W]`.
pub(super) fn output(model: &Model) -> TokenStream {
    if model.flat_output() { quote!(::rep::ndarray::Array2<f32>) } else { quote!(::rep::ndarray::Array4<f32>) }
}

/// `new`, `forward` and `forward_train` of the network, `forward` of its fused twin.
fn methods(model: &Model) -> TokenStream {
    let name = &model.item.ident;
    let fused_name = format_ident!("{}Fused", name);
    let (params, output) = (&model.params, output(model));
    let inits = model.fields.iter().map(|f| init(name, f, false));
    let fused_inits = model.fields.iter().map(|f| init(name, f, true));
    let names = model.fields.iter().map(|f| &f.ident).collect::<Vec<_>>();
    let static_checks = static_chain(model);
    let runtime_checks = model.fields.iter().map(runtime_chain);
    let (forward_eval, forward_train) = (forward(model, false), forward(model, true));
    quote! {
        impl #name {
            /// Builds the network with PyTorch's default initialization, checking that the
            /// channels of consecutive layers chain (at compile time where sizes are literal).
            pub fn new(#(#params,)* rng: &mut impl ::rep::rand::Rng) -> ::rep::Result<Self> {
                #static_checks
                #(#inits)*
                let mut __previous: ::core::option::Option<(::std::string::String, usize)> = ::core::option::Option::None;
                #(#runtime_checks)*
                ::core::result::Result::Ok(Self { #(#names,)* })
            }

            /// Eval-mode forward pass (BatchNorm uses its running statistics).
            pub fn forward(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<#output> {
                #forward_eval
            }

            /// Training forward pass: batch statistics, running statistics updated.
            pub fn forward_train(&mut self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<#output> {
                #forward_train
            }
        }

        impl #fused_name {
            /// The fused network of these sizes with zero weights: the skeleton a deploy
            /// checkpoint loads into, without building and fusing the train-time network.
            #[allow(unused_variables)]
            pub fn new(#(#params),*) -> ::rep::Result<Self> {
                #(#fused_inits)*
                ::core::result::Result::Ok(Self { #(#names,)* })
            }

            /// Forward pass of the fused network.
            pub fn forward(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<#output> {
                #forward_eval
            }
        }
    }
}

/// `Reparameterize`, `Parameters`, `Costs`, `plan::Compile` and (for 4-D outputs) `Layer`.
fn trait_impls(model: &Model) -> TokenStream {
    let name = &model.item.ident;
    let fused_name = format_ident!("{}Fused", name);
    let output = output(model);
    let fuse = model.fields.iter().map(|f| {
        let ident = &f.ident;
        match &f.kind {
            Kind::Block { .. } => quote!(#ident: ::rep::Reparameterize::fuse(&self.#ident)?,),
            Kind::Stage { .. } => {
                quote!(#ident: self.#ident.iter().map(::rep::Reparameterize::fuse).collect::<::rep::Result<_>>()?,)
            }
            Kind::Pool | Kind::Linear { .. } => quote!(#ident: self.#ident.clone(),),
        }
    });
    let (visit_ref, visit_mut, visit_bns) =
        (visit(model, Visit::Ref), visit(model, Visit::Mut), visit(model, Visit::BatchNorms));
    let (visit_counters, visit_counters_mut) = (visit(model, Visit::Counters), visit(model, Visit::CountersMut));
    let costs = costs(model);
    let compile = model.fields.iter().map(|f| {
        let (ident, weight_name) = (&f.ident, &f.name);
        quote!(::rep::plan::Compile::compile(&self.#ident, __plan, &::rep::layers::join(__name, #weight_name))?;)
    });
    let layer_impls = (!model.flat_output()).then(|| {
        quote! {
            impl ::rep::layers::Layer for #name {
                fn forward(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<#output> {
                    #name::forward(self, x)
                }

                fn forward_train(&mut self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<#output> {
                    #name::forward_train(self, x)
                }
            }

            impl ::rep::layers::Layer for #fused_name {
                fn forward(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<#output> {
                    #fused_name::forward(self, x)
                }
            }
        }
    });
    quote! {
        impl ::rep::Reparameterize for #name {
            type Fused = #fused_name;

            fn fuse(&self) -> ::rep::Result<#fused_name> {
                ::rep::io::check_finite(self)?;
                ::core::result::Result::Ok(#fused_name { #(#fuse)* })
            }
        }

        impl ::rep::layers::Parameters for #name {
            fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewD<'_, f32>)) { #visit_ref }
            fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewMutD<'_, f32>)) { #visit_mut }
            fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, u64)) { #visit_counters }
            fn visit_counters_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut u64)) { #visit_counters_mut }
            fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut ::rep::layers::BatchNorm2d)) { #visit_bns }
        }

        impl ::rep::layers::Parameters for #fused_name {
            fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewD<'_, f32>)) { #visit_ref }
            fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewMutD<'_, f32>)) { #visit_mut }
        }

        impl ::rep::Costs for #name { #costs }
        impl ::rep::Costs for #fused_name { #costs }

        impl ::rep::plan::Compile for #fused_name {
            fn compile(&self, __plan: &mut ::rep::plan::PlanBuilder, __name: &str) -> ::rep::Result<()> {
                #(#compile)*
                ::core::result::Result::Ok(())
            }
        }

        #layer_impls
    }
}

fn field_decl(model: &syn::Ident, f: &Field, fused: bool) -> TokenStream {
    let (ident, attrs) = (&f.ident, &f.attrs);
    let doc = format!("`{}` (weights under `{}`).", f.ident, f.name);
    let ty = match (&f.kind, fused) {
        (Kind::Block { .. }, false) => {
            let ty = f.block_type(model).expect("block");
            quote!(#ty)
        }
        (Kind::Block { .. }, true) => {
            let ty = f.block_type(model).expect("block");
            quote!(<#ty as ::rep::Reparameterize>::Fused)
        }
        (Kind::Stage { .. }, false) => {
            let ty = f.block_type(model).expect("stage");
            quote!(::std::vec::Vec<#ty>)
        }
        (Kind::Stage { .. }, true) => {
            let ty = f.block_type(model).expect("stage");
            quote!(::std::vec::Vec<<#ty as ::rep::Reparameterize>::Fused>)
        }
        (Kind::Pool, _) => quote!(::rep::layers::GlobalAvgPool),
        (Kind::Linear { .. }, _) => quote!(::rep::layers::Linear),
    };
    quote!(#(#attrs)* #[doc = #doc] pub #ident: #ty,)
}

/// The statement building field `f`: the train-time layer (PyTorch's initialization), or with
/// `fused` its fused form with zero weights.
fn init(model: &syn::Ident, f: &Field, fused: bool) -> TokenStream {
    let ident = &f.ident;
    match &f.kind {
        Kind::Block { sizes, .. } if fused => {
            let ty = f.block_type(model).expect("block");
            let sizes = sizes.iter().map(|s| s.runtime());
            quote!(let #ident = <#ty as ::rep::Block>::fused_from_sizes(&[#(#sizes),*])?;)
        }
        Kind::Block { sizes, .. } => {
            let ty = f.block_type(model).expect("block");
            let args = sizes.iter().map(|s| s.dim_value());
            quote!(let #ident = #ty::new(#(#args,)* rng)?;)
        }
        Kind::Stage { repeat, sizes, index, .. } => {
            let ty = f.block_type(model).expect("stage");
            let build = if fused {
                quote!(<#ty as ::rep::Block>::fused_from_sizes(&__sizes)?)
            } else {
                quote!(<#ty as ::rep::Block>::from_sizes(&__sizes, rng)?)
            };
            let sizes = sizes.iter().map(|s| s.runtime());
            let index = index.clone().unwrap_or_else(|| format_ident!("__index"));
            quote! {
                let #ident = {
                    let __count: usize = (#repeat) as usize;
                    let mut __blocks = ::std::vec::Vec::with_capacity(__count);
                    let mut __previous: ::std::vec::Vec<usize> = ::std::vec::Vec::new();
                    #[allow(unused_variables)]
                    for #index in 0..__count {
                        let __fresh: ::std::vec::Vec<usize> = ::std::vec![#(#sizes),*];
                        let __sizes = if #index == 0 {
                            __fresh
                        } else {
                            <#ty as ::rep::Block>::STAGE.follow(&__previous, __fresh)
                        };
                        __blocks.push(#build);
                        __previous = __sizes;
                    }
                    __blocks
                };
            }
        }
        Kind::Pool => quote!(let #ident = ::rep::layers::GlobalAvgPool;),
        Kind::Linear { input, output } => {
            let (i, o) = (input.runtime(), output.runtime());
            if fused {
                quote!(let #ident = ::rep::__private::zero_linear(#i, #o);)
            } else {
                quote!(let #ident = ::rep::layers::Linear::new(#i, #o, rng);)
            }
        }
    }
}

/// Compile-time chain checks between consecutive layers with channels.
fn static_chain(model: &Model) -> TokenStream {
    let name = &model.item.ident;
    let mut previous: Option<(&Field, TokenStream)> = None;
    let mut asserts = Vec::new();
    for f in &model.fields {
        let (input, output) = match &f.kind {
            Kind::Block { .. } => {
                let ty = f.block_type(name).expect("block");
                (quote!(<#ty as ::rep::Block>::IN), quote!(<#ty as ::rep::Block>::OUT))
            }
            Kind::Stage { sizes, .. } => {
                // The stage's blocks take `usize` sizes; its literal ones still fix its channels.
                let ty = f.block_type(name).expect("stage");
                let message = format!(
                    "the blocks of stage `{}` after the first must take stride 1, but its block fixes the stride \
                     (a literal other than 1); make the stride a parameter of the block",
                    f.ident
                );
                asserts.push(quote_spanned! {f.span=>
                    ::core::assert!(
                        !(<#ty as ::rep::Block>::STAGE.stride.is_none()
                            && ::rep::dim::differ(<#ty as ::rep::Block>::STRIDE, ::core::option::Option::Some(1))),
                        #message
                    );
                });
                let sizes: Vec<_> = sizes.iter().map(|s| s.statik()).collect();
                let size = |role| quote!(::rep::dim::stage_size(<#ty as ::rep::Block>::STAGE.#role, &[#(#sizes),*]));
                (size(quote!(input)), size(quote!(output)))
            }
            Kind::Linear { input, .. } => (input.statik(), quote!(::core::option::Option::None)),
            Kind::Pool => continue,
        };
        if let Some((before, out)) = &previous {
            let message = format!(
                "model layers do not chain: `{}` takes a different number of channels than `{}` before it outputs",
                f.ident, before.ident
            );
            asserts.push(quote_spanned!(f.span=> ::core::assert!(!::rep::dim::differ(#out, #input), #message);));
        }
        previous = Some((f, output));
    }
    quote!(const { #(#asserts)* })
}

fn runtime_chain(f: &Field) -> TokenStream {
    let ident = &f.ident;
    let name = &f.name;
    match &f.kind {
        Kind::Block { .. } => quote! {
            ::rep::__private::chain_channels(&mut __previous, #name.into(), ::rep::Block::in_channels(&#ident), ::rep::Block::out_channels(&#ident))?;
        },
        Kind::Stage { .. } => quote! {
            for (__i, __b) in #ident.iter().enumerate() {
                ::rep::__private::chain_channels(&mut __previous, ::std::format!("{}.{}", #name, __i), ::rep::Block::in_channels(__b), ::rep::Block::out_channels(__b))?;
            }
        },
        Kind::Linear { .. } => quote! {
            ::rep::__private::chain_channels(&mut __previous, #name.into(), #ident.in_features(), #ident.out_features())?;
        },
        Kind::Pool => quote!(),
    }
}

fn forward(model: &Model, train: bool) -> TokenStream {
    let steps = model.fields.iter().map(|f| {
        let ident = &f.ident;
        match (&f.kind, train) {
            (Kind::Block { .. }, false) => quote!(let __x = ::rep::layers::Layer::forward(&self.#ident, &__x)?;),
            (Kind::Block { .. }, true) => {
                quote!(let __x = ::rep::layers::Layer::forward_train(&mut self.#ident, &__x)?;)
            }
            (Kind::Stage { .. }, false) => quote! {
                let mut __x = __x;
                for __b in self.#ident.iter() { __x = ::rep::layers::Layer::forward(__b, &__x)?; }
            },
            (Kind::Stage { .. }, true) => quote! {
                let mut __x = __x;
                for __b in self.#ident.iter_mut() { __x = ::rep::layers::Layer::forward_train(__b, &__x)?; }
            },
            (Kind::Pool | Kind::Linear { .. }, _) => quote!(let __x = self.#ident.forward(&__x)?;),
        }
    });
    quote! {
        let __x = x.clone();
        #(#steps)*
        ::core::result::Result::Ok(__x)
    }
}

fn visit(model: &Model, mode: Visit) -> TokenStream {
    let (method, borrow, named) = mode.parts();
    let iter = if matches!(mode, Visit::Ref | Visit::Counters) { quote!(iter) } else { quote!(iter_mut) };
    let join = quote!(::rep::layers::join);
    let calls = model.fields.iter().map(|f| {
        let (ident, name) = (&f.ident, &f.name);
        let (path, stage_path) = if named {
            (quote!(&#join(prefix, #name),), quote!(&#join(&#join(prefix, #name), &__i.to_string()),))
        } else {
            (quote!(), quote!())
        };
        match &f.kind {
            Kind::Stage { .. } => quote! {
                #[allow(unused_variables)]
                for (__i, __b) in self.#ident.#iter().enumerate() {
                    ::rep::layers::Parameters::#method(__b, #stage_path f);
                }
            },
            Kind::Pool => quote!(),
            _ => quote!(::rep::layers::Parameters::#method(#borrow self.#ident, #path f);),
        }
    });
    quote!(#(#calls)*)
}

fn costs(model: &Model) -> TokenStream {
    let params = model.fields.iter().map(|f| {
        let ident = &f.ident;
        match &f.kind {
            Kind::Stage { .. } => quote!(__n += self.#ident.iter().map(::rep::Costs::parameter_count).sum::<usize>();),
            _ => quote!(__n += ::rep::Costs::parameter_count(&self.#ident);),
        }
    });
    let macs = model.fields.iter().map(|f| {
        let ident = &f.ident;
        match &f.kind {
            Kind::Stage { .. } => quote! {
                for __b in self.#ident.iter() {
                    let (__m, __next) = ::rep::Costs::macs(__b, __hw)?;
                    __total = ::rep::add_macs(__total, __m)?;
                    __hw = __next;
                }
            },
            _ => quote! {
                let (__m, __next) = ::rep::Costs::macs(&self.#ident, __hw)?;
                __total = ::rep::add_macs(__total, __m)?;
                __hw = __next;
            },
        }
    });
    quote! {
        fn parameter_count(&self) -> usize {
            let mut __n = 0usize;
            #(#params)*
            __n
        }

        fn macs(&self, input: ::rep::Hw) -> ::rep::Result<(u64, ::rep::Hw)> {
            let (mut __total, mut __hw) = (0u64, input);
            #(#macs)*
            ::core::result::Result::Ok((__total, __hw))
        }
    }
}
