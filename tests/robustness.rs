//! Bad numbers and bad sizes: non-finite parameters refused on load and fuse, comparisons that
//! fail on NaN, sizes checked before anything is allocated, plans that validate what they are
//! given, and files written whole or not at all.

mod common;

use common::{random_conv_bn, random_tensor, rng};
use ndarray::{Array1, Array2, Array4, ArrayViewD, ArrayViewMutD, Ix4};
use rep::layers::{Conv2d, ConvBn, GlobalAvgPool, Linear, Parameters, randomize_vectors};
use rep::plan::Plan;
use rep::zoo::repvgg::{Arch, Checkpoint, RepVgg};
use rep::{ConvGeometry, Costs, Error, Hw, Reparameterize, StateDict};
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rep-robustness-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn small_block(seed: u64) -> ConvBn {
    random_conv_bn(ConvGeometry::new(3, 4, 3).padding(1), &mut rng(seed))
}

#[test]
fn non_finite_checkpoint_values_are_refused_by_key_and_index() {
    let mut dict = StateDict::from_parameters(&small_block(1));
    dict.tensors.get_mut("conv.weight").unwrap()[[1, 2, 0, 1]] = f32::NAN;
    let mut target = small_block(2);
    let before = target.clone();
    let err = dict.load_into(&mut target).unwrap_err();
    assert_eq!(err.to_string(), "conv.weight[46] is NaN; expected a finite number");
    assert_eq!(target, before, "nothing is loaded");

    let mut dict = StateDict::from_parameters(&small_block(1));
    dict.tensors.get_mut("bn.running_var").unwrap()[[3]] = f32::INFINITY;
    let err = dict.load_into(&mut target).unwrap_err();
    assert_eq!(err.to_string(), "bn.running_var[3] is inf; expected a finite number");
}

#[test]
fn fusing_refuses_non_finite_parameters() {
    let mut block = small_block(3);
    block.conv.weight_mut()[[0, 0, 1, 1]] = f32::NAN;
    let err = block.fuse().unwrap_err();
    assert_eq!(err.to_string(), "conv weight[4] is NaN; expected a finite number");

    // A generated model names the tensor by its full dotted name.
    let arch = Arch::new("tiny", [1, 1, 1, 1], [8, 8, 8, 8, 8], vec![1; 5], 3).unwrap();
    let mut model = RepVgg::new(&arch, &mut rng(4)).unwrap();
    model.stage2[0].pointwise.bn.running_mean[[5]] = f32::NEG_INFINITY;
    let err = model.fuse().unwrap_err();
    assert_eq!(err.to_string(), "stage2.0.rbr_1x1.bn.running_mean[5] is -inf; expected a finite number");
}

#[test]
fn a_nan_difference_is_never_within_tolerance() {
    let reference = Array2::<f32>::ones((2, 3));
    let mut ours = reference.clone();
    ours[[1, 1]] = f32::NAN;
    let d = rep::compare::difference(&ours, &reference).unwrap();
    assert!(!d.within(1e-5) && !d.within(f32::INFINITY));
    assert!(rep::compare::difference(&reference, &reference).unwrap().within(0.0));
}

/// Two parameters under one name with different shapes: what a model with duplicate names
/// looks like to the loader.
struct Duplicated {
    a: Array1<f32>,
    b: Array2<f32>,
}

impl Parameters for Duplicated {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewD<'_, f32>)) {
        f(&rep::layers::join(prefix, "w"), self.a.view().into_dyn());
        f(&rep::layers::join(prefix, "w"), self.b.view().into_dyn());
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>)) {
        f(&rep::layers::join(prefix, "w"), self.a.view_mut().into_dyn());
        f(&rep::layers::join(prefix, "w"), self.b.view_mut().into_dyn());
    }
}

#[test]
fn duplicate_parameter_names_are_an_error_not_a_panic() {
    let mut model = Duplicated { a: Array1::zeros(3), b: Array2::zeros((2, 2)) };
    let mut dict = StateDict::default();
    dict.tensors.insert("w".into(), Array2::<f32>::ones((2, 2)).into_dyn());
    let err = dict.load_into(&mut model).unwrap_err();
    assert_eq!(err.to_string(), "the model has two parameters named `w`, so no checkpoint can load into it");
}

