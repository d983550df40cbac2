//! The generated backward of each family of the zoo against central differences of an f64
//! reference forward written out here from the paper's structure, reading the block's own
//! parameters by their original names: ACNet, YOLOv7's RepConvN, MobileOne (depthwise), DBB
//! (identity-based 1×1, BN-and-pad, avg pool, groups), RepVGG with squeeze-and-excitation and
//! YOLOR's implicit head, at strides 1 and 2 on odd sizes. Every input gradient is checked, and a sample of every
//! parameter's.

mod common;

use common::f64ref::{EPS, add, batch_norm64, bn_zero, check_block, conv_bn, conv64, get};
use common::rng;
use ndarray::Array4;
use rand::Rng;
use rep::ConvGeometry;
use rep::layers::randomize_vectors;
use rep::zoo::{acnet::AcBlock, dbb::DbbIdentity, mobileone::MobileOneBlock, yolo::RepConvN};

fn random_input(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
    let mut rng = rng(seed);
    Array4::from_shape_simple_fn(shape, || rng.random_range(-1.0f32..1.0))
}

#[test]
fn acnet() {
    for stride in [1usize, 2] {
        let mut r = rng(1);
        let mut block = AcBlock::new(3usize, 4usize, stride, 1usize, &mut r).unwrap();
        randomize_vectors(&mut block, &mut r);
        let x = random_input((2, 3, 5, 6), 2);
        let shape = [2, 3, 5, 6];
        check_block("ACNet", &mut block, &x, |x, p, _| {
            let g = |k: (usize, usize), pad: (usize, usize)| ConvGeometry::new(3, 4, k).stride(stride).padding(pad);
            let (mut y, _) = conv_bn(x, shape, &g((3, 3), (1, 1)), p, "square_conv", "square_bn", EPS);
            add(&mut y, &conv_bn(x, shape, &g((1, 3), (0, 1)), p, "hor_conv", "hor_bn", EPS).0);
            add(&mut y, &conv_bn(x, shape, &g((3, 1), (1, 0)), p, "ver_conv", "ver_bn", EPS).0);
            y
        });
    }
}

#[test]
fn repconv_n() {
    let mut r = rng(3);
    let mut block = RepConvN::new(4usize, 4usize, 1usize, 2usize, &mut r).unwrap();
    randomize_vectors(&mut block, &mut r);
    let x = random_input((2, 4, 5, 5), 4);
    let shape = [2, 4, 5, 5];
    check_block("RepConvN", &mut block, &x, |x, p, _| {
        let (mut y, _) =
            conv_bn(x, shape, &ConvGeometry::new(4, 4, 3).padding(1).groups(2), p, "rbr_dense.0", "rbr_dense.1", 1e-3);
        add(&mut y, &conv_bn(x, shape, &ConvGeometry::new(4, 4, 1).groups(2), p, "rbr_1x1.0", "rbr_1x1.1", 1e-3).0);
        y.iter().map(|v| v / (1.0 + (-v).exp())).collect()
    });
}

#[test]
fn mobileone_depthwise() {
    for stride in [1usize, 2] {
        let mut r = rng(5);
        let mut block = MobileOneBlock::new(4usize, 4usize, 3usize, stride, 4usize, 2usize, 0usize, &mut r).unwrap();
        randomize_vectors(&mut block, &mut r);
        let x = random_input((2, 4, 5, 6), 6);
        let shape = [2, 4, 5, 6];
        check_block("MobileOne", &mut block, &x, |x, p, _| {
            let g = |k: usize| ConvGeometry::new(4, 4, k).stride(stride).padding(k / 2).groups(4);
            let (mut y, _) = conv_bn(x, shape, &g(3), p, "rbr_conv.0.conv", "rbr_conv.0.bn", EPS);
            add(&mut y, &conv_bn(x, shape, &g(3), p, "rbr_conv.1.conv", "rbr_conv.1.bn", EPS).0);
            add(&mut y, &conv_bn(x, shape, &g(1), p, "rbr_scale.conv", "rbr_scale.bn", EPS).0);
            if stride == 1 {
                add(&mut y, &batch_norm64(x, shape, get(p, "rbr_skip.weight"), get(p, "rbr_skip.bias"), EPS));
            }
            y.iter().map(|v| v.max(0.0)).collect()
        });
    }
}

