//! `rep::train::Train` for a block: a training forward that keeps every op's cache, and a
//! backward that runs the post-sum ops in reverse, then each branch's ops in reverse, summing
//! the branches' input gradients. Weight names are those of `Parameters::visit`.

use super::branch::{fill_value, needs_fill, op_access};
use super::construct::op_type;
use crate::internals::ast::{Block, Branch, PostOp};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

const TRAIN: &str = "::rep::train::Train";

fn train_trait() -> TokenStream {
    TRAIN.parse().expect("a path")
}

/// Whether the block trains online: its branches are linear while training (OREPA) and every
/// step of their squeeze has a transpose.
fn trains_online(block: &Block) -> bool {
    super::branch::is_online(block) && super::online::supported(block)
}

/// For a block that trains online, its inherent `forward_cached_structural` and `squeeze_backward`.
pub(super) fn online_methods(block: &Block, main: usize) -> Option<TokenStream> {
    let (train, array) = (train_trait(), quote!(::rep::ndarray::Array4<f32>));
    trains_online(block).then(|| {
        let structural = forward_cached(block);
        let squeeze_backward = super::online::squeeze_backward(block, main);
        quote! {
            /// The training forward through every branch (the structural form), for comparison
            /// with `forward_cached`, which squeezes the branches into one kernel and runs one
            /// convolution; `backward` takes the cache of either.
            pub fn forward_cached_structural(&mut self, x: &#array) -> ::rep::Result<(#array, <Self as #train>::Cache)> {
                #structural
            }

            /// The transpose of `squeeze`: adds to `grads` the gradient of every branch parameter
            /// given `fused`, the gradient of the squeezed kernel and bias.
            pub fn squeeze_backward(
                &self,
                fused: &::rep::fusion::AffineConv,
                prefix: &str,
                grads: &mut ::rep::train::Gradients,
            ) -> ::rep::Result<()> {
                #squeeze_backward
            }
        }
    })
}

