//! Branch forward passes (eval and training) and `fuse`.

use super::construct::is_spatial;
use crate::internals::ast::{Bank, Block, Branch, ConvSpec, OpKind, Pair, PostOp};
use proc_macro2::TokenStream;
use quote::quote;
use syn::Index;

/// `self.field` (or the `Some` binding) and, in a sequence, `.i`.
pub(super) fn op_access(b: &Branch, i: usize, base: &TokenStream) -> TokenStream {
    if b.sequence {
        let index = Index::from(i);
        quote!(#base.#index)
    } else {
        quote!((*#base))
    }
}

/// Whether op `i` pads its input with what the 1×1 stages before it make of zero (their bias),
/// as DBB's BN-and-pad does: a padded spatial op whose every predecessor is pointwise.
pub(super) fn needs_fill(b: &Branch, i: usize) -> bool {
    let geometry = |op: &OpKind| match op {
        OpKind::Conv(c) | OpKind::ConvBn(c, _) => Some((c.kernel.clone(), c.stride.clone(), c.padding.clone())),
        OpKind::Filter { kernel, stride, padding, .. } => Some((kernel.clone(), stride.clone(), padding.clone())),
        _ => None,
    };
    let pointwise = |op: &OpKind| geometry(op).is_none_or(|(k, s, p)| !is_spatial(&k, &s, &p.or(Some(Pair::lit(0)))));
    let unpadded = |p: &Option<Pair>| p.as_ref().is_some_and(|p| p.h.value() == Some(0) && p.w.value() == Some(0));
    match geometry(&b.ops[i].kind) {
        Some((k, s, p)) => {
            i > 0
                && is_spatial(&k, &s, &Some(Pair::lit(0)))
                && !unpadded(&p)
                && b.ops[..i].iter().all(|op| pointwise(&op.kind))
        }
        None => false,
    }
}

/// `let __fill = …;`: what ops `0..i` of the branch produce for a zero input (their bias, in
/// eval mode), the value DBB's BN-and-pad pads op `i`'s input with.
pub(super) fn fill_value(b: &Branch, i: usize) -> TokenStream {
    let base = quote!(__b);
    let prefix = (0..i).map(|j| {
        let prev = op_access(b, j, &base);
        match &b.ops[j].kind {
            OpKind::Identity(_) => quote!(),
            _ => quote!(let __z = ::rep::layers::Layer::forward(&#prev, &__z)?;),
        }
    });
    quote! {
        let __fill = {
            let __z = ::rep::ndarray::Array4::<f32>::zeros((1, x.shape()[1], 1, 1));
            #(#prefix)*
            ::rep::ndarray::Array1::from_iter(__z.iter().copied())
        };
    }
}

/// The forward of one branch on `x`, as an expression (the branch value bound as `__b`).
pub(super) fn branch_forward(b: &Branch, train: bool) -> TokenStream {
    let base = quote!(__b);
    let mut steps = Vec::new();
    for (i, op) in b.ops.iter().enumerate() {
        let layer = op_access(b, i, &base);
        let fill = needs_fill(b, i).then(|| fill_value(b, i));
        let call = match (&op.kind, fill.is_some(), train) {
            (OpKind::Identity(_), ..) => quote!(__y.clone()),
            (OpKind::ConvBn(..), true, true) => quote!({
                let __c = #layer.conv.forward_with_fill(&__y, &__fill)?;
                ::rep::layers::Layer::forward_train(&mut #layer.bn, &__c)?
            }),
            (OpKind::ConvBn(..), true, false) => quote!({
                let __c = #layer.conv.forward_with_fill(&__y, &__fill)?;
                ::rep::layers::Layer::forward(&#layer.bn, &__c)?
            }),
            (_, true, _) => quote!(#layer.forward_with_fill(&__y, &__fill)?),
            (_, false, true) => quote!(::rep::layers::Layer::forward_train(&mut #layer, &__y)?),
            (_, false, false) => quote!(::rep::layers::Layer::forward(&#layer, &__y)?),
        };
        steps.push(quote!(#fill let __y = #call;));
    }
    quote!({
        let __y = x.clone();
        #(#steps)*
        __y
    })
}

pub(super) fn forward(block: &Block, train: bool) -> TokenStream {
    let branches = block.branches.iter().map(|b| {
        let field = &b.field;
        let name = &b.name;
        let body = branch_forward(b, train);
        let binding = if train { quote!(&mut self.#field) } else { quote!(&self.#field) };
        let add = quote!(::rep::__private::accumulate(&mut __sum, __out, #name)?;);
        let run = quote!(let __out = #body; #add);
        if b.optional {
            quote!(if let ::core::option::Option::Some(__b) = #binding { #run })
        } else {
            quote!({ let __b = #binding; #run })
        }
    });
    let post = post_ops(block, quote!(__sum), train, false);
    quote! {
        let mut __sum: ::core::option::Option<::rep::ndarray::Array4<f32>> = ::core::option::Option::None;
        #(#branches)*
        #[allow(unused_mut)]
        let mut __sum = __sum.ok_or_else(|| ::rep::Error::Geometry("no branch of the block is present".into()))?;
        #post
        ::core::result::Result::Ok(__sum)
    }
}

/// Post-sum ops applied to `value`; `skip_bn` in the fused form (the BN is folded).
pub(super) fn post_ops(block: &Block, value: TokenStream, train: bool, skip_bn: bool) -> TokenStream {
    post_ops_of(&block.post.iter().collect::<Vec<_>>(), value, train, skip_bn)
}

/// [`post_ops`] for a given list of ops.
pub(super) fn post_ops_of(ops: &[&PostOp], value: TokenStream, train: bool, skip_bn: bool) -> TokenStream {
    ops.iter()
        .map(|p| match p {
            PostOp::Bn(..) if skip_bn => quote!(),
            PostOp::Bn(..) if train => quote!(#value = ::rep::layers::Layer::forward_train(&mut self.bn, &#value)?;),
            PostOp::Bn(..) => quote!(#value = ::rep::layers::Layer::forward(&self.bn, &#value)?;),
            PostOp::Activation(variant) => quote!(::rep::layers::Activation::#variant.apply_inplace(&mut #value);),
            PostOp::Se(.., Some(_)) => quote! {
                if let ::core::option::Option::Some(__se) = &self.se {
                    #value = ::rep::layers::Layer::forward(__se, &#value)?;
                }
            },
            PostOp::Se(.., None) => quote!(#value = ::rep::layers::Layer::forward(&self.se, &#value)?;),
        })
        .collect()
}

/// A `Conv` op's layer as a `Conv2d` with its whole kernel (`W = I + Δ` for an identity-based one).
pub(super) fn conv_layer(spec: &ConvSpec, layer: &TokenStream) -> TokenStream {
    if spec.identity_based { quote!(#layer.kernel()) } else { quote!(#layer) }
}

/// `squeeze`: every present branch to an `AffineConv`, summed; binds `__squeezed`.
pub(super) fn squeeze(block: &Block, main: usize) -> TokenStream {
    let mut branches: Vec<TokenStream> = block
        .branches
        .iter()
        .enumerate()
        .map(|(index, b)| {
            let field = &b.field;
            let name = &b.name;
            let base = quote!(__b);
            let mut chain = Vec::new();
            // An ImplicitA folds into the conv right after it; `start` is where the chain begins.
            let mut pending_implicit: Option<TokenStream> = None;
            let mut start = 0;
            for (i, op) in b.ops.iter().enumerate() {
                let layer = op_access(b, i, &base);
                let implicit = pending_implicit.take();
                if let OpKind::ImplicitA(_) = op.kind {
                    pending_implicit = Some(layer);
                    if i == start {
                        start += 1;
                    }
                    continue;
                }
                let step = squeeze_step(&op.kind, i == start, &layer, implicit.as_ref());
                chain.push(quote!(let __acc = #step;));
            }
            let body = quote!({ #(#chain)* __acc });
            let push = if index == main {
                quote! {
                    let __main = #body;
                    (__channels, __groups) = (__main.geometry.in_channels, __main.geometry.groups);
                    __branches.push((#name, __main));
                }
            } else {
                quote!(__branches.push((#name, #body));)
            };
            if b.optional {
                quote!(if let ::core::option::Option::Some(__b) = &self.#field { #push })
            } else {
                quote!({ let __b = &self.#field; #push })
            }
        })
        .collect();
    // The main branch first: the identity, pool and BN branches take its channels and groups.
    let main_branch = branches.remove(main);
    branches.insert(0, main_branch);
    quote! {
        let mut __branches: ::std::vec::Vec<(&str, ::rep::fusion::AffineConv)> = ::std::vec::Vec::new();
        #[allow(unused_variables, unused_assignments)]
        let (mut __channels, mut __groups) = (0usize, 1usize);
        #(#branches)*
        let __squeezed = ::rep::fusion::sum_branches(&__branches)?;
    }
}

/// One step of a branch's squeeze chain: the op as an `AffineConv` at the chain's start, or
/// merged into `__acc`; a pending ImplicitA (`implicit`) folds into the conv that follows it.
fn squeeze_step(kind: &OpKind, first: bool, layer: &TokenStream, implicit: Option<&TokenStream>) -> TokenStream {
    let conv = |affine: TokenStream| match implicit {
        Some(ia) => quote!(#affine.after_implicit_a(&#ia)?),
        None => affine,
    };
    match (kind, first) {
        // The caller folds an ImplicitA into the conv after it; it never reaches here.
        (OpKind::ImplicitA(_), _) => quote!(__acc),
        (OpKind::Conv(spec), true) => {
            let layer = conv_layer(spec, layer);
            conv(quote!(::rep::fusion::AffineConv::from_conv(&#layer)?))
        }
        (OpKind::ConvBn(..), true) => conv(quote!(#layer.fuse()?)),
        (OpKind::Bn(..), true) => quote!(::rep::fusion::bn_identity(&#layer, __groups)?),
        (OpKind::Scale(..), true) => {
            quote!(::rep::fusion::identity(__channels, __groups)?.then_scale(&#layer)?)
        }
        (OpKind::ImplicitM(..), true) => {
            quote!(::rep::fusion::identity(__channels, __groups)?.then_implicit_m(&#layer)?)
        }
        (OpKind::Identity(_), true) => quote!(::rep::fusion::identity(__channels, __groups)?),
        (OpKind::Filter { bank: Bank::Dct, .. }, true) => {
            quote!(::rep::fusion::AffineConv::from_conv(&#layer.conv)?)
        }
        (OpKind::Filter { bank: Bank::Dct, .. }, false) => {
            quote!(__acc.then(&::rep::fusion::AffineConv::from_conv(&#layer.conv)?)?)
        }
        (OpKind::Filter { .. }, true) => {
            quote!(::rep::fusion::avg_pool_kernel(__channels, __groups, &#layer)?)
        }
        (OpKind::Conv(spec), false) => {
            let layer = conv_layer(spec, layer);
            let next = conv(quote!(::rep::fusion::AffineConv::from_conv(&#layer)?));
            quote!(__acc.then(&#next)?)
        }
        (OpKind::ConvBn(..), false) => {
            let next = conv(quote!(#layer.fuse()?));
            quote!(__acc.then(&#next)?)
        }
        (OpKind::Bn(..), false) => quote!(__acc.then_bn(&#layer)?),
        (OpKind::Scale(..), false) => quote!(__acc.then_scale(&#layer)?),
        (OpKind::ImplicitM(..), false) => quote!(__acc.then_implicit_m(&#layer)?),
        (OpKind::Identity(_), false) => quote!(__acc),
        (OpKind::Filter { .. }, false) => quote!({
            let __c = __acc.geometry.out_channels;
            __acc.then(&::rep::fusion::avg_pool_kernel(__c, __c, &#layer)?)?
        }),
    }
}

/// True when every branch is linear even while training (no BN inside a branch) and a BN
/// follows the sum: OREPA's linearized block, whose training forward can run one conv.
pub(super) fn is_online(block: &Block) -> bool {
    matches!(block.post.first(), Some(PostOp::Bn(..)))
        && block.branches.iter().all(|b| b.ops.iter().all(|op| !matches!(op.kind, OpKind::Bn(..) | OpKind::ConvBn(..))))
}

/// OREPA's online training forward: squeeze the branches into one kernel, run one conv, then
/// the post-sum ops (the BN with batch statistics).
pub(super) fn forward_online(block: &Block) -> TokenStream {
    let post = post_ops(block, quote!(__sum), true, false);
    quote! {
        let __conv = self.squeeze()?.to_conv2d();
        #[allow(unused_mut)]
        let mut __sum = ::rep::layers::Layer::forward(&__conv, x)?;
        #post
        ::core::result::Result::Ok(__sum)
    }
}