#[test]
fn dbb_with_identity_based_1x1_and_bn_and_pad() {
    for (stride, groups) in [(1usize, 2usize), (2, 1)] {
        let mut r = rng(7);
        let mut block = DbbIdentity::new(4usize, 4usize, 3usize, stride, groups, &mut r).unwrap();
        randomize_vectors(&mut block, &mut r);
        // Δ away from zero, so that the identity-based 1×1 is more than the identity.
        rep::layers::Parameters::visit_mut(&mut block, "", &mut |name, mut t| {
            if name == "dbb_1x1_kxk.idconv1.weight" {
                t.iter_mut().enumerate().for_each(|(i, v)| *v = 0.1 * (i as f32 - 3.0));
            }
        });
        let x = random_input((2, 4, 6, 5), 8);
        let shape = [2, 4, 6, 5];
        check_block("DBB", &mut block, &x, |x, p, frozen| {
            let g = |k: usize, s: usize, pad: usize| ConvGeometry::new(4, 4, k).stride(s).padding(pad).groups(groups);
            let (mut y, out) = conv_bn(x, shape, &g(3, stride, 1), p, "dbb_origin.conv", "dbb_origin.bn", EPS);
            add(&mut y, &conv_bn(x, shape, &g(1, stride, 0), p, "dbb_1x1.conv", "dbb_1x1.bn", EPS).0);
            // idconv1 (W = I + Δ) → BN → 3×3 padded with the BN's zero value (frozen: a constant
            // of the step, as the original detaches it).
            let per_group = 4 / groups;
            let identity_based: Vec<f64> = get(p, "dbb_1x1_kxk.idconv1.weight")
                .iter()
                .enumerate()
                .map(|(i, d)| d + if i % per_group == (i / per_group) % per_group { 1.0 } else { 0.0 })
                .collect();
            let inner = conv64(x, shape, &identity_based, None, &g(1, 1, 0), None);
            let bn1 = |name: &str| get(p, &format!("dbb_1x1_kxk.bn1.bn.{name}"));
            let inner = batch_norm64(&inner, shape, bn1("weight"), bn1("bias"), EPS);
            let fill = bn_zero(frozen, "dbb_1x1_kxk.bn1.bn");
            let z = conv64(&inner, shape, get(p, "dbb_1x1_kxk.conv2.weight"), None, &g(3, stride, 1), Some(&fill));
            let bn2 = |name: &str| get(p, &format!("dbb_1x1_kxk.bn2.{name}"));
            add(&mut y, &batch_norm64(&z, out, bn2("weight"), bn2("bias"), EPS));
            // 1×1 → BN → 3×3 average (padding with the BN's zero value, counted) → BN.
            let (inner, dims) = conv_bn(x, shape, &g(1, 1, 0), p, "dbb_avg.conv", "dbb_avg.bn.bn", EPS);
            let pool = ConvGeometry::new(4, 4, 3).stride(stride).padding(1).groups(4);
            let z = conv64(&inner, dims, &[1.0 / 9.0; 36], None, &pool, Some(&bn_zero(frozen, "dbb_avg.bn.bn")));
            let avgbn = |name: &str| get(p, &format!("dbb_avg.avgbn.{name}"));
            add(&mut y, &batch_norm64(&z, out, avgbn("weight"), avgbn("bias"), EPS));
            y
        });
    }
}

