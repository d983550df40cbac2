//! Graph networks: wiring checked as nodes are added (errors naming the node), the planned
//! re-parameterization rule, evaluation against hand-wired layers, max pooling as PyTorch's.

mod common;

use common::{random_tensor, relative_error, rng};
use ndarray::{Array4, array};
use rep::graph::{Graph, GraphBuilder, GraphLayer, INPUT};
use rep::kernels::Tile;
use rep::layers::{Activation, Conv2d, Layer, MaxPool2d, concat_channels, upsample_nearest};
use rep::plan::{GraphPlan, KernelChoice};
use rep::zoo::yolov7::{RepConv3, Yolov7Layer};
use rep::{ConvGeometry, Costs, Error, Hw, Reparameterize};

fn conv(c_in: usize, c_out: usize, seed: u64) -> Conv2d {
    Conv2d::new_with_bias(ConvGeometry::new(c_in, c_out, 3).padding(1), &mut rng(seed)).unwrap()
}

fn wiring_message(result: rep::Result<impl Sized>) -> String {
    match result {
        Err(Error::Wiring(message)) => message,
        Err(other) => panic!("expected a wiring error, found {other}"),
        Ok(_) => panic!("expected a wiring error, found success"),
    }
}

#[test]
fn a_graph_computes_what_the_same_layers_wired_by_hand_compute() {
    let (a, b, c) = (conv(3, 4, 1), conv(4, 4, 2), conv(8, 6, 3));
    let mut g = GraphBuilder::new(3);
    g.layer("a", -1, a.clone()).unwrap(); // 0
    g.layer("b", -1, b.clone()).unwrap(); // 1
    g.add("sum", &[-1, 0]).unwrap(); // 2
    g.max_pool("pool", -1, MaxPool2d::new(2, 2, 0)).unwrap(); // 3
    g.upsample("up", -1, 2).unwrap(); // 4
    g.concat("cat", &[-1, 0]).unwrap(); // 5: 8 channels
    g.layer("c", -1, c.clone()).unwrap(); // 6
    let graph = g.build(&[6, 2]).unwrap();

    let x = random_tensor((2, 3, 6, 10), &mut rng(4));
    let ya = a.forward(&x).unwrap();
    let sum = &b.forward(&ya).unwrap() + &ya;
    let pooled = MaxPool2d::new(2, 2, 0).forward(&sum).unwrap();
    let up = upsample_nearest(&pooled, 2).unwrap();
    let expected = c.forward(&concat_channels(&[&up, &ya]).unwrap()).unwrap();
    let outputs = graph.forward_all(&x).unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0], expected);
    assert_eq!(outputs[1], sum);
    assert_eq!(graph.in_channels(), 3);
    assert_eq!(graph.out_channels(), 6);
    // Multiply-adds: the three convs at their sizes.
    let macs = |g: ConvGeometry, hw: Hw| g.macs(hw).unwrap();
    let expected_macs =
        macs(*a.geometry(), Hw::new(6, 10)) + macs(*b.geometry(), Hw::new(6, 10)) + macs(*c.geometry(), Hw::new(6, 10));
    assert_eq!(graph.macs(Hw::new(6, 10)).unwrap(), (expected_macs, Hw::new(6, 10)));
    // Weights are named by node.
    let names: Vec<String> = rep::io::StateDict::from_parameters(&graph).tensors.into_keys().collect();
    assert_eq!(names, ["a.bias", "a.weight", "b.bias", "b.weight", "c.bias", "c.weight"]);
    // A graph with two outputs is not a layer.
    assert!(wiring_message(graph.forward(&x)).contains("must have 1 output, found 2"));
}

