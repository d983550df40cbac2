#!/usr/bin/env bash
# How rep's planned fused RepVGG compares with ONNX Runtime (on our ONNX export of the same
# weights) as the work grows: A0 at three resolutions and three batch sizes, and B0 to B3, back
# to back. Needs `pip install numpy onnx onnxruntime`.
# Usage: scripts/bench_growth.sh [ITERS] [THREADS]   (prints a markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/repvgg_vs_ort.sh
iters=${1:-10}
threads=${2:-1}
cargo build --release --example repvgg >&2
cargo build --release -p rep-onnx --example onnx >&2
echo "| model | res | batch | G multiply-adds | rep planned | ONNX Runtime | rep / ORT |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
configs=()
for res in 224 320 448; do for batch in 1 8 32; do configs+=("A0 $res $batch"); done; done
for arch in B0 B1 B2 B3; do configs+=("$arch 224 1"); done
for config in "${configs[@]}"; do
  read -r arch res batch <<<"$config"
  repvgg_vs_ort "$arch" "$res" "$batch" "$threads" "$iters" auto
  python3 - "$ort" "$ours" "$arch" "$res" "$batch" <<'PY'
import json, sys
ort, ours = json.loads(sys.argv[1]), json.loads(sys.argv[2])
arch, res, batch = sys.argv[3:6]
o, r = ours["fused_ms"], ort["median_ms"]
gmacs = ours["fused_gflops"] * o / 2e3
print(f"| {arch} | {res} | {batch} | {gmacs:.1f} | {o:.1f} ms | {r:.1f} ms | {o / r:.2f} |")
PY
done