#[test]
fn repvgg_with_squeeze_excitation() {
    let mut r = rng(9);
    let mut block = rep::zoo::repvgg::RepVggBlock::new(16usize, 16usize, 1usize, 1usize, 1usize, &mut r).unwrap();
    randomize_vectors(&mut block, &mut r);
    let x = random_input((2, 16, 3, 4), 10);
    let shape = [2, 16, 3, 4];
    check_block("RepVGG + SE", &mut block, &x, |x, p, _| {
        let (mut y, _) =
            conv_bn(x, shape, &ConvGeometry::new(16, 16, 3).padding(1), p, "rbr_dense.conv", "rbr_dense.bn", EPS);
        add(&mut y, &conv_bn(x, shape, &ConvGeometry::new(16, 16, 1), p, "rbr_1x1.conv", "rbr_1x1.bn", EPS).0);
        add(&mut y, &batch_norm64(x, shape, get(p, "rbr_identity.weight"), get(p, "rbr_identity.bias"), EPS));
        let plane = 12;
        for n in 0..2 {
            let image = &y[n * 16 * plane..(n + 1) * 16 * plane];
            let pooled: Vec<f64> =
                (0..16).map(|c| image[c * plane..(c + 1) * plane].iter().sum::<f64>() / plane as f64).collect();
            let (dw, db) = (get(p, "se.down.weight"), get(p, "se.down.bias"));
            let hidden = (db[0] + (0..16).map(|c| dw[c] * pooled[c]).sum::<f64>()).max(0.0);
            let (uw, ub) = (get(p, "se.up.weight"), get(p, "se.up.bias"));
            for c in 0..16 {
                let gate = 1.0 / (1.0 + (-(ub[c] + uw[c] * hidden)).exp());
                y[(n * 16 + c) * plane..(n * 16 + c + 1) * plane].iter_mut().for_each(|v| *v *= gate);
            }
        }
        y.iter().map(|v| v.max(0.0)).collect()
    });
}

/// YOLOR's implicit head (one IDetect level): `y = m ⊙ (W·(x + a) + b)`, the implicit vectors
/// `a` (ImplicitA, per input channel) and `m` (ImplicitM, per output channel) learned with the
/// 1×1 conv between them, on a non-square map.
#[test]
fn implicit_head() {
    let mut r = rng(13);
    let mut block = rep::zoo::yolo::ImplicitHead::new(5usize, 7usize, &mut r).unwrap();
    randomize_vectors(&mut block, &mut r);
    let x = random_input((2, 5, 3, 4), 14);
    check_block("implicit head", &mut block, &x, |x, p, _| {
        let (a, m, plane) = (get(p, "ia.implicit"), get(p, "im.implicit"), 12);
        let shifted: Vec<f64> = x.iter().enumerate().map(|(i, v)| v + a[(i / plane) % 5]).collect();
        let g = ConvGeometry::new(5, 7, 1);
        let y = conv64(&shifted, [2, 5, 3, 4], get(p, "m.weight"), Some(get(p, "m.bias")), &g, None);
        y.iter().enumerate().map(|(i, v)| v * m[(i / plane) % 7]).collect()
    });
}

