#!/usr/bin/env bash
# Fused RepVGG: rep's planned form vs ONNX Runtime on our ONNX export of the same weights, back
# to back. Needs `pip install numpy onnx onnxruntime`.
# Usage: scripts/bench_vs_ort.sh [ITERS] [KERNELS]   (prints a markdown table; KERNELS is
# `repvgg bench --kernels`: auto (default), direct, winograd or winograd4)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/repvgg_vs_ort.sh
iters=${1:-50}
kernels=${2:-auto}
cargo build --release --example repvgg >&2
cargo build --release -p rep-onnx --example onnx >&2
echo "| model | batch | threads | rep planned | ONNX Runtime | rep / ORT | GFLOPS (rep) | rep layer by layer | rep train-time | planned vs train | ORT vs rep logits |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for config in "A0 1 1" "A0 1 2" "A0 8 1" "A0 8 2" "B0 1 1" "B0 1 2" "B0 8 2"; do
  read -r arch batch threads <<<"$config"
  repvgg_vs_ort "$arch" 224 "$batch" "$threads" "$iters" "$kernels"
  python3 - "$ort" "$ours" "$arch" "$batch" "$threads" <<'PY'
import json, sys
ort, ours = json.loads(sys.argv[1]), json.loads(sys.argv[2])
arch, batch, threads = sys.argv[3:6]
o, r = ours["fused_ms"], ort["median_ms"]
print(f"| {arch} | {batch} | {threads} | {o:.2f} ms | {r:.2f} ms | {o / r:.2f} | {ours['fused_gflops']:.0f} | "
      f"{ours['fused_layers_ms']:.2f} ms | {ours['train_ms']:.2f} ms | {ours['speedup']:.2f}x | {ort['max_relative_difference']:.1e} |")
PY
done