#[test]
fn plans_refuse_sizes_that_overflow_instead_of_panicking() {
    let conv = Conv2d::new(ConvGeometry::new(3, 8, 3).padding(1), &mut rng(5)).unwrap();
    let err = Plan::new(&conv, [usize::MAX / 2, 3, 224, 224]).unwrap_err();
    assert!(err.to_string().contains("more values than fit in memory"), "{err}");
    let err = Plan::new(&conv, [1 << 40, 3, 1 << 12, 1 << 12]).unwrap_err();
    assert!(err.to_string().contains("more values than fit in memory"), "{err}");
    // Fits in a usize but not in memory: an error from the allocator, not an abort.
    let plan = Plan::new(&conv, [1 << 30, 3, 1 << 10, 1 << 10]).unwrap();
    let err = plan.state().unwrap_err();
    assert!(err.to_string().contains("cannot allocate"), "{err}");
}

#[test]
fn plans_validate_hand_built_layers_as_their_forward_does() {
    let mut r = rng(6);
    let mut linear = Linear::new(8, 10, &mut r);
    linear.bias = Some(Array1::zeros(5));
    let err = Plan::new(&(GlobalAvgPool, linear), [1, 8, 4, 4]).unwrap_err();
    assert_eq!(err.to_string(), "linear bias: expected shape [10], found [5]");

    // A convolution's numbers cannot disagree with its geometry (private fields): its
    // constructors refuse them.
    let g = ConvGeometry::new(4, 6, 3).padding(1);
    let conv = Conv2d::new(g, &mut r).unwrap();
    let err = conv.clone().with_bias(Array1::zeros(2)).unwrap_err();
    assert_eq!(err.to_string(), "conv bias: expected shape [6], found [2]");
    let err = conv.with_pad_fill(Array1::zeros(3)).unwrap_err();
    assert_eq!(err.to_string(), "conv pad fill: expected shape [4], found [3]");
    let err = Conv2d::from_weights(g, Array4::zeros((6, 4, 1, 1)), None).unwrap_err();
    assert_eq!(err.to_string(), "conv weight: expected shape [6, 4, 3, 3], found [6, 4, 1, 1]");
}

#[test]
fn multiply_adds_that_overflow_are_an_error_not_a_wrapped_count() {
    let arch = Arch::named("A0", 10).unwrap();
    let model = RepVgg::new(&arch, &mut rng(7)).unwrap();
    let fused = model.fuse().unwrap();
    let huge = Hw::square(3_000_000_001);
    let err = model.macs(huge).unwrap_err();
    assert!(err.to_string().contains("overflow u64"), "{err}");
    assert!(fused.macs(huge).is_err());
    let (train, _) = model.macs(Hw::square(224)).unwrap();
    let (deploy, _) = fused.macs(Hw::square(224)).unwrap();
    assert!(deploy < train);
}

/// A safetensors file whose F32 entries all have zero elements, written by hand so that the
/// shapes can claim anything.
fn empty_tensors_file(entries: &[(String, Vec<u64>)]) -> Vec<u8> {
    let fields: Vec<String> = entries
        .iter()
        .map(|(name, shape)| format!("\"{name}\":{{\"dtype\":\"F32\",\"shape\":{shape:?},\"data_offsets\":[0,0]}}"))
        .collect();
    let header = format!("{{{}}}", fields.join(","));
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes
}

#[test]
fn zero_element_tensors_cannot_claim_huge_architectures() {
    // Every block's kernel is named, but empty, with 2^36 channels.
    let huge = 1u64 << 36;
    let mut entries = vec![("stage0.rbr_dense.conv.weight".to_owned(), vec![huge, 3, 3, 0])];
    for stage in 1..=4 {
        entries.push((format!("stage{stage}.0.rbr_dense.conv.weight"), vec![huge, 3, 3, 0]));
    }
    entries.push(("linear.weight".to_owned(), vec![0, huge]));
    let bytes = empty_tensors_file(&entries);
    let state = StateDict::from_bytes(&bytes, "<huge>").unwrap();
    let err = Checkpoint::from_state(state).unwrap().build(None).expect_err("refused");
    assert!(err.to_string().contains("kernel of `stage0` has shape [68719476736, 3, 3, 0]"), "{err}");
}

