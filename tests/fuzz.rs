//! A bounded fuzz suite: mutated safetensors and `.npy` files fed to every loader and to the
//! library functions behind each `repvgg` command. Every case must give `Ok` or a clear `Err`:
//! never a panic (proptest reports one as a failure) and never an abort (which would kill this
//! test process). Sized to run in seconds; `PROPTEST_CASES` scales it up for a longer hunt.

mod common;

use common::rng;
use ndarray::{Ix2, Ix4};
use proptest::prelude::*;
use rep::layers::randomize_vectors;
use rep::plan::Plan;
use rep::zoo::repvgg::{Arch, Checkpoint, RepVgg};
use rep::{Reparameterize, StateDict};
use std::path::PathBuf;
use std::sync::OnceLock;

fn config(cases: u32) -> ProptestConfig {
    // Failures are reported with their input; no regression file is written into the tree.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// A valid train-time checkpoint of a small RepVGG, as safetensors bytes.
fn checkpoint_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let arch = Arch::new("fuzz", [1, 1, 1, 1], [4, 4, 8, 8, 8], vec![1; 5], 3).unwrap();
        let mut model = RepVgg::new(&arch, &mut rng(0)).unwrap();
        randomize_vectors(&mut model, &mut rng(1));
        StateDict::from_parameters(&model).to_bytes().unwrap()
    })
}

/// Everything a command does with a checkpoint, from parsing to planned inference; errors are
/// fine, panics are not. Returns how many of the steps succeeded (6: all).
fn exercise_checkpoint(bytes: &[u8]) -> usize {
    let Ok(state) = StateDict::from_bytes(bytes, "<fuzz>") else { return 0 };
    let Ok(checkpoint) = Checkpoint::from_state(state) else { return 1 };
    let _ = checkpoint.infer_arch();
    let Ok((_, loaded)) = checkpoint.build(None) else { return 2 };
    let Ok(fused) = loaded.into_deploy() else { return 3 };
    let x = ndarray::Array4::<f32>::zeros((1, 3, 8, 8));
    let Ok(_) = fused.forward(&x) else { return 4 };
    let planned = Plan::new(&fused, [1, 3, 8, 8]).and_then(|plan| plan.run(&mut plan.state()?, x.view()).map(drop));
    match planned {
        Ok(()) => 6,
        Err(_) => 5,
    }
}

#[test]
fn the_unmutated_checkpoint_goes_all_the_way() {
    assert_eq!(exercise_checkpoint(checkpoint_bytes()), 6);
}

/// The header of a safetensors file (its JSON), and the data after it.
fn split(bytes: &[u8]) -> (String, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (String::from_utf8(bytes[8..8 + n].to_vec()).unwrap(), &bytes[8 + n..])
}

fn join(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A number that a mutated header might hold: small, at a boundary, or huge.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..20, Just(1u64 << 32), Just(1u64 << 36), Just(u64::MAX / 3), Just(u64::MAX), any::<u64>()]
}