#[test]
fn wiring_mistakes_name_the_node() {
    let mut g = GraphBuilder::new(3);
    let message = wiring_message(g.layer("first", -2, conv(3, 4, 1)));
    assert!(message.contains("node 0 `first`: source -2 is out of range"), "{message}");
    let message = wiring_message(g.layer("first", -1, conv(5, 4, 1)));
    assert!(message.contains("node 0 `first`: the layer takes 5 input channels, but its source gives 3"), "{message}");
    g.layer("a", -1, conv(3, 4, 1)).unwrap();
    g.layer("b", INPUT, conv(3, 6, 1)).unwrap();
    let message = wiring_message(g.add("sum", &[0, 1]));
    assert!(message.contains("node 2 `sum`: added sources have different channels [4, 6]"), "{message}");
    let message = wiring_message(g.concat("cat", &[0, 7]));
    assert!(message.contains("node 2 `cat`: source 7 is out of range"), "{message}");
    assert!(wiring_message(g.concat("cat", &[])).contains("needs at least one source"));
    assert!(wiring_message(g.upsample("up", -1, 0)).contains("factor must be at least 1"));
    let message = wiring_message(g.build(&[5]));
    assert!(message.contains("output node 5 does not exist; the graph has 2 nodes"), "{message}");

    // Sizes that do not meet are found when the graph runs (or costs are computed), by node.
    let mut g = GraphBuilder::new(3);
    g.layer("a", -1, conv(3, 4, 1)).unwrap();
    g.max_pool("pool", -1, MaxPool2d::new(2, 2, 0)).unwrap();
    g.concat("cat", &[-1, 0]).unwrap();
    let graph = g.build(&[2]).unwrap();
    let err = graph.forward(&Array4::zeros((1, 3, 8, 8))).unwrap_err().to_string();
    assert!(err.contains("node 2 `cat`"), "{err}");
    let err = graph.macs(Hw::new(8, 8)).unwrap_err().to_string();
    assert!(err.contains("node 2 `cat`: sources of size 4x4 and 8x8 do not meet"), "{err}");
}

/// YOLOv7's RepConv, 3×3 stride 1: with its identity branch exactly when `c_in == c_out`.
fn rep_conv(c_in: usize, c_out: usize) -> Yolov7Layer {
    let layer = Yolov7Layer::RepConv(Box::new(RepConv3::new(c_in, c_out, 1, 1, &mut rng(5)).unwrap()));
    assert_eq!(layer.has_identity_branch(), c_in == c_out);
    layer
}

fn yolo_conv(c_in: usize, c_out: usize) -> Yolov7Layer {
    rep::zoo::yolov7::Conv::new(c_in, c_out, 1usize, 1usize, &mut rng(6)).unwrap().into()
}

#[test]
fn an_identity_branch_on_a_shortcut_is_refused_as_planned_reparameterization_prescribes() {
    // ELAN-like: a → RepConv → concat with a. The input of the RepConv (a) also reaches the
    // concatenation its output reaches: refused, naming both and suggesting RepConvN.
    let mut g = GraphBuilder::new(4);
    g.layer("a", -1, yolo_conv(4, 8)).unwrap();
    g.layer("rep", -1, rep_conv(8, 8)).unwrap();
    g.concat("cat", &[-1, 0]).unwrap();
    let message = wiring_message(g.build(&[2]));
    assert!(
        message.contains("node 1 `rep` has an identity branch on a shortcut path: its input (node 0 `a`) also reaches concatenation node 2 `cat`"),
        "{message}"
    );
    assert!(message.contains("RepConvN"), "{message}");

    // The same through a longer path and an addition, from the graph's input.
    let mut g = GraphBuilder::new(8);
    g.layer("rep", -1, rep_conv(8, 8)).unwrap();
    g.layer("b", -1, yolo_conv(8, 8)).unwrap();
    g.add("sum", &[-1, INPUT]).unwrap();
    let message = wiring_message(g.build(&[2]));
    assert!(message.contains("its input (the graph's input) also reaches addition node 2 `sum`"), "{message}");

    // Without the identity (C_in ≠ C_out here), the same wiring is fine; so is an identity on a
    // plain chain, whose input reaches nothing else.
    let mut g = GraphBuilder::new(4);
    g.layer("a", -1, yolo_conv(4, 8)).unwrap();
    g.layer("rep", -1, rep_conv(8, 16)).unwrap();
    g.layer("b", 0, yolo_conv(8, 16)).unwrap();
    g.concat("cat", &[1, 2]).unwrap();
    g.build(&[3]).unwrap();
    let mut g = GraphBuilder::new(4);
    g.layer("a", -1, yolo_conv(4, 8)).unwrap();
    g.layer("rep", -1, rep_conv(8, 8)).unwrap();
    g.layer("b", -1, yolo_conv(8, 8)).unwrap();
    g.concat("cat", &[-1, -2]).unwrap(); // rep's output reaches cat twice, its input only through rep
    g.build(&[3]).unwrap();
}

