//! `#[rep::graph]`: a YOLOv7 ELAN block and a neck-like graph declared with the DSL compute what
//! the same layers wired by hand compute, fuse exactly, plan, train, and name their weights by
//! node; wiring mistakes that sizes only decide at run time are errors from `new`.

mod common;

use common::{random_tensor, relative_error, rng};
use rep::graph::GraphBuilder;
use rep::layers::{Layer, Parameters, concat_channels, randomize_vectors};
use rep::plan::KernelChoice;
use rep::train::{Gradients, Train};
use rep::zoo::yolo::{ConvBnSilu, RepConv, RepConvN};
use rep::{Block, Const, Reparameterize};

/// One ELAN block of YOLOv7 (`model.4` … `model.11` of `cfg/training/yolov7.yaml`): two 1×1
/// branches of the input, a chain of four 3×3 convs on the second, four outputs concatenated,
/// a 1×1 to the block's width.
#[rep::graph(new(c: usize))]
pub struct Elan {
    cv1: ConvBnSilu<{ c }, { c / 2 }, 1, 1>,
    #[rep(from = input)]
    cv2: ConvBnSilu<{ c }, { c / 2 }, 1, 1>,
    cv3: ConvBnSilu<{ c / 2 }, { c / 2 }, 3, 1>,
    cv4: ConvBnSilu<{ c / 2 }, { c / 2 }, 3, 1>,
    cv5: ConvBnSilu<{ c / 2 }, { c / 2 }, 3, 1>,
    cv6: ConvBnSilu<{ c / 2 }, { c / 2 }, 3, 1>,
    #[rep(from = (-1, -3, -5, -6))]
    cat: Concat,
    out: ConvBnSilu<{ 2 * c }, { c }, 1, 1>,
}

/// Static sizes, every node kind, a RepConv with its identity on a plain chain and a RepConvN
/// before a concatenation; weights named like YOLO's `model.N`.
#[rep::graph]
pub struct Neck {
    #[rep(rename = "0")]
    stem: RepConv<8, 8, 1, 1>,
    #[rep(rename = "1")]
    down: ConvBnSilu<8, 16, 3, 2>,
    #[rep(rename = "2", from = -1)]
    merge: RepConvN<16, 16, 1, 1>,
    #[rep(rename = "3")]
    pool: MaxPool<5, 1, 2>,
    #[rep(rename = "4", from = (-1, -2))]
    sum: Add,
    #[rep(rename = "5")]
    up: Upsample<2>,
    #[rep(rename = "6", from = (-1, 0))]
    cat: Concat,
    #[rep(rename = "7")]
    out: ConvBnSilu<24, 8, 1, 1>,
}

#[test]
fn an_elan_block_computes_its_layers_wired_by_hand() {
    let mut elan = Elan::new(16, &mut rng(1)).unwrap();
    randomize_vectors(&mut elan, &mut rng(2));
    let x = random_tensor((2, 16, 9, 7), &mut rng(3));
    // By hand, from the block's own layers (in node order).
    let layers = elan.graph().layers();
    let run = |k: usize, x: &ndarray::Array4<f32>| layers[k].forward(x).unwrap();
    let a = run(0, &x);
    let b = run(1, &x);
    let c = run(2, &b);
    let d = run(3, &c);
    let e = run(4, &d);
    let f = run(5, &e);
    let expected = run(6, &concat_channels(&[&f, &d, &b, &a]).unwrap());
    assert_eq!(elan.forward(&x).unwrap(), expected);
    assert_eq!((elan.in_channels(), elan.out_channels()), (16, 16));

    // Weight names by node, exactly the layers' own under each field name.
    let mut names = Vec::new();
    elan.visit("model.4", &mut |name, _| names.push(name.to_owned()));
    assert!(names.contains(&"model.4.cv1.conv.weight".to_owned()), "{names:?}");
    assert!(names.contains(&"model.4.out.bn.running_var".to_owned()), "{names:?}");

    // Fused, layer by layer and planned.
    let fused = elan.fuse().unwrap();
    assert!(relative_error(&fused.forward(&x).unwrap(), &expected) <= 1e-5);
    let plan = fused.plan([2, 16, 9, 7], KernelChoice::Auto).unwrap();
    let mut state = plan.state().unwrap();
    plan.run(&mut state, x.view()).unwrap();
    let planned = plan.output(&state, 0).unwrap().into_dimensionality().unwrap().to_owned();
    assert!(relative_error(&planned, &expected) <= 1e-5);

    // Channels that do not meet are found in `new` when the sizes are run-time ones.
    let err = Elan::new(15, &mut rng(1)).unwrap_err().to_string();
    assert!(err.contains("node 7 `out`: the layer takes 30 input channels, but its source gives 28"), "{err}");
}