proptest! {
    #![proptest_config(config(2000))]

    /// Bytes of the header flipped, inserted or removed.
    #[test]
    fn safetensors_header_bytes(at in 0usize..4096, byte in any::<u8>(), kind in 0u8..3) {
        let (header, data) = split(checkpoint_bytes());
        let mut header = header.into_bytes();
        let at = at % header.len();
        match kind {
            0 => header[at] = byte,
            1 => header.insert(at, byte),
            _ => { header.remove(at); }
        }
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(data);
        let _ = exercise_checkpoint(&bytes);
    }

    /// The header length, the file truncated, or the length lying about the header.
    #[test]
    fn safetensors_lengths(length in size(), keep in 0usize..100_000) {
        let mut bytes = checkpoint_bytes().to_vec();
        bytes[..8].copy_from_slice(&length.to_le_bytes());
        let _ = exercise_checkpoint(&bytes);
        let _ = exercise_checkpoint(&checkpoint_bytes()[..keep.min(checkpoint_bytes().len())]);
    }

    /// One tensor's shape, offsets or dtype rewritten; shapes with zero elements and huge
    /// dimensions included.
    #[test]
    fn safetensors_entries(
        entry in 0usize..40,
        dims in prop::collection::vec(size(), 0..5),
        offsets in (size(), size()),
        dtype in prop::sample::select(vec!["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "Q4"]),
        field in 0u8..3,
    ) {
        let (header, data) = split(checkpoint_bytes());
        let mut json: Vec<(String, String)> = Vec::new();
        // Entries look like `"name":{"dtype":"F32","shape":[..],"data_offsets":[a,b]}`.
        for part in header.trim_start_matches('{').split("},\"") {
            let (name, rest) = part.split_once("\":{").unwrap_or((part, ""));
            json.push((name.trim_start_matches('"').to_owned(), rest.trim_end_matches('}').to_owned()));
        }
        let index = entry % json.len();
        let rest = &json[index].1;
        let replaced = match field {
            0 => replace_field(rest, "shape", &format!("{dims:?}").replace(' ', "")),
            1 => replace_field(rest, "data_offsets", &format!("[{},{}]", offsets.0, offsets.1)),
            _ => replace_field(rest, "dtype", &format!("\"{dtype}\"")),
        };
        json[index].1 = replaced;
        let header = format!(
            "{{{}}}",
            json.iter().map(|(n, r)| format!("\"{n}\":{{{r}}}")).collect::<Vec<_>>().join(",")
        );
        let _ = exercise_checkpoint(&join(&header, data));
    }
}

/// `"key":VALUE` in a JSON object body with VALUE replaced by `value`.
fn replace_field(body: &str, key: &str, value: &str) -> String {
    let marker = format!("\"{key}\":");
    let Some(start) = body.find(&marker) else { return body.to_owned() };
    let after = start + marker.len();
    let end = match body[after..].chars().next() {
        Some('[') => body[after..].find(']').map_or(body.len(), |e| after + e + 1),
        Some('"') => body[after + 1..].find('"').map_or(body.len(), |e| after + e + 2),
        _ => body[after..].find(',').map_or(body.len(), |e| after + e),
    };
    format!("{}{value}{}", &body[..after], &body[end..])
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rep-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// An `.npy` file with the given header dictionary and `data_len` bytes of data.
fn npy_bytes(header: &str, data_len: usize, version: u8) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    let len_bytes = if version == 1 { 2 } else { 4 };
    let unpadded = 6 + 2 + len_bytes + header.len() + 1;
    let padded = format!("{header}{}\n", " ".repeat(unpadded.next_multiple_of(64) - unpadded));
    if version == 1 {
        out.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(padded.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(padded.as_bytes());
    out.extend(std::iter::repeat_n(0x3f, data_len));
    out
}

proptest! {
    #![proptest_config(config(2000))]

    /// `.npy` headers with any shape, dtype, order and data length, through `read_npy` and on
    /// into `repvgg infer`'s planned forward when they parse.
    #[test]
    fn npy_headers(
        dims in prop::collection::vec(prop_oneof![0usize..6, Just(100_000usize), Just(1usize << 40), Just(usize::MAX)], 0..6),
        descr in prop::sample::select(vec!["<f4", ">f4", "<f8", "<i4", "|u1", "<f2", "f4", "<c8"]),
        fortran in any::<bool>(),
        data_len in prop_oneof![0usize..64, 64usize..2048],
        version in 1u8..4,
        flip in prop::option::of((0usize..128, any::<u8>())),
    ) {
        let shape = dims.iter().map(|d| format!("{d}, ")).collect::<String>();
        let header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': ({shape}), }}",
            if fortran { "True" } else { "False" }
        );
        let mut bytes = npy_bytes(&header, data_len, version);
        if let Some((at, byte)) = flip {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        let path = scratch(&format!("case-{}.npy", std::thread::current().name().unwrap_or("main").replace("::", "-")));
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(x) = rep::io::read_npy::<Ix4>(&path) {
            let arch = Arch::new("fuzz", [1, 1, 1, 1], [4, 4, 8, 8, 8], vec![1; 5], 3).unwrap();
            let fused = RepVgg::new(&arch, &mut rng(2)).unwrap().fuse().unwrap();
            if let Ok(plan) = Plan::new(&fused, x.dim().into()) {
                let _ = plan.state().and_then(|mut state| plan.run(&mut state, x.view()).map(drop));
            }
        }
        let _ = rep::io::read_npy::<Ix2>(&path);
        let _ = rep::io::read_npy::<ndarray::IxDyn>(&path);
    }
}

/// Shapes that hold no element or claim more than any array can address are errors, not a
/// panic inside the npy reader (one found by `npy_headers`: `[0, 2⁶⁴ − 1]`).
#[test]
fn npy_shapes_too_large_for_any_array_are_errors() {
    for shape in ["0, 18446744073709551615,", "18446744073709551615,", "1099511627776, 1099511627776,"] {
        let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
        let path = scratch("too-large.npy");
        std::fs::write(&path, npy_bytes(&header, 0, 1)).unwrap();
        let err = rep::io::read_npy::<ndarray::IxDyn>(&path).unwrap_err().to_string();
        assert!(err.contains("is too large for any array"), "{shape}: {err}");
    }
}

/// The official YOLOv7 fixture's train-time state dict.
fn yolov7_state() -> &'static StateDict {
    static STATE: OnceLock<StateDict> = OnceLock::new();
    STATE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yolov7_w125_nc2_64x64");
        StateDict::load(dir.join("train.safetensors")).unwrap()
    })
}

proptest! {
    #![proptest_config(config(48))]

    /// A YOLOv7 checkpoint with one tensor reshaped (the ones architecture inference reads
    /// among them: the widest conv, the anchors, the head's conv) or removed: loading, fusing
    /// and a forward give `Ok` or a clear `Err`, never a panic.
    #[test]
    fn yolov7_checkpoints_with_a_tensor_changed(
        which in 0usize..600,
        dims in prop::collection::vec(0usize..40, 0..5),
        remove in any::<bool>(),
    ) {
        let mut state = yolov7_state().clone();
        let keys: Vec<String> = state.tensors.keys().cloned().collect();
        let key = match which % 8 {
            0 => "model.50.conv.weight".to_owned(),
            1 => "model.105.anchors".to_owned(),
            2 => "model.105.m.0.weight".to_owned(),
            _ => keys[which % keys.len()].clone(),
        };
        if remove {
            state.tensors.remove(&key);
        } else {
            state.tensors.insert(key, ndarray::ArrayD::from_elem(dims, 0.5f32));
        }
        if let Ok(loaded) = rep::zoo::yolov7::checkpoint::from_state(&state) {
            let _ = loaded.into_deploy().and_then(|fused| fused.forward(&ndarray::Array4::zeros((1, 3, 32, 32))));
        }
    }
}
