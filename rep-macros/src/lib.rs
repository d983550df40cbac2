//! Proc macros of `rep`: `#[rep::block]` declares a re-parameterizable block, `#[rep::model]`
//! composes blocks into a network. Each flows parse → check → expand (`internals::ast`,
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
