//! Proc macros of `rep`: `#[rep::block]` declares a re-parameterizable block, `#[rep::model]`
//! composes blocks into a network. Each flows parse → check → expand (`internals::ast`,
//! `internals::check`, `expand`); every mistake becomes a `compile_error!` at the offending
//! token, all reported in one compile, and [`fallback`] keeps them from cascading. The generated
//! code calls only `rep`'s runtime.

mod expand;

mod fallback;
mod internals;

use internals::ast::Block;
use internals::check;
use internals::ctxt::Ctxt;
use proc_macro::TokenStream;

/// Declares a re-parameterizable block: one field per branch, the branches summed, then the
/// `post(...)` ops. Generates `new`, `forward`, `forward_train`, `<Name>Fused`, `Reparameterize`,
/// `Parameters` (weight names = field names or `rename`) and `Costs`.
///
/// See the `rep` crate documentation for the op vocabulary and the checks.
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
/// field order. Generates `new` (checking that channels chain), `forward`, `forward_train`,
/// `<Name>Fused`, `Reparameterize` (fusing every block), `Parameters` and `Costs`.
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
        Some(errors) => fallback::model(&model.item, &model.params, errors).into(),
    }
}
