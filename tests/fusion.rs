//! The fusion algebra against evaluating the unfused layers, on random weights, non-trivial
//! BN statistics, strides 1–2, groups, dilation and odd non-square inputs (the tolerance of ARCHITECTURE.md).

mod common;

use common::{assert_close, random_bn, random_conv_bn, random_tensor, random_vector, relative_error, rng};
use ndarray::{Array4, s};
use proptest::prelude::*;
use rep::fusion::{self, AffineConv};
use rep::layers::{AvgPool2d, Conv2d, ImplicitA, ImplicitM, Layer, Scale};
use rep::{ConvGeometry, Error};

/// Channels per group, groups (1, 2 or depthwise), stride, odd kernel, dilation, input size.
#[derive(Clone, Debug)]
struct Case {
    channels_per_group: usize,
    groups: usize,
    stride: usize,
    kernel: usize,
    dilation: usize,
    height: usize,
    width: usize,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..4, prop_oneof![Just(1usize), Just(2), Just(0)], 1usize..3, prop_oneof![Just(3usize), Just(5)], 1usize..3)
        .prop_flat_map(|(cpg, groups, stride, kernel, dilation)| {
            let min = dilation * (kernel - 1) + 1;
            (Just((cpg, groups, stride, kernel, dilation)), min..min + 6, min..min + 6, 0u64..10_000)
        })
        .prop_map(|((cpg, groups, stride, kernel, dilation), height, width, seed)| {
            // groups 0 stands for depthwise: one channel per group.
            let (channels_per_group, groups) = if groups == 0 { (1, 2 + cpg) } else { (cpg, groups) };
            Case { channels_per_group, groups, stride, kernel, dilation, height, width, seed }
        })
}

impl Case {
    fn channels(&self) -> usize {
        self.channels_per_group * self.groups
    }

    /// The main k×k geometry, "same" padded.
    fn main(&self, cin: usize, cout: usize) -> ConvGeometry {
        ConvGeometry::new(cin, cout, self.kernel)
            .stride(self.stride)
            .dilation(self.dilation)
            .groups(self.groups)
            .same_padding()
    }

