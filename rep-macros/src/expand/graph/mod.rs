//! `#[rep::graph]`: the struct becomes a runtime `rep::graph::Graph` of a generated layer enum
//! (one variant per layer field), built node by node in `new`; forward, training, fusing,
//! planning, parameters and costs are the runtime graph's. Channel agreement and planned
//! re-parameterization are checked as `const` assertions when the sizes are static (and by the
//! runtime's `GraphBuilder` in `new` otherwise).

use crate::internals::graph::{Graph, Node, NodeKind, Source};
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};

mod layers;

use layers::{LayerEnums, layer_enums};

/// Everything generated for one graph.
pub fn graph(g: &Graph) -> TokenStream {
    let layers: Vec<&Node> = g.nodes.iter().filter(|n| matches!(n.kind, NodeKind::Layer { .. })).collect();
    let aliases = layers.iter().map(|n| alias_decl(g, n));
    // With `layers = Enum` the runtime graph holds the user's enum: no generated one.
    let enums = if g.layers.is_some() { quote!() } else { layer_enums(g, &layers) };
    let structs = structs(g);
    let impls = struct_impls(g);
    let checks = static_checks(g);
    quote! {
        #(#aliases)*
        #enums
        #structs
        #impls
        #checks
    }
}

fn alias(g: &Graph, node: &Node) -> syn::Ident {
    format_ident!("__rep_{}_{}", g.item.ident, node.ident)
}

