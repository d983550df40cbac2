//! Compiled inference plans against the fused models' own forward passes and the PyTorch
//! fixtures: every kernel choice, grouped layers, squeeze-excite, odd input sizes, batches,
//! and the errors a plan gives for wrong inputs.

mod common;

use common::{REL_TOL, random_tensor, relative_error, rng};
use ndarray::{Array2, Array4, Ix2};
use ndarray_npy::read_npy;
use rep::kernels::Tile;
use rep::layers::{Activation, Conv2d, Linear, randomize_vectors};
use rep::plan::{KernelChoice, Plan, Shape};
use rep::zoo::repvgg::{Arch, Checkpoint, RepVgg};
use rep::{ConvGeometry, Reparameterize};
use std::path::PathBuf;

const CHOICES: [KernelChoice; 4] =
    [KernelChoice::Auto, KernelChoice::Direct, KernelChoice::Winograd(Tile::F2), KernelChoice::Winograd(Tile::F4)];

fn fixture(dir: &str, file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join(file)
}

#[test]
fn plans_reproduce_the_pytorch_fixtures() {
    for dir in ["official_a0_w25", "timm_a0_w25"] {
        let x: Array4<f32> = read_npy(fixture(dir, "input.npy")).unwrap();
        let expected: Array2<f32> = read_npy(fixture(dir, "expect_deploy.npy")).unwrap();
        let (_, model) = Checkpoint::load(fixture(dir, "train.safetensors")).unwrap().build(None).unwrap();
        let fused = model.into_deploy().unwrap();
        let shape: [usize; 4] = x.shape().try_into().unwrap();
        for choice in CHOICES {
            let plan = Plan::with_kernels(&fused, shape, choice).unwrap();
            let mut state = plan.state().unwrap();
            let y = plan.run(&mut state, x.view()).unwrap().into_dimensionality::<Ix2>().unwrap().to_owned();
            let err = relative_error(&y, &expected);
            println!("{dir} {choice:?}: relative error {err:.2e}");
            assert!(err <= REL_TOL, "{dir} {choice:?}: {err:e}");
        }
    }
}

#[test]
fn plans_match_the_fused_forward_with_groups_se_and_odd_sizes() {
    // Stride-1 layers: 3 (64 -> 64 in four groups: too narrow for `Auto`'s Winograd) and 5
    // (128 -> 128: wide enough, on maps of 16 tiles from 224 x 208 inputs); grouped stride-2
    // layers 4 and 6.
    let arch =
        Arch::new("test", [1, 2, 2, 1], [32, 32, 64, 128, 96], vec![1, 1, 1, 4, 2, 1, 2], 7).unwrap().with_se(true);
    let mut model = RepVgg::new(&arch, &mut rng(1)).unwrap();
    randomize_vectors(&mut model, &mut rng(2));
    let fused = model.fuse().unwrap();
    for (n, h, w, auto_winograd) in [(1, 37, 45, 0), (2, 32, 32, 0), (3, 17, 9, 0), (1, 224, 208, 1)] {
        let x = random_tensor((n, 3, h, w), &mut rng(3));
        let expected = fused.forward(&x).unwrap();
        for choice in CHOICES {
            let plan = Plan::with_kernels(&fused, [n, 3, h, w], choice).unwrap();
            let mut state = plan.state().unwrap();
            assert_eq!(plan.output_shape(), Shape::Flat([n, 7]));
            let kernels: Vec<&str> = plan.steps().iter().map(|s| s.kernel_name()).collect();
            let winograd = kernels.iter().filter(|k| k.starts_with("winograd")).count();
            match choice {
                KernelChoice::Direct => assert_eq!(winograd, 0),
                KernelChoice::Winograd(_) => assert_eq!(winograd, 2, "{kernels:?}"),
                KernelChoice::Auto => assert_eq!(winograd, auto_winograd, "{n}x{h}x{w}: {kernels:?}"),
            }
            assert!(kernels.contains(&"squeeze-excite") && kernels.contains(&"linear"));
            // Twice: the second run reuses every buffer the first one filled.
            for _ in 0..2 {
                let y = plan.run(&mut state, x.view()).unwrap().into_dimensionality::<Ix2>().unwrap().to_owned();
                let err = relative_error(&y, &expected);
                assert!(err <= REL_TOL, "{n}x{h}x{w} {choice:?}: {err:e}");
            }
        }
    }
}