/// A YOLOv7 graph with every node kind — YOLO `Conv`s, an addition, max pooling, upsampling,
/// a concatenation reading an earlier node, a stride-2 conv — against central differences of
/// an f64 forward of the same wiring: the graph backward sums every reader's gradient into
/// each value and routes through each node's transpose.
#[test]
fn yolov7_graph_with_every_node_kind() {
    use rep::graph::GraphBuilder;
    use rep::layers::MaxPool2d;
    use rep::zoo::yolov7::{Conv, Yolov7Layer};
    let mut r = rng(11);
    let mut g = GraphBuilder::new(3);
    {
        let mut conv = |c_in: usize, c_out: usize, k: usize, s: usize| -> Yolov7Layer {
            Conv::new(c_in, c_out, k, s, &mut r).unwrap().into()
        };
        g.layer("0", -1, conv(3, 4, 3, 1)).unwrap();
        g.layer("1", -1, conv(4, 4, 1, 1)).unwrap();
        g.add("2", &[-1, 0]).unwrap();
        g.max_pool("3", -1, MaxPool2d::new(3, 2, 1)).unwrap();
        g.upsample("4", -1, 2).unwrap();
        g.concat("5", &[-1, 0]).unwrap();
        g.layer("6", -1, conv(8, 4, 3, 2)).unwrap();
    }
    let mut graph = g.build(&[6]).unwrap();
    randomize_vectors(&mut graph, &mut r);
    let x = random_input((2, 3, 6, 6), 12);
    let silu = |v: Vec<f64>| v.into_iter().map(|v| v / (1.0 + (-v).exp())).collect::<Vec<_>>();
    check_block("YOLOv7 graph", &mut graph, &x, |x, p, _| {
        let conv = |x: &[f64], shape: [usize; 4], c_out: usize, k: usize, s: usize, name: &str| {
            let g = ConvGeometry::new(shape[1], c_out, k).stride(s).padding(k / 2);
            let (y, dims) = conv_bn(x, shape, &g, p, &format!("{name}.conv"), &format!("{name}.bn"), 1e-3);
            (silu(y), dims)
        };
        let (a, sa) = conv(x, [2, 3, 6, 6], 4, 3, 1, "0");
        let (b, _) = conv(&a, sa, 4, 1, 1, "1");
        let mut sum = b.clone();
        add(&mut sum, &a);
        // Max pool 3×3, stride 2, padding 1 → 3×3, then nearest upsampling ×2 → 6×6.
        let at = |n: usize, c: usize, i: usize, j: usize| ((n * 4 + c) * 6 + i) * 6 + j;
        let mut up = vec![0.0; sum.len()];
        for (n, c, i, j) in (0..2usize).flat_map(|n| {
            (0..4usize).flat_map(move |c| (0..6usize).flat_map(move |i| (0..6usize).map(move |j| (n, c, i, j))))
        }) {
            let (pi, pj) = (i / 2, j / 2);
            let mut best = f64::NEG_INFINITY;
            for r in (2 * pi).saturating_sub(1)..(2 * pi + 2).min(6) {
                for s in (2 * pj).saturating_sub(1)..(2 * pj + 2).min(6) {
                    best = best.max(sum[at(n, c, r, s)]);
                }
            }
            up[at(n, c, i, j)] = best;
        }
        // Concatenation [up, a] along channels.
        let plane = 36;
        let cat: Vec<f64> = (0..2)
            .flat_map(|n| {
                let (up, a) = (&up, &a);
                (0..8).flat_map(move |c| {
                    let src = if c < 4 { &up[(n * 4 + c) * plane..] } else { &a[(n * 4 + c - 4) * plane..] };
                    src[..plane].to_vec()
                })
            })
            .collect();
        conv(&cat, [2, 8, 6, 6], 4, 3, 2, "6").0
    });
}

/// The transpose of max pooling routes each output's gradient to its window's maximum:
/// central differences of the pool (linear near inputs without ties) agree exactly.
#[test]
fn max_pool_gradient() {
    use rep::layers::{Layer, MaxPool2d};
    let pool = MaxPool2d::new((3, 2), (2, 1), (1, 1));
    let x = random_input((2, 3, 5, 4), 13);
    let y = pool.forward(&x).unwrap();
    let dy = random_input(y.dim(), 14);
    let dx = rep::train::max_pool_backward(&pool, &x, &dy).unwrap();
    let loss = |x: &Array4<f32>| -> f64 { pool.forward(x).unwrap().iter().zip(&dy).map(|(a, b)| (a * b) as f64).sum() };
    for (index, &analytic) in dx.indexed_iter() {
        let (mut plus, mut minus) = (x.clone(), x.clone());
        plus[index] += 1e-3;
        minus[index] -= 1e-3;
        let numeric = (loss(&plus) - loss(&minus)) / 2e-3;
        assert!((numeric - analytic as f64).abs() < 1e-3, "{index:?}: {analytic} vs {numeric}");
    }
}
