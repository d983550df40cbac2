//! Wrong input is an `Err` naming the problem — never a panic, never silent damage.

mod common;

use common::{random_conv_bn, random_tensor, rng};
use ndarray::{Array1, Array2, Array4};
use rep::io::Mismatch;
use rep::layers::{Conv2d, ConvBn, Layer, Linear, Parameters};
use rep::{ConvGeometry, Error, StateDict};

#[test]
fn conv_input_errors_say_expected_and_found() {
    let mut rng = rng(0);
    let conv = Conv2d::new(ConvGeometry::new(3, 8, 3).dilation(2), &mut rng).unwrap();
    let err = conv.forward(&Array4::zeros((1, 4, 9, 9))).unwrap_err();
    assert_eq!(err.to_string(), "conv2d: expected 3 input channels, found 4");

    let err = conv.forward(&Array4::zeros((1, 3, 4, 9))).unwrap_err();
    assert_eq!(err.to_string(), "conv2d: input 4x9 padded by 0x0 is too small for the dilated kernel 5x5");

    let err = Conv2d::new(ConvGeometry::new(6, 8, 3).groups(4), &mut rng).unwrap_err();
    assert_eq!(err.to_string(), "invalid geometry: in_channels = 6 is not divisible by groups = 4");
    let err = Conv2d::new(ConvGeometry::new(6, 8, 3).stride(0), &mut rng).unwrap_err();
    assert_eq!(err.to_string(), "invalid geometry: stride height must be at least 1, found 0");

    let err = Conv2d::from_weights(ConvGeometry::new(3, 8, 3), Array4::zeros((8, 3, 1, 1)), None).unwrap_err();
    assert_eq!(err.to_string(), "conv weight: expected shape [8, 3, 3, 3], found [8, 3, 1, 1]");
    let err = conv.clone().with_pad_fill(Array1::zeros(2)).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");

    let linear = Linear::new(16, 4, &mut rng);
    let err = linear.forward(&Array2::zeros((2, 15))).unwrap_err();
    assert_eq!(err.to_string(), "linear input: expected shape [2, 16], found [2, 15]");
}

#[test]
fn fold_of_mismatched_layers_is_refused() {
    let mut rng = rng(1);
    let branch = random_conv_bn(ConvGeometry::new(4, 8, 3).padding(1), &mut rng);
    let wrong_bn = rep::layers::BatchNorm2d::new(6);
    let err = branch.fuse().unwrap().then_bn(&wrong_bn).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot fuse batch norm: it has 6 channels but the convolution before it has 8 outputs"
    );

    let first = random_conv_bn(ConvGeometry::new(4, 8, 3).padding(1), &mut rng).fuse().unwrap();
    let second = random_conv_bn(ConvGeometry::new(8, 4, 3).padding(1), &mut rng).fuse().unwrap();
    let err = first.then(&second).unwrap_err();
    assert!(err.to_string().contains("is not one convolution: two k×k convs merge only without padding"), "{err}");
    let err = second.clone().then(&second).unwrap_err();
    assert!(err.to_string().contains("the first stage outputs 4 channels but the second expects 8"), "{err}");
}

fn block(seed: u64) -> ConvBn {
    random_conv_bn(ConvGeometry::new(3, 4, 3).padding(1), &mut rng(seed))
}

