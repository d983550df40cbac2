//! One law on both sides: random blocks of single-op branches (convs with any kernel, stride,
//! groups, dilation and padding, BN and identity branches, in any field order) are checked by
//! the macro and built with the runtime as the expansion builds them (the padding the macro
//! gives each branch, the main branch's groups for BN and identity branches). The macro accepts
//! exactly when the runtime builds and fuses the block, and then fused == train-time ≤ 1e-5.

use super::construct::aligned_padding;
use crate::internals::ast::{Block, OpKind, Pair};
use crate::internals::check::{self, BlockGeometry};
use crate::internals::ctxt::Ctxt;
use crate::internals::geo::{Geo, Op};
use ndarray::Array4;
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rep_runtime::fusion::{AffineConv, bn_identity, identity, sum_branches};
use rep_runtime::layers::{BatchNorm2d, ConvBn, Layer};
use rep_runtime::{ConvGeometry, Hw};

/// A literal geometry expression's value with the generated code's semantics (`−` saturates,
/// `/ 0` is 0).
fn value(g: &Geo) -> usize {
    match g {
        Geo::Lit(v) => *v,
        Geo::Sym(..) => unreachable!("literal blocks only"),
        Geo::Bin(a, Op::Sub, b) => value(a).saturating_sub(value(b)),
        Geo::Bin(a, op, b) => op.apply(value(a), value(b)).unwrap_or(0),
    }
}

fn hw(p: &Pair) -> Hw {
    Hw::new(value(&p.h), value(&p.w))
}

/// One branch of a random block.
#[derive(Clone, Debug)]
enum Branch {
    Conv { kernel: (usize, usize), stride: usize, groups: usize, dilation: usize, padding: Option<usize> },
    Bn,
    Identity,
}

fn branch() -> impl Strategy<Value = Branch> {
    // Odd kernels: an even one has no centre, which the macro refuses by rule even where the
    // runtime could sum identical even kernels.
    let kernel = prop::sample::select(vec![(1, 1), (3, 3), (5, 5), (1, 3), (3, 1), (1, 5)]);
    let conv =
        (kernel, 1usize..3, prop::sample::select(vec![1usize, 2, 4]), 1usize..3, prop::option::of(0usize..4)).prop_map(
            |(kernel, stride, groups, dilation, padding)| Branch::Conv { kernel, stride, groups, dilation, padding },
        );
    prop_oneof![4 => conv, 1 => Just(Branch::Bn), 1 => Just(Branch::Identity)]
}

fn declaration(branches: &[Branch], cin: usize, cout: usize) -> String {
    let fields: Vec<String> = branches
        .iter()
        .enumerate()
        .map(|(i, b)| match b {
            Branch::Conv { kernel: (kh, kw), stride, groups, dilation, padding } => {
                let padding = padding.map_or(String::new(), |p| format!(", Padding<{p}>"));
                format!(
                    "f{i}: ConvBn<{cin}, {cout}, {kh}x{kw}, {stride}, Groups<{groups}>, Dilation<{dilation}>{padding}>"
                )
            }
            Branch::Bn => format!("f{i}: Bn<{cout}>"),
            Branch::Identity => format!("f{i}: Identity<{cout}>"),
        })
        .collect();
    format!("pub struct B {{ {} }}", fields.join(", "))
}

/// The block as the macro checks it: its geometry (as far as the check got) and whether the
/// macro accepts it.
fn macro_verdict(source: &str) -> Option<(Block, BlockGeometry, bool)> {
    let cx = Ctxt::default();
    let item: syn::ItemStruct = syn::parse_str(source).expect("valid Rust");
    let block = Block::parse(&cx, proc_macro2::TokenStream::new(), item)?;
    let (geometry, deferred) = check::check(&cx, &block)?;
    assert!(deferred.is_empty(), "literal sizes leave nothing for later: {deferred:?}");
    let clean = cx.into_compile_errors().is_none();
    Some((block, geometry, clean))
}