#[test]
fn a_plan_reads_non_contiguous_input_and_profiles_every_step() {
    let mut r = rng(4);
    let conv = Conv2d::new_with_bias(ConvGeometry::new(5, 64, 3).padding(1), &mut r).unwrap();
    let wide = Conv2d::new_with_bias(ConvGeometry::new(64, 64, 3).padding(1), &mut r).unwrap();
    let strided = Conv2d::new_with_bias(ConvGeometry::new(64, 64, 3).stride(2).padding(1), &mut r).unwrap();
    let layers =
        (((conv.clone(), Activation::Relu), (wide.clone(), Activation::Silu)), (strided.clone(), Activation::Relu));
    let x = random_tensor((2, 9, 11, 5), &mut r); // `[N, W, H, C]`, permuted to `[N, C, H, W]` below
    let x = x.view().permuted_axes([0, 3, 2, 1]);
    let mut reference = conv.forward_then(&x.to_owned(), Activation::Relu).unwrap();
    reference = wide.forward_then(&reference, Activation::Silu).unwrap();
    reference = strided.forward_then(&reference, Activation::Relu).unwrap();
    let plan = Plan::new(&layers, [2, 5, 11, 9]).unwrap();
    let mut state = plan.state().unwrap();
    let y = plan.run(&mut state, x).unwrap().into_dimensionality::<ndarray::Ix4>().unwrap().to_owned();
    assert!(relative_error(&y, &reference) <= REL_TOL);
    let profile = plan.profile(&mut state, x, 3).unwrap();
    let names: Vec<(&str, &str)> = profile.iter().map(|s| (s.name.as_str(), s.kernel)).collect();
    // Each activation runs inside the conv before it.
    assert_eq!(names, [("0.0.0", "im2col"), ("0.1.0", "winograd4"), ("1.0", "channel-lanes")]);
    assert_eq!(profile[1].macs, 2 * 64 * 64 * 9 * 11 * 9);
}

#[test]
fn batched_small_maps_match_the_layer_with_groups_strides_and_pad_fill() {
    // Planned convs on small output planes with more output channels than the batch has
    // output positions run the whole batch in one GEMM.
    let mut r = rng(7);
    for g in [
        ConvGeometry::new(6, 200, 3).stride(2).padding(1).groups(2),
        ConvGeometry::new(5, 100, (3, 1)).stride((3, 2)).padding((1, 0)),
        ConvGeometry::new(4, 96, 1).stride(2),
    ] {
        let conv = Conv2d::new_with_bias(g, &mut r)
            .unwrap()
            .with_pad_fill(rep::ndarray::Array1::from_shape_fn(g.in_channels, |c| c as f32 - 1.5))
            .unwrap();
        let x = random_tensor((3, g.in_channels, 11, 9), &mut r);
        let expected = conv.forward_then(&x, Activation::Relu).unwrap();
        let plan =
            Plan::with_kernels(&(conv, Activation::Relu), [3, g.in_channels, 11, 9], KernelChoice::Direct).unwrap();
        let mut state = plan.state().unwrap();
        let y = plan.run(&mut state, x.view()).unwrap().into_dimensionality::<ndarray::Ix4>().unwrap().to_owned();
        assert!(relative_error(&y, &expected) <= REL_TOL, "{g}");
    }
}