    fn input(&self, channels: usize, rng: &mut rand::rngs::StdRng) -> Array4<f32> {
        random_tensor((2, channels, self.height, self.width), rng)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// conv (with and without bias) → BN folds into one conv.
    #[test]
    fn conv_bn_fold(c in case(), with_bias: bool) {
        let mut rng = rng(c.seed);
        let g = c.main(c.channels(), c.channels() * 2);
        let mut branch = random_conv_bn(g, &mut rng);
        if with_bias {
            branch.conv = branch.conv.with_bias(random_vector(g.out_channels, &mut rng)).unwrap();
        }
        let x = c.input(g.in_channels, &mut rng);
        let fused = branch.fuse().unwrap().to_conv2d();
        assert_close("conv+bn", &fused.forward(&x).unwrap(), &branch.forward(&x).unwrap());
    }

    /// RepVGG: k×k+BN, 1×1+BN (centred, with dilation) and — when shapes allow — identity BN.
    #[test]
    fn repvgg_block(c in case(), widen: bool) {
        let mut rng = rng(c.seed);
        let cin = c.channels();
        let cout = if widen { cin * 2 } else { cin };
        let main = c.main(cin, cout);
        let dense = random_conv_bn(main, &mut rng);
        let pointwise = random_conv_bn(ConvGeometry::new(cin, cout, 1).stride(c.stride).groups(c.groups), &mut rng);
        let identity = (cin == cout && c.stride == 1).then(|| random_bn(cin, &mut rng));
        let x = c.input(cin, &mut rng);

        let mut train = &dense.forward(&x).unwrap() + &pointwise.forward(&x).unwrap();
        let mut branches = vec![("dense", dense.fuse().unwrap()), ("pointwise", pointwise.fuse().unwrap())];
        if let Some(bn) = &identity {
            train = &train + &bn.forward(&x).unwrap();
            branches.push(("identity", fusion::bn_identity(bn, c.groups).unwrap()));
        }
        let fused = fusion::sum_branches(&branches).unwrap();
        prop_assert_eq!(fused.geometry.kernel, main.kernel);
        assert_close("repvgg", &fused.to_conv2d().forward(&x).unwrap(), &train);
    }

    /// ACNet: k×k + 1×k + k×1, each with BN, centred in the k×k.
    #[test]
    fn asymmetric_branches(c in case()) {
        let mut rng = rng(c.seed);
        let (cin, cout, k, d) = (c.channels(), c.channels() + c.groups, c.kernel, c.dilation);
        let main = c.main(cin, cout);
        let p = main.padding.h;
        let square = random_conv_bn(main, &mut rng);
        let row = random_conv_bn(ConvGeometry { kernel: (1, k).into(), padding: (0, p).into(), ..main }, &mut rng);
        let column = random_conv_bn(ConvGeometry { kernel: (k, 1).into(), padding: (p, 0).into(), ..main }, &mut rng);
        let x = c.input(cin, &mut rng);
        let train = &(&square.forward(&x).unwrap() + &row.forward(&x).unwrap()) + &column.forward(&x).unwrap();
        let fused = fusion::sum_branches(&[
            ("square", square.fuse().unwrap()),
            ("row", row.fuse().unwrap()),
            ("column", column.fuse().unwrap()),
        ]).unwrap();
        prop_assert_eq!(fused.geometry.dilation, (d, d).into());
        assert_close("acnet", &fused.to_conv2d().forward(&x).unwrap(), &train);
    }

    /// Average pooling (count_include_pad) is the grouped "diagonal" kernel of 1/k².
    #[test]
    fn avg_pool_as_kernel(c in case()) {
        let mut rng = rng(c.seed);
        let channels = c.channels();
        let pool = AvgPool2d::new(c.kernel, c.stride, c.kernel / 2);
        let kernel = fusion::avg_pool_kernel(channels, c.groups, &pool).unwrap();
        let x = c.input(channels, &mut rng);
        assert_close("avg pool", &kernel.to_conv2d().forward(&x).unwrap(), &pool.forward(&x).unwrap());
    }

    /// DBB/OREPA 1×1 → BN → k×k, grouped: exact everywhere when the k×k pads with the first
    /// stage's bias.
    #[test]
    fn one_by_one_then_kxk(c in case(), mid_factor in 1usize..3) {
        let mut rng = rng(c.seed);
        let (cin, mid) = (c.channels(), c.channels() * mid_factor);
        let first = random_conv_bn(ConvGeometry::new(cin, mid, 1).groups(c.groups), &mut rng);
        let first_fused = first.fuse().unwrap();
        let fill = first_fused.bias.mapv(|v| v as f32);
        let second = Conv2d::new(c.main(mid, cin), &mut rng).unwrap().with_pad_fill(fill).unwrap();
        let x = c.input(cin, &mut rng);
        let train = second.forward(&first.forward(&x).unwrap()).unwrap();
        let merged = first_fused.then_conv(&second).unwrap();
        assert_close("1x1 -> bn -> kxk", &merged.to_conv2d().forward(&x).unwrap(), &train);
    }

    /// OREPA's linear depthwise-separable branch: depthwise k×k (channel multiplier) → BN →
    /// pointwise 1×1 → BN.
    #[test]
    fn depthwise_then_pointwise(c in case(), multiplier in 1usize..3) {
        let mut rng = rng(c.seed);
        let cin = c.channels();
        let dw = random_conv_bn(
            ConvGeometry { out_channels: cin * multiplier, groups: cin, ..c.main(cin, cin) },
            &mut rng,
        );
        let pw = random_conv_bn(ConvGeometry::new(cin * multiplier, cin + 1, 1), &mut rng);
        let x = c.input(cin, &mut rng);
        let train = pw.forward(&dw.forward(&x).unwrap()).unwrap();
        let merged = dw.fuse().unwrap().then(&pw.fuse().unwrap()).unwrap();
        prop_assert_eq!(merged.geometry.groups, 1);
        assert_close("dw -> pw", &merged.to_conv2d().forward(&x).unwrap(), &train);
    }

    /// OREPA's scaling layer, and YOLOR's ImplicitA → 1×1 conv → ImplicitM.
    #[test]
    fn scale_and_implicit_knowledge(c in case()) {
        let mut rng = rng(c.seed);
        let cin = c.channels();
        let conv = Conv2d::new_with_bias(c.main(cin, cin * 2), &mut rng).unwrap();
        let scale = Scale { weight: random_vector(cin * 2, &mut rng) };
        let x = c.input(cin, &mut rng);
        let train = scale.forward(&conv.forward(&x).unwrap()).unwrap();
        let fused = AffineConv::from_conv(&conv).unwrap().then_scale(&scale).unwrap();
        assert_close("conv -> scale", &fused.to_conv2d().forward(&x).unwrap(), &train);

        let head = Conv2d::new_with_bias(ConvGeometry::new(cin, 5, 1).stride(c.stride), &mut rng).unwrap();
        let a = ImplicitA::with(random_vector(cin, &mut rng));
        let m = ImplicitM::with(random_vector(5, &mut rng));
        let train = m.forward(&head.forward(&a.forward(&x).unwrap()).unwrap()).unwrap();
        let fused = AffineConv::from_conv(&head).unwrap().after_implicit_a(&a).unwrap().then_implicit_m(&m).unwrap();
        assert_close("implicit", &fused.to_conv2d().forward(&x).unwrap(), &train);
    }
}

/// Zero-padding the intermediate of 1×1 → BN → k×k is wrong on the border — the comparison
/// sees it, and `then_conv` refuses such a conv outright.
#[test]
fn zero_padded_intermediate_is_wrong_on_the_border() {
    let mut rng = rng(11);
    let first = random_conv_bn(ConvGeometry::new(4, 6, 1), &mut rng);
    let second = Conv2d::new(ConvGeometry::new(6, 4, 3).padding(1), &mut rng).unwrap();
    let x = random_tensor((1, 4, 9, 7), &mut rng);
    let train = second.forward(&first.forward(&x).unwrap()).unwrap();
    let merged = first.fuse().unwrap().then(&AffineConv::from_conv(&second).unwrap()).unwrap();
    let fused = merged.to_conv2d().forward(&x).unwrap();

    let border_error = relative_error(&fused, &train);
    assert!(border_error > 1e-3, "zero padding went unnoticed: {border_error:e}");
    let interior = s![.., .., 1..8, 1..6]; // the 9×7 output without its one-pixel border
    assert_close("interior", &fused.slice(interior).to_owned(), &train.slice(interior).to_owned());

    let err = first.fuse().unwrap().then_conv(&second).unwrap_err();
    assert!(err.to_string().contains("pads with zeros"), "{err}");
}

#[test]
fn sum_refuses_branches_that_do_not_line_up() {
    let mut rng = rng(5);
    let fused = |g: ConvGeometry, rng: &mut rand::rngs::StdRng| random_conv_bn(g, rng).fuse().unwrap();
    let main = ConvGeometry::new(4, 8, 3).padding(1);
    let dense = fused(main, &mut rng);
    let cases = [
        (fused(ConvGeometry::new(4, 8, 1).stride(2), &mut rng), "stride is 2x2 but branch `dense` has 1x1"),
        (fused(ConvGeometry::new(4, 6, 1), &mut rng), "output channel count is 6 but branch `dense` has 8"),
        (fused(ConvGeometry::new(4, 8, 1).groups(2), &mut rng), "group count is 2"),
        (fused(ConvGeometry::new(4, 8, 1).padding(1), &mut rng), "window centre (padding)"),
        (fused(ConvGeometry::new(4, 8, 2), &mut rng), "window centre"),
        (fused(ConvGeometry::new(4, 8, 3).padding(2).dilation(2), &mut rng), "dilation along the height is 2"),
    ];
    for (branch, expected) in cases {
        let err = fusion::sum_branches(&[("dense", dense.clone()), ("other", branch)]).unwrap_err();
        assert!(matches!(err, Error::Fusion { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("branch `other`") && msg.contains(expected), "{msg}");
    }
    // The identity needs stride 1: with a stride-2 main branch the sum names it.
    let strided = fused(main.stride(2).padding(1), &mut rng);
    let identity = fusion::bn_identity(&random_bn(4, &mut rng), 1).unwrap();
    let err = fusion::sum_branches(&[("rbr_dense", strided), ("rbr_identity", identity)]).unwrap_err();
    assert!(err.to_string().contains("branch `rbr_identity`"), "{err}");
    assert!(fusion::sum_branches(&[]).is_err());
}

#[test]
fn identity_kernel_is_grouped_diagonal() {
    let id = fusion::identity(6, 3).unwrap().pad_to(3, 1).unwrap();
    assert_eq!(id.weight.shape(), &[6, 2, 3, 3]);
    for o in 0..6 {
        for c in 0..2 {
            let centre = id.weight[[o, c, 1, 1]];
            assert_eq!(centre, if c == o % 2 { 1.0 } else { 0.0 });
        }
    }
    assert_eq!(id.weight.sum(), 6.0);
    assert_eq!(id.geometry.padding, 1.into());
}

#[test]
fn implicit_a_refuses_a_padded_conv() {
    let mut rng = rng(1);
    let conv = Conv2d::new(ConvGeometry::new(3, 3, 3).padding(1), &mut rng).unwrap();
    let err = AffineConv::from_conv(&conv).unwrap().after_implicit_a(&ImplicitA::new(3)).unwrap_err();
    assert!(err.to_string().contains("exact only without padding"), "{err}");
}

/// OREPA's linear deep stem: two unpadded 3×3 convs are one unpadded 5×5 conv, exactly; with
/// padding they are not (the merge is refused), and nested groups keep the smaller count.
#[test]
fn stacked_kernels_and_nested_groups() {
    let mut rng = rng(21);
    let first = Conv2d::new_with_bias(ConvGeometry::new(4, 6, 3), &mut rng).unwrap();
    let second = Conv2d::new_with_bias(ConvGeometry::new(6, 5, 3).stride(2), &mut rng).unwrap();
    let x = random_tensor((2, 4, 13, 10), &mut rng);
    let train = second.forward(&first.forward(&x).unwrap()).unwrap();
    let merged = AffineConv::from_conv(&first).unwrap().then(&AffineConv::from_conv(&second).unwrap()).unwrap();
    assert_eq!(merged.geometry.kernel, (5, 5).into());
    assert_close("3x3 -> 3x3 (valid)", &merged.to_conv2d().forward(&x).unwrap(), &train);

    let padded = Conv2d::new(ConvGeometry::new(6, 5, 3).padding(1), &mut rng).unwrap();
    let err = AffineConv::from_conv(&first).unwrap().then(&AffineConv::from_conv(&padded).unwrap()).unwrap_err();
    assert!(err.to_string().contains("merge only without padding"), "{err}");

    // 1×1 with 4 groups, then 3×3 with 2 groups: nested, so the result has 2 groups.
    let a = random_conv_bn(ConvGeometry::new(8, 8, 1).groups(4), &mut rng);
    let b = Conv2d::new(ConvGeometry::new(8, 8, 3).groups(2), &mut rng).unwrap();
    let b = b.with_pad_fill(a.fuse().unwrap().bias.mapv(|v| v as f32)).unwrap();
    let x8 = random_tensor((2, 8, 13, 10), &mut rng);
    let train = b.forward(&a.forward(&x8).unwrap()).unwrap();
    let merged = a.fuse().unwrap().then_conv(&b).unwrap();
    assert_eq!(merged.geometry.groups, 2);
    assert_close("1x1 g4 -> 3x3 g2", &merged.to_conv2d().forward(&x8).unwrap(), &train);

    // OREPA's depthwise-separable branch with a grouped pointwise: dw ×8, then 1×1 with 2 groups.
    let dw = Conv2d::new(ConvGeometry::new(4, 32, 3).padding(1).groups(4), &mut rng).unwrap();
    let pw = Conv2d::new(ConvGeometry::new(32, 6, 1).groups(2), &mut rng).unwrap();
    let train = pw.forward(&dw.forward(&x).unwrap()).unwrap();
    let merged = AffineConv::from_conv(&dw).unwrap().then(&AffineConv::from_conv(&pw).unwrap()).unwrap();
    assert_eq!(merged.geometry.groups, 2);
    assert_close("dw x8 -> pw g2", &merged.to_conv2d().forward(&x).unwrap(), &train);
}

#[test]
fn dilation_must_agree_only_where_kernels_have_taps() {
    let mut r = rng(30);
    // 3×1 at dilation 1 and 1×3 at dilation 2: no axis where both have more than one tap.
    let tall = random_conv_bn(ConvGeometry::new(4, 4, (3, 1)).padding((1, 0)), &mut r);
    let wide = random_conv_bn(ConvGeometry::new(4, 4, (1, 3)).padding((0, 2)).dilation(2), &mut r);
    let fused = fusion::sum_branches(&[("tall", tall.fuse().unwrap()), ("wide", wide.fuse().unwrap())]).unwrap();
    let x = random_tensor((1, 4, 9, 11), &mut r);
    let train = &tall.forward(&x).unwrap() + &wide.forward(&x).unwrap();
    assert_close("3x1 d1 + 1x3 d2", &fused.to_conv2d().forward(&x).unwrap(), &train);

    // A third kernel with three taps along the width at another spacing cannot join: it was
    // summed with the wrong spacing before (the check compared with the first branch only).
    let other = random_conv_bn(ConvGeometry::new(4, 4, (1, 3)).padding((0, 1)), &mut r);
    let err = fusion::sum_branches(&[
        ("tall", tall.fuse().unwrap()),
        ("wide", wide.fuse().unwrap()),
        ("other", other.fuse().unwrap()),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot fuse branch `other`: its dilation along the width is 1 but branch `wide` has 2"
    );
}
