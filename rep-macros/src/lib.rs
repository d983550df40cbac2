//! Proc macros of `rep`: `#[rep::block]` declares a re-parameterizable block, `#[rep::model]`
//! composes blocks into a network, `#[rep::graph]` wires blocks into a graph. Each flows parse → check → expand (`internals::ast`,
//! `internals::check`, `expand`); every mistake becomes a `compile_error!` at the offending
//! token, all reported in one compile, and `fallback` keeps them from cascading. The generated
//! code calls only `rep`'s runtime.

mod expand;

mod fallback;
mod internals;

use internals::ast::Block;
use internals::check;
use internals::ctxt::Ctxt;
use proc_macro::TokenStream;

/// Declares a re-parameterizable block: one field per branch, the branches summed, then the
/// `post(...)` ops.
///
/// ```ignore
/// /// RepVGG block: 3×3+BN, 1×1+BN and — when shapes allow — an identity BN, summed, then ReLU.
/// #[rep::block(post(relu), fused = "rbr_reparam")]
/// pub struct RepVgg<Cin, Cout, S> {
///     #[rep(rename = "rbr_dense")]
///     dense: ConvBn<Cin, Cout, 3, S>,
///     #[rep(rename = "rbr_1x1")]
///     pointwise: ConvBn<Cin, Cout, 1, S>,
///     #[rep(rename = "rbr_identity", when = Cin == Cout && S == 1)]
///     identity: Option<Bn<Cout>>,
/// }
/// ```
///
/// **Sizes.** Type parameters are `rep::Dim`s: `rep::Const<N>` (checked at compile time) or
/// `usize` (checked in `new`, which returns an error); `const N: usize` parameters are static.
/// Geometry is written with integer literals, parameters and `+ - * /` (braced in type
/// position: `{ Cin * 2 }`); kernels may be asymmetric literals (`1x3`).
///
/// **Ops** (a field is one op, a tuple of ops applied in order, or `Option<…>` with
/// `#[rep(when = COND)]`): `Conv<IN, OUT, K[, S]>`, `ConvBn<IN, OUT, K[, S]>`, `Bn<C>`,
/// `Scale<C>`, `AvgPool<C, K[, S]>`, `DctPrior<C, K[, S]>`, `Identity<C>`, `ImplicitA<C>`,
/// `ImplicitM<C>`. Options are types: `Groups<G>`, `Padding<P>` (default: centred on the main
/// branch), `Dilation<D>`, `Bias<true>`, `IdentityInit<true>`, `IdentityBased<true>` (DBB's `W = I + Δ`, Δ stored), `Eps<E>`, `Momentum<M>`, `Init<V>`.
/// Non-linear ops are refused inside a branch.
///
/// **Block arguments:** `post(bn, relu, silu, sigmoid, identity, leaky_relu(S),
/// se(hidden = H[, when = COND]))`, `kernel = K` (the fused kernel), `fused = "name"`.
/// **Field arguments:** `rename = "name"` (`""` puts the weights under the block itself),
/// `when = COND`, `names("a", "b", …)` for a sequence's ops.
///
/// **Generated:** the struct (fields are runtime layers), `new(sizes…, rng)`, `squeeze()`,
/// `Layer` (`forward`, `forward_train` — online, one squeezed conv, when every branch is linear
/// and a BN follows the sum; then also `forward_train_structural`), `<Name>Fused`,
/// `Reparameterize`, `Parameters` (weight names), `Costs`, `rep::Block`.
///
/// **Checks**, as compile errors at the offending token (literal sizes), inline `const`
/// assertions (`Const` / const-generic sizes) or errors from `new` (`usize` sizes): output
/// and input channels, strides, groups and dilation agree with the first branch; kernels odd and
/// no larger than the fused kernel; window centres aligned (`p = p_main − d·(k_main − k)/2`,
/// never negative); identity branches only where `C_in == C_out` and stride 1; sequences chain
/// and fold (one spatial op, or stacked unpadded ones); ImplicitA right before an unpadded conv;
/// unique weight names; known ops and arguments.
#[proc_macro_attribute]
pub fn block(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = match syn::parse::<syn::ItemStruct>(input) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error().into(),
    };
    let cx = Ctxt::default();
    let parsed = Block::parse(&cx, args.into(), item.clone());
    let checked = parsed.as_ref().filter(|_| cx.is_clean()).and_then(|b| check::check(&cx, b));
    match (parsed, checked, cx.into_compile_errors()) {
        (Some(block), Some((geometry, checks)), None) => expand::block(&block, &geometry, &checks).into(),
        (_, _, errors) => fallback::block(&item, errors.unwrap_or_default()).into(),
    }
}