/// `type __rep_Graph_field = Block<sizes…>;` spelled with the user's tokens, so that a wrong
/// block type is one error at the field; a nested graph's alias is the graph itself (its sizes
/// are arguments of its `new`).
fn alias_decl(g: &Graph, node: &Node) -> TokenStream {
    let NodeKind::Layer { path, sizes, nested } = &node.kind else { return quote!() };
    let (alias, vis) = (alias(g, node), &g.item.vis);
    let dims = sizes.iter().map(|s| s.dim_type());
    let ty = if *nested { quote!(#path) } else { quote!(#path<#(#dims),*>) };
    quote_spanned! {node.span=>
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis type #alias = #ty;
    }
}

/// The types the runtime graphs hold: the train-time layer, its fused form and its training
/// cache (the generated enums, or the user's `layers = Enum` and its associated types).
fn layer_types(g: &Graph) -> [TokenStream; 3] {
    match &g.layers {
        Some(path) => [
            quote!(#path),
            quote!(<#path as ::rep::Reparameterize>::Fused),
            quote!(<#path as ::rep::train::Train>::Cache),
        ],
        None => {
            let LayerEnums { layer, fused, cache } = LayerEnums::of(g);
            [quote!(#layer), quote!(#fused), quote!(#cache)]
        }
    }
}

/// The layer's value in the runtime graph: the generated enum's variant, or (with
/// `layers = Enum`) `From` into the user's enum.
fn into_layer(g: &Graph, node: &Node, enumeration: &TokenStream, value: TokenStream) -> TokenStream {
    let variant = &node.ident;
    match g.layers {
        Some(_) => quote!(<#enumeration as ::core::convert::From<_>>::from(#value)),
        None => quote!(#enumeration::#variant(#value)),
    }
}

/// The type a layer is built as: the field's type (`Const` sizes where literal) for the
/// generated enum; with `layers = Enum`, every size `usize` (`Block<usize, …>`), the one type
/// the user's enum converts from.
fn build_type(g: &Graph, node: &Node) -> TokenStream {
    match (&g.layers, &node.kind) {
        (Some(_), NodeKind::Layer { path, sizes, nested: false }) => {
            let dims = sizes.iter().map(|_| quote!(usize));
            quote!(#path<#(#dims),*>)
        }
        _ => {
            let alias = alias(g, node);
            quote!(#alias)
        }
    }
}

/// The source of a node as the runtime builder takes it.
fn source(s: &Source) -> TokenStream {
    match s {
        Source::Input => quote!(::rep::graph::INPUT),
        Source::Node(j) => {
            let j = *j as isize;
            quote!(#j)
        }
    }
}

/// The graph struct and its fused twin, with `new`, `graph` and `forward_all`.
fn structs(g: &Graph) -> TokenStream {
    let name = &g.item.ident;
    let vis = &g.item.vis;
    let [layer, fused_layer, _] = layer_types(g);
    let fused = format_ident!("{}Fused", name);
    let params = &g.params;
    let attrs = g.item.attrs.iter().filter(|a| !a.path().is_ident("rep"));
    let fused_doc = format!("The fused form of [`{name}`]: every layer fused, the same wiring.");
    let make = layer_values(g, &layer, |ty, sizes| quote!(<#ty as ::rep::Block>::from_sizes(&[#(#sizes),*], rng)?));
    let (input, add) = (input_channels(g), node_additions(g));
    let make_fused =
        layer_values(g, &fused_layer, |ty, sizes| quote!(<#ty as ::rep::Block>::fused_from_sizes(&[#(#sizes),*])?));
    let outputs = &g.outputs;
    quote! {
        #(#attrs)*
        #[derive(Clone, Debug)]
        #vis struct #name {
            graph: ::rep::graph::Graph<#layer>,
        }

        #[doc = #fused_doc]
        #[derive(Clone, Debug)]
        #vis struct #fused {
            graph: ::rep::graph::Graph<#fused_layer>,
        }

        impl #name {
            /// Builds the graph with PyTorch's initialization, checking its wiring (sources,
            /// channels, planned re-parameterization) for the sizes given.
            #[allow(clippy::identity_op, clippy::erasing_op)]
            pub fn new(#(#params,)* rng: &mut impl ::rep::rand::Rng) -> ::rep::Result<Self> {
                #(#make)*
                let mut __g = ::rep::graph::GraphBuilder::new(#input);
                #(#add)*
                ::core::result::Result::Ok(Self { graph: __g.build(&[#(#outputs),*])? })
            }

            /// The runtime graph.
            pub fn graph(&self) -> &::rep::graph::Graph<#layer> {
                &self.graph
            }

            /// Eval-mode forward: every output's value, in the order of `outputs(…)`.
            pub fn forward_all(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::std::vec::Vec<::rep::ndarray::Array4<f32>>> {
                self.graph.forward_all(x)
            }

            /// The runtime graph, mutably.
            pub fn graph_mut(&mut self) -> &mut ::rep::graph::Graph<#layer> {
                &mut self.graph
            }

            /// The runtime graph, by value.
            pub fn into_graph(self) -> ::rep::graph::Graph<#layer> {
                self.graph
            }

            /// Input channels (those of the first layer that reads the input).
            pub fn in_channels(&self) -> usize {
                ::rep::graph::GraphLayer::in_channels(&self.graph)
            }

            /// Output channels (those of the first output).
            pub fn out_channels(&self) -> usize {
                ::rep::graph::GraphLayer::out_channels(&self.graph)
            }
        }

        impl #fused {
            /// Eval-mode forward: every output's value, in the order of `outputs(…)`.
            pub fn forward_all(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::std::vec::Vec<::rep::ndarray::Array4<f32>>> {
                self.graph.forward_all(x)
            }

            /// The fused graph of these sizes with zero weights: the skeleton a deploy checkpoint
            /// loads into.
            #[allow(clippy::identity_op, clippy::erasing_op)]
            pub fn new(#(#params),*) -> ::rep::Result<Self> {
                #(#make_fused)*
                let mut __g = ::rep::graph::GraphBuilder::new(#input);
                #(#add)*
                ::core::result::Result::Ok(Self { graph: __g.build(&[#(#outputs),*])? })
            }

            /// The runtime graph.
            pub fn graph(&self) -> &::rep::graph::Graph<#fused_layer> {
                &self.graph
            }

            /// The runtime graph, by value.
            pub fn into_graph(self) -> ::rep::graph::Graph<#fused_layer> {
                self.graph
            }

            /// Plans the fused graph for inputs of shape `[N, C, H, W]` ([`rep::plan::GraphPlan`]).
            pub fn plan(&self, input: [usize; 4], choice: ::rep::plan::KernelChoice) -> ::rep::Result<::rep::plan::GraphPlan> {
                ::rep::plan::GraphPlan::for_graph(&self.graph, input, choice)
            }
        }

    }
}

/// The graph's input channels, as `new` computes them: those of the first layer that reads
/// the input (a compile error, at the struct's name, when no layer does).
fn input_channels(g: &Graph) -> TokenStream {
    let first = g.nodes.iter().find(|n| matches!(n.kind, NodeKind::Layer { .. }) && n.sources.contains(&Source::Input));
    match first {
        Some(n) => {
            let ident = format_ident!("__rep_layer_{}", n.ident);
            quote!(::rep::graph::GraphLayer::in_channels(&#ident))
        }
        None => {
            quote_spanned!(g.item.ident.span()=> ::core::compile_error!("the graph's input must be read by a layer"))
        }
    }
}

/// `__g.layer(…)?;`, `__g.concat(…)?;`, … for every node in order: the runtime builder calls
/// that wire the layers `layer_values` made.
fn node_additions(g: &Graph) -> Vec<TokenStream> {
    g.nodes
        .iter()
        .map(|n| {
            let node_name = &n.name;
            let sources: Vec<TokenStream> = n.sources.iter().map(source).collect();
            match &n.kind {
                NodeKind::Layer { .. } => {
                    let ident = format_ident!("__rep_layer_{}", n.ident);
                    let s = &sources[0];
                    quote!(__g.layer(#node_name, #s, #ident)?;)
                }
                NodeKind::Concat => quote!(__g.concat(#node_name, &[#(#sources),*])?;),
                NodeKind::Add => quote!(__g.add(#node_name, &[#(#sources),*])?;),
                NodeKind::Upsample(f) => {
                    let (s, f) = (&sources[0], f.runtime());
                    quote!(__g.upsample(#node_name, #s, #f)?;)
                }
                NodeKind::MaxPool(sizes) => {
                    let [k, st, p] = sizes.as_ref();
                    let (s, k, st, p) = (&sources[0], k.runtime(), st.runtime(), p.runtime());
                    quote!(__g.max_pool(#node_name, #s, ::rep::layers::MaxPool2d::new(#k, #st, #p))?;)
                }
            }
        })
        .collect()
}

/// `let __rep_layer_field = Enum::field(make(type, sizes));` for every layer field: the layers
/// `new` (train-time, `from_sizes`) or the fused skeleton (`fused_from_sizes`) wires.
fn layer_values(
    g: &Graph,
    enumeration: &TokenStream,
    make: impl Fn(&TokenStream, Vec<TokenStream>) -> TokenStream,
) -> Vec<TokenStream> {
    let layers = g.nodes.iter().filter_map(|n| match &n.kind {
        NodeKind::Layer { sizes, .. } => Some((n, sizes)),
        _ => None,
    });
    layers
        .map(|(n, sizes)| {
            let ident = format_ident!("__rep_layer_{}", n.ident);
            let value = make(&build_type(g, n), sizes.iter().map(|s| s.runtime()).collect());
            let value = into_layer(g, n, enumeration, value);
            quote!(let #ident = #value;)
        })
        .collect()
}

/// The graph struct's and its fused twin's trait impls, all through the runtime graph.
fn struct_impls(g: &Graph) -> TokenStream {
    let name = &g.item.ident;
    let (fused, [_, _, cache]) = (format_ident!("{}Fused", name), layer_types(g));
    let (train_delegates, fused_delegates) = (graph_delegates(name), graph_delegates(&fused));
    let compile =
        compile_node_impl(&fused, quote!(::rep::plan::CompileNode::compile_node(&self.graph, plan, input, name)));
    let block = block_impl(g);
    quote! {
        impl ::rep::layers::Layer for #name {
            fn forward(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                ::rep::layers::Layer::forward(&self.graph, x)
            }
            fn forward_train(&mut self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                ::rep::layers::Layer::forward_train(&mut self.graph, x)
            }
        }

        impl ::rep::layers::Layer for #fused {
            fn forward(&self, x: &::rep::ndarray::Array4<f32>) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                ::rep::layers::Layer::forward(&self.graph, x)
            }
        }

        #train_delegates
        #fused_delegates

        impl ::rep::Reparameterize for #name {
            type Fused = #fused;
            fn fuse(&self) -> ::rep::Result<#fused> {
                ::rep::io::check_finite(self)?;
                ::core::result::Result::Ok(#fused { graph: ::rep::Reparameterize::fuse(&self.graph)? })
            }
        }

        impl ::rep::train::Train for #name {
            type Cache = ::rep::train::GraphCache<#cache>;
            fn forward_cached(
                &mut self,
                x: &::rep::ndarray::Array4<f32>,
            ) -> ::rep::Result<(::rep::ndarray::Array4<f32>, Self::Cache)> {
                ::rep::train::Train::forward_cached(&mut self.graph, x)
            }
            fn backward(
                &self,
                cache: Self::Cache,
                dy: &::rep::ndarray::Array4<f32>,
                prefix: &str,
                grads: &mut ::rep::train::Gradients,
            ) -> ::rep::Result<::rep::ndarray::Array4<f32>> {
                ::rep::train::Train::backward(&self.graph, cache, dy, prefix, grads)
            }
            fn freeze_batch_norm(&mut self, frozen: bool) {
                ::rep::train::Train::freeze_batch_norm(&mut self.graph, frozen)
            }
        }

        #compile
        #block
    }
}

/// `Block` for a graph whose `new` takes only `usize` sizes, so that another graph can hold it
/// as a node (`#[rep(graph)] field: Graph<sizes…>`): its sizes are `new`'s arguments in order,
/// and its channels are known at run time only.
fn block_impl(g: &Graph) -> TokenStream {
    let name = &g.item.ident;
    let fused = format_ident!("{}Fused", name);
    let is_usize = |arg: &syn::FnArg| match arg {
        syn::FnArg::Typed(t) => matches!(&*t.ty, syn::Type::Path(p) if p.path.is_ident("usize")),
        syn::FnArg::Receiver(_) => false,
    };
    if !g.params.iter().all(is_usize) {
        return quote!();
    }
    let count = g.params.len();
    let args: Vec<TokenStream> = (0..count).map(|i| quote!(sizes[#i])).collect();
    let wrong = format!("graph `{name}` takes {count} sizes (the arguments of its `new`), found {{}}");
    quote! {
        impl ::rep::Block for #name {
            const IN: ::core::option::Option<usize> = ::core::option::Option::None;
            const OUT: ::core::option::Option<usize> = ::core::option::Option::None;
            const STAGE: ::rep::StageRoles = ::rep::StageRoles {
                input: ::core::option::Option::None,
                output: ::core::option::Option::None,
                stride: ::core::option::Option::None,
            };
            const STRIDE: ::core::option::Option<usize> = ::core::option::Option::None;
            fn from_sizes<R: ::rep::rand::Rng>(sizes: &[usize], rng: &mut R) -> ::rep::Result<Self> {
                if sizes.len() != #count {
                    return ::core::result::Result::Err(::rep::Error::Wiring(::std::format!(#wrong, sizes.len())));
                }
                Self::new(#(#args,)* rng)
            }
            fn fused_from_sizes(sizes: &[usize]) -> ::rep::Result<#fused> {
                if sizes.len() != #count {
                    return ::core::result::Result::Err(::rep::Error::Wiring(::std::format!(#wrong, sizes.len())));
                }
                #fused::new(#(#args),*)
            }
            fn in_channels(&self) -> usize {
                ::rep::graph::GraphLayer::in_channels(&self.graph)
            }
            fn out_channels(&self) -> usize {
                ::rep::graph::GraphLayer::out_channels(&self.graph)
            }
        }
    }
}

/// `CompileNode` for `ty`, whose `compile_node` is `body` (with `plan`, `input` and `name` in
/// scope).
fn compile_node_impl(ty: &syn::Ident, body: TokenStream) -> TokenStream {
    quote! {
        impl ::rep::plan::CompileNode for #ty {
            fn compile_node(
                &self,
                plan: &mut ::rep::plan::GraphPlanBuilder,
                input: ::rep::plan::Value,
                name: &str,
            ) -> ::rep::Result<::rep::plan::Value> {
                #body
            }
        }
    }
}

/// `Parameters`, `Costs` and `GraphLayer` for a graph struct (`ty`), through its runtime graph.
fn graph_delegates(ty: &syn::Ident) -> TokenStream {
    quote! {
        impl ::rep::layers::Parameters for #ty {
            fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewD<'_, f32>)) {
                self.graph.visit(prefix, f)
            }
            fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ::rep::ndarray::ArrayViewMutD<'_, f32>)) {
                self.graph.visit_mut(prefix, f)
            }
            fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, u64)) { self.graph.visit_counters(prefix, f) }
            fn visit_counters_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut u64)) {
                self.graph.visit_counters_mut(prefix, f)
            }
            fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut ::rep::layers::BatchNorm2d)) {
                self.graph.visit_batch_norms(f)
            }
        }
        impl ::rep::Costs for #ty {
            fn parameter_count(&self) -> usize { ::rep::Costs::parameter_count(&self.graph) }
            fn macs(&self, input: ::rep::Hw) -> ::rep::Result<(u64, ::rep::Hw)> { ::rep::Costs::macs(&self.graph, input) }
        }
        impl ::rep::graph::GraphLayer for #ty {
            fn in_channels(&self) -> usize { ::rep::graph::GraphLayer::in_channels(&self.graph) }
            fn out_channels(&self) -> usize { ::rep::graph::GraphLayer::out_channels(&self.graph) }
        }
    }
}

/// Channel agreement and planned re-parameterization as `const` assertions on the types'
/// static sizes, spanned at the offending field (decided when every size involved is static).
fn static_checks(g: &Graph) -> TokenStream {
    let channels: Vec<syn::Ident> = (0..g.nodes.len())
        .map(|i| format_ident!("__REP_{}_CHANNELS_{}", g.item.ident.to_string().to_uppercase(), i))
        .collect();
    let of = |s: &Source| match s {
        Source::Input => quote!(::core::option::Option::None),
        Source::Node(j) => {
            let c = &channels[*j];
            quote!(#c)
        }
    };
    let mut items = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let c = &channels[i];
        let sources: Vec<TokenStream> = node.sources.iter().map(of).collect();
        let value = match &node.kind {
            NodeKind::Layer { .. } => {
                let ty = alias(g, node);
                quote!(<#ty as ::rep::Block>::OUT)
            }
            NodeKind::Concat => quote!(::rep::__private::channels_sum(&[#(#sources),*])),
            NodeKind::Add => quote!(::rep::__private::channels_any(&[#(#sources),*])),
            NodeKind::Upsample(_) | NodeKind::MaxPool(..) => sources[0].clone(),
        };
        items.push(quote! {
            #[doc(hidden)]
            #[allow(dead_code)]
            const #c: ::core::option::Option<usize> = #value;
        });
        let ident = &node.ident;
        match &node.kind {
            NodeKind::Layer { .. } => {
                let (ty, source) = (alias(g, node), &sources[0]);
                let message = format!("graph node `{ident}` takes other input channels than its source gives");
                items.push(quote_spanned! {node.span=>
                    const _: () = ::core::assert!(::rep::__private::channels_meet(<#ty as ::rep::Block>::IN, #source), #message);
                });
                if let Some(merge) = &node.on_shortcut {
                    let message = format!(
                        "graph node `{ident}` has an identity branch on a shortcut path: its input also reaches \
                         `{merge}`, which its output reaches, so the identity duplicates that shortcut; use a block \
                         without one there (RepConvN), as YOLOv7's planned re-parameterization prescribes"
                    );
                    items.push(quote_spanned! {node.span=>
                        const _: () = ::core::assert!(
                            !::core::matches!(<#ty as ::rep::Block>::IDENTITY_BRANCH, ::core::option::Option::Some(true)),
                            #message
                        );
                    });
                }
            }
            NodeKind::Add => {
                let message = format!("graph node `{ident}` adds sources of different channels");
                items.push(quote_spanned! {node.from_span=>
                    const _: () = ::core::assert!(
                        ::rep::__private::all_meet(::rep::__private::channels_any(&[#(#sources),*]), &[#(#sources),*]),
                        #message
                    );
                });
            }
            _ => {}
        }
    }
    quote!(#(#items)*)
}
