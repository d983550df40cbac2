# Sourced by the RepVGG peer benchmarks (bench_vs_ort.sh, bench_growth.sh); needs the `repvgg`
# and rep-onnx `onnx` examples built in release.
#
# repvgg_vs_ort ARCH RES BATCH THREADS ITERS KERNELS
#   times rep's planned fused RepVGG (random weights, seed 0), exports the same fused weights
#   as ONNX, and times ONNX Runtime on that file; sets $ours and $ort to the two JSON reports
#   (ort's `max_relative_difference` compares its logits with ours).
repvgg_vs_ort() {
  local dir
  dir=$(mktemp -d)
  ours=$(./target/release/examples/repvgg bench --arch "$1" --res "$2" --batch "$3" --threads "$4" \
    --iters "$5" --kernels "$6" --json --export "$dir" 2>/dev/null)
  ./target/release/examples/onnx repvgg "$dir/deploy.safetensors" "$dir/model.onnx" "$2" "$3" >/dev/null
  ort=$(python3 scripts/ort_export.py "$dir" --threads "$4" --iters "$5" 2>/dev/null | tail -1)
  rm -rf "$dir"
}