/// Composes blocks, stages of blocks, global pooling and a linear head into a network, in
/// field order.
///
/// ```ignore
/// #[rep::model(new(width: usize, depth: usize))]
/// pub struct Tiny {
///     stem: RepVgg<3, 16, 2>,
///     #[rep(repeat = depth)]
///     stage1: Vec<RepVgg<16, { width }, 2>>,
///     pool: GlobalAvgPool,
///     head: Linear<{ width }, 10>,
/// }
/// ```
///
/// A field is a block with its sizes (literals become `Const<N>`, expressions `usize`), a
/// `Vec` stage with `#[rep(repeat = N[, index = i])]` (blocks after the first take the previous
/// output channels and stride 1, so a stage's block takes its stride as a parameter; sizes may use `i`), `GlobalAvgPool` or `Linear<IN, OUT>`;
/// `#[rep(rename = "stages.0")]` sets the weight prefix. Generates `new(args…, rng)` (checking
/// that channels chain: at compile time for literal sizes, in `new` otherwise), `forward`,
/// `forward_train`, `<Name>Fused`, `Reparameterize` (fusing every block), `Parameters` and
/// `Costs`.
#[proc_macro_attribute]
pub fn model(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = match syn::parse::<syn::ItemStruct>(input) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error().into(),
    };
    let cx = Ctxt::default();
    let model = internals::model::Model::parse(&cx, args.into(), item);
    match cx.into_compile_errors() {
        None => expand::model::model(&model).into(),
        Some(errors) => fallback::model(&model, errors).into(),
    }
}

/// Declares a graph network: one field per node, in order, each reading earlier nodes.
///
/// ```ignore
/// /// One ELAN block of YOLOv7: two 1×1 branches, a chain of 3×3 convs, four outputs concatenated.
/// #[rep::graph(new(c: usize))]
/// pub struct Elan {
///     cv1: ConvBnSilu<{ c }, { c / 2 }, 1, 1>,
///     #[rep(from = input)]
///     cv2: ConvBnSilu<{ c }, { c / 2 }, 1, 1>,
///     cv3: ConvBnSilu<{ c / 2 }, { c / 2 }, 3, 1>,
///     cv4: ConvBnSilu<{ c / 2 }, { c / 2 }, 3, 1>,
///     #[rep(from = (-1, -2, -3, 0))]
///     cat: Concat,
///     out: ConvBnSilu<{ 2 * c }, { c }, 1, 1>,
/// }
/// ```
///
/// A node is a block with its sizes (literals become `Const<N>`, expressions `usize`),
/// `Concat`, `Add`, `Upsample<F>` (nearest) or `MaxPool<K, S[, P]>`. `#[rep(from = …)]` names
/// its sources: `-1` the previous node (the default; the input for the first node), `-k` the
/// k-th node back, `i` node `i`, `input` the graph's input, or a tuple of those;
/// `#[rep(rename = "7")]` sets its weight prefix (the field name by default). The last node is
/// the output, or the nodes of `#[rep::graph(outputs(p3, p4, p5))]` (read them with
/// `forward_all`; a plan returns them in that order).
///
/// A node can be another graph: `#[rep(graph)] sppcspc: Sppcspc<{ c }, { c / 2 }>` holds a
/// `#[rep::graph(new(c_in: usize, c: usize))]` struct built with those arguments of its `new`;
/// its weights sit under the node's name (`sppcspc.cv1.conv.weight`), and it fuses and plans
/// inside the outer graph.
///
/// `#[rep::graph(layers = MyLayer)]` makes the runtime graph hold `MyLayer` instead of a
/// generated enum: each layer is built with `usize` sizes and converted with `From`, its fused
/// form into `<MyLayer as Reparameterize>::Fused` (several graphs can then share one layer
/// type, as YOLOv7 and YOLOv7-tiny do in the zoo).
///
/// **Generated:** the struct (holding a runtime `rep::graph::Graph` of the layer enum
/// `<Name>Layer`, one variant per layer field), `new(args…, rng)`, `Layer`, `Train`,
/// `<Name>Fused` with `plan` (a `GraphPlan`), `Reparameterize`, `Parameters`, `Costs`,
/// `GraphLayer` and `CompileNode`; and, when `new` takes only `usize` sizes, `rep::Block`
/// (the sizes in `new`'s order), so that another graph can hold it as a node.
///
/// **Checks:** sources in range and one source for a layer, pool or upsampling (compile errors
/// at the token); a layer's input channels against its source's and added channels equal
/// (`const` assertions when the sizes are static, errors from `new` otherwise); and planned
/// re-parameterization: a block with an identity branch (`rep::Block::IDENTITY_BRANCH`) whose
/// input also reaches, around it, a concatenation or addition its output reaches is refused —
/// use RepConvN there.
#[proc_macro_attribute]
pub fn graph(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = match syn::parse::<syn::ItemStruct>(input) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error().into(),
    };
    let cx = Ctxt::default();
    let graph = internals::graph::Graph::parse(&cx, args.into(), item);
    match cx.into_compile_errors() {
        None => expand::graph::graph(&graph).into(),
        Some(errors) => fallback::graph(&graph, errors).into(),
    }
}