#[test]
fn empty_batches_and_too_small_inputs() {
    let arch = Arch::new("test", [1, 1, 1, 1], [16, 16, 32, 32, 64], vec![1; 5], 3).unwrap().with_se(true);
    let fused = RepVgg::new(&arch, &mut rng(6)).unwrap().fuse().unwrap();
    let plan = Plan::new(&fused, [0, 3, 32, 32]).unwrap();
    let mut state = plan.state().unwrap();
    assert_eq!(plan.run(&mut state, Array4::zeros((0, 3, 32, 32)).view()).unwrap().shape(), &[0, 3]);
    // Five stride-2 layers: 8x8 shrinks to 1x1 and still works; 0x8 cannot.
    assert!(Plan::new(&fused, [1, 3, 8, 8]).is_ok());
    let err = Plan::new(&fused, [1, 3, 0, 8]).unwrap_err();
    assert_eq!(err.to_string(), "conv2d: input 0x8 padded by 1x1 is too small for the dilated kernel 3x3");
}

#[test]
fn plans_refuse_wrong_inputs_and_layers_that_do_not_chain() {
    let mut r = rng(5);
    let conv = Conv2d::new(ConvGeometry::new(4, 6, 3), &mut r).unwrap();
    let plan = Plan::new(&conv, [1, 4, 8, 8]).unwrap();
    let mut state = plan.state().unwrap();
    let err = plan.run(&mut state, Array4::zeros((1, 4, 8, 9)).view()).unwrap_err();
    assert_eq!(err.to_string(), "plan input: expected shape [1, 4, 8, 8], found [1, 4, 8, 9]");
    let err = Plan::new(&conv, [1, 5, 8, 8]).unwrap_err();
    assert!(err.to_string().contains("plan step `` takes 4 input channels but the step before outputs 5"), "{err}");
    let err = Plan::new(&(conv.clone(), Linear::new(6, 2, &mut r)), [1, 4, 8, 8]).unwrap_err();
    assert!(err.to_string().contains("plan step `1` takes [N, 6] but the step before outputs [1, 6, 6, 6]"), "{err}");
    let err = Plan::new(&(rep::layers::GlobalAvgPool, conv), [1, 4, 8, 8]).unwrap_err();
    assert!(err.to_string().contains("plan step `1` needs an [N, C, H, W] input, found [N, C] = [1, 4]"), "{err}");
}

#[test]
fn one_plan_serves_several_threads_each_with_its_own_state() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Plan>();
    let arch = Arch::new("test", [1, 1, 1, 1], [16, 16, 32, 32, 32], vec![1; 5], 5).unwrap();
    let mut model = RepVgg::new(&arch, &mut rng(3)).unwrap();
    randomize_vectors(&mut model, &mut rng(4));
    let fused = model.fuse().unwrap();
    let plan = std::sync::Arc::new(Plan::new(&fused, [1, 3, 20, 20]).unwrap());
    let inputs: Vec<Array4<f32>> = (0..4).map(|i| random_tensor((1, 3, 20, 20), &mut rng(10 + i))).collect();
    let expected: Vec<Array2<f32>> = inputs.iter().map(|x| fused.forward(x).unwrap()).collect();
    std::thread::scope(|scope| {
        for worker in 0..2 {
            let (plan, inputs, expected) = (plan.clone(), &inputs, &expected);
            scope.spawn(move || {
                let mut state = plan.state().unwrap();
                for round in 0..3 {
                    for (i, (x, want)) in inputs.iter().zip(expected).enumerate() {
                        let y =
                            plan.run(&mut state, x.view()).unwrap().into_dimensionality::<Ix2>().unwrap().to_owned();
                        assert!(relative_error(&y, want) <= REL_TOL, "worker {worker}, round {round}, input {i}");
                    }
                }
            });
        }
    });
    // A state made by a smaller plan is refused, not overrun.
    let small = Plan::new(&fused, [1, 3, 8, 8]).unwrap();
    let mut small_state = small.state().unwrap();
    let err = plan.run(&mut small_state, inputs[0].view()).unwrap_err();
    assert!(err.to_string().contains("made by another plan"), "{err}");
}
