//! The `repvgg` command as a user runs it: a separate process, its exit status and stderr,
//! and the files it leaves. Failed writes leave the destination byte for byte as it was, outputs
//! that are inputs are refused, and absurd sizes are refused before anything is allocated.

mod common;

use common::example_binary;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `repvgg` example binary.
fn binary() -> PathBuf {
    example_binary("repvgg")
}

fn fixture(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/official_a0_w25").join(file)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rep-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(binary()).args(args.iter().map(|a| a.as_ref())).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn copy_of(file: &str, name: &str) -> PathBuf {
    let path = scratch(name);
    std::fs::copy(fixture(file), &path).unwrap();
    path
}

#[test]
fn convert_onto_its_own_input_is_refused_and_the_input_kept() {
    let train = copy_of("train.safetensors", "self.safetensors");
    let before = std::fs::read(&train).unwrap();
    // The same file under another spelling of its path.
    let alias = train.parent().unwrap().join(".").join("self.safetensors");
    let output = run(&[&"convert", &train, &alias]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("refusing to write"), "{}", stderr(&output));
    assert_eq!(std::fs::read(&train).unwrap(), before);
}

#[test]
fn infer_onto_its_input_or_weights_is_refused() {
    let (weights, input) = (copy_of("deploy.safetensors", "w.safetensors"), copy_of("input.npy", "x.npy"));
    let (w_before, x_before) = (std::fs::read(&weights).unwrap(), std::fs::read(&input).unwrap());
    for target in [&input, &weights] {
        let output = run(&[&"infer", &"--weights", &weights, &"--input", &input, &"--output", target]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(stderr(&output).contains("it is the same file as the input"), "{}", stderr(&output));
    }
    assert_eq!(std::fs::read(&weights).unwrap(), w_before);
    assert_eq!(std::fs::read(&input).unwrap(), x_before);

    // The real thing works, and writes what the library computes.
    let logits = scratch("logits.npy");
    let output = run(&[&"infer", &"--weights", &weights, &"--input", &input, &"--output", &logits]);
    assert!(output.status.success(), "{}", stderr(&output));
    let y = rep::io::read_npy::<ndarray::Ix2>(&logits).unwrap();
    let expected = rep::io::read_npy::<ndarray::Ix2>(fixture("expect_deploy.npy")).unwrap();
    assert!(rep::compare::difference(&y, &expected).unwrap().within(1e-5));
}

/// Runs `repvgg convert` with the file size limited to `blocks` KiB by `ulimit -f`, so that the
/// write fails partway (the kernel stops the process with SIGXFSZ).
fn convert_with_file_limit(train: &Path, output: &Path, blocks: usize) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -f {blocks}; exec \"$0\" convert \"$1\" \"$2\""))
        .arg(binary())
        .arg(train)
        .arg(output)
        .output()
        .unwrap()
}

#[test]
fn a_convert_killed_midway_leaves_the_destination_unchanged() {
    let train = fixture("train.safetensors");
    let destination = scratch("deploy_existing.safetensors");
    std::fs::write(&destination, b"an earlier, good deploy file").unwrap();
    let output = convert_with_file_limit(&train, &destination, 64);
    assert!(!output.status.success(), "the 64 KiB limit must stop a 2.7 MB write");
    assert_eq!(std::fs::read(&destination).unwrap(), b"an earlier, good deploy file");

    // Without the limit it succeeds, and the result loads.
    let output = run(&[&"convert", &train, &destination]);
    assert!(output.status.success(), "{}", stderr(&output));
    let checkpoint = rep::zoo::repvgg::Checkpoint::load(&destination).unwrap();
    assert_eq!(checkpoint.form, rep::zoo::repvgg::Form::Deploy);
}

