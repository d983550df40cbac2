//! Property tests of parse → check on random block declarations: whatever the sizes (zero,
//! huge, non-dividing) and options, checking ends in a verdict (clean, or errors with
//! messages) and never panics, and literal mistakes are always caught in the macro.

use super::ast::Block;
use super::check;
use super::ctxt::Ctxt;
use proptest::prelude::*;

/// A size as a user might write it: small, zero, or large enough to overflow products.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..6, 1 => Just(u64::MAX / 2), 1 => Just(u64::MAX), 1 => 6u64..100]
}

/// The outcome of parse → check on `source`: `Some(true)` when clean.
fn verdict(args: &str, source: &str) -> bool {
    let cx = Ctxt::default();
    let item: syn::ItemStruct = syn::parse_str(source).expect("the generator writes valid Rust");
    let args: proc_macro2::TokenStream = args.parse().expect("valid tokens");
    let parsed = Block::parse(&cx, args, item);
    let checked = parsed.as_ref().filter(|_| cx.is_clean()).and_then(|b| check::check(&cx, b));
    checked.is_some() && cx.is_clean()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn checking_random_literal_blocks_never_panics(
        (cin, cout, k, s, g, p, d) in (size(), size(), size(), size(), size(), size(), size()),
        (k2, g2, eps) in (size(), size(), prop::sample::select(vec!["1e-5", "0.0", "-1.0", "1e300"])),
        post in prop::sample::select(vec!["", "post(relu)", "post(bn, relu)", "post(relu, se(hidden = 8 / 16))"]),
        sequence in any::<bool>(),
    ) {
        let second = if sequence {
            format!("(Conv<{cin}, {cout}, 1, 1, Groups<{g2}>>, Bn<{cout}>, Conv<{cout}, {cout}, {k2}, {s}>)")
        } else {
            format!("ConvBn<{cin}, {cout}, {k2}, {s}, Groups<{g2}>, Eps<{eps}>>")
        };
        let source = format!(
            "pub struct B {{ dense: ConvBn<{cin}, {cout}, {k}, {s}, Groups<{g}>, Padding<{p}>, Dilation<{d}>>, \
             other: {second}, #[rep(when = 1 == 1)] identity: Option<Bn<{cin}>> }}"
        );
        let clean = verdict(post, &source);
        // Literal mistakes never pass the macro.
        let zero = [cin, cout, k, s, g, d, k2].contains(&0);
        prop_assert!(!(clean && zero), "a zero size passed: {source}");
        // `1e300` is a valid ε; `0.0` is not, and `-1.0` is no float literal at all.
        prop_assert!(!(clean && matches!(eps, "0.0" | "-1.0") && !sequence), "a bad eps passed: {source}");
        prop_assert!(!(clean && post.contains("8 / 16")), "se with 0 hidden channels passed");
    }
}

/// The verdict the property relies on can go both ways: a sound block is clean, the same block
/// with a zero size, a zero ε or a 0-channel SE is not.
#[test]
fn the_verdict_separates_good_from_bad() {
    let block = |cout: u64, eps: &str| {
        format!("pub struct B {{ dense: ConvBn<4, {cout}, 3, 1, Eps<{eps}>>, other: ConvBn<4, {cout}, 1, 1> }}")
    };
    assert!(verdict("post(relu)", &block(4, "1e-5")));
    assert!(verdict("post(relu)", &block(4, "1e300")));
    assert!(!verdict("post(relu)", &block(0, "1e-5")));
    assert!(!verdict("post(relu)", &block(4, "0.0")));
    assert!(!verdict("post(relu, se(hidden = 8 / 16))", &block(4, "1e-5")));
}