#[test]
fn a_fused_graph_computes_the_train_graph() {
    let mut g = GraphBuilder::new(4);
    g.layer("a", -1, yolo_conv(4, 8)).unwrap();
    g.layer("rep", -1, rep_conv(8, 8)).unwrap();
    g.layer("b", 1, yolo_conv(8, 8)).unwrap();
    g.upsample("up", 1, 3).unwrap();
    g.max_pool("pool", -1, MaxPool2d::new(3, 3, 0)).unwrap();
    g.concat("cat", &[-1, 2]).unwrap();
    let mut graph: Graph<Yolov7Layer> = g.build(&[5]).unwrap();
    rep::layers::randomize_vectors(&mut graph, &mut rng(8));
    let x = random_tensor((2, 4, 7, 5), &mut rng(9));
    let train = graph.forward(&x).unwrap();
    let fused = graph.fuse().unwrap().forward(&x).unwrap();
    assert!(relative_error(&fused, &train) <= 1e-5);
}

#[test]
fn max_pooling_matches_pytorch_including_padding_and_nan() {
    // torch.nn.MaxPool2d(3, stride=2, padding=1)(torch.arange(20.).reshape(1, 1, 4, 5) - 10)
    let x = (Array4::from_shape_fn((1, 1, 4, 5), |(_, _, i, j)| (i * 5 + j) as f32) - 10.0).mapv(|v: f32| -v.abs());
    let y = MaxPool2d::new(3, 2, 1).forward(&x).unwrap();
    // (PyTorch's output; padding never wins.)
    assert_eq!(y, array![[[[-4.0f32, -2.0, -1.0], [-0.0, -1.0, -1.0]]]]);
    // A NaN anywhere in a window makes that window NaN; the other windows are untouched.
    let mut x = Array4::<f32>::zeros((1, 1, 4, 4));
    x[[0, 0, 0, 0]] = f32::NAN;
    let y = MaxPool2d::new(2, 2, 0).forward(&x).unwrap();
    assert!(y[[0, 0, 0, 0]].is_nan());
    assert_eq!(y.iter().filter(|v| v.is_nan()).count(), 1);
    // Whatever comes after the NaN in a window (PyTorch: NaN where the 3×3 windows cover [1, 1],
    // even those holding the 5 after it).
    let mut x = Array4::<f32>::zeros((1, 1, 4, 4));
    x[[0, 0, 1, 1]] = f32::NAN;
    x[[0, 0, 1, 2]] = 5.0;
    let y = MaxPool2d::new(3, 1, 1).forward(&x).unwrap();
    let nan = y.mapv(|v| v.is_nan() as u8);
    assert_eq!(nan, array![[[[1u8, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]]]);
    assert_eq!(y[[0, 0, 0, 3]], 5.0);
    // Padding larger than half the kernel is refused, as PyTorch refuses it.
    assert!(MaxPool2d::new(2, 1, 2).forward(&x).is_err());
}

#[test]
fn a_graph_plan_computes_the_graph() {
    // A fused graph of every node kind, planned with every kernel choice.
    let mut g = GraphBuilder::new(4);
    g.layer("rep", -1, rep_conv(4, 4)).unwrap(); // 0: with its identity, on a chain
    g.layer("a", -1, yolo_conv(4, 40)).unwrap(); // 1
    g.layer("rep2", -1, rep_conv(40, 48)).unwrap(); // 2
    g.max_pool("pool", -1, MaxPool2d::new(3, 2, 1)).unwrap(); // 3
    g.upsample("up", -1, 2).unwrap(); // 4
    g.add("sum", &[-1, 2]).unwrap(); // 5
    g.layer("b", 1, yolo_conv(40, 40)).unwrap(); // 6
    g.concat("cat", &[-1, 5, 1]).unwrap(); // 7
    let mut graph: Graph<Yolov7Layer> = g.build(&[7, 6]).unwrap();
    rep::layers::randomize_vectors(&mut graph, &mut rng(12));
    let fused = graph.fuse().unwrap();
    let x = random_tensor((2, 4, 12, 10), &mut rng(13));
    let expected = fused.forward_all(&x).unwrap();
    for choice in [KernelChoice::Auto, KernelChoice::Direct, KernelChoice::Winograd(Tile::F2)] {
        let plan = GraphPlan::for_graph(&fused, [2, 4, 12, 10], choice).unwrap();
        let mut state = plan.state().unwrap();
        plan.run(&mut state, x.view()).unwrap();
        assert_eq!(plan.outputs(), 2);
        for (i, expected) in expected.iter().enumerate() {
            let ours = plan.output(&state, i).unwrap().into_dimensionality().unwrap().to_owned();
            assert!(relative_error(&ours, expected) <= 1e-5, "{choice:?}, output {i}");
        }
        assert!(plan.output(&state, 2).is_err());
        // The same input through a view that is not row-major (every other column of a wider
        // array): copied into the state, the same outputs.
        let mut wide = Array4::<f32>::zeros((2, 4, 12, 20));
        wide.slice_mut(ndarray::s![.., .., .., ..;2]).assign(&x);
        plan.run(&mut state, wide.slice(ndarray::s![.., .., .., ..;2])).unwrap();
        let strided = plan.output(&state, 0).unwrap().into_dimensionality().unwrap().to_owned();
        assert!(relative_error(&strided, &expected[0]) <= 1e-5);
    }

    // In-place steps (an activation after a conv that has one) on a value that is read again
    // later (copied first) and on one that is not (overwritten where it lies).
    let (c1, c2) = (conv(3, 5, 14), conv(5, 5, 15));
    let plan = GraphPlan::new([1, 3, 6, 7], KernelChoice::Auto, |p| {
        let a = p.layer(p.input(), &(c1.clone(), (Activation::Relu, Activation::Sigmoid)), "a")?;
        let b = p.layer(a, &Activation::Silu, "b")?; // in place on `a`, which `sum` reads later
        let c = p.layer(b, &(c2.clone(), (Activation::Silu, Activation::Sigmoid)), "c")?;
        Ok(vec![p.add(&[a, c], "sum")?])
    })
    .unwrap();
    let mut state = plan.state().unwrap();
    let x = random_tensor((1, 3, 6, 7), &mut rng(16));
    plan.run(&mut state, x.view()).unwrap();
    let sigmoid = |y: Array4<f32>| y.mapv(|v| Activation::Sigmoid.apply(v));
    let a = sigmoid(c1.forward(&x).unwrap().mapv(|v| Activation::Relu.apply(v)));
    let b = a.mapv(|v| Activation::Silu.apply(v));
    let c = sigmoid(c2.forward(&b).unwrap().mapv(|v| Activation::Silu.apply(v)));
    let ours = plan.output(&state, 0).unwrap().into_dimensionality().unwrap().to_owned();
    assert!(relative_error(&ours, &(&a + &c)) <= 1e-6);
}

/// Max pooling against the definition (every window scanned, NaN winning, padding never), over
/// random kernels, strides, paddings and sizes, with NaNs sprinkled in.
#[test]
fn max_pooling_matches_the_definition_on_random_shapes() {
    use rand::Rng;
    let mut rng = rng(21);
    for _ in 0..200 {
        let (kh, kw) = (rng.random_range(1..6), rng.random_range(1..6));
        let pool = MaxPool2d::new(
            (kh, kw),
            (rng.random_range(1..4), rng.random_range(1..4)),
            (rng.random_range(0..=kh / 2), rng.random_range(0..=kw / 2)),
        );
        let (h, w) = (rng.random_range(kh..kh + 9), rng.random_range(kw..kw + 9));
        let mut x = random_tensor((2, 3, h, w), &mut rng);
        x.mapv_inplace(|v| if rng.random_range(0..40) == 0 { f32::NAN } else { v });
        let y = pool.forward(&x).unwrap();
        let (ph, pw) = (pool.padding.h as isize, pool.padding.w as isize);
        let expected = Array4::from_shape_fn(y.dim(), |(n, c, i, j)| {
            let mut best = f32::NEG_INFINITY;
            for a in 0..kh as isize {
                for b in 0..kw as isize {
                    let (r, s) = ((i * pool.stride.h) as isize + a - ph, (j * pool.stride.w) as isize + b - pw);
                    if r >= 0 && s >= 0 && (r as usize) < h && (s as usize) < w {
                        let v = x[[n, c, r as usize, s as usize]];
                        if v.is_nan() || v > best {
                            best = if best.is_nan() { best } else { v };
                        }
                    }
                }
            }
            best
        });
        let same = y.iter().zip(&expected).all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
        assert!(same, "{pool:?} on {h}x{w}:\n{y}\n{expected}");
    }
}
