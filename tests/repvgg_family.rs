//! RepVGG end to end: both fixtures in both forms and namings, export and re-import, every named
//! architecture, damaged checkpoints, dtypes and prefixes, and the `repvgg` commands.

mod common;

use common::{REL_TOL, random_tensor, relative_error, rng};
use ndarray::{Array2, Array4};
use ndarray_npy::read_npy;
use rep::layers::randomize_vectors;
use rep::zoo::repvgg::{Arch, Checkpoint, Form, Loaded, Naming, RepVgg, save_deploy};
use rep::{Error, Reparameterize, StateDict};
use std::path::PathBuf;

const FIXTURES: [(&str, Naming); 2] = [("official_a0_w25", Naming::Official), ("timm_a0_w25", Naming::Timm)];

fn fixture(dir: &str, file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join(file)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rep-repvgg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn fixtures_load_in_both_forms_and_namings() {
    for (dir, naming) in FIXTURES {
        let x: Array4<f32> = read_npy(fixture(dir, "input.npy")).unwrap();
        for (file, form, expect) in [
            ("train.safetensors", Form::Train, "expect_train.npy"),
            ("deploy.safetensors", Form::Deploy, "expect_deploy.npy"),
        ] {
            let checkpoint = Checkpoint::load(fixture(dir, file)).unwrap();
            assert_eq!((checkpoint.naming, checkpoint.form), (naming, form), "{dir}/{file}");
            let (arch, model) = checkpoint.build(None).unwrap();
            assert_eq!((arch.depths(), arch.widths(), arch.classes()), ([2, 4, 14, 1], [16, 16, 32, 64, 256], 10));
            let expected: Array2<f32> = read_npy(fixture(dir, expect)).unwrap();
            let err = relative_error(&model.forward(&x).unwrap(), &expected);
            println!("{dir}/{file}: relative error {err:.2e}");
            assert!(err <= REL_TOL, "{dir}/{file}: {err:e}");
        }
    }
}

#[test]
fn fused_weights_match_the_peers_and_round_trip_exactly() {
    for (dir, naming) in FIXTURES {
        let (_, model) = Checkpoint::load(fixture(dir, "train.safetensors")).unwrap().build(None).unwrap();
        let fused = model.into_deploy().unwrap();
        for to in [Naming::Official, Naming::Timm] {
            let path = scratch(&format!("{dir}-{to:?}.safetensors"));
            save_deploy(&fused, &path, to).unwrap();
            let written = StateDict::load(&path).unwrap();
            if to == naming {
                // Same names as the peer's own deploy file, same numbers within tolerance.
                let peer = StateDict::load(fixture(dir, "deploy.safetensors")).unwrap();
                assert_eq!(written.tensors.keys().collect::<Vec<_>>(), peer.tensors.keys().collect::<Vec<_>>());
                for (key, ours) in &written.tensors {
                    assert!(relative_error(ours, &peer.tensors[key]) <= REL_TOL, "{dir}: {key}");
                }
            }
            let reloaded = Checkpoint::load(&path).unwrap();
            assert_eq!((reloaded.naming, reloaded.form), (to, Form::Deploy));
            let Loaded::Deploy(again) = reloaded.build(None).unwrap().1 else { panic!("deploy form expected") };
            assert_eq!(StateDict::from_parameters(&*again), StateDict::from_parameters(&fused), "{dir} via {to:?}");
        }
    }
}

#[test]
fn every_named_architecture_builds_fuses_and_matches() {
    let x = random_tensor((1, 3, 32, 32), &mut rng(0));
    for name in Arch::names() {
        let arch = Arch::named(name, 10).unwrap();
        let mut model = RepVgg::new(&arch, &mut rng(1)).unwrap();
        randomize_vectors(&mut model, &mut rng(2));
        assert_eq!(model.stage0.se.is_some(), arch.se(), "{name}: SE blocks exactly in D2se");
        let fused = model.fuse().unwrap();
        let err = relative_error(&fused.forward(&x).unwrap(), &model.forward(&x).unwrap());
        assert!(err <= REL_TOL, "{name}: {err:e}");
        // The layout survives a round trip through a checkpoint: inference finds the same architecture.
        let inferred = Checkpoint::from_state(StateDict::from_parameters(&model)).unwrap().infer_arch().unwrap();
        assert_eq!(inferred.name(), name);
        assert_eq!(inferred.groups(), arch.groups());
    }
    assert_eq!(Naming::Timm.from_official("stage0.se.down.weight"), "stem.attn.fc1.weight");
    assert_eq!(Naming::Timm.to_official("stages.2.3.attn.fc2.bias"), "stage3.3.se.up.bias");
    assert_eq!(Naming::Timm.from_official("stage4.0.rbr_reparam.bias"), "stages.3.0.reparam_conv.bias");
    let b1g2 = Arch::named("RepVGG-B1g2", 1000).unwrap();
    assert_eq!(b1g2.widths(), [64, 128, 256, 512, 2048]);
    let grouped: Vec<usize> = (0..b1g2.layers()).filter(|&l| b1g2.groups_at(l) == 2).collect();
    assert_eq!(grouped, (2..=26).step_by(2).collect::<Vec<_>>());
    let err = Arch::named("C7", 10).unwrap_err();
    assert!(err.to_string().starts_with("unknown RepVGG architecture `C7`; expected one of A0, A1"), "{err}");
    let custom = Arch::custom([1, 1, 1, 1], (0.5, 0.5), 2, 3).unwrap();
    assert_eq!(custom.widths(), [32, 32, 64, 128, 256]);
}

#[test]
fn damaged_checkpoints_give_the_documented_errors() {
    let original = StateDict::load(fixture("official_a0_w25", "train.safetensors")).unwrap();
    let build = |state: StateDict| Checkpoint::from_state(state).and_then(|c| c.build(None)).err().unwrap();

    let mut wrong = original.clone();
    wrong.tensors.insert("stage2.1.rbr_1x1.conv.weight".into(), ndarray::ArrayD::zeros(vec![32, 32, 3, 3]));
    let err = build(wrong).to_string();
    assert!(
        err.contains("wrong shape for stage2.1.rbr_1x1.conv.weight: expected [32, 32, 1, 1], found [32, 32, 3, 3]"),
        "{err}"
    );

    let mut missing = original.clone();
    missing.tensors.remove("stage3.5.rbr_dense.bn.running_var");
    let err = build(missing).to_string();
    assert!(
        err.contains("(1 missing, 0 unexpected, 0 wrong shape)") && err.contains("stage3.5.rbr_dense.bn.running_var"),
        "{err}"
    );

    let mut extra = original.clone();
    extra.tensors.insert("stage1.0.rbr_extra.weight".into(), ndarray::ArrayD::zeros(vec![1]));
    let err = build(extra).to_string();
    assert!(err.contains("unexpected key: stage1.0.rbr_extra.weight"), "{err}");

    let bytes = std::fs::read(fixture("official_a0_w25", "train.safetensors")).unwrap();
    let truncated = scratch("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = Checkpoint::load(&truncated).unwrap_err();
    assert!(matches!(err, Error::Safetensors { .. }), "{err}");
    assert!(err.to_string().contains("not a valid safetensors file"), "{err}");

    let not_repvgg = StateDict {
        tensors: [("conv.weight".to_owned(), ndarray::ArrayD::zeros(vec![1]))].into(),
        ..StateDict::default()
    };
    let err = Checkpoint::from_state(not_repvgg).unwrap_err();
    assert_eq!(err.to_string(), "not a RepVGG checkpoint: no `stage0.*` (official) or `stem.*` (timm) keys");

    let wrong_arch = Arch::named("A0", 10).unwrap();
    let err = Checkpoint::from_state(original).unwrap().build(Some(&wrong_arch)).err().unwrap();
    assert!(
        err.to_string()
            .starts_with("the checkpoint is not RepVGG-A0: it has depths [2, 4, 14, 1], widths [16, 16, 32, 64, 256]"),
        "{err}"
    );
}

#[test]
fn half_precision_and_data_parallel_prefixes_load() {
    use safetensors::{Dtype, tensor::TensorView};
    let original = StateDict::load(fixture("timm_a0_w25", "train.safetensors")).unwrap();
    let x: Array4<f32> = read_npy(fixture("timm_a0_w25", "input.npy")).unwrap();
    let expected: Array2<f32> = read_npy(fixture("timm_a0_w25", "expect_train.npy")).unwrap();
    for dtype in [Dtype::F16, Dtype::BF16] {
        let raw: Vec<(String, Vec<usize>, Vec<u8>)> = original
            .tensors
            .iter()
            .map(|(k, t)| {
                let bytes = t
                    .iter()
                    .flat_map(|&v| match dtype {
                        Dtype::F16 => half::f16::from_f32(v).to_le_bytes(),
                        _ => half::bf16::from_f32(v).to_le_bytes(),
                    })
                    .collect();
                (format!("module.{k}"), t.shape().to_vec(), bytes)
            })
            .collect();
        let views = raw.iter().map(|(k, s, b)| (k.clone(), TensorView::new(dtype, s.clone(), b).unwrap()));
        let bytes = safetensors::serialize(views, None).unwrap();
        let state = StateDict::from_bytes(&bytes, "<memory>").unwrap();
        let (_, model) = Checkpoint::from_state(state).unwrap().build(None).unwrap();
        let err = relative_error(&model.forward(&x).unwrap(), &expected);
        println!("{dtype:?} weights: relative error {err:.2e}");
        assert!(err < 0.05, "{dtype:?}: {err}");
    }
}

#[test]
fn convert_and_infer_run_on_the_fixtures() {
    for (dir, _) in FIXTURES {
        let train = fixture(dir, "train.safetensors");
        let deploy = scratch(&format!("{dir}-cli.safetensors"));
        let conversion = rep::zoo::repvgg::convert(&train, &deploy, None, Naming::Timm).unwrap();
        assert!(conversion.check.within(REL_TOL), "{dir}: {:?}", conversion.check);
        assert_eq!(Checkpoint::load(&deploy).unwrap().naming, Naming::Timm);

        let logits = scratch(&format!("{dir}-logits.npy"));
        let expected: Array2<f32> = read_npy(fixture(dir, "expect_train.npy")).unwrap();
        for weights in [&train, &deploy] {
            let report = rep::zoo::repvgg::infer(weights, &fixture(dir, "input.npy"), &logits, None).unwrap();
            assert!(relative_error(&report.logits, &expected) <= REL_TOL);
            let ours: Array2<f32> = read_npy(&logits).unwrap();
            assert_eq!(ours, report.logits);
        }
    }
    let err = rep::zoo::repvgg::convert(
        std::path::Path::new("/nonexistent.safetensors"),
        &scratch("x.safetensors"),
        None,
        Naming::Official,
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("/nonexistent.safetensors:"), "{err}");
    let already = fixture("official_a0_w25", "deploy.safetensors");
    let err = rep::zoo::repvgg::convert(&already, &scratch("x.safetensors"), None, Naming::Official).unwrap_err();
    assert!(err.to_string().ends_with("is already a deploy checkpoint"), "{err}");
}
