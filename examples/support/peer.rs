//! What the ONNX Runtime peer benchmark (`scripts/ort_export.py`) reads from a directory: the
//! fused weights under their checkpoint names (`deploy.safetensors`, which rep-onnx's `onnx`
//! example exports as `model.onnx`), the input (`input.npy`) and our planned outputs
//! (`output_{i}.npy`).

use rep::layers::Parameters;
use rep::ndarray::{Array4, ArrayD};
use std::path::Path;

/// Writes `fused`, `x` and `outputs` into `dir` (created if missing).
pub fn export(
    dir: &Path,
    fused: &dyn Parameters,
    x: &Array4<f32>,
    outputs: &[ArrayD<f32>],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(dir)?;
    rep::StateDict::from_parameters(fused).save(dir.join("deploy.safetensors"))?;
    rep::io::write_npy(dir.join("input.npy"), x)?;
    for (i, output) in outputs.iter().enumerate() {
        rep::io::write_npy(dir.join(format!("output_{i}.npy")), output)?;
    }
    eprintln!("exported to {}", dir.display());
    Ok(())
}
