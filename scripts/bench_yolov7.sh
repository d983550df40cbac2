#!/usr/bin/env bash
# Fused YOLOv7: rep's planned form vs ONNX Runtime on the same graph and weights, back to back.
# ONNX Runtime runs our ONNX export (rep-onnx) of the same fused network.
# Needs `pip install numpy onnx onnxruntime`.
# Usage: scripts/bench_yolov7.sh [WIDTH] [RES] [ITERS]   (prints a markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
width=${1:-1.0}
res=${2:-640}
iters=${3:-10}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo build --release --example yolov7 >&2
cargo build --release -p rep-onnx --example onnx >&2
echo "| model | threads | rep planned | ONNX Runtime | rep / ORT | rep layer by layer | rep train-time | planned vs train | ORT vs rep outputs |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for threads in 1 2; do
  ours=$(./target/release/examples/yolov7 bench --width "$width" --res "$res" --threads "$threads" --iters "$iters" --json --export "$dir" 2>/dev/null)
  ./target/release/examples/onnx yolov7 "$dir/deploy.safetensors" "$dir/model.onnx" "$res" >&2
  ort=$(python3 scripts/ort_export.py "$dir" --threads "$threads" --iters "$iters" 2>/dev/null | tail -1)
  python3 - "$ours" "$ort" "$threads" <<'PY'
import json, sys
ours, ort = json.loads(sys.argv[1]), json.loads(sys.argv[2])
o, r = ours["fused_ms"], ort["median_ms"]
print(f"| {ours['variant']} w{ours['width']} {ours['res']}² | {sys.argv[3]} | {o:.0f} ms | {r:.0f} ms | {o / r:.2f} | "
      f"{ours['fused_layers_ms']:.0f} ms | {ours['train_ms']:.0f} ms | {ours['speedup']:.2f}x | {ort['max_relative_difference']:.1e} |")
PY
done