#[test]
fn state_dict_round_trips_through_safetensors() {
    let source = block(1);
    let bytes = StateDict::from_parameters(&source).to_bytes().unwrap();
    let mut target = block(2);
    assert_ne!(source, target);
    StateDict::from_bytes(&bytes, "<memory>").unwrap().load_into(&mut target).unwrap();
    assert_eq!(source, target);

    let dir = std::env::temp_dir().join(format!("rep-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("block.safetensors");
    StateDict::from_parameters(&source).save(&path).unwrap();
    let mut from_file = block(3);
    StateDict::load(&path).unwrap().load_into(&mut from_file).unwrap();
    assert_eq!(source, from_file);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_mismatch_is_reported_and_nothing_is_loaded() {
    let mut dict = StateDict::from_parameters(&block(1));
    dict.tensors.remove("conv.weight");
    dict.tensors.insert("bn.bias".into(), ndarray::ArrayD::zeros(vec![5]));
    dict.tensors.insert("extra.weight".into(), ndarray::ArrayD::zeros(vec![1]));
    let mut target = block(2);
    let before = target.clone();
    let err = dict.load_into(&mut target).unwrap_err();
    let Error::StateDict(mismatch) = &err else { panic!("{err}") };
    assert_eq!(
        mismatch,
        &Mismatch {
            missing: vec!["conv.weight".into()],
            unexpected: vec!["extra.weight".into()],
            wrong_shape: vec![("bn.bias".into(), vec![4], vec![5])],
        }
    );
    let text = err.to_string();
    for line in
        ["missing key: conv.weight", "unexpected key: extra.weight", "wrong shape for bn.bias: expected [4], found [5]"]
    {
        assert!(text.contains(line), "{text}");
    }
    assert_eq!(target, before, "a failed load must leave the model untouched");
}

#[test]
fn checkpoint_dtypes_prefixes_and_truncation() {
    use safetensors::{Dtype, tensor::TensorView};
    let values = [0.5f32, -1.25, 3.0, 0.0];
    let f16: Vec<u8> = values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    let bf16: Vec<u8> = values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
    let count: Vec<u8> = 7i64.to_le_bytes().to_vec();
    let bytes = safetensors::serialize(
        [
            ("module.a", TensorView::new(Dtype::F16, vec![4], &f16).unwrap()),
            ("module.b", TensorView::new(Dtype::BF16, vec![2, 2], &bf16).unwrap()),
            ("module.bn.num_batches_tracked", TensorView::new(Dtype::I64, vec![], &count).unwrap()),
        ],
        None,
    )
    .unwrap();
    let dict = StateDict::from_bytes(&bytes, "<memory>").unwrap().strip_prefix("module");
    assert_eq!(dict.tensors.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(dict.tensors["a"].iter().copied().collect::<Vec<_>>(), values);
    assert_eq!(dict.tensors["b"].shape(), &[2, 2]);

    let err = StateDict::from_bytes(&bytes[..bytes.len() - 3], "cut.safetensors").unwrap_err();
    assert!(err.to_string().starts_with("cut.safetensors: not a valid safetensors file"), "{err}");

    let ints =
        safetensors::serialize([("w", TensorView::new(Dtype::I32, vec![1], &[1, 0, 0, 0]).unwrap())], None).unwrap();
    let err = StateDict::from_bytes(&ints, "<memory>").unwrap_err();
    assert_eq!(err.to_string(), "w: unsupported dtype I32 (expected F32, F64, F16 or BF16)");

    let err = StateDict::load("/nonexistent/weights.safetensors").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn parameter_names_follow_pytorch() {
    let mut names = Vec::new();
    block(0).visit("stage1.0.rbr_dense", &mut |name, _| names.push(name.to_owned()));
    assert_eq!(
        names,
        [
            "stage1.0.rbr_dense.conv.weight",
            "stage1.0.rbr_dense.bn.weight",
            "stage1.0.rbr_dense.bn.bias",
            "stage1.0.rbr_dense.bn.running_mean",
            "stage1.0.rbr_dense.bn.running_var",
        ]
    );
    let x = random_tensor((1, 3, 5, 5), &mut rng(0));
    assert!(block(0).forward(&x).is_ok());
}

#[test]
fn comparison_measures_against_the_reference_and_refuses_other_shapes() {
    let reference = ndarray::array![[4.0f32, -2.0], [0.5, 1.0]];
    let ours = ndarray::array![[4.0f32, -1.0], [0.5, 1.0]];
    let d = rep::compare::difference(&ours, &reference).unwrap();
    assert_eq!((d.max_abs, d.scale, d.relative()), (1.0, 4.0, 0.25));
    let err = rep::compare::difference(&ndarray::Array2::<f32>::zeros((2, 3)), &reference).unwrap_err();
    assert_eq!(err.to_string(), "compared tensor: expected shape [2, 2], found [2, 3]");
    // A NaN output is never "close".
    let nan = ndarray::array![[4.0f32, f32::NAN], [0.5, 1.0]];
    let d = rep::compare::difference(&nan, &reference).unwrap();
    assert!(d.relative().is_nan(), "NaN compares false with every tolerance");
    assert!(d.max(rep::compare::difference(&ours, &reference).unwrap()).max_abs.is_nan());
}