/// The `Train` impl's items: `Cache`, `forward_cached` (online for a block that trains online)
/// and `backward`.
pub(super) fn train_items(block: &Block) -> TokenStream {
    let train = train_trait();
    let branch_caches = block.branches.iter().map(|b| {
        let ops = b.ops.iter().map(|op| {
            let ty = op_type(op);
            quote!(<#ty as #train>::Cache)
        });
        quote!(::core::option::Option<(#(#ops,)*)>)
    });
    let post_caches = block.post.iter().map(|p| match p {
        PostOp::Bn(..) => quote!(<::rep::layers::BatchNorm2d as #train>::Cache),
        PostOp::Activation(..) => quote!(::rep::ndarray::Array4<f32>),
        PostOp::Se(..) => quote!(::core::option::Option<::rep::train::SqueezeExciteCache>),
    });
    let online = trains_online(block);
    let forward = if online { forward_online(block) } else { forward_cached(block) };
    let backward = backward(block, online);
    let freeze = freeze_batch_norm(block);
    quote! {
        type Cache = ((#(#branch_caches,)*), (#(#post_caches,)*), ::core::option::Option<::rep::train::OnlineCache>);

        fn freeze_batch_norm(&mut self, frozen: bool) {
            #freeze
        }

        fn forward_cached(&mut self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<(::rep::ndarray::Array4<f32>, Self::Cache)> {
            #forward
        }

        fn backward(
            &self,
            __cache: Self::Cache,
            dy: &::rep::ndarray::Array4<f32>,
            prefix: &str,
            grads: &mut ::rep::train::Gradients,
        ) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
            #backward
        }
    }
}

/// Every op of every present branch, and the post-sum BN, told whether BN is frozen.
fn freeze_batch_norm(block: &Block) -> TokenStream {
    let train = train_trait();
    let branches = block.branches.iter().map(|b| {
        let field = &b.field;
        let ops = (0..b.ops.len()).map(|i| {
            let layer = op_access(b, i, &quote!(__b));
            quote!(#train::freeze_batch_norm(&mut #layer, frozen);)
        });
        if b.optional {
            quote!(if let ::core::option::Option::Some(__b) = &mut self.#field { #(#ops)* })
        } else {
            quote!({ let __b = &mut self.#field; #(#ops)* })
        }
    });
    let post = block.post.iter().filter_map(|p| match p {
        PostOp::Bn(..) => Some(quote!(#train::freeze_batch_norm(&mut self.bn, frozen);)),
        _ => None,
    });
    quote!(#(#branches)* #(#post)*)
}

/// The weight prefix of op `i` of a branch, as `Parameters::visit` names it.
fn op_path(b: &Branch, i: usize) -> TokenStream {
    let (join, name) = (quote!(::rep::layers::join), &b.name);
    if b.sequence {
        let op_name = &b.ops[i].name;
        quote!(&#join(&#join(prefix, #name), #op_name))
    } else {
        quote!(&#join(prefix, #name))
    }
}

fn cache_names(prefix: &str, n: usize) -> Vec<syn::Ident> {
    (0..n).map(|i| format_ident!("__{}_{}", prefix, i)).collect()
}

fn forward_cached(block: &Block) -> TokenStream {
    let train = train_trait();
    let branch_names = cache_names("branch", block.branches.len());
    let branches = block.branches.iter().zip(&branch_names).map(|(b, cache)| {
        let (field, name) = (&b.field, &b.name);
        let keys = cache_names("k", b.ops.len());
        let steps = b.ops.iter().enumerate().zip(&keys).map(|((i, _), key)| {
            let layer = op_access(b, i, &quote!(__b));
            let input = if i == 0 { quote!(x) } else { quote!(&__y) };
            if needs_fill(b, i) {
                let fill = fill_value(b, i);
                quote! {
                    #fill
                    let (__y, #key) = ::rep::train::TrainWithFill::forward_cached_with_fill(&mut #layer, #input, &__fill)?;
                }
            } else if i == 0 {
                // Every branch starts from the block's input: shared, not copied per branch.
                quote!(let (__y, #key) = #train::forward_cached_shared(&mut #layer, &__input)?;)
            } else {
                quote!(let (__y, #key) = #train::forward_cached(&mut #layer, #input)?;)
            }
        });
        let run = quote! {
            #(#steps)*
            ::rep::__private::accumulate(&mut __sum, __y, #name)?;
            ::core::option::Option::Some((#(#keys,)*))
        };
        if b.optional {
            quote!(let #cache = if let ::core::option::Option::Some(__b) = &mut self.#field { #run } else { ::core::option::Option::None };)
        } else {
            quote!(let #cache = { let __b = &mut self.#field; #run };)
        }
    });
    let post = post_forward(block);
    quote! {
        let __input = ::std::sync::Arc::new(x.clone());
        let mut __sum: ::core::option::Option<::rep::ndarray::Array4<f32>> = ::core::option::Option::None;
        #(#branches)*
        #[allow(unused_mut)]
        let mut __sum = __sum.ok_or_else(|| ::rep::Error::Geometry("no branch of the block is present".into()))?;
        let (__branches, __online) = ((#(#branch_names,)*), ::core::option::Option::None);
        #post
    }
}

/// OREPA's online training forward: one convolution on the squeezed kernel, then the post-sum
/// ops; no branch keeps anything.
fn forward_online(block: &Block) -> TokenStream {
    let post = post_forward(block);
    let none = block.branches.iter().map(|_| quote!(::core::option::Option::None));
    quote! {
        let (__sum, __online) = ::rep::train::OnlineCache::forward(&self.squeeze()?, x)?;
        let __online = ::core::option::Option::Some(__online);
        #[allow(unused_mut)]
        let mut __sum = __sum;
        let __branches = (#(#none,)*);
        #post
    }
}

/// The post-sum ops' training forwards on `__sum`, then the result with the cache (`__branches`
/// and `__online` bound before).
fn post_forward(block: &Block) -> TokenStream {
    let train = train_trait();
    let post_names = cache_names("post", block.post.len());
    let post = block.post.iter().zip(&post_names).map(|(p, cache)| match p {
        PostOp::Bn(..) => quote!(let (__next, #cache) = #train::forward_cached(&mut self.bn, &__sum)?; __sum = __next;),
        PostOp::Activation(variant) => quote! {
            let (__next, #cache) = #train::forward_cached(&mut ::rep::layers::Activation::#variant, &__sum)?;
            __sum = __next;
        },
        PostOp::Se(.., when) => {
            let se = if when.is_some() {
                quote!(self.se.as_mut())
            } else {
                quote!(::core::option::Option::Some(&mut self.se))
            };
            quote! {
                let #cache = match #se {
                    ::core::option::Option::Some(__se) => {
                        let (__next, __k) = #train::forward_cached(__se, &__sum)?;
                        __sum = __next;
                        ::core::option::Option::Some(__k)
                    }
                    ::core::option::Option::None => ::core::option::Option::None,
                };
            }
        }
    });
    quote! {
        #(#post)*
        ::core::result::Result::Ok((__sum, (__branches, (#(#post_names,)*), __online)))
    }
}

fn backward(block: &Block, online: bool) -> TokenStream {
    let train = train_trait();
    let join = quote!(::rep::layers::join);
    let branch_names = cache_names("branch", block.branches.len());
    let post_names = cache_names("post", block.post.len());
    let post = block.post.iter().zip(&post_names).rev().map(|(p, cache)| match p {
        PostOp::Bn(..) => quote!(let __d = #train::backward(&self.bn, #cache, &__d, &#join(prefix, "bn"), grads)?;),
        PostOp::Activation(variant) => {
            quote!(let __d = #train::backward(&::rep::layers::Activation::#variant, #cache, &__d, prefix, grads)?;)
        }
        PostOp::Se(.., when) => {
            let se =
                if when.is_some() { quote!(self.se.as_ref()) } else { quote!(::core::option::Option::Some(&self.se)) };
            quote! {
                let __d = match (#se, #cache) {
                    (::core::option::Option::Some(__se), ::core::option::Option::Some(__k)) => {
                        #train::backward(__se, __k, &__d, &#join(prefix, "se"), grads)?
                    }
                    _ => __d,
                };
            }
        }
    });
    let branches = block.branches.iter().zip(&branch_names).map(|(b, cache)| {
        let (field, name) = (&b.field, &b.name);
        let keys = cache_names("k", b.ops.len());
        let steps = b.ops.iter().enumerate().zip(&keys).rev().map(|((i, _), key)| {
            let layer = op_access(b, i, &quote!(__b));
            let path = op_path(b, i);
            let input = if i + 1 == b.ops.len() { quote!(&__d) } else { quote!(&__g) };
            quote!(let __g = #train::backward(&#layer, #key, #input, #path, grads)?;)
        });
        let body = quote!(#(#steps)* ::rep::__private::accumulate(&mut __dx, __g, #name)?;);
        let branch =
            if b.optional { quote!(self.#field.as_ref()) } else { quote!(::core::option::Option::Some(&self.#field)) };
        quote! {
            if let (::core::option::Option::Some(__b), ::core::option::Option::Some((#(#keys,)*))) = (#branch, #cache) {
                #body
            }
        }
    });
    let online = online.then(|| {
        quote! {
            if let ::core::option::Option::Some(__online) = __online {
                let (__dx, __fused) = __online.backward(&__d)?;
                self.squeeze_backward(&__fused, prefix, grads)?;
                return ::core::result::Result::Ok(__dx);
            }
        }
    });
    quote! {
        let ((#(#branch_names,)*), (#(#post_names,)*), __online) = __cache;
        let __d = dy.clone();
        #(#post)*
        #online
        let mut __dx: ::core::option::Option<::rep::ndarray::Array4<f32>> = ::core::option::Option::None;
        #(#branches)*
        __dx.ok_or_else(|| ::rep::Error::Geometry("no branch of the block is present".into()))
    }
}

/// `rep::train::Network` for a model: each field's training forward in order, keeping its
/// cache; the backward in reverse order, stage blocks named `stage.i`.
pub fn network(model: &crate::internals::model::Model) -> TokenStream {
    use crate::internals::model::Kind;
    let train = train_trait();
    let name = &model.item.ident;
    let output = super::model::output(model);
    let caches = cache_names("field", model.fields.len());
    let cache_types = model.fields.iter().map(|f| match &f.kind {
        Kind::Block { .. } => {
            let alias = f.block_type(name);
            quote!(<#alias as #train>::Cache)
        }
        Kind::Stage { .. } => {
            let alias = f.block_type(name);
            quote!(::std::vec::Vec<<#alias as #train>::Cache>)
        }
        Kind::Pool => quote!((usize, usize)),
        Kind::Linear { .. } => quote!(::rep::ndarray::Array2<f32>),
    });
    let forward = model.fields.iter().zip(&caches).map(|(f, cache)| forward_step(f, cache, &train));
    let backward = model.fields.iter().zip(&caches).rev().map(|(f, cache)| backward_step(f, cache, &train));
    let freeze = model.fields.iter().filter_map(|f| {
        let ident = &f.ident;
        match &f.kind {
            Kind::Block { .. } => Some(quote!(#train::freeze_batch_norm(&mut self.#ident, frozen);)),
            Kind::Stage { .. } => {
                Some(quote!(self.#ident.iter_mut().for_each(|__b| #train::freeze_batch_norm(__b, frozen));))
            }
            Kind::Pool | Kind::Linear { .. } => None,
        }
    });
    quote! {
        impl ::rep::train::Network for #name {
            type Output = #output;
            type Cache = (#(#cache_types,)*);

            fn freeze_batch_norm(&mut self, frozen: bool) {
                #(#freeze)*
            }

            fn forward_cached(&mut self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<(#output, Self::Cache)> {
                let __x = x.clone();
                #(#forward)*
                ::core::result::Result::Ok((__x, (#(#caches,)*)))
            }

            fn backward(&self, __cache: Self::Cache, dy: &#output, grads: &mut ::rep::train::Gradients) -> ::rep::Result<()> {
                let (#(#caches,)*) = __cache;
                let __d = dy.clone();
                #(#backward)*
                let _ = __d;
                ::core::result::Result::Ok(())
            }
        }
    }
}

/// One field's statements in a model's `forward_cached`: run it on `__x`, keep its cache.
fn forward_step(f: &crate::internals::model::Field, cache: &syn::Ident, train: &TokenStream) -> TokenStream {
    use crate::internals::model::Kind;
    let ident = &f.ident;
    match &f.kind {
        Kind::Block { .. } => quote!(let (__x, #cache) = #train::forward_cached(&mut self.#ident, &__x)?;),
        Kind::Stage { .. } => quote! {
            let mut __x = __x;
            let mut #cache = ::std::vec::Vec::with_capacity(self.#ident.len());
            for __b in self.#ident.iter_mut() {
                let (__y, __k) = #train::forward_cached(__b, &__x)?;
                #cache.push(__k);
                __x = __y;
            }
        },
        Kind::Pool => quote! {
            let #cache = (__x.shape()[2], __x.shape()[3]);
            let __x = self.#ident.forward(&__x)?;
        },
        Kind::Linear { .. } => quote!(let #cache = __x.clone(); let __x = self.#ident.forward(&__x)?;),
    }
}

/// One field's statements in a model's `backward`: `__d` through it, in reverse order.
fn backward_step(f: &crate::internals::model::Field, cache: &syn::Ident, train: &TokenStream) -> TokenStream {
    use crate::internals::model::Kind;
    let (ident, field_name) = (&f.ident, &f.name);
    match &f.kind {
        Kind::Block { .. } => quote!(let __d = #train::backward(&self.#ident, #cache, &__d, #field_name, grads)?;),
        Kind::Stage { .. } => quote! {
            let mut __d = __d;
            for (__i, (__b, __k)) in self.#ident.iter().zip(#cache).enumerate().rev() {
                __d = #train::backward(__b, __k, &__d, &::std::format!("{}.{}", #field_name, __i), grads)?;
            }
        },
        Kind::Pool => quote!(let __d = self.#ident.backward(#cache, &__d);),
        Kind::Linear { .. } => quote!(let __d = self.#ident.backward(&#cache, &__d, #field_name, grads)?;),
    }
}
