//! OREPA's online training for a block whose branches are linear while training: the forward
//! runs one convolution on the squeezed kernel, and `squeeze_backward` sends that kernel's
//! gradient to every branch parameter through the transposes of the fusion steps `squeeze`
//! took (recomputed here: they are kernel-sized), main branch first as in `squeeze`.

use super::branch::op_access;
use crate::internals::ast::{Bank, Block, Branch, ConvSpec, OpKind};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// One step of a branch's squeeze chain and how its transpose treats it.
enum Step {
    /// The chain's start: a trainable conv (its gradient is the start's), a per-channel factor
    /// on an identity (`Scale`, `ImplicitM`) or a fixed kernel.
    Start { value: TokenStream, transpose: TokenStream },
    /// `acc.then(&next)`; `trainable` when `next` is a conv layer of the branch.
    Then { next: TokenStream, layer: Option<TokenStream> },
    /// `acc.then_channel_affine(factors)` of a scaling layer or ImplicitM.
    Factors { apply: TokenStream, factors: TokenStream, shape: TokenStream, name: &'static str },
    /// No change (an identity after the start).
    Nothing,
}

fn factors(kind: &OpKind, layer: &TokenStream) -> Option<(TokenStream, TokenStream, TokenStream, &'static str)> {
    match kind {
        OpKind::Scale(..) => Some((
            quote!(then_scale(&#layer)),
            quote!(#layer.weight.iter().map(|&v| v as f64).collect::<::std::vec::Vec<f64>>()),
            quote!(&[#layer.weight.len()]),
            "weight",
        )),
        OpKind::ImplicitM(..) => Some((
            quote!(then_implicit_m(&#layer)),
            quote!(#layer.values()),
            quote!(#layer.implicit.shape()),
            "implicit",
        )),
        _ => None,
    }
}

/// A `Conv` op's whole kernel as a `Conv2d`, and the `Conv2d` holding its parameter (for an
/// identity-based conv, `I + Δ` and Δ: they share their gradient).
fn conv_parts(spec: &ConvSpec, layer: &TokenStream) -> (TokenStream, TokenStream) {
    let parameter = if spec.identity_based { quote!(#layer.delta) } else { layer.clone() };
    (super::branch::conv_layer(spec, layer), parameter)
}

/// The chain of one branch, or `None` when it holds an op the online backward does not handle.
fn steps(b: &Branch) -> Option<Vec<(Step, TokenStream)>> {
    let base = quote!(__b);
    let path = |i: usize| {
        let (join, name) = (quote!(::rep::layers::join), &b.name);
        if b.sequence {
            let op = &b.ops[i].name;
            quote!(#join(&#join(prefix, #name), #op))
        } else {
            quote!(#join(prefix, #name))
        }
    };
    let fusion = quote!(::rep::fusion);
    let mut steps = Vec::new();
    for (i, op) in b.ops.iter().enumerate() {
        let layer = op_access(b, i, &base);
        let path_i = path(i);
        let first = i == 0;
        let step = match (&op.kind, first) {
            (OpKind::Conv(spec), true) => {
                let (whole, parameter) = conv_parts(spec, &layer);
                Step::Start {
                    value: quote!(#fusion::AffineConv::from_conv(&#whole)?),
                    transpose: quote!(::rep::train::accumulate_conv_gradient(&#parameter, &__d, &#path_i, grads)?;),
                }
            }
            (OpKind::Identity(_), true) => {
                Step::Start { value: quote!(#fusion::identity(__channels, __groups)?), transpose: quote!() }
            }
            (OpKind::Filter { bank: Bank::Dct, .. }, true) => {
                Step::Start { value: quote!(#fusion::AffineConv::from_conv(&#layer.conv)?), transpose: quote!() }
            }
            (OpKind::Filter { bank: Bank::Avg, .. }, true) => Step::Start {
                value: quote!(#fusion::avg_pool_kernel(__channels, __groups, &#layer)?),
                transpose: quote!(),
            },
            (kind @ (OpKind::Scale(..) | OpKind::ImplicitM(..)), true) => {
                let (apply, factors, shape, name) = factors(kind, &layer)?;
                Step::Start {
                    value: quote!(#fusion::identity(__channels, __groups)?.#apply?),
                    transpose: quote! {
                        let (_, __da) = #fusion::identity(__channels, __groups)?.channel_affine_adjoint(&#factors, &__d)?;
                        ::rep::train::accumulate_factors(&__da, #shape, &::rep::layers::join(&#path_i, #name), grads)?;
                    },
                }
            }
            (OpKind::Conv(spec), false) => {
                let (whole, parameter) = conv_parts(spec, &layer);
                Step::Then { next: quote!(#fusion::AffineConv::from_conv(&#whole)?), layer: Some(parameter) }
            }
            (OpKind::Filter { bank: Bank::Dct, .. }, false) => {
                Step::Then { next: quote!(#fusion::AffineConv::from_conv(&#layer.conv)?), layer: None }
            }
            (OpKind::Filter { bank: Bank::Avg, .. }, false) => Step::Then {
                next: quote!({
                    let __c = __s.geometry.out_channels;
                    #fusion::avg_pool_kernel(__c, __c, &#layer)?
                }),
                layer: None,
            },
            (kind @ (OpKind::Scale(..) | OpKind::ImplicitM(..)), false) => {
                let (apply, factors, shape, name) = factors(kind, &layer)?;
                Step::Factors { apply, factors, shape, name }
            }
            (OpKind::Identity(_), false) => Step::Nothing,
            (OpKind::ConvBn(..) | OpKind::Bn(..) | OpKind::ImplicitA(_), _) => return None,
        };
        steps.push((step, path_i));
    }
    Some(steps)
}

/// Whether every branch's chain has a transpose here (no BN inside a branch, no ImplicitA).
pub(super) fn supported(block: &Block) -> bool {
    block.branches.iter().all(|b| steps(b).is_some())
}

/// The body of `squeeze_backward(&self, fused, prefix, grads)`: each branch's chain recomputed,
/// the fused gradient cropped to its kernel, then the chain's transposes in reverse.
pub(super) fn squeeze_backward(block: &Block, main: usize) -> TokenStream {
    let mut order: Vec<usize> = (0..block.branches.len()).collect();
    order.retain(|&i| i != main);
    order.insert(0, main);
    let branches = order.into_iter().map(|index| {
        let b = &block.branches[index];
        let steps = steps(b).expect("checked by `supported`");
        let value = |k: usize| format_ident!("__s{}", k);
        let next = |k: usize| format_ident!("__n{}", k);
        let forward = steps.iter().enumerate().map(|(k, (step, _))| {
            let (s_k, n_k) = (value(k), next(k));
            let s_prev = value(k.saturating_sub(1));
            match step {
                Step::Start { value, .. } => quote!(let #s_k = #value;),
                Step::Then { next, .. } => quote! {
                    let #n_k = { let __s = &#s_prev; #next };
                    let #s_k = #s_prev.clone().then(&#n_k)?;
                },
                Step::Factors { apply, .. } => quote!(let #s_k = #s_prev.clone().#apply?;),
                Step::Nothing => quote!(let #s_k = #s_prev.clone();),
            }
        });
        let last = value(steps.len() - 1);
        let keep = (index == main)
            .then(|| quote!((__channels, __groups) = (#last.geometry.in_channels, #last.geometry.groups);));
        let transposes = steps.iter().enumerate().rev().map(|(k, (step, path))| {
            let (s_prev, n_k) = (value(k.saturating_sub(1)), next(k));
            match step {
                Step::Start { transpose, .. } => quote!(#transpose),
                Step::Then { layer: Some(layer), .. } => quote! {
                    let (__d, __dn) = #s_prev.then_adjoint(&#n_k, &__d)?;
                    ::rep::train::accumulate_conv_gradient(&#layer, &__dn, &#path, grads)?;
                },
                Step::Then { layer: None, .. } => quote!(let (__d, _) = #s_prev.then_adjoint(&#n_k, &__d)?;),
                Step::Factors { factors, shape, name, .. } => quote! {
                    let (__d, __da) = #s_prev.channel_affine_adjoint(&#factors, &__d)?;
                    ::rep::train::accumulate_factors(&__da, #shape, &::rep::layers::join(&#path, #name), grads)?;
                },
                Step::Nothing => quote!(),
            }
        });
        let body = quote! {
            #(#forward)*
            #keep
            let __d = #last.crop_gradient(fused)?;
            #(#transposes)*
            let _ = __d;
        };
        let field = &b.field;
        if b.optional {
            quote!(if let ::core::option::Option::Some(__b) = &self.#field { #body })
        } else {
            quote!({ let __b = &self.#field; #body })
        }
    });
    quote! {
        #[allow(unused_variables, unused_assignments)]
        let (mut __channels, mut __groups) = (0usize, 1usize);
        #(#branches)*
        ::core::result::Result::Ok(())
    }
}