#[test]
fn npy_headers_that_claim_more_than_the_file_holds_are_refused() {
    let path = scratch("lying.npy");
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 100000, 100000), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let padded = format!("{header:<117}\n");
    bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    bytes.extend_from_slice(padded.as_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&path, &bytes).unwrap();
    let err = rep::io::read_npy::<Ix4>(&path).unwrap_err();
    assert!(matches!(err, Error::Npy { .. }), "{err}");
    assert!(err.to_string().contains("lying.npy: not a usable .npy file"), "{err}");

    // A real file round-trips, and Fortran order is read as what it means.
    let x = random_tensor((2, 3, 4, 5), &mut rng(8));
    let good = scratch("good.npy");
    rep::io::write_npy(&good, &x).unwrap();
    assert_eq!(rep::io::read_npy::<Ix4>(&good).unwrap(), x);
    let fortran = scratch("fortran.npy");
    ndarray_npy::write_npy(&fortran, &x.t().as_standard_layout().t()).unwrap();
    assert_eq!(rep::io::read_npy::<Ix4>(&fortran).unwrap(), x);
}

#[test]
fn a_failed_write_leaves_the_destination_as_it_was() {
    let path = scratch("keep.safetensors");
    std::fs::write(&path, b"the good file").unwrap();
    let err = rep::io::write_atomic(&path, |file| {
        std::io::Write::write_all(file, b"half of a new")?;
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    assert!(err.to_string().ends_with("keep.safetensors: disk full"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"the good file");
    let dir = path.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("keep.safetensors."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // A successful save replaces it whole.
    let block = small_block(9);
    StateDict::from_parameters(&block).save(&path).unwrap();
    let mut loaded = small_block(10);
    StateDict::load(&path).unwrap().load_into(&mut loaded).unwrap();
    assert_eq!(loaded, block);
}

#[test]
fn an_output_that_is_an_input_is_refused() {
    let input = scratch("input.bin");
    std::fs::write(&input, b"x").unwrap();
    let same = input.parent().unwrap().join(".").join("input.bin");
    let err = rep::io::ensure_distinct(&same, &[&input]).unwrap_err();
    assert!(err.to_string().starts_with("refusing to write"), "{err}");
    rep::io::ensure_distinct(&scratch("other.bin"), &[&input]).unwrap();
}

#[test]
fn saving_a_deploy_model_refuses_non_finite_weights() {
    let arch = Arch::new("tiny", [1, 1, 1, 1], [8, 8, 8, 8, 8], vec![1; 5], 3).unwrap();
    let mut model = RepVgg::new(&arch, &mut rng(11)).unwrap();
    randomize_vectors(&mut model, &mut rng(12));
    let mut fused = model.fuse().unwrap();
    fused.linear.weight[[1, 1]] = f32::NAN;
    let path = scratch("nan_deploy.safetensors");
    let err = rep::zoo::repvgg::save_deploy(&fused, &path, rep::zoo::repvgg::Naming::Official).unwrap_err();
    assert_eq!(err.to_string(), "linear.weight[9] is NaN; expected a finite number");
    assert!(!path.exists());
}

#[test]
fn a_file_larger_than_memory_is_an_error_not_an_abort() {
    // A sparse file claiming 1 TiB: reading it must reserve fallibly and refuse.
    let path = scratch("huge.npy");
    let file = std::fs::File::create(&path).unwrap();
    if let Err(e) = file.set_len(1 << 40) {
        eprintln!("skipped: this filesystem cannot hold a sparse 1 TiB file ({e})");
        return;
    }
    let err = rep::io::read_npy::<Ix4>(&path).unwrap_err();
    assert!(err.to_string().contains("do not fit in memory"), "{err}");
    let err = StateDict::load(&path).unwrap_err();
    assert!(err.to_string().contains("do not fit in memory"), "{err}");
    std::fs::remove_file(&path).ok();
}