#[test]
fn convert_refuses_non_finite_weights_and_writes_nothing() {
    let mut state = rep::StateDict::load(fixture("train.safetensors")).unwrap();
    let weight = state.tensors.get_mut("stage1.0.rbr_dense.conv.weight").unwrap();
    let index = ((3 * weight.shape()[1] + 2) * 3 + 1) * 3;
    weight[[3, 2, 1, 0]] = f32::NAN;
    let train = scratch("nan_train.safetensors");
    state.save(&train).unwrap();
    let destination = scratch("nan_deploy.safetensors");
    let output = run(&[&"convert", &train, &destination]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("stage1.0.rbr_dense.conv.weight[{index}] is NaN; expected a finite number")),
        "{}",
        stderr(&output)
    );
    assert!(!destination.exists());
}

#[test]
fn absurd_sizes_are_refused_not_aborted() {
    // A header claiming 1x3x100000x100000 floats in a 64-byte body.
    let lying = scratch("lying.npy");
    let header = format!("{:<117}\n", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 100000, 100000), }");
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&lying, bytes).unwrap();
    let output = run(&[
        &"infer",
        &"--weights",
        &fixture("deploy.safetensors"),
        &"--input",
        &lying,
        &"--output",
        &scratch("y.npy"),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("not a usable .npy file"), "{}", stderr(&output));

    let output = run(&[&"bench", &"--arch", &"A0", &"--batch", &"100000"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("100000 is not in 1..=256"), "{}", stderr(&output));

    let output = run(&[&"summary", &"--arch", &"A0", &"--res", &"3000000001"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("overflow u64"), "{}", stderr(&output));
}

#[test]
fn summary_and_bench_report() {
    let output = run(&[&"summary", &"--weights", &fixture("train.safetensors"), &"--res", &"64"]);
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(summary.contains("stage3.13") && summary.contains("total"), "{summary}");

    let output = run(&[&"bench", &"--arch", &"A0", &"--iters", &"1", &"--threads", &"1", &"--json"]);
    let json = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(json.starts_with("{\"arch\":\"A0\",\"batch\":1,\"res\":224,\"threads\":1,"), "{json}");
    assert!(json.contains("\"allocations\":0,"), "a planned forward allocates nothing: {json}");

    let output =
        run(&[&"convert", &fixture("train.safetensors"), &scratch("cli-deploy.safetensors"), &"--to", &"timm"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("equivalence check on a random 2x3x64x64 input"));
}

/// The digits demo end to end: it trains, fuses, deploys through a plan with identical
/// predictions and saves its checkpoints; a run stopped after one epoch and resumed ends with
/// exactly the weights, weight average and optimizer state of an uninterrupted run.
#[test]
fn digits_trains_fuses_saves_and_resumes_exactly() {
    let digits = |args: &[&str], dir: &Path| {
        let output = Command::new(example_binary("digits"))
            .args(["--epochs", "2", "--threads", "1", "--save"])
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}{}", stderr(&output));
        stdout
    };
    let (straight, stopped) = (scratch("digits-straight"), scratch("digits-resumed"));
    let stdout = digits(&[], &straight);
    assert!(stdout.contains("359 of 359 predictions identical"), "{stdout}");
    let accuracy: f64 =
        stdout.split("(fused, planned):").nth(1).unwrap().trim().split(' ').next().unwrap().parse().unwrap();
    assert!(accuracy > 90.0, "two epochs learn: {stdout}");
    for file in [
        "digits-train.safetensors",
        "digits-ema.safetensors",
        "digits-deploy.safetensors",
        "digits-optimizer.safetensors",
    ] {
        assert!(!rep::StateDict::load(straight.join(file)).unwrap().tensors.is_empty(), "{file}");
    }
    digits(&["--stop-after", "1"], &stopped);
    let resumed = digits(&["--resume", stopped.to_str().unwrap()], &stopped);
    assert!(
        resumed.contains("resumed from") && resumed.contains("epoch   2") && !resumed.contains("epoch   1"),
        "{resumed}"
    );
    // The weights, their moving average and the optimizer's state, byte for byte.
    for file in ["digits-train.safetensors", "digits-ema.safetensors", "digits-optimizer.safetensors"] {
        let bytes = |dir: &Path| std::fs::read(dir.join(file)).unwrap();
        assert!(bytes(&straight) == bytes(&stopped), "{file}: a resumed run differs from an uninterrupted one");
    }
    let ema_line = |out: &str| out.lines().find(|l| l.contains("EMA of the weights")).map(str::to_owned);
    assert_eq!(ema_line(&stdout), ema_line(&resumed));
}

/// The `rep` command converts an original DBB checkpoint to exactly the original's deploy keys
/// and numbers, runs an ACNet checkpoint like the original's deploy model, converts an
/// official-named OREPA checkpoint, and refuses a checkpoint of another family by name.
#[test]
fn rep_command_converts_and_runs_every_block_family() {
    let blocks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blocks");
    let rep = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        Command::new(example_binary("rep")).args(args.iter().map(|a| a.as_ref())).output().unwrap()
    };
    let deploy = scratch("dbb-deploy.safetensors");
    let train = blocks.join("dbb_c8_16_s2_g2/train.safetensors");
    let output = rep(&[&"convert", &"--family", &"dbb", &"--stride", &"2", &train, &deploy]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (ours, theirs) = (
        rep::StateDict::load(&deploy).unwrap(),
        rep::StateDict::load(blocks.join("dbb_c8_16_s2_g2/deploy.safetensors")).unwrap(),
    );
    assert_eq!(ours.tensors.keys().collect::<Vec<_>>(), theirs.tensors.keys().collect::<Vec<_>>());
    for (name, t) in &theirs.tensors {
        let scale = t.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = ours.tensors[name].iter().zip(t).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= 1e-5 * scale, "{name}: {worst:e}");
    }

    let (input, result) = (blocks.join("acnet_c8_8_s2/input.npy"), scratch("acnet-out.npy"));
    let weights = blocks.join("acnet_c8_8_s2/train.safetensors");
    let output = rep(&[
        &"infer",
        &"--family",
        &"acnet",
        &"--stride",
        &"2",
        &"--weights",
        &weights,
        &"--input",
        &input,
        &"--output",
        &result,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let ours: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&result).unwrap();
    let expected: ndarray::ArrayD<f32> = ndarray_npy::read_npy(blocks.join("acnet_c8_8_s2/expect_deploy.npy")).unwrap();
    assert!(rep::compare::difference(&ours, &expected).unwrap().within(1e-5));

    // OREPA: an official-named checkpoint (written from a random block) converts to the
    // official deploy keys, numbers equal to our own fuse.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
    let mut block = rep::zoo::orepa::Orepa::new(8usize, 8usize, 3usize, 1usize, 2usize, 8usize, &mut rng).unwrap();
    rep::layers::randomize_vectors(&mut block, &mut rng);
    let official = rep::zoo::orepa::to_official(rep::StateDict::from_parameters(&block)).unwrap();
    let (orepa_train, orepa_deploy) = (scratch("orepa-train.safetensors"), scratch("orepa-deploy.safetensors"));
    official.save(&orepa_train).unwrap();
    let output = rep(&[&"convert", &"--family", &"orepa", &orepa_train, &orepa_deploy]);
    assert!(output.status.success(), "{}", stderr(&output));
    let deployed = rep::StateDict::load(&orepa_deploy).unwrap();
    let fused = rep::StateDict::from_parameters(&rep::Reparameterize::fuse(&block).unwrap());
    assert_eq!(deployed.tensors.keys().collect::<Vec<_>>(), ["orepa_reparam.bias", "orepa_reparam.weight"]);
    assert_eq!(deployed.tensors, fused.tensors);

    let wrong = rep(&[&"convert", &"--family", &"acnet", &train, &scratch("never.safetensors")]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("not an ACNet train-time checkpoint in the original naming"), "{}", stderr(&wrong));
    assert!(!scratch("never.safetensors").exists(), "nothing written on error");
}

/// `rep --family yolov7`: the official train checkpoint converts to the official fused keys, the
/// converted file and the train file both run to the official fused output, `summary` lists
/// every node, and a fused checkpoint is refused by `convert` with nothing written.
#[test]
fn rep_command_converts_runs_and_summarizes_yolov7() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yolov7_w125_nc2_64x64");
    let rep = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        Command::new(example_binary("rep")).args(args.iter().map(|a| a.as_ref())).output().unwrap()
    };
    let deploy = scratch("yolov7-deploy.safetensors");
    let output = rep(&[&"convert", &"--family", &"yolov7", &dir.join("train.safetensors"), &deploy]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (ours, official) =
        (rep::StateDict::load(&deploy).unwrap(), rep::StateDict::load(dir.join("deploy.safetensors")).unwrap());
    assert_eq!(ours.tensors.keys().collect::<Vec<_>>(), official.tensors.keys().collect::<Vec<_>>());

    let expected: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.join("expect_deploy.npy")).unwrap();
    for weights in [deploy.clone(), dir.join("train.safetensors")] {
        let z = scratch("yolov7-z.npy");
        let output = rep(&[
            &"infer",
            &"--family",
            &"yolov7",
            &"--weights",
            &weights,
            &"--input",
            &dir.join("input.npy"),
            &"--output",
            &z,
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let ours: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&z).unwrap();
        let check = rep::compare::difference(&ours, &expected).unwrap();
        assert!(check.within(1e-5), "{}: {:e}", weights.display(), check.relative());
    }

    let output =
        rep(&[&"summary", &"--family", &"yolov7", &"--weights", &dir.join("train.safetensors"), &"--res", &"64"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("  104  RepConv(1024, 1)"), "{text}");
    assert!(text.contains("train-time: 591654 parameters"), "{text}");
    assert!(text.contains("compound scaling"), "{text}");

    let never = scratch("yolov7-never.safetensors");
    let refused = rep(&[&"convert", &"--family", &"yolov7", &dir.join("deploy.safetensors"), &never]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("is already a fused checkpoint"), "{}", stderr(&refused));
    assert!(!never.exists());
}

/// `detect` letterboxes an image, runs a YOLOv7 checkpoint, suppresses and draws: with a high
/// threshold nothing is kept and the written image equals the input; with a low one the
/// official maximum of 300 boxes is kept, listed most confident first, and drawn.
#[test]
fn detect_draws_what_it_keeps() {
    let weights = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/yolov7_calibrated_w125_nc2_96x128/train.safetensors");
    let input = scratch("detect-in.png");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(11);
    let pixels: Vec<u8> = (0..90 * 120 * 3).map(|_| rand::Rng::random(&mut rng)).collect();
    let original = image::RgbImage::from_raw(120, 90, pixels).unwrap();
    original.save(&input).unwrap();
    let detect = |conf: &str, out: &Path| {
        let args: [&dyn AsRef<std::ffi::OsStr>; 10] =
            [&"--weights", &weights, &"--image", &input, &"--out", &out, &"--size", &"128", &"--conf", &conf];
        Command::new(example_binary("detect")).args(args.iter().map(|a| a.as_ref())).output().unwrap()
    };

    let out = scratch("detect-none.png");
    let output = detect("0.9", &out);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("0 detections (128x96 input)"), "{text}");
    assert_eq!(image::open(&out).unwrap().to_rgb8(), original);

    let out = scratch("detect-all.png");
    let output = detect("0.0001", &out);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("300 detections"), "{text}");
    let confidences: Vec<f32> =
        text.lines().filter_map(|l| l.strip_prefix("class ")?.split(' ').nth(1)?.parse().ok()).collect();
    assert_eq!(confidences.len(), 300);
    assert!(confidences.windows(2).all(|w| w[0] >= w[1]), "most confident first");
    let drawn = image::open(&out).unwrap().to_rgb8();
    assert_eq!(drawn.dimensions(), original.dimensions());
    assert_ne!(drawn, original);

    let refused = detect("0.5", &input);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("refusing to write"), "{}", stderr(&refused));
}
