//! Code generation: the train-time struct, `<Name>Fused`, and their impls, calling only
//! `rep`'s runtime.

use crate::internals::ast::{Block, BnSpec, Branch, ConvSpec, Op, OpKind, Pair, PostOp};
use crate::internals::check::{BlockGeometry, Check, Pred};
use crate::internals::geo::{Geo, Op as GeoOp, SymKind};
use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::{format_ident, quote};
use syn::Index;

/// Everything generated for one block.
pub fn block(block: &Block, geometry: &BlockGeometry, checks: &[Check]) -> TokenStream {
    let item = &block.item;
    let (name, vis) = (&item.ident, &item.vis);
    let fused_name = format_ident!("{}Fused", name);
    let attrs = &item.attrs;
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
        PostOp::Se(..) => {
            Some(quote!(#[doc = "Squeeze-and-excitation after the sum."] pub se: ::rep::layers::SqueezeExcite,))
        }
        PostOp::Activation(..) => None,
    });
    let fused_se = block.post.iter().any(|p| matches!(p, PostOp::Se(..)));
    let fused_se_field = fused_se.then(
        || quote!(#[doc = "Squeeze-and-excitation, as in the train-time block."] pub se: ::rep::layers::SqueezeExcite,),
    );

    let new_fn = constructor(block, geometry, checks);
    let block_impl = block_trait(block, geometry);
    let (forward_eval, forward_train) = (forward(block, false), forward(block, true));
    let fuse = fuse(block);
    let (visit_ref, visit_mut) = (visit(block, false), visit(block, true));
    let costs = costs(block);
    let fused_post = post_ops(block, quote!(__y), false, true);
    let fused_weight = &block.fused_name;
    let fused_doc =
        format!("The inference form of [`{name}`]: one convolution (`{fused_weight}`) and the post-sum ops.");
    let fused_se_visit =
        fused_se.then(|| quote!(::rep::layers::Parameters::visit(&self.se, &::rep::layers::join(prefix, "se"), f);));
    let fused_se_visit_mut = fused_se
        .then(|| quote!(::rep::layers::Parameters::visit_mut(&mut self.se, &::rep::layers::join(prefix, "se"), f);));
    let fused_se_params = fused_se.then(|| quote!(+ ::rep::Costs::parameter_count(&self.se)));
    let fused_se_macs = fused_se.then(|| quote!(__macs += ::rep::Costs::macs(&self.se, __out)?.0;));
    let fused_se_init = fused_se.then(|| quote!(se: self.se.clone(),));

    quote! {
        #(#attrs)*
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
        }

        impl #impl_generics ::rep::Reparameterize for #name #ty_generics #where_clause {
            type Fused = #fused_name;

            fn fuse(&self) -> ::rep::Result<#fused_name> {
                #fuse
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
                let mut __y = ::rep::layers::Layer::forward(&self.conv, x)?;
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

/// The runtime type of one op.
fn op_type(op: &Op) -> TokenStream {
    match &op.kind {
        OpKind::Conv(_) => quote!(::rep::layers::Conv2d),
        OpKind::ConvBn(..) => quote!(::rep::layers::ConvBn),
        OpKind::Bn(..) => quote!(::rep::layers::BatchNorm2d),
        OpKind::Scale(..) => quote!(::rep::layers::Scale),
        OpKind::AvgPool { .. } => quote!(::rep::layers::AvgPool2d),
        OpKind::Identity(_) => quote!(()),
    }
}

fn branch_type(b: &Branch) -> TokenStream {
    let ops = b.ops.iter().map(op_type);
    let inner = if b.sequence { quote!((#(#ops,)*)) } else { quote!(#(#ops)*) };
    if b.optional { quote!(::core::option::Option<#inner>) } else { inner }
}

fn hw(p: &Pair) -> TokenStream {
    let (h, w) = (p.h.runtime(), p.w.runtime());
    quote!(::rep::Hw::new(#h, #w))
}

/// Padding for a branch's spatial op so that its window centre lines up with the main branch:
/// `(2·P + d·(k − 1) − D·(K − 1)) / 2` per axis.
fn aligned_padding(g: &BlockGeometry, main_kernel: &Pair, kernel: &Pair, dilation: &Pair) -> Pair {
    let axis = |p: &Geo, d: &Geo, k: &Geo, md: &Geo, mk: &Geo| {
        let reach = |d: &Geo, k: &Geo| Geo::bin(d.clone(), GeoOp::Mul, Geo::bin(k.clone(), GeoOp::Sub, Geo::lit(1)));
        let twice = Geo::bin(Geo::lit(2), GeoOp::Mul, p.clone());
        let num = Geo::bin(Geo::bin(twice, GeoOp::Add, reach(d, k)), GeoOp::Sub, reach(md, mk));
        Geo::bin(num, GeoOp::Div, Geo::lit(2))
    };
    Pair {
        h: axis(&g.main_padding.h, &dilation.h, &kernel.h, &g.main_dilation.h, &main_kernel.h),
        w: axis(&g.main_padding.w, &dilation.w, &kernel.w, &g.main_dilation.w, &main_kernel.w),
    }
}

fn is_spatial(kernel: &Pair, stride: &Pair, padding: &Option<Pair>) -> bool {
    [&kernel.h, &kernel.w, &stride.h, &stride.w].iter().any(|g| g.value() != Some(1))
        || padding.as_ref().is_some_and(|p| [&p.h, &p.w].iter().any(|g| g.value() != Some(0)))
}

fn bn_options(bn: &BnSpec) -> TokenStream {
    match (&bn.eps, &bn.momentum) {
        (None, None) => quote!(),
        (eps, momentum) => {
            let eps = eps.as_ref().map_or(quote!(1e-5), |e| quote!(#e));
            let momentum = momentum.as_ref().map_or(quote!(0.1), |m| quote!(#m));
            quote!(.with_eps_momentum(#eps, #momentum))
        }
    }
}

fn conv_geometry(spec: &ConvSpec, padding: &Pair) -> TokenStream {
    let (cin, cout, groups) = (spec.cin.runtime(), spec.cout.runtime(), spec.groups.runtime());
    let (k, s, p, d) = (hw(&spec.kernel), hw(&spec.stride), hw(padding), hw(&spec.dilation));
    quote!(::rep::ConvGeometry::new(#cin, #cout, #k).stride(#s).padding(#p).dilation(#d).groups(#groups))
}

/// The expression building one op.
fn construct_op(op: &Op, g: &BlockGeometry, main_kernel: &Pair) -> TokenStream {
    let padding_of = |kernel: &Pair, stride: &Pair, dilation: &Pair, padding: &Option<Pair>| match padding {
        Some(p) => p.clone(),
        None if is_spatial(kernel, stride, padding) => aligned_padding(g, main_kernel, kernel, dilation),
        None => Pair::lit(0),
    };
    match &op.kind {
        OpKind::Conv(spec) => {
            let geometry = conv_geometry(spec, &padding_of(&spec.kernel, &spec.stride, &spec.dilation, &spec.padding));
            if spec.bias {
                quote!(::rep::layers::Conv2d::new_with_bias(#geometry, rng)?)
            } else {
                quote!(::rep::layers::Conv2d::new(#geometry, rng)?)
            }
        }
        OpKind::ConvBn(spec, bn) => {
            let geometry = conv_geometry(spec, &padding_of(&spec.kernel, &spec.stride, &spec.dilation, &spec.padding));
            match bn_options(bn) {
                options if options.is_empty() => quote!(::rep::layers::ConvBn::new(#geometry, rng)?),
                options => quote!({
                    let mut __layer = ::rep::layers::ConvBn::new(#geometry, rng)?;
                    __layer.bn = __layer.bn #options;
                    __layer
                }),
            }
        }
        OpKind::Bn(channels, bn) => {
            let (c, options) = (channels.runtime(), bn_options(bn));
            quote!(::rep::layers::BatchNorm2d::new(#c) #options)
        }
        OpKind::Scale(channels, init) => {
            let c = channels.runtime();
            quote!(::rep::layers::Scale::new(#c, #init))
        }
        OpKind::AvgPool { kernel, stride, padding, .. } => {
            let p = padding_of(kernel, stride, &Pair::lit(1), padding);
            let (k, s, p) = (hw(kernel), hw(stride), hw(&p));
            quote!(::rep::layers::AvgPool2d::new(#k, #s, #p))
        }
        OpKind::Identity(_) => quote!(()),
    }
}

/// Replaces `Dim` parameters in a `when` condition by their run-time sizes.
fn runtime_condition(block: &Block, tokens: TokenStream) -> TokenStream {
    tokens
        .into_iter()
        .map(|tt| match tt {
            TokenTree::Ident(ident) if block.symbols.0.iter().any(|(i, k)| *i == ident && *k == SymKind::Dim) => {
                TokenTree::Ident(Geo::dim_local(&ident))
            }
            TokenTree::Group(group) => {
                let mut new = proc_macro2::Group::new(group.delimiter(), runtime_condition(block, group.stream()));
                new.set_span(group.span());
                TokenTree::Group(new)
            }
            other => other,
        })
        .collect()
}

fn runtime_check(check: &Check) -> TokenStream {
    let cond = match &check.pred {
        Pred::Eq(a, b) => {
            let (a, b) = (a.runtime(), b.runtime());
            quote!(#a == #b)
        }
        Pred::Le(a, b) => {
            let (a, b) = (a.runtime(), b.runtime());
            quote!(#a <= #b)
        }
        Pred::Odd(a) => {
            let a = a.runtime();
            quote!(#a % 2 == 1)
        }
        Pred::Divides(g, c) => {
            let (g, c) = (g.runtime(), c.runtime());
            quote!(#g != 0 && #c % #g == 0)
        }
    };
    let message = &check.message;
    quote! {
        if !(#cond) {
            return ::core::result::Result::Err(::rep::Error::Geometry(::std::string::String::from(#message)));
        }
    }
}

fn static_assert(check: &Check) -> TokenStream {
    let fails = match &check.pred {
        Pred::Eq(a, b) => {
            let (a, b) = (a.statik(), b.statik());
            quote!(::rep::dim::differ(#a, #b))
        }
        Pred::Le(a, b) => {
            let (a, b) = (a.statik(), b.statik());
            quote!(::rep::dim::exceeds(#a, #b))
        }
        Pred::Odd(a) => {
            let a = a.statik();
            quote!(::rep::dim::is_even(#a))
        }
        Pred::Divides(g, c) => {
            let (g, c) = (g.statik(), c.statik());
            quote!(::rep::dim::not_divisible(#c, #g))
        }
    };
    let message = &check.message;
    quote!(::core::assert!(!#fails, #message);)
}

fn arg_name(dim: &Ident) -> Ident {
    format_ident!("{}", dim.to_string().to_lowercase())
}

fn constructor(block: &Block, g: &BlockGeometry, checks: &[Check]) -> TokenStream {
    let main_kernel = &g.summaries[0].kernel;
    let args = block.dims.iter().map(|d| {
        let arg = arg_name(d);
        quote!(#arg: #d)
    });
    let locals = block.dims.iter().map(|d| {
        let (arg, local) = (arg_name(d), Geo::dim_local(d));
        quote!(#[allow(non_snake_case)] let #local: usize = ::rep::Dim::size(#arg);)
    });
    let always: Vec<&Check> = checks.iter().filter(|c| c.branch.is_none()).collect();
    let statics = always.iter().map(|c| static_assert(c));
    let runtime = always.iter().map(|c| runtime_check(c));
    let inits = block.branches.iter().enumerate().map(|(index, b)| {
        let field = &b.field;
        let ops: Vec<TokenStream> = b.ops.iter().map(|op| construct_op(op, g, main_kernel)).collect();
        let value = if b.sequence { quote!((#(#ops,)*)) } else { quote!(#(#ops)*) };
        match &b.when {
            Some(when) => {
                let cond = runtime_condition(block, quote!(#when));
                let own = checks.iter().filter(|c| c.branch == Some(index)).map(runtime_check);
                quote!(let #field = if #cond { #(#own)* ::core::option::Option::Some(#value) } else { ::core::option::Option::None };)
            }
            None => quote!(let #field = #value;),
        }
    });
    let names = block.branches.iter().map(|b| &b.field);
    let (cin, cout) = (g.summaries[0].cin.runtime(), g.summaries[0].cout.runtime());
    let post = block.post.iter().filter_map(|p| match p {
        PostOp::Bn(bn, _) => {
            let options = bn_options(bn);
            Some(quote!(bn: ::rep::layers::BatchNorm2d::new(#cout) #options,))
        }
        PostOp::Se(hidden, _) => {
            let hidden = hidden.runtime();
            Some(quote!(se: ::rep::layers::SqueezeExcite::new(#cout, #hidden, rng)?,))
        }
        PostOp::Activation(..) => None,
    });
    let phantom = (!block.dims.is_empty()).then(|| quote!(_dims: ::core::marker::PhantomData,));
    let signature_doc = if block.dims.is_empty() {
        "Builds the block with PyTorch's default initialization (Kaiming-uniform convs, BN in its initial state)."
            .to_owned()
    } else {
        let names: Vec<String> = block.dims.iter().map(|d| format!("`{}`", arg_name(d))).collect();
        format!(
            "Builds the block with PyTorch's default initialization. {} give the sizes: `rep::Const::<N>` checks \
             the geometry at compile time, `usize` checks it here and returns an error.",
            names.join(", ")
        )
    };
    quote! {
        #[doc = #signature_doc]
        pub fn new(#(#args,)* rng: &mut impl ::rep::rand::Rng) -> ::rep::Result<Self> {
            const { #(#statics)* }
            #(#locals)*
            #(#runtime)*
            #(#inits)*
            ::core::result::Result::Ok(Self { #(#names,)* #(#post)* _channels: (#cin, #cout), #phantom })
        }
    }
}

/// `self.field` (or the `Some` binding) and, in a sequence, `.i`.
fn op_access(b: &Branch, i: usize, base: &TokenStream) -> TokenStream {
    if b.sequence {
        let index = Index::from(i);
        quote!(#base.#index)
    } else {
        quote!((*#base))
    }
}

fn needs_fill(b: &Branch, i: usize) -> bool {
    if i == 0 {
        return false;
    }
    match &b.ops[i].kind {
        OpKind::Conv(c) | OpKind::ConvBn(c, _) => is_spatial(&c.kernel, &c.stride, &Some(Pair::lit(1))),
        OpKind::AvgPool { .. } => true,
        _ => false,
    }
}

/// The forward of one branch on `x`, as an expression (the branch value bound as `__b`).
fn branch_forward(b: &Branch, train: bool) -> TokenStream {
    let base = quote!(__b);
    let mut steps = Vec::new();
    for (i, op) in b.ops.iter().enumerate() {
        let layer = op_access(b, i, &base);
        let fill = needs_fill(b, i).then(|| {
            // Pad with what the ops before produce for a zero input (their bias), as DBB does.
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
        });
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

fn forward(block: &Block, train: bool) -> TokenStream {
    let branches = block.branches.iter().map(|b| {
        let field = &b.field;
        let name = &b.name;
        let body = branch_forward(b, train);
        let binding = if train { quote!(&mut self.#field) } else { quote!(&self.#field) };
        let add = quote!(::rep::layers::accumulate(&mut __sum, __out, #name)?;);
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
fn post_ops(block: &Block, value: TokenStream, train: bool, skip_bn: bool) -> TokenStream {
    block
        .post
        .iter()
        .map(|p| match p {
            PostOp::Bn(..) if skip_bn => quote!(),
            PostOp::Bn(..) if train => quote!(#value = ::rep::layers::Layer::forward_train(&mut self.bn, &#value)?;),
            PostOp::Bn(..) => quote!(#value = ::rep::layers::Layer::forward(&self.bn, &#value)?;),
            PostOp::Activation(variant) => quote!(::rep::layers::Activation::#variant.apply_inplace(&mut #value);),
            PostOp::Se(..) => quote!(#value = ::rep::layers::Layer::forward(&self.se, &#value)?;),
        })
        .collect()
}

/// `fuse`: every present branch to an `AffineConv`, summed, the post-sum BN folded; binds `__fused`.
fn fuse(block: &Block) -> TokenStream {
    let branches = block.branches.iter().enumerate().map(|(index, b)| {
        let field = &b.field;
        let name = &b.name;
        let base = quote!(__b);
        let mut chain = Vec::new();
        for (i, op) in b.ops.iter().enumerate() {
            let layer = op_access(b, i, &base);
            let step = match (&op.kind, i) {
                (OpKind::Conv(_), 0) => quote!(::rep::fusion::AffineConv::from_conv(&#layer)?),
                (OpKind::ConvBn(..), 0) => quote!(#layer.fuse()?),
                (OpKind::Bn(..), 0) => quote!(::rep::fusion::bn_identity(&#layer, __groups)?),
                (OpKind::Scale(..), 0) => quote!(::rep::fusion::identity(__channels, __groups)?.then_scale(&#layer)?),
                (OpKind::Identity(_), 0) => quote!(::rep::fusion::identity(__channels, __groups)?),
                (OpKind::AvgPool { .. }, 0) => quote!(::rep::fusion::avg_pool_kernel(__channels, __groups, &#layer)?),
                (OpKind::Conv(_), _) => quote!(__acc.then(&::rep::fusion::AffineConv::from_conv(&#layer)?)?),
                (OpKind::ConvBn(..), _) => quote!(__acc.then(&#layer.fuse()?)?),
                (OpKind::Bn(..), _) => quote!(__acc.then_bn(&#layer)?),
                (OpKind::Scale(..), _) => quote!(__acc.then_scale(&#layer)?),
                (OpKind::Identity(_), _) => quote!(__acc),
                (OpKind::AvgPool { .. }, _) => quote!({
                    let __c = __acc.geometry.out_channels;
                    __acc.then(&::rep::fusion::avg_pool_kernel(__c, __groups, &#layer)?)?
                }),
            };
            chain.push(quote!(let __acc = #step;));
        }
        let body = quote!({ #(#chain)* __acc });
        let push = if index == 0 {
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
    });
    // The first branch must be present for the channel count used by identity-like branches.
    let post_bn = block
        .post
        .iter()
        .any(|p| matches!(p, PostOp::Bn(..)))
        .then(|| quote!(let __fused = __fused.then_bn(&self.bn)?;));
    quote! {
        let mut __branches: ::std::vec::Vec<(&str, ::rep::fusion::AffineConv)> = ::std::vec::Vec::new();
        #[allow(unused_variables, unused_assignments)]
        let (mut __channels, mut __groups) = (0usize, 1usize);
        #(#branches)*
        let __fused = ::rep::fusion::sum_branches(&__branches)?;
        #post_bn
    }
}

fn visit(block: &Block, mutable: bool) -> TokenStream {
    let method = if mutable { quote!(visit_mut) } else { quote!(visit) };
    let borrow = if mutable { quote!(&mut) } else { quote!(&) };
    let join = quote!(::rep::layers::join);
    let branches = block.branches.iter().map(|b| {
        let (field, name) = (&b.field, &b.name);
        let base = quote!(__b);
        let ops =
            b.ops.iter().enumerate().filter(|(_, op)| !matches!(op.kind, OpKind::AvgPool { .. } | OpKind::Identity(_)));
        let calls = ops.map(|(i, op)| {
            let layer = op_access(b, i, &base);
            let path = if b.sequence {
                let op_name = &op.name;
                quote!(&#join(&#join(prefix, #name), #op_name))
            } else {
                quote!(&#join(prefix, #name))
            };
            quote!(::rep::layers::Parameters::#method(#borrow #layer, #path, f);)
        });
        let calls: Vec<_> = calls.collect();
        if b.optional {
            quote!(if let ::core::option::Option::Some(__b) = #borrow self.#field { #(#calls)* })
        } else {
            quote!({ let __b = #borrow self.#field; #(#calls)* })
        }
    });
    let post = block.post.iter().filter_map(|p| match p {
        PostOp::Bn(..) => Some(quote!(::rep::layers::Parameters::#method(#borrow self.bn, &#join(prefix, "bn"), f);)),
        PostOp::Se(..) => Some(quote!(::rep::layers::Parameters::#method(#borrow self.se, &#join(prefix, "se"), f);)),
        PostOp::Activation(..) => None,
    });
    quote!(#(#branches)* #(#post)*)
}

fn costs(block: &Block) -> TokenStream {
    let params = block.branches.iter().map(|b| {
        let field = &b.field;
        let terms = b.ops.iter().enumerate().filter(|(_, op)| !matches!(op.kind, OpKind::Identity(_))).map(|(i, _)| {
            let layer = op_access(b, i, &quote!(__b));
            quote!(__n += ::rep::Costs::parameter_count(&#layer);)
        });
        let terms: Vec<_> = terms.collect();
        if b.optional {
            quote!(if let ::core::option::Option::Some(__b) = &self.#field { #(#terms)* })
        } else {
            quote!({ let __b = &self.#field; #(#terms)* })
        }
    });
    let macs = block.branches.iter().enumerate().map(|(index, b)| {
        let field = &b.field;
        let steps = b.ops.iter().enumerate().filter(|(_, op)| !matches!(op.kind, OpKind::Identity(_))).map(|(i, _)| {
            let layer = op_access(b, i, &quote!(__b));
            quote!(let (__m, __next) = ::rep::Costs::macs(&#layer, __hw)?; __total += __m; __hw = __next;)
        });
        let steps: Vec<_> = steps.collect();
        let keep = (index == 0).then(|| quote!(__out = __hw;));
        let body = quote!(#[allow(unused_mut)] let mut __hw = input; #(#steps)* #keep);
        if b.optional {
            quote!(if let ::core::option::Option::Some(__b) = &self.#field { #body })
        } else {
            quote!({ let __b = &self.#field; #body })
        }
    });
    let post_params = block.post.iter().filter_map(|p| match p {
        PostOp::Bn(..) => Some(quote!(__n += ::rep::Costs::parameter_count(&self.bn);)),
        PostOp::Se(..) => Some(quote!(__n += ::rep::Costs::parameter_count(&self.se);)),
        PostOp::Activation(..) => None,
    });
    let post_macs = block
        .post
        .iter()
        .any(|p| matches!(p, PostOp::Se(..)))
        .then(|| quote!(__total += ::rep::Costs::macs(&self.se, __out)?.0;));
    quote! {
        fn parameter_count(&self) -> usize {
            let mut __n = 0usize;
            #(#params)*
            #(#post_params)*
            __n
        }

        fn macs(&self, input: ::rep::Hw) -> ::rep::Result<(u64, ::rep::Hw)> {
            let (mut __total, mut __out) = (0u64, input);
            #(#macs)*
            #post_macs
            ::core::result::Result::Ok((__total, __out))
        }
    }
}

/// `impl rep::Block`: static channels, construction from sizes, and the next block of a stage.
fn block_trait(block: &Block, g: &BlockGeometry) -> TokenStream {
    let name = &block.item.ident;
    let mut generics = block.item.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(syn::parse_quote!(::rep::Dim));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let main = &g.summaries[0];
    let (cin, cout) = (main.cin.statik(), main.cout.statik());
    let count = block.dims.len();
    let dims = block.dims.iter().enumerate().map(|(i, d)| quote!(<#d as ::rep::Dim>::from_size(sizes[#i])?));
    let position = |geo: &Geo| match geo {
        Geo::Sym(ident, SymKind::Dim) => block.dims.iter().position(|d| d == ident),
        _ => None,
    };
    let chain = match (position(&main.cin), position(&main.cout)) {
        (Some(i), Some(o)) => quote!(next[#i] = sizes[#o];),
        _ => quote!(),
    };
    let stride = position(&main.stride.h).map(|s| quote!(next[#s] = 1;));
    let mismatch = format!("`{name}` takes {count} sizes, found {{}}");
    quote! {
        impl #impl_generics ::rep::Block for #name #ty_generics #where_clause {
            const IN: ::core::option::Option<usize> = #cin;
            const OUT: ::core::option::Option<usize> = #cout;

            fn from_sizes<R: ::rep::rand::Rng>(sizes: &[usize], rng: &mut R) -> ::rep::Result<Self> {
                if sizes.len() != #count {
                    return ::core::result::Result::Err(::rep::Error::Geometry(::std::format!(#mismatch, sizes.len())));
                }
                Self::new(#(#dims,)* rng)
            }

            #[allow(unused_mut)]
            fn next_in_stage(sizes: &[usize]) -> ::std::vec::Vec<usize> {
                let mut next = sizes.to_vec();
                #chain
                #stride
                next
            }

            fn in_channels(&self) -> usize {
                self._channels.0
            }

            fn out_channels(&self) -> usize {
                self._channels.1
            }
        }
    }
}