/// The branches built with the runtime as the expansion builds them, fused, and compared with
/// the train-time sum on a random input: `Err` when the runtime refuses the block.
fn runtime_error(block: &Block, g: &BlockGeometry, rng: &mut StdRng) -> rep_runtime::Result<f32> {
    let main_kernel = &g.summaries[g.main].kernel;
    let mut convs: Vec<Option<ConvBn>> = Vec::new();
    for branch in &block.branches {
        let op = &branch.ops[0];
        convs.push(match &op.kind {
            OpKind::ConvBn(spec, _) => {
                let padding = match &spec.padding {
                    Some(p) => hw(p),
                    // A single-op branch: its conv carries the branch's padding.
                    None => hw(&aligned_padding(g, main_kernel, &spec.kernel, &spec.dilation)),
                };
                let geometry = ConvGeometry::new(value(&spec.cin), value(&spec.cout), hw(&spec.kernel))
                    .stride(hw(&spec.stride))
                    .padding(padding)
                    .dilation(hw(&spec.dilation))
                    .groups(value(&spec.groups));
                let mut layer = ConvBn::new(geometry, rng)?;
                layer.bn.randomize(rng);
                Some(layer)
            }
            _ => None,
        });
    }
    let main = convs[g.main].as_ref().map(|c| *c.conv.geometry());
    let (channels, groups) = main.map_or((value(&g.summaries[g.main].cin), 1), |m| (m.in_channels, m.groups));
    let mut bn = BatchNorm2d::new(channels);
    bn.randomize(rng);
    let mut fused: Vec<(&str, AffineConv)> = Vec::new();
    for conv in &convs {
        fused.push((
            "branch",
            match conv {
                Some(conv) => conv.fuse()?,
                None if matches!(block.branches[fused.len()].ops[0].kind, OpKind::Bn(..)) => bn_identity(&bn, groups)?,
                None => identity(channels, groups)?,
            },
        ));
    }
    let deployed = sum_branches(&fused)?.to_conv2d();
    // `…Fused::new` builds the fused conv from the macro's fused geometry: it must be this one.
    let f = &g.fused;
    let main = &g.summaries[g.main];
    let skeleton = ConvGeometry::new(value(&main.cin), value(&main.cout), hw(&f.kernel))
        .stride(hw(&main.stride))
        .padding(hw(&f.padding))
        .dilation(hw(&f.dilation))
        .groups(value(&f.groups));
    assert_eq!(skeleton, *deployed.geometry(), "the fused skeleton's geometry");
    let x = Array4::from_shape_simple_fn((1, channels, 15, 14), || rng.random_range(-1.0f32..1.0));
    let mut total: Option<Array4<f32>> = None;
    for (i, conv) in convs.iter().enumerate() {
        let y = match conv {
            Some(conv) => conv.forward(&x)?,
            None if matches!(block.branches[i].ops[0].kind, OpKind::Bn(..)) => bn.forward(&x)?,
            None => x.clone(),
        };
        rep_runtime::__private::accumulate(&mut total, y, "branch")?;
    }
    let train = total.expect("branches");
    Ok(rep_runtime::compare::difference(&deployed.forward(&x)?, &train)?.relative())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_macro_accepts_exactly_what_the_runtime_fuses(
        branches in prop::collection::vec(branch(), 1..4),
        (cin, cout) in prop::sample::select(vec![(4usize, 4usize), (4, 8), (8, 4), (6, 6)]),
        seed in any::<u64>(),
    ) {
        let source = declaration(&branches, cin, cout);
        let Some((block, geometry, accepted)) = macro_verdict(&source) else {
            return Ok(()); // a branch the check could not summarize: nothing to build
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let error = runtime_error(&block, &geometry, &mut rng);
        let fused_exactly = matches!(error, Ok(e) if e <= 1e-5);
        prop_assert_eq!(accepted, fused_exactly, "macro accepts: {}, runtime: {:?}\n{}", accepted, error, source);
    }
}