#[test]
fn a_graph_of_every_node_kind_fuses_trains_and_checks_identity_statically() {
    let mut neck = Neck::new(&mut rng(4)).unwrap();
    randomize_vectors(&mut neck, &mut rng(5));
    let x = random_tensor((2, 8, 10, 12), &mut rng(6));
    let train = neck.forward(&x).unwrap();
    assert_eq!(train.dim(), (2, 8, 10, 12));
    assert!(relative_error(&neck.fuse().unwrap().forward(&x).unwrap(), &train) <= 1e-5);
    let mut names = Vec::new();
    neck.visit("model", &mut |name, _| names.push(name.to_owned()));
    assert!(names.contains(&"model.0.rbr_identity.running_mean".to_owned()), "{names:?}");
    assert!(names.contains(&"model.7.conv.weight".to_owned()), "{names:?}");

    // The same wiring by hand through the runtime builder, with the graph's own layers.
    let layers = neck.graph().layers().to_vec();
    let mut g = GraphBuilder::new(8);
    g.layer("0", -1, layers[0].clone()).unwrap();
    g.layer("1", -1, layers[1].clone()).unwrap();
    g.layer("2", -1, layers[2].clone()).unwrap();
    g.max_pool("3", -1, rep::layers::MaxPool2d::new(5, 1, 2)).unwrap();
    g.add("4", &[-1, -2]).unwrap();
    g.upsample("5", -1, 2).unwrap();
    g.concat("6", &[-1, 0]).unwrap();
    g.layer("7", -1, layers[3].clone()).unwrap();
    assert_eq!(g.build(&[7]).unwrap().forward(&x).unwrap(), train);

    // A training step: every parameter gets a gradient.
    let (y, cache) = neck.forward_cached(&x).unwrap();
    let mut grads = Gradients::new();
    neck.backward(cache, &y, "", &mut grads).unwrap();
    let mut trainable = Vec::new();
    neck.visit("", &mut |name, _| {
        if !name.contains("running_") {
            trainable.push(name.to_owned())
        }
    });
    trainable.sort();
    assert_eq!(grads.iter().map(|(n, _)| n.to_owned()).collect::<Vec<_>>(), trainable);

    // What the identity check reads: decided by the types when their sizes are static.
    assert_eq!(<RepConv<Const<8>, Const<8>, Const<1>, Const<1>> as Block>::IDENTITY_BRANCH, Some(true));
    assert_eq!(<RepConv<Const<8>, Const<16>, Const<1>, Const<1>> as Block>::IDENTITY_BRANCH, Some(false));
    assert_eq!(<RepConv<usize, usize, Const<1>, Const<1>> as Block>::IDENTITY_BRANCH, None);
    assert_eq!(<RepConvN<Const<8>, Const<8>, Const<1>, Const<1>> as Block>::IDENTITY_BRANCH, Some(false));
}

/// Two outputs at two scales, as a detection neck has: `forward_all` and a plan return them in
/// the order `outputs(…)` names them.
#[rep::graph(outputs(fine, coarse))]
pub struct TwoLevels {
    stem: ConvBnSilu<3, 8, 3, 1>,
    down: ConvBnSilu<8, 16, 3, 2>,
    coarse: ConvBnSilu<16, 16, 1, 1>,
    up: Upsample<2>,
    #[rep(from = (-1, 0))]
    cat: Concat,
    fine: ConvBnSilu<24, 8, 1, 1>,
}

#[test]
fn a_graph_with_two_outputs_returns_both_in_order() {
    let mut net = TwoLevels::new(&mut rng(7)).unwrap();
    randomize_vectors(&mut net, &mut rng(8));
    let x = random_tensor((1, 3, 8, 10), &mut rng(9));
    let outputs = net.forward_all(&x).unwrap();
    assert_eq!(outputs.iter().map(|y| y.dim()).collect::<Vec<_>>(), [(1, 8, 8, 10), (1, 16, 4, 5)]);
    let fused = net.fuse().unwrap();
    let plan = fused.plan([1, 3, 8, 10], KernelChoice::Auto).unwrap();
    let mut state = plan.state().unwrap();
    plan.run(&mut state, x.view()).unwrap();
    for (i, expected) in outputs.iter().enumerate() {
        let planned = plan.output(&state, i).unwrap().into_dimensionality().unwrap().to_owned();
        assert!(relative_error(&planned, expected) <= 1e-5, "output {i}");
    }
    // A graph with two outputs is not one layer.
    assert!(net.forward(&x).is_err());
}
