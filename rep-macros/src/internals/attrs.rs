//! What the macros pass through from the user's struct: attributes and generics.

use syn::punctuated::Punctuated;
use syn::{Attribute, Path, Token};

/// `attrs` with the derives the macro itself emits (`ours`, e.g. `Clone`, `Debug`) removed from
/// every `#[derive(…)]`, so that a user who writes them gets one impl, not conflicting ones; a
/// derive left empty is dropped.
pub fn without_derives(attrs: &[Attribute], ours: &[&str]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter_map(|attr| {
            if !attr.path().is_ident("derive") {
                return Some(attr.clone());
            }
            let Ok(paths) = attr.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated) else {
                return Some(attr.clone()); // malformed: let rustc report it
            };
            let ours = |p: &Path| p.segments.last().is_some_and(|s| ours.iter().any(|o| s.ident == o));
            let kept: Vec<&Path> = paths.iter().filter(|p| !ours(p)).collect();
            match kept.len() {
                0 => None,
                n if n == paths.len() => Some(attr.clone()),
                _ => Some(syn::parse_quote!(#[derive(#(#kept),*)])),
            }
        })
        .collect()
}

/// The struct's generics with `::rep::Dim` added to every type parameter (the block's sizes).
pub fn dim_generics(generics: &syn::Generics) -> syn::Generics {
    let mut generics = generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(syn::parse_quote!(::rep::Dim));
    }
    generics
}

/// The arguments of `new(name: Type, …)` in a model's or graph's attribute, as written in a
/// function signature.
pub fn new_params(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Vec<syn::FnArg>> {
    let content;
    syn::parenthesized!(content in meta.input);
    Ok(content.parse_terminated(<syn::FnArg as syn::parse::Parse>::parse, syn::Token![,])?.into_iter().collect())
}
