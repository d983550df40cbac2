//! The fused struct of a block: one convolution (and what cannot fold: activations, SE) with
//! its `Layer`, `Parameters`, `plan::Compile` and `Costs`.

use super::branch::post_ops_of;
use super::construct::{arg_name, hw, runtime_condition};
use super::se_type;
use crate::internals::ast::{Block, PostOp};
use crate::internals::check::BlockGeometry;
use crate::internals::geo::Geo;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// `<Name>Fused::new(sizes…)`: the fused block of those sizes with zero weights (and an SE of
/// zeros where the train-time block has one), the skeleton a deploy checkpoint loads into
/// without building and fusing the train-time block.
fn constructor(block: &Block, g: &BlockGeometry) -> TokenStream {
    let generics = crate::internals::attrs::dim_generics(&block.item.generics);
    let params = generics.params.iter();
    let args: Vec<_> = block.dims.iter().map(|d| (arg_name(d), d)).collect();
    let arg_decls = args.iter().map(|(arg, d)| quote!(#arg: #d));
    let locals = args.iter().map(|(arg, d)| {
        let local = Geo::dim_local(d);
        quote!(#[allow(non_snake_case)] let #local: usize = ::rep::Dim::size(#arg);)
    });
    let main = &g.summaries[g.main];
    let (cin, cout, groups) = (main.cin.runtime(), main.cout.runtime(), g.fused.groups.runtime());
    let (k, s, p, d) = (hw(&g.fused.kernel), hw(&main.stride), hw(&g.fused.padding), hw(&g.fused.dilation));
    let se = block.post.iter().find_map(|p| match p {
        PostOp::Se(hidden, _, when) => {
            let hidden = hidden.runtime();
            let names = super::se_names(block);
            let se = quote!(::rep::__private::zero_squeeze_excite(#cout, #hidden)? #names);
            Some(match when {
                Some(when) => {
                    let cond = runtime_condition(block, quote!(#when));
                    quote!(se: if #cond { ::core::option::Option::Some(#se) } else { ::core::option::Option::None },)
                }
                None => quote!(se: #se,),
            })
        }
        _ => None,
    });
    let doc = "A fused block of these sizes with zero weights (and a zero squeeze-excite where the block has \
               one): the skeleton a deploy checkpoint loads into, without building and fusing the train-time block.";
    quote! {
        #[doc = #doc]
        #[allow(clippy::identity_op, clippy::erasing_op, clippy::modulo_one, clippy::eq_op)]
        pub fn new<#(#params),*>(#(#arg_decls),*) -> ::rep::Result<Self> {
            #(#locals)*
            let __geometry = ::rep::ConvGeometry::new(#cin, #cout, #k).stride(#s).padding(#p).dilation(#d).groups(#groups);
            ::core::result::Result::Ok(Self { conv: ::rep::__private::zero_conv(__geometry)?, #se })
        }
    }
}

/// `<Name>Fused` and its impls.
pub(super) fn fused(block: &Block, g: &BlockGeometry) -> TokenStream {
    let constructor = constructor(block, g);
    let (name, vis) = (&block.item.ident, &block.item.vis);
    let fused_name = format_ident!("{}Fused", name);
    let fused_se = block.post.iter().find_map(|p| match p {
        PostOp::Se(.., when) => Some(se_type(when.is_some())),
        _ => None,
    });
    let fused_se_field =
        fused_se.clone().map(|ty| quote!(#[doc = "Squeeze-and-excitation, as in the train-time block."] pub se: #ty,));
    let fused_se = fused_se.is_some();
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
    let parameters_and_costs = parameters_and_costs(&fused_name, fused_weight, fused_se);

    quote! {
        #[doc = #fused_doc]
        #[derive(Clone, Debug, PartialEq)]
        #vis struct #fused_name {
            #[doc = "The fused convolution, with bias."]
            pub conv: ::rep::layers::Conv2d,
            #fused_se_field
        }

        impl #fused_name {
            #constructor
        }

        impl ::rep::layers::Layer for #fused_name {
            fn forward(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                #[allow(unused_mut)]
                let mut __y = self.conv.forward_then(x, #conv_activation)?;
                #fused_post
                ::core::result::Result::Ok(__y)
            }
        }

        #parameters_and_costs

        impl ::rep::plan::Compile for #fused_name {
            fn compile(&self, __plan: &mut ::rep::plan::PlanBuilder, __name: &str) -> ::rep::Result<()> {
                __plan.conv(&self.conv, #conv_activation, &::rep::layers::join(__name, #fused_weight))?;
                #(#planned_post)*
                ::core::result::Result::Ok(())
            }
        }
    }
}

/// `Parameters` (the conv under the fused weight name, then the SE) and `Costs` of the fused struct.
fn parameters_and_costs(fused_name: &syn::Ident, fused_weight: &str, se: bool) -> TokenStream {
    let se_visit =
        se.then(|| quote!(::rep::layers::Parameters::visit(&self.se, &::rep::layers::join(prefix, "se"), f);));
    let se_visit_mut =
        se.then(|| quote!(::rep::layers::Parameters::visit_mut(&mut self.se, &::rep::layers::join(prefix, "se"), f);));
    let se_params = se.then(|| quote!(+ ::rep::Costs::parameter_count(&self.se)));
    let se_macs = se.then(|| quote!(__macs = ::rep::add_macs(__macs, ::rep::Costs::macs(&self.se, __out)?.0)?;));
    quote! {
        impl ::rep::layers::Parameters for #fused_name {
            fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewD<'_, f32>)) {
                ::rep::layers::Parameters::visit(&self.conv, &::rep::layers::join(prefix, #fused_weight), f);
                #se_visit
            }

            fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewMutD<'_, f32>)) {
                ::rep::layers::Parameters::visit_mut(&mut self.conv, &::rep::layers::join(prefix, #fused_weight), f);
                #se_visit_mut
            }
        }

        impl ::rep::Costs for #fused_name {
            fn parameter_count(&self) -> usize {
                ::rep::Costs::parameter_count(&self.conv) #se_params
            }

            fn macs(&self, input: ::rep::Hw) -> ::rep::Result<(u64, ::rep::Hw)> {
                let (mut __macs, __out) = ::rep::Costs::macs(&self.conv, input)?;
                #se_macs
                ::core::result::Result::Ok((__macs, __out))
            }
        }
    }
}
